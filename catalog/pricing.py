"""Pricing engine: turns a price amount and a quantity into an integer amount and a breakdown.

Pure Python (no Django) so it can be reasoned about and property-tested on its own. All amounts are
integers in the currency's minor unit; unit prices may be fractional minor units (Decimal, at most
MAX_UNIT_DECIMALS places); quantities are Decimal. The exact result is rounded once, at the end,
half away from zero (DESIGN.md section 3): rounding per tier would let a price split into more tiers
cost a different amount for the same usage.

What a price is (the models, their validation and canonical JSON) lives in `catalog.amounts`,
the per-event math of the percentage model in `catalog.percentage`; this module re-exports both,
so `catalog.pricing` is the one import for callers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, Final

from billing_site.money import decimal_to_str, format_amount, normalize_currency, round_half_up
from catalog.amounts import (
    MAX_MINOR,
    MAX_RATE,
    MODE_ALIASES,
    MODELS,
    MODES,
    Amount,
    FixedAmount,
    GraduatedPercentageAmount,
    PackageAmount,
    PercentageTier,
    PricingError,
    Tier,
    TieredAmount,
    amount_model,
    amount_to_dict,
    parse_amount,
    parse_quantity,
    validate_amount,
)
from catalog.percentage import (
    EventStats,
    FreeAllowance,
    PercentageAmount,
    PercentageUsage,
    event_class,
    percentage_parts,
)

__all__ = [
    "DURATION_UNITS",
    "MAX_MINOR",
    "MAX_RATE",
    "MODELS",
    "MODES",
    "MODE_ALIASES",
    "Amount",
    "BreakdownEntry",
    "EventStats",
    "FixedAmount",
    "FreeAllowance",
    "GraduatedPercentageAmount",
    "PackageAmount",
    "PercentageAmount",
    "PercentageTier",
    "PercentageUsage",
    "PricingError",
    "Quote",
    "Tier",
    "TieredAmount",
    "amount_model",
    "amount_to_dict",
    "event_class",
    "generate_price_name",
    "parse_amount",
    "parse_quantity",
    "quote",
    "quote_events",
    "quote_percentage",
    "quote_to_dict",
    "validate_amount",
]

DURATION_UNITS: Final = ("day", "week", "month", "year")

# Exact arithmetic: Inexact is trapped, so if an input ever needed more digits than this we fail loudly
# instead of silently rounding mid-computation. 200 digits covers a 10^15 quantity with 12 decimals
# times a 19-digit unit with 12 decimals (about 60 digits) with a wide margin.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])


@dataclass(frozen=True, slots=True)
class BreakdownEntry:
    tier: int  # 1-based, as shown to customers; fixed prices report tier 1, other models number their parts
    quantity: Decimal
    unit: Decimal
    flat: int
    amount: int
    # "tier" for tiers and fixed prices; for the other models what the line is: "packages", "free_units",
    # "rate", "fixed_fee", "per_event_min", "per_event_max", "free_value", "free_events".
    kind: str = "tier"


@dataclass(frozen=True, slots=True)
class Quote:
    amount: int
    currency: str
    breakdown: tuple[BreakdownEntry, ...]


# --------------------------------------------------------------------------------------------------
# The engine

# (tier number, quantity in tier, unit, flat, exact Decimal amount)
_Line = tuple[int, Decimal, Decimal, int, Decimal]


def _graduated_lines(tiers: tuple[Tier, ...], quantity: Decimal) -> list[_Line]:
    lines: list[_Line] = []
    lower = Decimal(0)
    for number, tier in enumerate(tiers, start=1):
        if quantity <= lower:
            break  # later tiers hold no units, so they add neither units nor their flat fee
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        in_tier = upper - lower  # > 0: quantity > lower and up_to > lower (validated increasing)
        lines.append((number, in_tier, tier.unit, tier.flat, tier.unit * in_tier + tier.flat))
        if tier.up_to is None:
            break
        lower = tier.up_to
    return lines


def _total_lines(tiers: tuple[Tier, ...], quantity: Decimal) -> list[_Line]:
    # Inclusive bounds: a quantity of exactly up_to is still priced by that tier. validate_amount
    # guarantees the last tier is open, so a tier is always found.
    number, tier = next((n, t) for n, t in enumerate(tiers, start=1) if t.up_to is None or quantity <= t.up_to)
    return [(number, quantity, tier.unit, tier.flat, tier.unit * quantity + tier.flat)]


def _allocate(exact: list[Decimal]) -> list[int]:
    """Integer per-tier amounts that sum exactly to round_half_up(sum(exact)).

    Rounding each tier separately could make the breakdown disagree with the total (three tiers of
    0.5 each would show 1 + 1 + 1 = 3 against a total of 2). Instead we round the running cumulative
    sum and give each tier the difference between consecutive rounded sums. Every tier's share is
    then within one minor unit of its exact amount, never negative (exact amounts are >= 0, so the
    rounded cumulative sums never decrease), and the shares telescope to the single rounded total.
    It is also deterministic and order-stable: the lowest tiers keep the same share as usage grows.
    """
    shares: list[int] = []
    running = Decimal(0)
    rounded_before = 0
    for part in exact:
        running += part
        rounded = round_half_up(running)
        shares.append(rounded - rounded_before)
        rounded_before = rounded
    return shares


def _check_quantity(quantity: object, param: str = "quantity") -> Decimal:
    if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
        raise PricingError("invalid_number", "Quantity must be a Decimal or an int.", param)
    value = Decimal(quantity)
    if not value.is_finite():
        raise PricingError("invalid_number", "Quantity must be finite.", param)
    if value < 0:
        raise PricingError("negative_quantity", "Quantity must not be negative.", param)
    return value


# (kind, quantity, unit, exact amount): a breakdown line of the models that are not tiers.
_Part = tuple[str, Decimal, Decimal, Decimal]


def _package_parts(amount: PackageAmount, quantity: Decimal) -> list[_Part]:
    """Free units first, then one price per started block: 201 units at $5 per 100 after 100 free is 2 blocks."""
    free = min(quantity, amount.free_units)
    billed = quantity - free
    # Integer division and remainder are exact on Decimals (no rounding of a quotient): a partial block
    # is detected exactly, however many decimals the quantity or the size has.
    blocks = billed // amount.package_size
    if billed % amount.package_size:
        blocks += 1
    parts: list[_Part] = [
        ("free_units", free, Decimal(0), Decimal(0)),
        ("packages", blocks, amount.amount, amount.amount * blocks),
    ]
    return [part for part in parts if part[1] != 0]


def _graduated_percentage_lines(amount: GraduatedPercentageAmount, quantity: Decimal) -> list[_Line]:
    # A rate of p % on a unit of volume is a unit price of p / 100 minor units: the graduated engine applies.
    tiers = tuple(Tier(up_to=t.up_to, unit=t.rate.scaleb(-2), flat=t.flat) for t in amount.tiers)
    return _graduated_lines(tiers, quantity)


def _percentage_simple_parts(amount: PercentageAmount, quantity: Decimal) -> list[_Part]:
    """A percentage price without per-event terms: rate x (volume beyond the free amount)."""
    free = Decimal(0) if amount.free_amount is None else min(quantity, amount.free_amount)
    unit = amount.rate.scaleb(-2)
    parts = [("free_value", free, Decimal(0), Decimal(0)), ("rate", quantity - free, unit, unit * (quantity - free))]
    return [part for part in parts if part[1] != 0 and (part[0] == "free_value" or part[2] != 0)]


def _priced(currency: str, lines: list[_Line], kinds: list[str] | None = None) -> Quote:
    shares = _allocate([line[4] for line in lines])
    breakdown = tuple(
        BreakdownEntry(
            tier=number if kinds is None else index,
            quantity=qty,
            unit=unit,
            flat=flat,
            amount=share,
            kind="tier" if kinds is None else kinds[index - 1],
        )
        for index, ((number, qty, unit, flat, _), share) in enumerate(zip(lines, shares, strict=True), start=1)
    )
    return Quote(amount=sum(shares), currency=currency, breakdown=breakdown)


def _parts_quote(currency: str, parts: list[_Part]) -> Quote:
    return _priced(currency, [(0, qty, unit, 0, exact) for _, qty, unit, exact in parts], [kind for kind, *_ in parts])


def _out_of_range() -> PricingError:
    return PricingError("quantity_out_of_range", "Quantity is too large or too precise to price exactly.", "quantity")


def quote(amount: Amount, quantity: Decimal) -> Quote:
    """Price `quantity` units.

    Fixed: flat + unit * quantity (quantity 0 still pays the flat fee: it is the price of having the
    item at all). Graduated: each unit priced by the tier it falls in, plus the flat fee of every tier
    holding any units. Total (volume): the whole quantity priced by the tier its total falls in, plus
    that tier's flat fee. Tiered prices cost 0 for quantity 0 and have an empty breakdown; so do package,
    percentage and graduated percentage prices.

    Package: breakdown lines "free_units" (amount 0) and "packages" (quantity = blocks, unit = price per
    block). Graduated percentage: one line per tier holding volume, unit = rate / 100. Percentage: only
    when the volume alone decides the price (no fixed fee, no per-event bounds, no free events); any
    other percentage price needs its events: quote_percentage (aggregates) or quote_events (raw values).
    """
    validate_amount(amount)
    currency = normalize_currency(amount.currency)
    value = _check_quantity(quantity)
    if isinstance(amount, PercentageAmount) and amount.needs_events:
        raise PricingError(
            "events_required",
            "This percentage price charges per event (a fixed fee, per-event bounds or free events): "
            "price it from its events, not from the summed volume alone.",
            "quantity",
        )

    try:
        with localcontext(_EXACT):
            if isinstance(amount, FixedAmount):
                return _priced(currency, [(1, value, amount.unit, amount.flat, amount.unit * value + amount.flat)])
            if value == 0:
                return Quote(amount=0, currency=currency, breakdown=())
            if isinstance(amount, PercentageAmount):
                return _parts_quote(currency, _percentage_simple_parts(amount, value))
            if isinstance(amount, PackageAmount):
                return _parts_quote(currency, _package_parts(amount, value))
            if isinstance(amount, GraduatedPercentageAmount):
                return _priced(currency, _graduated_percentage_lines(amount, value))
            assert isinstance(amount, TieredAmount)
            if amount.mode == "graduated":
                return _priced(currency, _graduated_lines(amount.tiers, value))
            return _priced(currency, _total_lines(amount.tiers, value))
    except Inexact:
        raise _out_of_range() from None


def _check_stats(stats: object, param: str) -> EventStats:
    if not isinstance(stats, EventStats) or not stats.is_consistent():
        raise PricingError(
            "invalid_usage", "Event statistics must be counts and non-negative sums of one set of events.", param
        )
    return stats


def quote_percentage(amount: PercentageAmount, usage: PercentageUsage) -> Quote:
    """Price a percentage line from aggregates: the period's EventStats and the FreeAllowance walked over
    its first events (see `catalog.percentage` for which aggregates and why they are exact).

    Breakdown lines: "free_value" and "free_events" (amount 0: what the allowance covered), "rate"
    (quantity = charged volume, unit = rate / 100), "fixed_fee" (quantity = charged events), and with
    per-event bounds "per_event_min" / "per_event_max" (quantity = events charged the bound). The amount
    is rounded once, half up; the lines are allocated so they add up to it exactly.
    """
    validate_amount(amount)
    if not isinstance(amount, PercentageAmount):
        raise PricingError("invalid_type", "quote_percentage prices percentage amounts only.", "amount")
    if not isinstance(usage, PercentageUsage) or not isinstance(usage.allowance, FreeAllowance):
        raise PricingError("invalid_usage", "usage must be a PercentageUsage.", "usage")
    period = _check_stats(usage.period, "usage.period")
    allowance = usage.allowance
    consumed = _check_stats(allowance.consumed, "usage.allowance.consumed")
    if allowance.amount != amount:
        raise PricingError("invalid_usage", "The free allowance was walked for another price.", "usage.allowance")
    if not amount.has_bounds and (period.below_count or period.above_count or period.middle_total != period.total):
        raise PricingError(
            "invalid_usage", "A price without per-event bounds classes every event as middle.", "usage.period"
        )
    # The allowance must have walked a prefix of the period's events. A mismatch means the two were read
    # at different moments (an event landed in between): refusing beats billing a mix of two states.
    if not (period - consumed).is_consistent():
        raise PricingError(
            "usage_inconsistent", "The free allowance covers events the period statistics do not hold.", "usage"
        )
    try:
        return _parts_quote(normalize_currency(amount.currency), percentage_parts(usage))
    except Inexact:
        raise _out_of_range() from None


def quote_events(amount: Amount, values: Iterable[Decimal]) -> Quote:
    """Price a period from its raw event values, in event order (timestamp, then id).

    Every model works: for all but percentage this is quote(amount, sum(values)). For percentage it is the
    per-event definition itself, the reference the aggregate path (quote_percentage) is tested against.
    """
    validate_amount(amount)
    checked = [_check_quantity(value, f"events[{index}]") for index, value in enumerate(values)]
    if not isinstance(amount, PercentageAmount):
        with localcontext(_EXACT):
            total = sum(checked, Decimal(0))
        return quote(amount, total)
    try:
        usage = PercentageUsage(
            period=EventStats.of(amount, checked), allowance=FreeAllowance.start(amount).take_all(checked)
        )
    except Inexact:
        raise _out_of_range() from None
    return quote_percentage(amount, usage)


def quote_to_dict(result: Quote) -> dict[str, Any]:
    """API shape of a quote: integers for amounts, decimal strings for quantities and unit prices.

    Every line has tier, quantity, unit, flat and amount; lines of the package and percentage models add
    `kind` (what the line is), tiers and fixed prices do not (their shape predates the other models).
    """
    breakdown = []
    for entry in result.breakdown:
        line: dict[str, Any] = {
            "tier": entry.tier,
            "quantity": decimal_to_str(entry.quantity),
            "unit": decimal_to_str(entry.unit),
            "flat": entry.flat,
            "amount": entry.amount,
        }
        if entry.kind != "tier":
            line["kind"] = entry.kind
        breakdown.append(line)
    return {"amount": result.amount, "currency": result.currency, "breakdown": breakdown}


# --------------------------------------------------------------------------------------------------
# Names


def _duration_label(duration_amount: int, duration_unit: str) -> str:
    if isinstance(duration_amount, bool) or not isinstance(duration_amount, int) or duration_amount < 1:
        raise PricingError("invalid_duration", "duration.amount must be a positive integer.", "duration.amount")
    if duration_unit not in DURATION_UNITS:
        raise PricingError(
            "invalid_choice", f"duration.unit must be one of {', '.join(DURATION_UNITS)}.", "duration.unit"
        )
    if duration_amount == 1:
        return duration_unit
    return f"{duration_amount} {duration_unit}s"


def _rate_label(rate: Decimal) -> str:
    return f"{decimal_to_str(rate)}%"


def generate_price_name(amount: Amount, duration_amount: int, duration_unit: str) -> str:
    """Customer-facing default name: "$10.00 / month", "$0.0004 per unit / month",
    "$5.00 + $0.01 per unit / month", "Graduated, USD / 3 months", "$5.00 per 100 units / month",
    "2.9% + $0.30 per event / month", "Graduated percentage, USD / month".

    A whole-minor-unit unit price with no flat fee reads as the price of the item ("$10.00 / month"),
    which is what a seat or plan price looks like; a fractional unit price only makes sense per unit,
    so it says so.
    """
    period = _duration_label(duration_amount, duration_unit)
    currency = normalize_currency(amount.currency)
    if isinstance(amount, TieredAmount):
        label = "Volume" if amount.mode == "total" else "Graduated"
        return f"{label}, {currency.upper()} / {period}"
    if isinstance(amount, GraduatedPercentageAmount):
        return f"Graduated percentage, {currency.upper()} / {period}"
    if isinstance(amount, PackageAmount):
        size = amount.package_size
        per = "per unit" if size == 1 else f"per {decimal_to_str(size)} units"
        free = f", first {decimal_to_str(amount.free_units)} free" if amount.free_units > 0 else ""
        return f"{format_amount(amount.amount, currency)} {per}{free} / {period}"
    if isinstance(amount, PercentageAmount):
        fee = f"{format_amount(amount.fixed_fee, currency)} per event"
        if amount.fixed_fee == 0:
            return f"{_rate_label(amount.rate)} / {period}"
        if amount.rate == 0:
            return f"{fee} / {period}"
        return f"{_rate_label(amount.rate)} + {fee} / {period}"
    if not isinstance(amount, FixedAmount):
        raise PricingError("invalid_type", "amount must be a price amount.", "amount")

    unit, flat = amount.unit, amount.flat
    if unit == 0:
        return f"{format_amount(flat, currency)} / {period}"
    per_unit = f"{format_amount(unit, currency)} per unit"
    if flat > 0:
        return f"{format_amount(flat, currency)} + {per_unit} / {period}"
    if unit == unit.to_integral_value():
        return f"{format_amount(unit, currency)} / {period}"
    return f"{per_unit} / {period}"
