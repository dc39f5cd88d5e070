"""Reads for the hosted invoice page and the portal. Everything a portal page reads goes through
`portal_session_by_token` and is filtered by that session's customer: an id of another customer's object
is a 404, exactly as an id that does not exist."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from billing_site.errors import ApiError, NotFound
from customers.models import Customer
from invoicing.documents.formatting import Formatter
from invoicing.models import Invoice
from metering.models import Meter
from metering.selectors import usage_aggregate, usage_series
from payments.models import CreditGrant, PaymentIntent, PaymentMethod
from payments.selectors import balance_list, credit_grant_remaining, with_burned
from portal.charts import bar_chart_svg, plain_number
from portal.models import PortalSession
from portal.services import session_token_hash
from subscriptions.models import Subscription
from subscriptions.services.preview import subscription_upcoming_invoice

LIVE_SUBSCRIPTIONS = (
    Subscription.Status.TRIALING,
    Subscription.Status.ACTIVE,
    Subscription.Status.PAST_DUE,
    Subscription.Status.UNPAID,
)


class PortalSessionExpired(ApiError):
    status_code = 404
    type = "invalid_request_error"
    code = "portal_session_expired"


def portal_session_by_token(token: str, *, now: datetime) -> PortalSession:
    """The session a URL's token opens; NotFound for a bad token, PortalSessionExpired once it expired."""
    if not 20 <= len(token) <= 100:
        raise NotFound("No such portal session.")
    session = PortalSession.objects.select_related("customer").filter(token_hash=session_token_hash(token)).first()
    if session is None or session.customer.deleted_at is not None:
        raise NotFound("No such portal session.")
    if now >= session.expires_at:
        raise PortalSessionExpired("This portal link has expired; ask for a new one.")
    return session


def fmt_for(currency: str) -> Formatter:
    return Formatter(locale=settings.DOCUMENT_LOCALE, currency=currency)


# --- usage ----------------------------------------------------------------------------------------


@dataclass
class MeterUsage:
    meter: Meter
    start: datetime
    end: datetime
    period: str
    total: Decimal
    total_text: str
    chart: SafeString
    days: list[tuple[str, Decimal]] = field(default_factory=list)


def _days(start: datetime, end: datetime) -> list[datetime]:
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    days = []
    while day < end:
        days.append(day)
        day += timedelta(days=1)
    return days


def customer_usage(customer: Customer, *, now: datetime) -> list[MeterUsage]:
    """Per meter of the customer's live subscriptions, the current period's usage: the total (what
    `GET /usage/{meter}?customer=...&start=<period start>&end=<period end>` answers) and the per-day series
    (the chart)."""
    subscriptions = Subscription.objects.filter(
        customer_id=customer.pk, status__in=LIVE_SUBSCRIPTIONS
    ).prefetch_related("items__price__meter")
    seen: dict[str, MeterUsage] = {}
    fmt = Formatter(locale=settings.DOCUMENT_LOCALE, currency="usd")
    for sub in subscriptions.order_by("created_at"):
        for item in sub.items.all():
            meter = item.price.meter
            if meter is None or item.removed_at is not None or meter.pk in seen:
                continue
            start, end = sub.current_period_start, sub.current_period_end
            total = usage_aggregate(meter=meter, customer=customer, start=start, end=end).value
            buckets = {
                b.start: b.value
                for b in usage_series(meter=meter, customer=customer, start=start, end=end, window="day")
            }
            days = [(day.strftime("%b %d"), buckets.get(max(day, start), Decimal(0))) for day in _days(start, end)]
            seen[meter.pk] = MeterUsage(
                meter=meter,
                start=start,
                end=end,
                period=fmt.period(start, end),
                total=total,
                total_text=plain_number(total),
                chart=mark_safe(bar_chart_svg(days, title=f"{meter.name}: usage per day")),  # noqa: S308 - escaped
                days=days,
            )
    return list(seen.values())


# --- the rest of the overview ---------------------------------------------------------------------


def upcoming_invoices(customer: Customer, *, now: datetime) -> list[dict[str, Any]]:
    rows = []
    for sub in Subscription.objects.filter(customer_id=customer.pk, status__in=LIVE_SUBSCRIPTIONS).order_by(
        "created_at"
    ):
        try:
            draft = subscription_upcoming_invoice(subscription=sub, now=now)
        except ApiError:  # ends without another invoice
            continue
        fmt = fmt_for(draft.currency)
        rows.append(
            {
                "subscription": sub.pk,
                "period": fmt.period(draft.period.start, draft.period.end) if draft.period else "",
                "date": fmt.date(sub.current_period_end),
                "total": fmt.money(draft.total),
                "amount_due": fmt.money(draft.amount_due),
                "lines": [{"description": line.description, "amount": fmt.money(line.amount)} for line in draft.lines],
            }
        )
    return rows


def balances(customer: Customer) -> list[dict[str, str]]:
    # Positive: owed to the customer (a credit on the next invoices).
    return [
        {"currency": row.currency.upper(), "amount": fmt_for(row.currency).money(row.balance)}
        for row in balance_list(customer)
    ]


def credit_grants(customer: Customer) -> list[dict[str, Any]]:
    grants = with_burned(CreditGrant.objects.filter(customer_id=customer.pk)).order_by("-effective_at")
    rows = []
    for grant in grants[:50]:
        fmt = fmt_for(grant.currency)
        rows.append(
            {
                "name": grant.name or grant.pk,
                "status": grant.status,
                "amount": fmt.money(grant.amount),
                "remaining": fmt.money(credit_grant_remaining(grant)),
                "expires": fmt.date(grant.expires_at) if grant.expires_at else "",
            }
        )
    return rows


def customer_invoices(customer: Customer) -> list[Invoice]:
    return list(
        Invoice.objects.filter(customer_id=customer.pk, finalized_at__isnull=False)
        .prefetch_related("hosted_links")
        .order_by("-finalized_at")[:100]
    )


def customer_invoice(customer: Customer, invoice_id: str) -> Invoice:
    invoice = Invoice.objects.filter(pk=invoice_id, customer_id=customer.pk, finalized_at__isnull=False).first()
    if invoice is None:
        raise NotFound("No such invoice.")
    return invoice


def customer_methods(customer: Customer) -> list[PaymentMethod]:
    return list(
        PaymentMethod.objects.filter(customer_id=customer.pk, detached_at__isnull=True).order_by(
            "-is_default", "created_at"
        )
    )


def invoice_payment_in_flight(invoice: Invoice) -> PaymentIntent | None:
    return PaymentIntent.objects.filter(invoice_id=invoice.pk, status__in=PaymentIntent.IN_FLIGHT).first()
