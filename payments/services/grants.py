"""Credit grants: prepaid or promotional credit that pays the invoice lines it is eligible for.

A grant's remaining credit is derived, never stored: its amount minus the sum of its append-only
`CreditBurn` rows (a negative burn gives credit back). Voided and expired grants keep their burns; what
was left becomes unusable.

Burning (`credits_burn_for_invoice`, the first step of the collection waterfall):
- only grants of the invoice's customer and currency that are active, effective (`effective_at <= now`)
  and not expired (`now < expires_at`) take part;
- they burn in order: lowest `priority`, then soonest `expires_at` (no expiry last), then oldest;
- a grant pays only the lines it is eligible for: a line matches when its meter is one of the grant's
  `eligible_meters` or its price one of its `eligible_prices`; a grant listing neither pays every line;
- what a line can take is its share of the invoice's `amount_due`, split over the lines by weight
  (`amount - discount_amount`, positive lines only; the largest remainders get the odd minor units),
  less what credits already paid on that line. So a line never takes more credit than its share of
  what the invoice asks for (tax included, pro rata), and the whole burn never exceeds
  `amount_remaining`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Min, Q, Sum

from billing_site.errors import Conflict, InvalidRequest, currency_clean
from catalog.models import Price
from customers.clocks import clock_scope
from customers.models import Customer
from invoicing.locks import lock_invoice
from invoicing.models import Invoice, InvoiceLine
from invoicing.services import invoice_settle
from metering.models import Meter
from payments.locks import claim_grants, lock_balance_if_exists, lock_grant, lock_grants
from payments.models import CreditBurn, CreditGrant
from payments.selectors import credit_grant_burned, credit_grant_remaining
from payments.services.ledger import invoice_copy_amounts, invoice_payment_in_flight
from webhooks.services import object_event_emit

Status = CreditGrant.Status
MAX_PRIORITY = 32767


def credit_grant_snapshot(grant: CreditGrant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "customer": grant.customer_id,
        "name": grant.name,
        "amount": grant.amount,
        "currency": grant.currency,
        "priority": grant.priority,
        "effective_at": grant.effective_at.isoformat(),
        "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
        "meters": grant.eligible_meters,
        "prices": grant.eligible_prices,
        "status": grant.status,
        "burned": credit_grant_burned(grant),
        "remaining": credit_grant_remaining(grant),
    }


def _ids(values: Iterable[str] | None, param: str) -> list[str]:
    ids = list(dict.fromkeys(values or ()))
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{param} must be a list of ids.", param=f"{param}[{index}]")
    return ids


def credit_grant_create(
    *,
    customer: Customer,
    amount: int,
    currency: str,
    now: datetime,
    priority: int = 50,
    effective_at: datetime | None = None,
    expires_at: datetime | None = None,
    meters: Sequence[str] | None = None,
    prices: Sequence[str] | None = None,
    name: str = "",
    metadata: dict[str, str] | None = None,
) -> CreditGrant:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise InvalidRequest("amount must be a positive integer.", param="amount")
    currency = currency_clean(currency)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be an integer from 0 to {MAX_PRIORITY}.", param="priority")
    effective_at = effective_at or now
    if expires_at is not None and expires_at <= effective_at:
        raise InvalidRequest("expires_at must be after effective_at.", param="expires_at")
    meter_ids, price_ids = _ids(meters, "meters"), _ids(prices, "prices")
    known_meters = set(Meter.objects.filter(pk__in=meter_ids).values_list("pk", flat=True))
    for index, meter_id in enumerate(meter_ids):
        if meter_id not in known_meters:
            raise InvalidRequest(f"No such meter: {meter_id}", param=f"meters[{index}]", code="resource_missing")
    price_currency = dict(Price.objects.filter(pk__in=price_ids).values_list("pk", "currency"))
    for index, price_id in enumerate(price_ids):
        if price_id not in price_currency:
            raise InvalidRequest(f"No such price: {price_id}", param=f"prices[{index}]", code="resource_missing")
        if price_currency[price_id] != currency:
            raise InvalidRequest(
                f"Price {price_id} is in {price_currency[price_id]}, the grant in {currency}: it could never pay it.",
                param=f"prices[{index}]",
                code="currency_mismatch",
            )
    with transaction.atomic():
        grant = CreditGrant.objects.create(
            customer=customer,
            name=name,
            amount=amount,
            currency=currency,
            priority=priority,
            effective_at=effective_at,
            expires_at=expires_at,
            eligible_meters=meter_ids,
            eligible_prices=price_ids,
            metadata=metadata or {},
        )
        object_event_emit(type="credit_grant.created", obj=grant, data=credit_grant_snapshot(grant), now=now)
    return grant


def credit_grant_void(*, grant: CreditGrant, now: datetime) -> CreditGrant:
    """active -> voided: what remains can no longer be burned. Past burns stay (invoices they paid stay
    paid). A voided or expired grant is a 409."""
    with transaction.atomic():
        locked = lock_grant(grant.pk)
        if locked.status != Status.ACTIVE:
            raise Conflict(
                f"Credit grant {locked.id} is {locked.status}; it cannot be voided.",
                code="credit_grant_status_conflict",
            )
        changed = CreditGrant.objects.filter(pk=locked.pk, status=Status.ACTIVE).update(
            status=Status.VOIDED, voided_at=now
        )
        if changed != 1:  # unreachable under the row lock; kept as the compare-and-set it documents
            raise Conflict(f"Credit grant {locked.id} changed concurrently.", code="credit_grant_status_conflict")
        locked.refresh_from_db()
        object_event_emit(
            type="credit_grant.voided",
            obj=locked,
            data=credit_grant_snapshot(locked),
            now=now,
            previous={"status": Status.ACTIVE},
        )
    return locked


def credit_grants_expire_job(*, now: datetime, batch_size: int = 500, clock: str | None = None) -> dict[str, int]:
    """Expire every active grant whose `expires_at` has passed, in batches; emits credit_grant.expired
    with what was left unburned. A grant being burned right now (locked) is skipped until the next run;
    the burn itself already ignores expired grants, so the job's timing never decides what is usable.
    `clock`: see `customers.clocks.clock_scope` (None: customers on no test clock)."""
    expired = 0
    while True:
        with transaction.atomic():
            grants = claim_grants(
                clock_scope(CreditGrant.objects.all(), clock).filter(status=Status.ACTIVE, expires_at__lte=now),
                order_by=("expires_at", "pk"),
                limit=batch_size,
            )
            if not grants:
                break
            ids = [g.pk for g in grants]
            changed = CreditGrant.objects.filter(pk__in=ids, status=Status.ACTIVE).update(
                status=Status.EXPIRED, expired_at=now
            )
            if changed != len(ids):  # unreachable under the row locks
                raise Conflict("Credit grants changed concurrently.", code="credit_grant_status_conflict")
            burned = dict(
                CreditBurn.objects.filter(grant_id__in=ids)
                .values("grant_id")
                .annotate(total=Sum("amount"))
                .values_list("grant_id", "total")
            )
            for grant in grants:
                grant.burned = burned.get(grant.pk, 0) or 0
                unused = grant.amount - grant.burned
                grant.status, grant.expired_at = Status.EXPIRED, now
                object_event_emit(
                    type="credit_grant.expired",
                    obj=grant,
                    data=credit_grant_snapshot(grant),
                    now=now,
                    previous={"status": Status.ACTIVE, "remaining": unused},
                )
            expired += len(grants)
    return {"expired": expired}


# --- Burning --------------------------------------------------------------------------------------


def _eligible(grant: CreditGrant, line: InvoiceLine) -> bool:
    if not grant.eligible_meters and not grant.eligible_prices:
        return True
    return (line.meter_id is not None and line.meter_id in grant.eligible_meters) or (
        line.price_id is not None and line.price_id in grant.eligible_prices
    )


def _burn_key(grant: CreditGrant) -> tuple[Any, ...]:
    # Priority, then soonest expiry (none last), then oldest.
    return (
        grant.priority,
        grant.expires_at is None,
        grant.expires_at or grant.effective_at,
        grant.created_at,
        grant.pk,
    )


def line_credit_caps(lines: list[InvoiceLine], amount_due: int) -> dict[str, int]:
    """Each line's share of `amount_due` by weight (amount - discount, positive lines only), in whole
    minor units summing exactly to `amount_due` (largest remainder; ties to the earlier line)."""
    weights = {line.pk: max(line.amount - line.discount_amount, 0) for line in lines}
    total = sum(weights.values())
    if total <= 0 or amount_due <= 0:
        return {line.pk: 0 for line in lines}
    caps, remainders = {}, []
    for position, line in enumerate(lines):
        whole, rem = divmod(amount_due * weights[line.pk], total)
        caps[line.pk] = whole
        remainders.append((-rem, position, line.pk))
    for _, _, pk in sorted(remainders)[: amount_due - sum(caps.values())]:
        caps[pk] += 1
    return caps


def credits_burn_for_invoice(*, invoice: Invoice, now: datetime) -> int:
    """The credits step of the collection waterfall: burn the customer's eligible grants on an open
    invoice (see the module docstring for eligibility, burn order and the per-line caps). Records one
    `CreditBurn` per (grant, line), adds the total to `credits_applied` and `amount_paid`, takes it off
    `amount_remaining` (paid when nothing remains) and returns it; 0 when nothing could be burned.

    Locks, in order: the customer's balance row in the invoice currency (the per-customer money lock
    that the balance step and credit notes also take first), the usable grants by pk, then the invoice.
    The caller must not hold the invoice's lock."""
    peek = Invoice.objects.filter(pk=invoice.pk).values("status", "customer_id", "currency", "amount_remaining").first()
    if peek is None or peek["status"] != Invoice.Status.OPEN or peek["amount_remaining"] <= 0:
        return 0
    customer_id, currency = peek["customer_id"], peek["currency"]
    usable = Q(customer_id=customer_id, currency=currency, status=Status.ACTIVE, effective_at__lte=now) & (
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    with transaction.atomic():
        lock_balance_if_exists(customer_id=customer_id, currency=currency)
        grants = lock_grants(CreditGrant.objects.filter(usable))
        if not grants:
            return 0
        locked = lock_invoice(invoice.pk)
        if locked.status != Invoice.Status.OPEN or locked.amount_remaining <= 0:
            return 0
        if invoice_payment_in_flight(locked.pk) is not None:
            return 0  # a charge is in flight: burning credits now would pay the same part twice
        grant_left = _grant_balances(grants)
        lines = list(InvoiceLine.objects.filter(invoice=locked).order_by("position"))
        caps = line_credit_caps(lines, locked.amount_due)
        for line_id, paid in _credited_by_line(locked).items():
            if line_id in caps:
                caps[line_id] = max(caps[line_id] - paid, 0)
        budget = locked.amount_remaining
        burns: list[CreditBurn] = []
        for grant in sorted(grants, key=_burn_key):
            for line in lines:
                if budget == 0:
                    break
                take = min(grant_left[grant.pk], caps[line.pk], budget)
                if take <= 0 or not _eligible(grant, line):
                    continue
                burns.append(CreditBurn(grant=grant, invoice=locked, invoice_line=line, amount=take, created_at=now))
                grant_left[grant.pk] -= take
                caps[line.pk] -= take
                budget -= take
        total = sum(burn.amount for burn in burns)
        if total == 0:
            return 0
        CreditBurn.objects.bulk_create(burns)
        invoice_settle(locked, amount=total, field="credits_applied", now=now)
    invoice_copy_amounts(invoice, locked)
    return total


def _grant_balances(grants: list[CreditGrant]) -> dict[str, int]:
    burned = dict(
        CreditBurn.objects.filter(grant_id__in=[g.pk for g in grants])
        .values("grant_id")
        .annotate(total=Sum("amount"))
        .values_list("grant_id", "total")
    )
    return {g.pk: g.amount - (burned.get(g.pk) or 0) for g in grants}


def _credited_by_line(invoice: Invoice) -> dict[str, int]:
    rows = (
        CreditBurn.objects.filter(invoice=invoice, invoice_line__isnull=False)
        .values("invoice_line_id")
        .annotate(total=Sum("amount"))
        .values_list("invoice_line_id", "total")
    )
    totals: dict[str, int] = defaultdict(int)
    for line_id, total in rows:
        totals[line_id] += total or 0
    return totals


def grants_next_due(*, clock: str, after: datetime) -> datetime | None:
    """The test clock's next expiry after `after` of an active grant of its customers."""
    active = clock_scope(CreditGrant.objects.filter(status=Status.ACTIVE, expires_at__gt=after), clock)
    return active.aggregate(at=Min("expires_at"))["at"]
