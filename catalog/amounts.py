"""Price amounts: the dataclasses of every pricing model, their validation, JSON parsing and canonical form.

Pure Python (no Django). `catalog.pricing` prices these amounts and re-exports every public name of
this module, so callers import from there. Field paths in errors are the API's ("amount.tiers[1].rate").

Models (the `model` field of an amount):
- fixed: flat + unit x quantity.
- tiered, mode graduated (each unit priced by its tier, plus the flat fee of every tier holding units) or
  total (the whole quantity priced by the tier it falls in, plus that tier's flat fee; "volume", its common
  name, is accepted on input and stored as "total"). `up_to` is cumulative and inclusive, the last tier open.
- package: `amount` per started block of `package_size` units, after `free_units` free units.
- percentage: `rate` percent of transaction volume, `fixed_fee` per event, a free allowance
  (`free_units_per_events`, `free_amount`) and per-event bounds (`per_event_min`, `per_event_max`);
  see `catalog.percentage`.
- graduated_percentage: tiers of volume (`up_to`), each with a `rate` and a `flat` fee.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from billing_site.money import (
    MAX_UNIT_DECIMALS,
    InputError,
    UnknownCurrency,
    decimal_to_str,
    normalize_currency,
)
from catalog.percentage import PercentageAmount

__all__ = [
    "MAX_MINOR",
    "MAX_RATE",
    "MODELS",
    "MODES",
    "MODE_ALIASES",
    "Amount",
    "FixedAmount",
    "GraduatedPercentageAmount",
    "PackageAmount",
    "PercentageAmount",
    "PercentageTier",
    "PricingError",
    "Tier",
    "TieredAmount",
    "amount_model",
    "amount_to_dict",
    "parse_amount",
    "parse_quantity",
    "validate_amount",
]

Mode = Literal["graduated", "total"]
MODELS: Final = ("fixed", "tiered", "package", "percentage", "graduated_percentage")
MODES: Final = ("graduated", "total")
# Names other billing systems use for a mode, accepted on input and stored under our name.
MODE_ALIASES: Final = {"volume": "total"}

# Amounts end up in BigIntegerField columns; refusing larger inputs here turns a would-be database
# overflow (a 5xx) into a 400 that names the field.
MAX_MINOR: Final = 2**63 - 1

# A rate is a percentage of the volume it applies to. Above 100 % it is almost surely "290" typed for
# "2.9", and a typo in a rate is a bill many times too large.
MAX_RATE: Final = Decimal(100)

# Plain decimal strings only: no exponent, no whitespace, no "NaN"/"Infinity", no leading "+".
_DECIMAL_RE: Final = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")

_FIXED_KEYS: Final = frozenset({"model", "currency", "unit", "flat"})
_TIERED_KEYS: Final = frozenset({"model", "currency", "mode", "tiers"})
_TIER_KEYS: Final = frozenset({"up_to", "unit", "flat"})
_PACKAGE_KEYS: Final = frozenset({"model", "currency", "package_size", "amount", "free_units"})
_PERCENTAGE_KEYS: Final = frozenset(
    {"model", "currency", "rate", "fixed_fee", "free_units_per_events", "free_amount", "per_event_min", "per_event_max"}
)
_GRADUATED_PERCENTAGE_KEYS: Final = frozenset({"model", "currency", "tiers"})
_PERCENTAGE_TIER_KEYS: Final = frozenset({"up_to", "rate", "flat"})

# Misspellings and the names peers use for the same field: a hint, never a silent mapping.
_HINTS: Final = {
    "upTo": "up_to",
    "to_value": "up_to",
    "flat_amount": "flat",
    "fixed_amount": "fixed_fee",
    "free_units_per_total_aggregation": "free_amount",
    "per_transaction_min_amount": "per_event_min",
    "per_transaction_max_amount": "per_event_max",
    "packageSize": "package_size",
    "freeUnits": "free_units",
}


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


@dataclass(frozen=True, slots=True)
class PackageAmount:
    """`amount` (minor units, fractions allowed) per started block of `package_size` units, after
    `free_units` free units."""

    currency: str
    package_size: Decimal
    amount: Decimal
    free_units: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class PercentageTier:
    up_to: Decimal | None  # cumulative, inclusive, in units of volume; the last tier is open
    rate: Decimal  # percent
    flat: int  # once, when the tier holds any volume


@dataclass(frozen=True, slots=True)
class GraduatedPercentageAmount:
    currency: str
    tiers: tuple[PercentageTier, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.tiers, tuple):
            object.__setattr__(self, "tiers", tuple(self.tiers))


Amount = FixedAmount | TieredAmount | PackageAmount | PercentageAmount | GraduatedPercentageAmount

_MODEL_OF: Final[dict[type, str]] = {
    FixedAmount: "fixed",
    TieredAmount: "tiered",
    PackageAmount: "package",
    PercentageAmount: "percentage",
    GraduatedPercentageAmount: "graduated_percentage",
}


def amount_model(amount: Amount) -> str:
    """The `model` name of an amount (what the Price.model column stores)."""
    try:
        return _MODEL_OF[type(amount)]
    except KeyError:
        raise PricingError("invalid_type", "amount must be a price amount.", "amount") from None


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


def _check_decimal(raw: object, param: str, label: str = "Unit price") -> Decimal:
    """A non-negative decimal of minor units (or units) with at most MAX_UNIT_DECIMALS places."""
    value = _as_finite_decimal(raw)
    if value is None:
        raise PricingError("invalid_number", f"{label} must be a finite decimal.", param)
    if value < 0:
        raise PricingError("negative", f"{label} must not be negative.", param)
    if _decimal_places(value) > MAX_UNIT_DECIMALS:
        raise PricingError(
            "too_many_decimals",
            f"{label} may have at most {MAX_UNIT_DECIMALS} decimal places of a minor unit.",
            param,
        )
    if value > MAX_MINOR:
        raise PricingError("too_large", f"{label} must be at most {MAX_MINOR}.", param)
    return value


def _check_unit(raw: object, param: str) -> Decimal:
    return _check_decimal(raw, param)


def _check_positive(raw: object, param: str, label: str) -> Decimal:
    value = _check_decimal(raw, param, label)
    if value == 0:
        raise PricingError("not_positive", f"{label} must be greater than 0.", param)
    return value


def _check_optional(raw: object, param: str, label: str, *, positive: bool = False) -> Decimal | None:
    if raw is None:
        return None
    return _check_positive(raw, param, label) if positive else _check_decimal(raw, param, label)


def _check_rate(raw: object, param: str) -> Decimal:
    value = _check_decimal(raw, param, "rate")
    if value > MAX_RATE:
        raise PricingError("too_large", 'rate is a percentage: at most 100 (2.9 % is "2.9").', param)
    return value


def _check_count(raw: object, param: str, label: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise PricingError("not_integer", f"{label} must be a whole number.", param)
    if raw < 1:
        raise PricingError("not_positive", f"{label} must be at least 1 (leave it out for none).", param)
    if raw > MAX_MINOR:
        raise PricingError("too_large", f"{label} must be at most {MAX_MINOR}.", param)
    return raw


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
        # Quantities are billed into BIGINT amounts; a bound no quantity can ever reach is a typo, not a tier.
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


def _check_bounds(tiers: tuple[Tier, ...] | tuple[PercentageTier, ...], param: str) -> None:
    """Cumulative, strictly increasing up_to on every tier but the last, which is open."""
    if not tiers:
        raise PricingError("tiers_empty", "A tiered amount needs at least one tier.", f"{param}.tiers")
    last = len(tiers) - 1
    previous: Decimal | None = None
    for index, tier in enumerate(tiers):
        where = f"{param}.tiers[{index}]"
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


def _validate_tiered(amount: TieredAmount, param: str) -> None:
    if amount.mode not in MODES:
        raise PricingError("invalid_choice", f"mode must be one of {', '.join(MODES)}.", f"{param}.mode")
    for index, tier in enumerate(amount.tiers):
        where = f"{param}.tiers[{index}]"
        if not isinstance(tier, Tier):
            raise PricingError("invalid_type", "Each tier must be an object.", where)
        _check_unit(tier.unit, f"{where}.unit")
        _check_flat(tier.flat, f"{where}.flat")
    _check_bounds(amount.tiers, param)


def _validate_package(amount: PackageAmount, param: str) -> None:
    _check_positive(amount.package_size, f"{param}.package_size", "package_size")
    _check_decimal(amount.amount, f"{param}.amount", "amount")
    _check_decimal(amount.free_units, f"{param}.free_units", "free_units")


def _validate_percentage(amount: PercentageAmount, param: str) -> None:
    _check_rate(amount.rate, f"{param}.rate")
    _check_decimal(amount.fixed_fee, f"{param}.fixed_fee", "fixed_fee")
    if amount.free_units_per_events is not None:
        _check_count(amount.free_units_per_events, f"{param}.free_units_per_events", "free_units_per_events")
    _check_optional(amount.free_amount, f"{param}.free_amount", "free_amount", positive=True)
    low = _check_optional(amount.per_event_min, f"{param}.per_event_min", "per_event_min")
    high = _check_optional(amount.per_event_max, f"{param}.per_event_max", "per_event_max")
    if low is not None and high is not None and low > high:
        raise PricingError(
            "min_above_max", "per_event_max must not be less than per_event_min.", f"{param}.per_event_max"
        )


def _validate_graduated_percentage(amount: GraduatedPercentageAmount, param: str) -> None:
    for index, tier in enumerate(amount.tiers):
        where = f"{param}.tiers[{index}]"
        if not isinstance(tier, PercentageTier):
            raise PricingError("invalid_type", "Each tier must be an object.", where)
        _check_rate(tier.rate, f"{where}.rate")
        _check_flat(tier.flat, f"{where}.flat")
    _check_bounds(amount.tiers, param)


def validate_amount(amount: object, param: str = "amount") -> None:
    """Raise PricingError unless `amount` is a well-formed amount of one of the models.

    Tier indexes in `param` are 0-based JSON array positions ("amount.tiers[1].up_to" is the second
    tier), because that is what a client needs to find the offending element in its own request.
    """
    if not isinstance(amount, tuple(_MODEL_OF)):
        raise PricingError("invalid_type", f"amount must be one of the models: {', '.join(MODELS)}.", param)
    _check_currency(amount.currency, f"{param}.currency")  # type: ignore[attr-defined]
    if isinstance(amount, FixedAmount):
        _check_unit(amount.unit, f"{param}.unit")
        _check_flat(amount.flat, f"{param}.flat")
    elif isinstance(amount, TieredAmount):
        _validate_tiered(amount, param)
    elif isinstance(amount, PackageAmount):
        _validate_package(amount, param)
    elif isinstance(amount, PercentageAmount):
        _validate_percentage(amount, param)
    else:
        assert isinstance(amount, GraduatedPercentageAmount)
        _validate_graduated_percentage(amount, param)


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


def _parse_decimal(data: Mapping[str, Any], key: str, param: str, *, default: Decimal | None) -> Decimal | None:
    raw = data.get(key)
    if raw is None:
        return default
    return _canonical(_to_decimal(raw, f"{param}.{key}"))


def _parse_required(data: Mapping[str, Any], key: str, param: str, what: str) -> Decimal:
    value = _parse_decimal(data, key, param, default=None)
    if value is None:
        raise PricingError("missing", f"{key} is required ({what}).", f"{param}.{key}")
    return value


def _reject_unknown_keys(data: Mapping[str, Any], allowed: frozenset[str], param: str) -> None:
    # Silently ignoring a misspelt key ("unti", "upTo") would default the price to 0 or drop a bound:
    # a free price created by a typo is far worse than a 400.
    for key in data:
        if key not in allowed:
            hint = f" Did you mean '{_HINTS[key]}'?" if key in _HINTS else ""
            raise PricingError("unknown_field", f"Unknown field {key!r}.{hint}", f"{param}.{key}")


def _parse_tier_list(data: Mapping[str, Any], param: str) -> list[Mapping[str, Any]]:
    raw_tiers = data.get("tiers")
    if raw_tiers is None:
        raise PricingError("missing", "tiers are required for a tiered amount.", f"{param}.tiers")
    if isinstance(raw_tiers, str | bytes | Mapping) or not isinstance(raw_tiers, list | tuple):
        raise PricingError("invalid_type", "tiers must be a list.", f"{param}.tiers")
    if not raw_tiers:
        raise PricingError("tiers_empty", "A tiered amount needs at least one tier.", f"{param}.tiers")
    for index, raw in enumerate(raw_tiers):
        if not isinstance(raw, Mapping):
            raise PricingError("invalid_type", "Each tier must be an object.", f"{param}.tiers[{index}]")
    return list(raw_tiers)


def _parse_up_to(raw: Mapping[str, Any], where: str) -> Decimal | None:
    # A missing or null up_to is the open tier; validation refuses it anywhere but last.
    raw_up_to = raw.get("up_to")
    if raw_up_to is None:
        return None
    return _canonical(_check_up_to(_to_decimal(raw_up_to, f"{where}.up_to"), f"{where}.up_to"))


def _parse_fixed(data: Mapping[str, Any], currency: str, param: str) -> FixedAmount:
    if data.get("tiers") is not None:
        raise PricingError("tiers_on_fixed", "A fixed amount cannot have tiers.", f"{param}.tiers")
    if data.get("mode") is not None:
        raise PricingError("mode_on_fixed", "A fixed amount cannot have a mode.", f"{param}.mode")
    _reject_unknown_keys({k: v for k, v in data.items() if k not in ("tiers", "mode")}, _FIXED_KEYS, param)
    return FixedAmount(
        currency=currency, unit=_parse_unit(data, f"{param}.unit"), flat=_parse_flat(data, f"{param}.flat")
    )


def _parse_tiered(data: Mapping[str, Any], currency: str, param: str) -> TieredAmount:
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
    mode = MODE_ALIASES.get(mode, mode) if isinstance(mode, str) else mode
    if mode not in MODES:
        raise PricingError(
            "invalid_choice", f"mode must be one of {', '.join(MODES)} (or volume, for total).", f"{param}.mode"
        )
    tiers: list[Tier] = []
    for index, raw in enumerate(_parse_tier_list(data, param)):
        where = f"{param}.tiers[{index}]"
        _reject_unknown_keys(raw, _TIER_KEYS, where)
        up_to = _parse_up_to(raw, where)
        tiers.append(Tier(up_to=up_to, unit=_parse_unit(raw, f"{where}.unit"), flat=_parse_flat(raw, f"{where}.flat")))
    return TieredAmount(currency=currency, mode=mode, tiers=tuple(tiers))


def _parse_package(data: Mapping[str, Any], currency: str, param: str) -> PackageAmount:
    _reject_unknown_keys(data, _PACKAGE_KEYS, param)
    return PackageAmount(
        currency=currency,
        package_size=_parse_required(data, "package_size", param, "units per package"),
        # Required: a package price without a price is a free price, and that is never a default.
        amount=_parse_required(data, "amount", param, "minor units per package"),
        free_units=_parse_decimal(data, "free_units", param, default=Decimal(0)) or Decimal(0),
    )


def _parse_percentage(data: Mapping[str, Any], currency: str, param: str) -> PercentageAmount:
    _reject_unknown_keys(data, _PERCENTAGE_KEYS, param)
    raw_events = data.get("free_units_per_events")
    free_events: int | None = None
    if raw_events is not None:
        where = f"{param}.free_units_per_events"
        value = _to_decimal(raw_events, where)
        if value != value.to_integral_value():
            raise PricingError("not_integer", "free_units_per_events must be a whole number.", where)
        free_events = int(value)
        if free_events < 0:
            raise PricingError("negative", "free_units_per_events must not be negative.", where)
    free_amount = _parse_decimal(data, "free_amount", param, default=None)
    return PercentageAmount(
        currency=currency,
        rate=_parse_required(data, "rate", param, 'a percentage, such as "2.9"'),
        fixed_fee=_parse_decimal(data, "fixed_fee", param, default=Decimal(0)) or Decimal(0),
        # 0 is how peers (Lago) spell "none" for both allowances; store it as unset so there is one form.
        free_units_per_events=free_events or None,
        free_amount=None if free_amount == 0 else free_amount,
        per_event_min=_parse_decimal(data, "per_event_min", param, default=None),
        per_event_max=_parse_decimal(data, "per_event_max", param, default=None),
    )


def _parse_graduated_percentage(data: Mapping[str, Any], currency: str, param: str) -> GraduatedPercentageAmount:
    _reject_unknown_keys(data, _GRADUATED_PERCENTAGE_KEYS, param)
    tiers: list[PercentageTier] = []
    for index, raw in enumerate(_parse_tier_list(data, param)):
        where = f"{param}.tiers[{index}]"
        _reject_unknown_keys(raw, _PERCENTAGE_TIER_KEYS, where)
        up_to = _parse_up_to(raw, where)
        rate = _parse_required(raw, "rate", where, 'a percentage, such as "1.5"')
        tiers.append(PercentageTier(up_to=up_to, rate=rate, flat=_parse_flat(raw, f"{where}.flat")))
    return GraduatedPercentageAmount(currency=currency, tiers=tuple(tiers))


_PARSERS: Final = {
    "fixed": _parse_fixed,
    "tiered": _parse_tiered,
    "package": _parse_package,
    "percentage": _parse_percentage,
    "graduated_percentage": _parse_graduated_percentage,
}


def parse_amount(data: object, param: str = "amount") -> Amount:
    """Validate the API JSON shape of a price amount and build the engine's dataclass.

    Optional fields may be absent or null (unit and flat default to 0, a missing up_to means the open
    tier), which is how the reference Go/TypeScript integrations serialise unset pointers.
    """
    if not isinstance(data, Mapping):
        raise PricingError("invalid_type", "amount must be an object.", param)
    model = data.get("model")
    if model is None:
        raise PricingError("missing", f"model is required ({', '.join(MODELS)}).", f"{param}.model")
    if not isinstance(model, str) or model not in _PARSERS:
        raise PricingError("invalid_choice", f"model must be one of {', '.join(MODELS)}.", f"{param}.model")
    currency = _check_currency(data.get("currency"), f"{param}.currency")
    amount = _PARSERS[model](data, currency, param)
    validate_amount(amount, param)
    return amount


def parse_quantity(value: object, param: str = "quantity") -> Decimal:
    """A quantity from JSON (same number rules as prices), refusing negatives."""
    quantity = _to_decimal(value, param)
    if quantity < 0:
        raise PricingError("negative_quantity", "Quantity must not be negative.", param)
    return _canonical(quantity)


def _optional_str(value: Decimal | None) -> str | None:
    return None if value is None else decimal_to_str(value)


def amount_to_dict(amount: Amount) -> dict[str, Any]:
    """The canonical API shape parse_amount accepts; parse_amount(amount_to_dict(a)) == a.

    Decimals (unit prices, bounds, sizes, rates) are decimal strings, flats integers, unset optional
    fields null, so that a stored amount has one spelling.
    """
    currency = amount.currency.lower()
    if isinstance(amount, FixedAmount):
        return {"model": "fixed", "currency": currency, "unit": decimal_to_str(amount.unit), "flat": int(amount.flat)}
    if isinstance(amount, TieredAmount):
        return {
            "model": "tiered",
            "currency": currency,
            "mode": amount.mode,
            "tiers": [
                {"up_to": _optional_str(tier.up_to), "unit": decimal_to_str(tier.unit), "flat": int(tier.flat)}
                for tier in amount.tiers
            ],
        }
    if isinstance(amount, PackageAmount):
        return {
            "model": "package",
            "currency": currency,
            "package_size": decimal_to_str(amount.package_size),
            "amount": decimal_to_str(amount.amount),
            "free_units": decimal_to_str(amount.free_units),
        }
    if isinstance(amount, PercentageAmount):
        return {
            "model": "percentage",
            "currency": currency,
            "rate": decimal_to_str(amount.rate),
            "fixed_fee": decimal_to_str(amount.fixed_fee),
            "free_units_per_events": amount.free_units_per_events,
            "free_amount": _optional_str(amount.free_amount),
            "per_event_min": _optional_str(amount.per_event_min),
            "per_event_max": _optional_str(amount.per_event_max),
        }
    return {
        "model": "graduated_percentage",
        "currency": currency,
        "tiers": [
            {"up_to": _optional_str(tier.up_to), "rate": decimal_to_str(tier.rate), "flat": int(tier.flat)}
            for tier in amount.tiers
        ],
    }
