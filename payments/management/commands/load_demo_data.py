from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand
from django.utils import timezone

from billing_site.progress import Summary, progress_bar
from catalog.models import Price
from catalog.services import price_create, product_create
from customers.models import Customer
from customers.services import customer_create, customer_user_create
from metering.models import Meter
from metering.services import meter_create
from payments.services.methods import payment_method_create
from subscriptions.services.lifecycle import ItemSpec, subscription_create

DEMO_CUSTOMERS = [
    {
        "external_id": "tenant-acme",
        "name": "Acme Corp",
        "email": "billing@acme.example",
        "currency": "usd",
        "address": {
            "line1": "1 Main St",
            "city": "Springfield",
            "state": "IL",
            "postal_code": "62701",
            "country": "US",
        },
        "users": [("u-acme-1", "ada@acme.example", "Ada"), ("u-acme-2", "bob@acme.example", "Bob")],
    },
    {
        "external_id": "tenant-globex",
        "name": "Globex GmbH",
        "email": "finance@globex.example",
        "currency": "eur",
        "address": {"line1": "Hauptstr. 5", "city": "Berlin", "postal_code": "10115", "country": "DE"},
        "users": [("u-globex-1", "greta@globex.example", "Greta")],
    },
    {
        "external_id": "tenant-initech",
        "name": "Initech KK",
        "email": "ap@initech.example",
        "currency": "jpy",
        "address": {"city": "Tokyo", "country": "JP"},
        "users": [],
    },
]


class Command(BaseCommand):
    help = "Load a small demo data set (idempotent: existing demo rows are left alone)."

    def handle(self, *args, **options) -> None:  # type: ignore[no-untyped-def]
        now = timezone.now()
        created, summary = 0, Summary("load_demo_data")
        for spec in progress_bar(DEMO_CUSTOMERS, stream=self.stderr, desc="demo customers", unit="customer"):
            if Customer.objects.filter(external_id=spec["external_id"]).exists():
                continue
            fields = {k: v for k, v in spec.items() if k != "users"}
            customer = customer_create(**fields, now=now)
            for external_id, email, name in spec["users"]:
                customer_user_create(customer=customer, external_id=external_id, email=email, name=name, now=now)
            created += 1
        self.stdout.write(f"Demo data: {created} customer(s) created, {len(DEMO_CUSTOMERS) - created} already there.")
        if Meter.objects.filter(code="api-calls").exists():
            self.stdout.write(summary.line(customers_created=created, catalog="already there"))
            return
        # A catalog and one subscription, so the API has something to bill from the first minute.
        meter = meter_create(code="api-calls", name="API calls", aggregation="sum", now=now)
        product = product_create(name="Pro plan", now=now)
        seats = price_create(
            type="product",
            product_id=product.id,
            duration_amount=1,
            duration_unit="month",
            lookup_key="pro-seat",
            amount={"model": "fixed", "currency": "usd", "unit": "2900", "flat": 0},
            now=now,
        )
        calls: Price = price_create(
            type="product",
            product_id=product.id,
            duration_amount=1,
            duration_unit="month",
            meter_id=meter.id,
            lookup_key="pro-api-calls",
            now=now,
            amount={
                "model": "tiered",
                "currency": "usd",
                "mode": "graduated",
                "tiers": [{"up_to": 10000, "unit": "0", "flat": 0}, {"up_to": None, "unit": "0.05", "flat": 0}],
            },
        )
        acme = Customer.objects.get(external_id="tenant-acme")
        payment_method_create(customer=acme, token="tok_visa", default=True, now=now)
        subscription_create(
            customer=acme,
            items=[ItemSpec(price=seats, quantity=Decimal(3)), ItemSpec(price=calls, quantity=None)],
            now=now,
        )
        self.stdout.write("Demo catalog: meter api-calls, product Pro plan (seat + API calls), one subscription.")
        self.stdout.write(summary.line(customers_created=created, catalog="created"))
