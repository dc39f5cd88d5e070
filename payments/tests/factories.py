"""Builders for payments tests. Intents, methods and refunds come first; the ledger's builders follow."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import factory

from customers.models import Customer
from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from payments.models import PaymentMethod

# --- Payment methods, intents, refunds ------------------------------------------------------------

PAY_T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
_NUMBERS = itertools.count(1)


class PaymentMethodFactory(factory.django.DjangoModelFactory):
    """A sandbox visa as if attached; for tests that need a row, not the attach flow."""

    class Meta:
        model = PaymentMethod

    customer = factory.SubFactory(CustomerFactory)
    provider = "sandbox"
    provider_ref = "pm_sandbox_visa"
    brand = "visa"
    last4 = "4242"
    exp_month = 12
    exp_year = 2034
    is_default = False


def open_invoice(
    customer: Customer | None = None, *, amount: int = 1000, currency: str = "usd", now: datetime = PAY_T0
) -> Invoice:
    """An open, numbered `charge_automatically` invoice with `amount` due (no lines: payments only look at
    its amounts and status)."""
    return Invoice.objects.create(
        customer=customer or CustomerFactory(),
        number=f"PAYTEST-{next(_NUMBERS):06d}",
        status=Invoice.Status.OPEN,
        billing_reason=Invoice.BillingReason.MANUAL,
        currency=currency,
        subtotal=amount,
        total=amount,
        amount_due=amount,
        amount_remaining=amount,
        finalized_at=now,
        due_date=now,
    )


# --- Ledger, credit grants, credit notes (payments/ledger.py, grants.py, credit_notes.py) -----------

LEDGER_T0 = PAY_T0
_LEDGER_NUMBERS = itertools.count(1)


def ledger_invoice(
    customer: Customer | None = None,
    *,
    lines=(1000,),
    currency: str = "usd",
    status: str = "open",
    tax: int = 0,
    now: datetime = LEDGER_T0,
) -> Invoice:
    """An invoice written directly (no subscription), with lines: `lines` are amounts or dicts of
    InvoiceLine fields (`amount`, `meter`, `price`, `discount_amount`, `quantity`, `unit_amount`). The
    total is lines - discounts + `tax`. Open: nothing paid yet; paid: paid in full; draft: unnumbered."""
    from invoicing.models import InvoiceLine

    customer = customer or CustomerFactory()
    specs = [spec if isinstance(spec, dict) else {"amount": spec} for spec in lines]
    subtotal = sum(spec["amount"] for spec in specs)
    discount = sum(spec.get("discount_amount", 0) for spec in specs)
    total = subtotal - discount + tax
    due = max(total, 0)
    paid = due if status == Invoice.Status.PAID else 0
    invoice = Invoice.objects.create(
        customer=customer,
        billing_reason=Invoice.BillingReason.MANUAL,
        currency=currency,
        status=status,
        number=None if status == Invoice.Status.DRAFT else f"LDG-{next(_LEDGER_NUMBERS):06d}",
        subtotal=subtotal,
        discount=discount,
        tax=tax,
        total=total,
        amount_due=due,
        amount_paid=paid,
        amount_remaining=due - paid if status == Invoice.Status.OPEN else 0,
        finalized_at=None if status == Invoice.Status.DRAFT else now,
        paid_at=now if status == Invoice.Status.PAID else None,
    )
    if paid:
        # Paid by a provider payment, as the books must say (`billing_audit`: amount_paid is explained).
        from payments.models import PaymentIntent

        PaymentIntent.objects.create(
            customer=customer,
            invoice=invoice,
            amount=paid,
            currency=currency,
            status=PaymentIntent.Status.SUCCEEDED,
            amount_received=paid,
            provider="sandbox",
            succeeded_at=now,
        )
    for position, spec in enumerate(specs, start=1):
        InvoiceLine.objects.create(
            invoice=invoice,
            position=position,
            kind=spec.get("kind", InvoiceLine.Kind.USAGE if spec.get("meter") else InvoiceLine.Kind.FIXED),
            description=spec.get("description", f"Line {position}"),
            amount=spec["amount"],
            discount_amount=spec.get("discount_amount", 0),
            meter=spec.get("meter"),
            price=spec.get("price"),
            quantity=spec.get("quantity"),
            unit_amount=spec.get("unit_amount"),
        )
    return invoice


class CreditGrantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "payments.CreditGrant"

    customer = factory.SubFactory(CustomerFactory)
    amount = 1000
    currency = "usd"
    priority = 50
    effective_at = LEDGER_T0
