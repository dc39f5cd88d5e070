"""Tax computation for invoice lines: which rates apply to a customer, and how much tax each line owes.

Pure Python (no Django). Amounts are integers in the currency's minor unit, percentages are Decimals.
Tax is computed per line, after discounts (the caller passes the discounted amount), and rounded per
line and per rate, half away from zero (DESIGN.md section 3): the invoice's tax total is then the sum
of what each line shows, so every line can be checked on its own and a credit note for one line
reverses exactly the tax that line carried.

Exclusive rates are added on top of the amount. Inclusive rates are already inside the amount (a
"20% VAT included" price of 12.00 holds 2.00 of tax on a net of 10.00) and are extracted from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal, NamedTuple

from billing_site.money import InputError, round_fraction

__all__ = [
    "MAX_PERCENT_DECIMALS",
    "REVERSE_CHARGE_NOTE",
    "TAX_EXEMPT_CHOICES",
    "LineTax",
    "TaxAmount",
    "TaxError",
    "TaxExempt",
    "TaxRate",
    "applicable_rates",
    "line_tax",
    "reverse_charge_note",
    "taxes_for_customer",
]

TaxExempt = Literal["none", "exempt", "reverse"]
TAX_EXEMPT_CHOICES: Final = ("none", "exempt", "reverse")

# Printed on invoices of reverse-charge customers (EU B2B cross-border): the buyer accounts for the VAT,
# and the invoice must say so or the seller is liable for it.
REVERSE_CHARGE_NOTE: Final = "Tax to be paid on reverse charge basis"

# 8.875% (New York City) needs three places; four leaves room without inviting false precision.
MAX_PERCENT_DECIMALS: Final = 4

_COUNTRY_RE: Final = re.compile(r"[A-Z]{2}")


class TaxError(InputError):
    """Bad tax input. `code` is machine-readable, `param` is the field name for the API envelope."""


def _decimal_places(value: Decimal) -> int:
    """Significant decimal places ("8.8750" has three), read from the tuple so no context rounds it."""
    if value == 0:
        return 0
    _, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exp + trailing_zeros))


def _check_percentage(value: object) -> Decimal:
    # No floats: 8.875 happens to be exact in binary, 8.1 is not, and a rate must mean what it says.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TaxError("invalid_number", "percentage must be a Decimal.", "percentage")
    percentage = Decimal(value)
    if not percentage.is_finite():
        raise TaxError("invalid_number", "percentage must be finite.", "percentage")
    if not 0 <= percentage <= 100:
        raise TaxError("out_of_range", "percentage must be between 0 and 100.", "percentage")
    if _decimal_places(percentage) > MAX_PERCENT_DECIMALS:
        raise TaxError(
            "too_many_decimals", f"percentage may have at most {MAX_PERCENT_DECIMALS} decimal places.", "percentage"
        )
    return percentage


def _normalize_country(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise TaxError("invalid_country", "country must be an ISO 3166-1 alpha-2 code.", param)
    country = value.strip().upper()
    if not _COUNTRY_RE.fullmatch(country):
        raise TaxError("invalid_country", "country must be an ISO 3166-1 alpha-2 code.", param)
    return country


def _normalize_state(value: object, param: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TaxError("invalid_type", "state must be a string.", param)
    return value.strip().upper()


@dataclass(frozen=True, slots=True)
class TaxRate:
    """A tax rate as configured by the operator. `state` "" means the rate applies country-wide.

    Country and state are stored upper-case so that matching a customer's address is a plain
    comparison and two spellings of one rate compare equal.
    """

    id: str
    display_name: str
    percentage: Decimal
    inclusive: bool
    country: str
    state: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TaxError("invalid_id", "id must be a non-empty string.", "id")
        if not isinstance(self.display_name, str):
            raise TaxError("invalid_type", "display_name must be a string.", "display_name")
        if not isinstance(self.inclusive, bool):
            raise TaxError("invalid_type", "inclusive must be a boolean.", "inclusive")
        object.__setattr__(self, "percentage", _check_percentage(self.percentage))
        object.__setattr__(self, "country", _normalize_country(self.country, "country"))
        object.__setattr__(self, "state", _normalize_state(self.state, "state"))


class TaxAmount(NamedTuple):
    """The tax one rate adds to one line; a plain (rate_id, amount) pair."""

    rate_id: str
    amount: int


@dataclass(frozen=True, slots=True)
class LineTax:
    """Tax on one line.

    net: the amount without any tax (the line amount minus its inclusive taxes).
    taxes: one entry per rate, in the order the rates were given, including 0% rates (an invoice still
        lists them, and a credit note needs to know which rates the line carried).
    total_with_tax: net + every tax = line amount + exclusive taxes.
    inclusive_tax / exclusive_tax: the two sums, because only exclusive tax is added to the invoice total.
    """

    net: int
    taxes: tuple[TaxAmount, ...]
    total_with_tax: int
    inclusive_tax: int
    exclusive_tax: int


def _check_rates(rates: Iterable[TaxRate]) -> list[TaxRate]:
    checked: list[TaxRate] = []
    seen: set[str] = set()
    for position, rate in enumerate(rates):
        if not isinstance(rate, TaxRate):
            raise TaxError("invalid_type", "Each rate must be a TaxRate.", f"tax_rates[{position}]")
        if rate.id in seen:
            # The same rate twice would charge it twice; that is always a caller bug.
            raise TaxError("duplicate_rate", f"Tax rate {rate.id!r} appears twice.", f"tax_rates[{position}]")
        seen.add(rate.id)
        checked.append(rate)
    return checked


def applicable_rates(rates: Iterable[TaxRate], *, country: str | None, state: str | None) -> list[TaxRate]:
    """The rates that apply to a customer at (country, state): every country-level rate of the country
    and, when the customer has a state, every rate of that state (so US + NY rates stack).

    Matching is case-insensitive. A customer without a country gets no rates: without knowing where
    they are there is no jurisdiction to tax for. The order is stable (country-level first, then
    state-level, each by id), so the same customer always gets the same lines in the same order.
    """
    checked = _check_rates(rates)
    if country is None or (isinstance(country, str) and not country.strip()):
        return []
    wanted_country = _normalize_country(country, "country")
    wanted_state = _normalize_state(state, "state")
    country_level = [r for r in checked if r.country == wanted_country and r.state == ""]
    state_level = [r for r in checked if wanted_state and r.country == wanted_country and r.state == wanted_state]
    return sorted(country_level, key=lambda r: r.id) + sorted(state_level, key=lambda r: r.id)


def _check_exempt(tax_exempt: object) -> TaxExempt:
    if tax_exempt not in TAX_EXEMPT_CHOICES:
        raise TaxError("invalid_choice", f"tax_exempt must be one of {', '.join(TAX_EXEMPT_CHOICES)}.", "tax_exempt")
    return tax_exempt  # type: ignore[return-value]


def taxes_for_customer(
    rates: Iterable[TaxRate], *, country: str | None, state: str | None, tax_exempt: TaxExempt
) -> list[TaxRate]:
    """applicable_rates for a taxable customer; no rates at all for exempt and reverse-charge customers
    (a reverse-charge invoice carries REVERSE_CHARGE_NOTE instead, see reverse_charge_note)."""
    if _check_exempt(tax_exempt) != "none":
        _check_rates(rates)  # still refuse malformed input, so a bad call fails the same way for everyone
        return []
    return applicable_rates(rates, country=country, state=state)


def reverse_charge_note(tax_exempt: TaxExempt) -> str | None:
    """The note a customer's invoices must carry: REVERSE_CHARGE_NOTE for reverse charge, else None."""
    return REVERSE_CHARGE_NOTE if _check_exempt(tax_exempt) == "reverse" else None


def line_tax(amount: int, rates: Sequence[TaxRate]) -> LineTax:
    """Tax on one line of `amount` minor units (after discounts; negative for credits).

    Inclusive rates, with P the sum of the inclusive percentages: tax_i = round(amount * p_i / (100 + P)),
    net = amount - sum(inclusive taxes). Several inclusive rates share one extraction so that, say, a
    5% + 10% included tax is 15/115 of the price rather than 5/105 + 10/110 of it.
    Exclusive rates are computed on the net: tax_j = round(net * p_j / 100). With no inclusive rates the
    net is the amount itself. Each tax is rounded on its own, half away from zero, so a credit's tax is
    exactly the negated tax of the same positive amount.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TaxError("not_integer", "amount must be an integer in minor units.", "amount")
    checked = _check_rates(rates)
    inclusive_total = sum((Fraction(r.percentage) for r in checked if r.inclusive), Fraction(0))

    by_rate: dict[str, int] = {}
    for rate in checked:
        if rate.inclusive:
            by_rate[rate.id] = round_fraction(amount * Fraction(rate.percentage) / (100 + inclusive_total))
    inclusive_tax = sum(by_rate.values())
    net = amount - inclusive_tax

    exclusive_tax = 0
    for rate in checked:
        if not rate.inclusive:
            tax = round_fraction(net * Fraction(rate.percentage) / 100)
            by_rate[rate.id] = tax
            exclusive_tax += tax

    return LineTax(
        net=net,
        taxes=tuple(TaxAmount(rate.id, by_rate[rate.id]) for rate in checked),
        total_with_tax=amount + exclusive_tax,
        inclusive_tax=inclusive_tax,
        exclusive_tax=exclusive_tax,
    )
