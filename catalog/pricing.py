"""Pricing engine: turns a price amount and a quantity into an integer amount and a breakdown.

Pure Python (no Django) so it can be reasoned about and property-tested on its own. All amounts are
integers in the currency's minor unit; unit prices may be fractional minor units (Decimal, at most
MAX_UNIT_DECIMALS places); quantities are Decimal. The exact result is rounded once, at the end,
half away from zero (DESIGN.md section 3): rounding per tier would let a price split into more tiers
cost a different amount for the same usage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal, Inexact, InvalidOperation, localcontext
from typing import Any, Final, Literal

from billing_site.money import (
    MAX_UNIT_DECIMALS,
    InputError,
    UnknownCurrency,
    decimal_to_str,
    format_amount,
    normalize_currency,
    round_half_up,
)

__all__ = [
    "DURATION_UNITS",
    "MAX_MINOR",
    "MODELS",
    "MODES",
    "Amount",
    "BreakdownEntry",
    "FixedAmount",
    "PricingError",
    "Quote",
    "Tier",
    "TieredAmount",
    "amount_to_dict",
    "generate_price_name",
    "parse_amount",
    "parse_quantity",
    "quote",
    "quote_to_dict",
    "validate_amount",
]

Mode = Literal["graduated", "total"]
MODELS: Final = ("fixed", "tiered")
MODES: Final = ("graduated", "total")
DURATION_UNITS: Final = ("day", "week", "month", "year")

# Amounts end up in BigIntegerField columns; refusing larger inputs here turns a would-be database
# overflow (a 5xx) into a 400 that names the field.
MAX_MINOR: Final = 2**63 - 1

# Exact arithmetic: Inexact is trapped, so if an input ever needed more digits than this we fail loudly
# instead of silently rounding mid-computation. 200 digits covers a 10^15 quantity with 12 decimals
# times a 19-digit unit with 12 decimals (about 60 digits) with a wide margin.
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation])

# Plain decimal strings only: no exponent, no whitespace, no "NaN"/"Infinity", no leading "+".
_DECIMAL_RE: Final = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")

_FIXED_KEYS: Final = frozenset({"model", "currency", "unit", "flat"})
_TIERED_KEYS: Final = frozenset({"model", "currency", "mode", "tiers"})
_TIER_KEYS: Final = frozenset({"up_to", "unit", "flat"})


class PricingError(InputError):
    """Bad price input. `code` is machine-readable, `param` is the field path for the API envelope."""


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: Decimal | None
    unit: Decimal
    flat: int


@dataclass(frozen=True, slots=True)
class FixedAmount:
    currency: str
    unit: Decimal
    flat: int


@dataclass(frozen=True, slots=True)
class TieredAmount:
    currency: str
    mode: Mode
    tiers: tuple[Tier, ...]

    def __post_init__(self) -> None:
        # A list would make the "frozen" amount mutable and unhashable; accept it but store a tuple.
        if not isinstance(self.tiers, tuple):
            object.__setattr__(self, "tiers", tuple(self.tiers))


Amount = FixedAmount | TieredAmount


@dataclass(frozen=True, slots=True)
class BreakdownEntry:
    tier: int  # 1-based, as shown to customers; fixed prices report tier 1
    quantity: Decimal
    unit: Decimal
    flat: int
    amount: int


@dataclass(frozen=True, slots=True)
class Quote:
    amount: int
    currency: str
    breakdown: tuple[BreakdownEntry, ...]


# --------------------------------------------------------------------------------------------------
# Field checks shared by parse_amount (JSON input) and validate_amount (dataclasses built in code), so
# both paths refuse exactly the same values with the same codes.


def _decimal_places(value: Decimal) -> int:
    """Significant decimal places: "0.50" has one. Done on the tuple so no context can round it."""
    if value == 0:
        return 0
    _, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exp + trailing_zeros))


def _as_finite_decimal(value: object) -> Decimal | None:
    # Code that builds dataclasses by hand may pass ints; bools and floats are never prices.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        return None
    result = Decimal(value)
    return result if result.is_finite() else None


def _check_unit(raw: object, param: str) -> Decimal:
    value = _as_finite_decimal(raw)
    if value is None:
        raise PricingError("invalid_number", "Unit price must be a finite decimal.", param)
    if value < 0:
        raise PricingError("negative", "Unit price must not be negative.", param)
    if _decimal_places(value) > MAX_UNIT_DECIMALS:
        raise PricingError(
            "too_many_decimals",
            f"Unit price may have at most {MAX_UNIT_DECIMALS} decimal places of a minor unit.",
            param,
        )
    if value > MAX_MINOR:
        raise PricingError("too_large", f"Unit price must be at most {MAX_MINOR}.", param)
    return value


def _check_flat(value: object, param: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PricingError("not_integer", "Flat fee must be an integer amount in minor units.", param)
    if value < 0:
        raise PricingError("negative", "Flat fee must not be negative.", param)
    if value > MAX_MINOR:
        raise PricingError("too_large", f"Flat fee must be at most {MAX_MINOR}.", param)
    return value


def _check_up_to(raw: object, param: str) -> Decimal:
    value = _as_finite_decimal(raw)
    if value is None:
        raise PricingError("invalid_number", "up_to must be a finite decimal or null.", param)
    if value <= 0:
        raise PricingError("up_to_not_positive", "up_to must be greater than 0.", param)
    if _decimal_places(value) > MAX_UNIT_DECIMALS:
        raise PricingError("too_many_decimals", f"up_to may have at most {MAX_UNIT_DECIMALS} decimal places.", param)
    if value > MAX_MINOR:
        # amount_to_dict renders a whole up_to as a JSON integer; past 64 bits the API encoder cannot write
        # it, so a stored price would fail every read after it was created.
        raise PricingError("too_large", f"up_to must be at most {MAX_MINOR}.", param)
    return value


def _check_currency(value: object, param: str) -> str:
    if value is None:
        raise PricingError("missing", "currency is required.", param)
    if not isinstance(value, str):
        raise PricingError("unknown_currency", "currency must be an ISO 4217 code string.", param)
    try:
        return normalize_currency(value)
    except UnknownCurrency:
        raise PricingError("unknown_currency", f"Unknown currency: {value!r}.", param) from None


def validate_amount(amount: object, param: str = "amount") -> None:
    """Raise PricingError unless `amount` is a well-formed FixedAmount or TieredAmount.

    Tier indexes in `param` are 0-based JSON array positions ("amount.tiers[1].up_to" is the second
    tier), because that is what a client needs to find the offending element in its own request.
    """
    if isinstance(amount, FixedAmount):
        _check_currency(amount.currency, f"{param}.currency")
        _check_unit(amount.unit, f"{param}.unit")
        _check_flat(amount.flat, f"{param}.flat")
        return
    if not isinstance(amount, TieredAmount):
        raise PricingError("invalid_type", "amount must be a fixed or tiered amount.", param)

    _check_currency(amount.currency, f"{param}.currency")
    if amount.mode not in MODES:
        raise PricingError("invalid_choice", f"mode must be one of {', '.join(MODES)}.", f"{param}.mode")
    tiers = amount.tiers
    if not tiers:
        raise PricingError("tiers_empty", "A tiered amount needs at least one tier.", f"{param}.tiers")
    last = len(tiers) - 1
    previous: Decimal | None = None
    for index, tier in enumerate(tiers):
        where = f"{param}.tiers[{index}]"
        if not isinstance(tier, Tier):
            raise PricingError("invalid_type", "Each tier must be an object.", where)
        _check_unit(tier.unit, f"{where}.unit")
        _check_flat(tier.flat, f"{where}.flat")
        if tier.up_to is None:
            if index != last:
                raise PricingError(
                    "unbounded_tier_not_last",
                    "Only the last tier may have up_to null; every earlier tier needs an upper bound.",
                    f"{where}.up_to",
                )
            continue
        up_to = _check_up_to(tier.up_to, f"{where}.up_to")
        if previous is not None and up_to <= previous:
            raise PricingError(
                "up_to_not_increasing",
                f"up_to must be greater than the previous tier's up_to ({decimal_to_str(previous)}).",
                f"{where}.up_to",
            )
        previous = up_to
    if tiers[last].up_to is not None:
        # A bounded last tier would leave quantities above it with no price at all.
        raise PricingError("last_tier_bounded", "The last tier must have up_to null.", f"{param}.tiers[{last}].up_to")


# --------------------------------------------------------------------------------------------------
# JSON input


def _to_decimal(value: object, param: str) -> Decimal:
    """Accept JSON ints, plain decimal strings, Decimals, and floats that are exactly what they print
    as (0.5 yes, 0.1 no: 0.1 as a double is 0.1000000000000000055..., and guessing is not our job)."""
    if isinstance(value, bool):
        raise PricingError("invalid_number", "Expected a number or decimal string, got a boolean.", param)
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise PricingError("invalid_number", "Number must be finite.", param)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PricingError("invalid_number", "Number must be finite.", param)
        converted = Decimal(str(value))
        if converted != Decimal(value):
            raise PricingError(
                "inexact_float",
                f"{value!r} is not exactly representable; send it as a decimal string.",
                param,
            )
        return converted
    if isinstance(value, str):
        if not _DECIMAL_RE.fullmatch(value):
            raise PricingError("invalid_number", f"{value!r} is not a plain decimal number.", param)
        return Decimal(value)
    raise PricingError("invalid_number", f"Expected a number or decimal string, got {type(value).__name__}.", param)


def _canonical(value: Decimal) -> Decimal:
    # Store "0.50" and "5E-1" alike as 0.5 so stored prices and their repr are stable.
    return Decimal(decimal_to_str(value))


def _parse_unit(data: Mapping[str, Any], param: str) -> Decimal:
    raw = data.get("unit")
    if raw is None:
        return Decimal(0)
    return _canonical(_check_unit(_to_decimal(raw, param), param))


def _parse_flat(data: Mapping[str, Any], param: str) -> int:
    raw = data.get("flat")
    if raw is None:
        return 0
    value = _to_decimal(raw, param)
    if value != value.to_integral_value():
        raise PricingError("not_integer", "Flat fee must be an integer amount in minor units.", param)
    return _check_flat(int(value), param)


def _reject_unknown_keys(data: Mapping[str, Any], allowed: frozenset[str], param: str) -> None:
    # Silently ignoring a misspelt key ("unti", "upTo") would default the price to 0 or drop a bound:
    # a free price created by a typo is far worse than a 400.
    for key in data:
        if key not in allowed:
            hint = " Did you mean 'up_to'?" if key == "upTo" else ""
            raise PricingError("unknown_field", f"Unknown field {key!r}.{hint}", f"{param}.{key}")


def parse_amount(data: object, param: str = "amount") -> FixedAmount | TieredAmount:
    """Validate the API JSON shape of a price amount and build the engine's dataclass.

    Optional fields may be absent or null (unit and flat default to 0, a missing up_to means the open
    tier), which is how the reference Go/TypeScript integrations serialise unset pointers.
    """
    if not isinstance(data, Mapping):
        raise PricingError("invalid_type", "amount must be an object.", param)
    model = data.get("model")
    if model is None:
        raise PricingError("missing", "model is required (fixed or tiered).", f"{param}.model")
    if model not in MODELS:
        raise PricingError("invalid_choice", f"model must be one of {', '.join(MODELS)}.", f"{param}.model")
    currency = _check_currency(data.get("currency"), f"{param}.currency")

    if model == "fixed":
        if data.get("tiers") is not None:
            raise PricingError("tiers_on_fixed", "A fixed amount cannot have tiers.", f"{param}.tiers")
        if data.get("mode") is not None:
            raise PricingError("mode_on_fixed", "A fixed amount cannot have a mode.", f"{param}.mode")
        _reject_unknown_keys({k: v for k, v in data.items() if k not in ("tiers", "mode")}, _FIXED_KEYS, param)
        amount: FixedAmount | TieredAmount = FixedAmount(
            currency=currency,
            unit=_parse_unit(data, f"{param}.unit"),
            flat=_parse_flat(data, f"{param}.flat"),
        )
        validate_amount(amount, param)
        return amount

    # Prices live on the tiers of a tiered amount; a top-level unit/flat would be ambiguous (added on
    # top? a default for tiers?), so it is refused rather than guessed.
    for key in ("unit", "flat"):
        if data.get(key) is not None:
            raise PricingError(
                "price_on_both_levels",
                "A tiered amount takes unit and flat on its tiers, not at the top level.",
                f"{param}.{key}",
            )
    _reject_unknown_keys({k: v for k, v in data.items() if k not in ("unit", "flat")}, _TIERED_KEYS, param)
    mode = data.get("mode")
    if mode is None:
        raise PricingError("missing", "mode is required for a tiered amount (graduated or total).", f"{param}.mode")
    if mode not in MODES:
        raise PricingError("invalid_choice", f"mode must be one of {', '.join(MODES)}.", f"{param}.mode")
    raw_tiers = data.get("tiers")
    if raw_tiers is None:
        raise PricingError("missing", "tiers are required for a tiered amount.", f"{param}.tiers")
    if isinstance(raw_tiers, str | bytes | Mapping) or not isinstance(raw_tiers, list | tuple):
        raise PricingError("invalid_type", "tiers must be a list.", f"{param}.tiers")
    if not raw_tiers:
        raise PricingError("tiers_empty", "A tiered amount needs at least one tier.", f"{param}.tiers")

    tiers: list[Tier] = []
    for index, raw in enumerate(raw_tiers):
        where = f"{param}.tiers[{index}]"
        if not isinstance(raw, Mapping):
            raise PricingError("invalid_type", "Each tier must be an object.", where)
        _reject_unknown_keys(raw, _TIER_KEYS, where)
        raw_up_to = raw.get("up_to")
        up_to = None
        if raw_up_to is not None:
            up_to = _canonical(_check_up_to(_to_decimal(raw_up_to, f"{where}.up_to"), f"{where}.up_to"))
        tiers.append(Tier(up_to=up_to, unit=_parse_unit(raw, f"{where}.unit"), flat=_parse_flat(raw, f"{where}.flat")))

    amount = TieredAmount(currency=currency, mode=mode, tiers=tuple(tiers))
    validate_amount(amount, param)
    return amount


def parse_quantity(value: object, param: str = "quantity") -> Decimal:
    """A quantity from JSON (same number rules as prices), refusing negatives."""
    quantity = _to_decimal(value, param)
    if quantity < 0:
        raise PricingError("negative_quantity", "Quantity must not be negative.", param)
    return _canonical(quantity)


def _json_number(value: Decimal) -> int | str:
    return int(value) if value == value.to_integral_value() else decimal_to_str(value)


def amount_to_dict(amount: FixedAmount | TieredAmount) -> dict[str, Any]:
    """The API shape parse_amount accepts; parse_amount(amount_to_dict(a)) == a."""
    if isinstance(amount, FixedAmount):
        return {
            "model": "fixed",
            "currency": amount.currency.lower(),
            "unit": decimal_to_str(amount.unit),
            "flat": int(amount.flat),
        }
    return {
        "model": "tiered",
        "currency": amount.currency.lower(),
        "mode": amount.mode,
        "tiers": [
            {
                "up_to": None if tier.up_to is None else _json_number(tier.up_to),
                "unit": decimal_to_str(tier.unit),
                "flat": int(tier.flat),
            }
            for tier in amount.tiers
        ],
    }


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


def _check_quantity(quantity: object) -> Decimal:
    if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
        raise PricingError("invalid_number", "Quantity must be a Decimal or an int.", "quantity")
    value = Decimal(quantity)
    if not value.is_finite():
        raise PricingError("invalid_number", "Quantity must be finite.", "quantity")
    if value < 0:
        raise PricingError("negative_quantity", "Quantity must not be negative.", "quantity")
    return value


def quote(amount: FixedAmount | TieredAmount, quantity: Decimal) -> Quote:
    """Price `quantity` units.

    Fixed: flat + unit * quantity (quantity 0 still pays the flat fee: it is the price of having the
    item at all). Graduated: each unit priced by the tier it falls in, plus the flat fee of every tier
    holding any units. Total (volume): the whole quantity priced by the tier its total falls in, plus
    that tier's flat fee. Tiered prices cost 0 for quantity 0 and have an empty breakdown.
    """
    validate_amount(amount)
    currency = normalize_currency(amount.currency)
    value = _check_quantity(quantity)

    try:
        with localcontext(_EXACT):
            if isinstance(amount, FixedAmount):
                lines: list[_Line] = [(1, value, amount.unit, amount.flat, amount.unit * value + amount.flat)]
            elif value == 0:
                lines = []
            elif amount.mode == "graduated":
                lines = _graduated_lines(amount.tiers, value)
            else:
                lines = _total_lines(amount.tiers, value)
            shares = _allocate([line[4] for line in lines])
    except Inexact:
        raise PricingError(
            "quantity_out_of_range", "Quantity is too large or too precise to price exactly.", "quantity"
        ) from None

    breakdown = tuple(
        BreakdownEntry(tier=number, quantity=qty, unit=unit, flat=flat, amount=share)
        for (number, qty, unit, flat, _), share in zip(lines, shares, strict=True)
    )
    return Quote(amount=sum(shares), currency=currency, breakdown=breakdown)


def quote_to_dict(result: Quote) -> dict[str, Any]:
    """API shape of a quote: integers for amounts, decimal strings for quantities and unit prices."""
    return {
        "amount": result.amount,
        "currency": result.currency,
        "breakdown": [
            {
                "tier": entry.tier,
                "quantity": decimal_to_str(entry.quantity),
                "unit": decimal_to_str(entry.unit),
                "flat": entry.flat,
                "amount": entry.amount,
            }
            for entry in result.breakdown
        ],
    }


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


def generate_price_name(amount: FixedAmount | TieredAmount, duration_amount: int, duration_unit: str) -> str:
    """Customer-facing default name: "$10.00 / month", "$0.0004 per unit / month",
    "$5.00 + $0.01 per unit / month", "Graduated, USD / 3 months".

    A whole-minor-unit unit price with no flat fee reads as the price of the item ("$10.00 / month"),
    which is what a seat or plan price looks like; a fractional unit price only makes sense per unit,
    so it says so.
    """
    period = _duration_label(duration_amount, duration_unit)
    currency = normalize_currency(amount.currency)
    if isinstance(amount, TieredAmount):
        label = "Volume" if amount.mode == "total" else "Graduated"
        return f"{label}, {currency.upper()} / {period}"

    unit, flat = amount.unit, amount.flat
    if unit == 0:
        return f"{format_amount(flat, currency)} / {period}"
    per_unit = f"{format_amount(unit, currency)} per unit"
    if flat > 0:
        return f"{format_amount(flat, currency)} + {per_unit} / {period}"
    if unit == unit.to_integral_value():
        return f"{format_amount(unit, currency)} / {period}"
    return f"{per_unit} / {period}"
