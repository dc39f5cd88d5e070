"""Money, numbers, dates and places as a reader of one locale writes them, through Babel (CLDR data).

Amounts are integer minor units of an ISO 4217 currency; the minor-unit exponent comes from our own
currency table (`billing_site.money`), not from CLDR's, so a document never shows a different number of
decimals than the API and the ledger use. Unit prices may carry fractions of a minor unit ("$0.0004"):
they keep every digit, because a sub-cent price shown as "$0.00" would misstate what the customer pays.
"""

from __future__ import annotations

import copy
import re
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import UnknownLocaleError
from babel.dates import format_date, format_interval
from babel.numbers import NumberPattern, format_decimal, format_percent, get_currency_symbol, parse_pattern

from billing_site.money import currency_exponent, decimal_to_str

__all__ = ["Formatter", "locale_parse"]


def locale_parse(value: str) -> Locale:
    """A CLDR locale from "en", "de_DE" or "de-DE". Raises ValueError naming the value otherwise."""
    try:
        return Locale.parse(value.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"unknown locale {value!r} (use a CLDR locale such as en, de, fr_CA, ja)") from None


@lru_cache(maxsize=256)
def _currency_pattern(locale: Locale, exponent: int) -> NumberPattern:
    pattern = copy.copy(parse_pattern(locale.currency_formats["standard"]))
    pattern.frac_prec = (exponent, exponent)
    return pattern


def _space_alphabetic_symbol(text: str, symbol: str) -> str:
    """CLDR's currency spacing, which Babel does not apply: where a symbol made of letters ("KWD",
    "CHF") touches a digit, a no-break space goes between them ("KWD 1.500", not "KWD1.500"). Symbols
    that are signs ("$", "€", "CA$") stay attached."""
    if not symbol or not (symbol[0].isalpha() or symbol[-1].isalpha()):
        return text
    escaped = re.escape(symbol)
    if symbol[-1].isalpha():
        text = re.sub(rf"({escaped})(?=\d)", "\\1\u00a0", text)
    if symbol[0].isalpha():
        text = re.sub(rf"(?<=\d)({escaped})", "\u00a0\\1", text)
    return text


class Formatter:
    """Formats for one document: one locale, one currency, one time zone (the customer's; dates are the
    calendar dates of that zone, UTC when it has none)."""

    def __init__(self, *, locale: str | Locale, currency: str, tz: str | None = None) -> None:
        self.locale = locale if isinstance(locale, Locale) else locale_parse(locale)
        self.zone = ZoneInfo(tz) if tz and tz != "UTC" else UTC
        self.currency = currency.upper()
        self.exponent = currency_exponent(currency)

    def _money(self, major: Decimal) -> str:
        text = _currency_pattern(self.locale, self.exponent).apply(
            major, self.locale, currency=self.currency, currency_digits=False, decimal_quantization=False
        )
        return _space_alphabetic_symbol(text, get_currency_symbol(self.currency, self.locale))

    def money(self, amount_minor: int) -> str:
        """An amount in minor units: 3998 EUR -> "€39.98" (en) or "39,98 €" (de)."""
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
            raise TypeError(f"amounts are integer minor units, got {amount_minor!r}")
        return self._money(Decimal(amount_minor).scaleb(-self.exponent))

    def unit_price(self, unit_minor: Decimal | int) -> str:
        """A unit price in (possibly fractional) minor units, every digit kept: Decimal("0.04") USD -> "$0.0004"."""
        return self._money(Decimal(decimal_to_str(unit_minor)).scaleb(-self.exponent))

    def quantity(self, value: Decimal | int) -> str:
        """A quantity with the locale's separators and no trailing zeros: 1500.000000 -> "1,500"."""
        return format_decimal(Decimal(decimal_to_str(value)), locale=self.locale, decimal_quantization=False)

    def percent(self, percentage: Decimal) -> str:
        """A percentage as stored (8.875 means 8.875 %): "8.875%" (en), "8,875 %" (de)."""
        return format_percent(Decimal(percentage) / 100, locale=self.locale, decimal_quantization=False)

    def date(self, value: datetime | None) -> str:
        """The calendar date of an instant in the document's zone: "Jan 3, 2026" (en), "03.01.2026" (de)."""
        if value is None:
            return ""
        return format_date(value.astimezone(self.zone).date(), "medium", locale=self.locale)

    def period(self, start: datetime | None, end: datetime | None) -> str:
        """A billing period [start, end) written as the two dates that bound it, the way the invoice
        lines' descriptions already do ("Dec 3, 2025 - Jan 3, 2026" with an en dash)."""
        if start is None or end is None:
            return ""
        first, last = start.astimezone(self.zone).date(), end.astimezone(self.zone).date()
        if first == last:
            return format_date(first, "medium", locale=self.locale)
        return format_interval(first, last, "yMMMd", locale=self.locale)

    def country(self, code: str) -> str:
        """A country's name in the document's language ("PL" -> "Poland", "Polen"); unknown codes as given."""
        return self.locale.territories.get(code.upper(), code) if code else ""
