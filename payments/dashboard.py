"""Selectors of the admin dashboard: the figures an operator opens admin for, each per currency (money in
different currencies is never added up). payments is the top app, so it may read every app's tables.

- Open receivables: open invoices' `amount_remaining`; overdue: those of them whose `due_date` has passed.
- Failed payments: collection attempts refused in the last 30 days (a declined card, a needed authentication,
  no payment method: what dunning counts as a failure), and how many invoices they were for.
- Invoiced this month: totals of the invoices finalized in the current UTC calendar month (voided ones
  excluded: a void invoice was never owed).
- MRR: the monthly recurring revenue of active and past-due subscriptions: each live item priced by its
  licensed (not metered) price for its quantity, per billing period, scaled to a month (a year is 12
  months, a week 52/12 of a month, a day 365/12). Usage, discounts and taxes are not recurring revenue
  and are not counted; the sum is rounded half up once per currency.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from django.db.models import Count, Q, Sum

from billing_site.money import round_fraction
from catalog.pricing import quote
from invoicing.models import Invoice
from payments.models import CollectionAttempt
from subscriptions.models import Subscription, SubscriptionItem

FAILED_PAYMENTS_WINDOW = timedelta(days=30)

# Periods per month, by duration unit (a month of a year, 52 weeks, 365 days).
_PER_MONTH = {"month": Fraction(1), "year": Fraction(1, 12), "week": Fraction(52, 12), "day": Fraction(365, 12)}


@dataclass(frozen=True)
class CurrencyFigure:
    currency: str
    amount: int
    count: int


@dataclass
class Dashboard:
    now: datetime
    month_start: datetime
    open_receivables: list[CurrencyFigure] = field(default_factory=list)
    overdue_receivables: list[CurrencyFigure] = field(default_factory=list)
    invoiced_this_month: list[CurrencyFigure] = field(default_factory=list)
    mrr: list[CurrencyFigure] = field(default_factory=list)
    failed_payments: int = 0
    failed_payment_invoices: int = 0
    recent_failures: list[CollectionAttempt] = field(default_factory=list)


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _by_currency(queryset: Any, amount: str) -> list[CurrencyFigure]:
    rows = queryset.values("currency").annotate(amount=Sum(amount), count=Count("id")).order_by("currency")
    return [CurrencyFigure(r["currency"], int(r["amount"] or 0), r["count"]) for r in rows]


def receivables_open(*, now: datetime) -> list[CurrencyFigure]:
    return _by_currency(Invoice.objects.filter(status=Invoice.Status.OPEN, amount_remaining__gt=0), "amount_remaining")


def receivables_overdue(*, now: datetime) -> list[CurrencyFigure]:
    return _by_currency(
        Invoice.objects.filter(status=Invoice.Status.OPEN, amount_remaining__gt=0, due_date__lt=now),
        "amount_remaining",
    )


def invoiced_in_month(*, now: datetime) -> list[CurrencyFigure]:
    start = month_start(now)
    end = (start + timedelta(days=32)).replace(day=1)
    finalized = Invoice.objects.filter(finalized_at__gte=start, finalized_at__lt=end).exclude(
        status__in=(Invoice.Status.DRAFT, Invoice.Status.VOID)
    )
    return _by_currency(finalized, "total")


def mrr(*, now: datetime) -> list[CurrencyFigure]:
    items = (
        SubscriptionItem.objects.filter(
            subscription__status__in=(Subscription.Status.ACTIVE, Subscription.Status.PAST_DUE),
            removed_at__isnull=True,
            price__meter__isnull=True,
        )
        .select_related("price")
        .only(
            "quantity",
            "subscription_id",
            "price__amount",
            "price__currency",
            "price__duration_amount",
            "price__duration_unit",
        )
    )
    totals: dict[str, Fraction] = defaultdict(Fraction)
    subscriptions: dict[str, set[str]] = defaultdict(set)
    for item in items.iterator(chunk_size=2000):
        price = item.price
        quantity = item.quantity if item.quantity is not None else Decimal(1)
        per_period = quote(price.engine_amount, quantity).amount
        totals[price.currency] += per_period * _PER_MONTH[price.duration_unit] / price.duration_amount
        subscriptions[price.currency].add(item.subscription_id)
    return [
        CurrencyFigure(currency, round_fraction(totals[currency]), len(subscriptions[currency]))
        for currency in sorted(totals)
    ]


def payments_failed(*, now: datetime) -> tuple[int, int, list[CollectionAttempt]]:
    # A failure as dunning counts one: money was asked for and refused (not one still in flight).
    refused = Q(payment_intent__status__in=("requires_payment_method", "requires_action")) | Q(
        payment_intent__isnull=True, error__contains="no_payment_method"
    )
    failed = CollectionAttempt.objects.filter(success=False, created_at__gte=now - FAILED_PAYMENTS_WINDOW).filter(
        refused
    )
    counts = failed.aggregate(attempts=Count("id"), invoices=Count("invoice", distinct=True))
    recent = list(failed.select_related("invoice", "invoice__customer").order_by("-created_at", "-id")[:10])
    return counts["attempts"], counts["invoices"], recent


def dashboard_read(*, now: datetime) -> Dashboard:
    attempts, invoices, recent = payments_failed(now=now)
    return Dashboard(
        now=now,
        month_start=month_start(now),
        open_receivables=receivables_open(now=now),
        overdue_receivables=receivables_overdue(now=now),
        invoiced_this_month=invoiced_in_month(now=now),
        mrr=mrr(now=now),
        failed_payments=attempts,
        failed_payment_invoices=invoices,
        recent_failures=recent,
    )
