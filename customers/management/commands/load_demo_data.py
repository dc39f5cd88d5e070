from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from customers.models import Customer
from customers.services import customer_create, customer_user_create

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
        created = 0
        for spec in DEMO_CUSTOMERS:
            if Customer.objects.filter(external_id=spec["external_id"]).exists():
                continue
            fields = {k: v for k, v in spec.items() if k != "users"}
            customer = customer_create(**fields, now=now)
            for external_id, email, name in spec["users"]:
                customer_user_create(customer=customer, external_id=external_id, email=email, name=name, now=now)
            created += 1
        self.stdout.write(f"Demo data: {created} customer(s) created, {len(DEMO_CUSTOMERS) - created} already there.")
