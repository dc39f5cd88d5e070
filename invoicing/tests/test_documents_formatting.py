"""Babel formatting of document figures: per currency exponent, per locale, CLDR currency spacing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from invoicing.documents.formatting import Formatter, locale_parse

NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("locale", "currency", "amount", "expected"),
    [
        ("en", "eur", 3998, "€39.98"),
        ("de", "eur", 3998, f"39,98{NBSP}€"),
        ("fr", "eur", 123456, f"1\u202f234,56{NBSP}€"),
        ("en", "usd", 2020, "$20.20"),
        ("en", "usd", -2020, "-$20.20"),
        ("en", "jpy", 1000, "¥1,000"),
        ("ja", "jpy", 1000, "￥1,000"),
        ("de", "jpy", 1000, f"1.000{NBSP}¥"),
        # KWD has three decimals; a symbol made of letters is spaced from the digits (CLDR currency spacing).
        ("en", "kwd", 1500, f"KWD{NBSP}1.500"),
        ("en", "kwd", -1500, f"-KWD{NBSP}1.500"),
        ("de", "kwd", 1500, f"1,500{NBSP}KWD"),
        ("en", "chf", 100000, f"CHF{NBSP}1,000.00"),
        ("en", "cad", 1000, "CA$10.00"),
        ("en", "clf", 12345, f"CLF{NBSP}1.2345"),  # exponent 4 from our ISO table
    ],
)
def test_money_per_locale_and_currency(locale, currency, amount, expected):
    assert Formatter(locale=locale, currency=currency).money(amount) == expected


def test_unit_prices_keep_every_fractional_digit():
    usd = Formatter(locale="en", currency="usd")
    assert usd.unit_price(Decimal("0.04")) == "$0.0004"
    assert usd.unit_price(Decimal("1000.000000000000")) == "$10.00"
    assert usd.unit_price(Decimal("0.000000000001")) == "$0.00000000000001"
    assert Formatter(locale="de", currency="eur").unit_price(Decimal("0.5")) == f"0,005{NBSP}€"


def test_amounts_must_be_integer_minor_units():
    usd = Formatter(locale="en", currency="usd")
    for bad in (Decimal("10.5"), 10.5, True, "1000"):
        with pytest.raises(TypeError):
            usd.money(bad)


def test_quantities_percentages_dates_periods_countries():
    en, de = Formatter(locale="en", currency="usd"), Formatter(locale="de", currency="usd")
    assert en.quantity(Decimal("1500.000000000000")) == "1,500"
    assert de.quantity(Decimal("1234.5")) == "1.234,5"
    assert en.percent(Decimal("8.8750")) == "8.875%"
    assert de.percent(Decimal("20")) == f"20{NBSP}%"
    start, end = datetime(2025, 12, 3, 12, tzinfo=UTC), datetime(2026, 1, 3, 12, tzinfo=UTC)
    assert en.date(start) == "Dec 3, 2025"
    assert de.date(start) == "03.12.2025"
    assert en.period(start, end) == "Dec 3, 2025\u2009–\u2009Jan 3, 2026"
    assert Formatter(locale="ja", currency="jpy").period(start, end) == "2025年12月3日～2026年1月3日"
    assert en.period(start, start) == "Dec 3, 2025"
    assert en.period(None, end) == ""
    assert (en.country("PL"), de.country("pl"), en.country("QQ"), en.country("")) == ("Poland", "Polen", "QQ", "")


def test_an_instant_is_dated_in_utc():
    from datetime import timedelta, timezone

    late_in_new_york = datetime(2026, 1, 31, 22, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert Formatter(locale="en", currency="usd").date(late_in_new_york) == "Feb 1, 2026"


def test_locales_are_parsed_strictly():
    assert str(locale_parse("de-DE")) == "de_DE"
    assert str(locale_parse("pt_BR")) == "pt_BR"
    with pytest.raises(ValueError, match="unknown locale 'xx'"):
        locale_parse("xx")
    with pytest.raises(ValueError):
        Formatter(locale="not a locale", currency="usd")
