"""Currency table and money helpers (pure Python, no Django).

Every stored amount is an integer in the currency's minor unit; unit prices may carry fractional
minor units as Decimal. Nothing in here ever touches a float: a float cannot represent 0.1 of a cent,
and a price that drifts by one minor unit per million calls is a billing bug nobody can explain later.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from fractions import Fraction
from types import MappingProxyType
from typing import Final

__all__ = [
    "CURRENCY_EXPONENTS",
    "CURRENCY_SYMBOLS",
    "MAX_UNIT_DECIMALS",
    "InputError",
    "UnknownCurrency",
    "currency_exponent",
    "currency_symbol",
    "decimal_to_str",
    "format_amount",
    "is_currency",
    "normalize_currency",
    "round_fraction",
    "round_half_up",
]

# Unit prices are stored with at most this many decimal places of a minor unit. Twelve is enough for
# "$0.000000001 per token" style pricing and keeps the exact products inside a 60-digit context.
MAX_UNIT_DECIMALS: Final = 12

# ISO 4217 list one, grouped by minor-unit exponent so a reviewer can check each group against the
# standard at a glance. Metals, test codes and units of account whose minor unit is "N.A." (XAU, XAG,
# XPT, XPD, XDR, XSU, XUA, XBA-XBD, XTS, XXX) are left out on purpose: nobody can be invoiced in them,
# and there is no exponent to render them with. Codes in a withdrawal transition (ANG -> XCG,
# SLL -> SLE, ZWL -> ZWG, BGN -> EUR, CUC) are kept so that old invoices in them still render.
_CODES_BY_EXPONENT: Final[dict[int, str]] = {
    0: "bif clp djf gnf isk jpy kmf krw pyg rwf ugx uyi vnd vuv xaf xof xpf",
    2: (
        "aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob bov brl bsd btn bwp byn "
        "bzd cad cdf che chf chw cny cop cou crc cuc cup cve czk dkk dop dzd egp ern etb eur fjd fkp "
        "gbp gel ghs gip gmd gtq gyd hkd hnl htg huf idr ils inr irr jmd kes kgs khr kpw kyd kzt lak "
        "lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mru mur mvr mwk mxn mxv myr mzn nad ngn nio nok "
        "npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sdg sek sgd shp sle sll sos srd "
        "ssp stn svc syp szl thb tjs tmt top try ttd twd tzs uah usd usn uyu uzs ved ves wst xcd xcg "
        "yer zar zmw zwg zwl"
    ),
    3: "bhd iqd jod kwd lyd omr tnd",
    4: "clf uyw",
}

CURRENCY_EXPONENTS: Final = MappingProxyType(
    {code: exponent for exponent, codes in _CODES_BY_EXPONENT.items() for code in codes.split()}
)

# Only symbols that are unambiguous to a reader of an invoice. Where several currencies share "$" or
# "¥", the non-US / non-Japanese ones get a prefixed form so "$10.00" always means US dollars.
# Anything missing falls back to "KWD 1.500", which is never wrong, just less pretty.
CURRENCY_SYMBOLS: Final = MappingProxyType(
    {
        "usd": "$",
        "eur": "€",
        "gbp": "£",
        "jpy": "¥",
        "cny": "CN¥",
        "inr": "₹",
        "krw": "₩",
        "cad": "CA$",
        "aud": "A$",
        "nzd": "NZ$",
        "hkd": "HK$",
        "sgd": "S$",
        "twd": "NT$",
        "mxn": "MX$",
        "brl": "R$",
        "xcd": "EC$",
        "ils": "₪",
        "vnd": "₫",
        "php": "₱",
        "thb": "฿",
        "ngn": "₦",
        "uah": "₴",
        "rub": "₽",
        "try": "₺",
        "kzt": "₸",
    }
)


class InputError(ValueError):
    """Bad input to one of the pure modules (pricing, periods, proration, tax). `code` is machine-readable,
    `param` names the field, so the API can turn it into its error envelope unchanged."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, param={self.param!r}, message={self.message!r})"


class UnknownCurrency(ValueError):
    """Raised for anything that is not an ISO 4217 code we can bill in."""

    def __init__(self, code: object) -> None:
        self.code = code
        super().__init__(f"Unknown currency: {code!r}")


def normalize_currency(code: str) -> str:
    """Return the lowercase ISO code; input is case-insensitive, surrounding whitespace is not
    forgiven (a stray space in an API body is more likely a bug than a currency)."""
    if not isinstance(code, str):
        raise UnknownCurrency(code)
    lowered = code.lower()
    if lowered not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(code)
    return lowered


def is_currency(code: object) -> bool:
    return isinstance(code, str) and code.lower() in CURRENCY_EXPONENTS


def currency_exponent(code: str) -> int:
    return CURRENCY_EXPONENTS[normalize_currency(code)]


def currency_symbol(code: str) -> str:
    """Display prefix, including the trailing space of the code fallback ("KWD ")."""
    normalized = normalize_currency(code)
    return CURRENCY_SYMBOLS.get(normalized, f"{normalized.upper()} ")


def _require_decimal(value: object, name: str) -> Decimal:
    # bool is an int subclass; True silently meaning "1 cent" is exactly the kind of bug to refuse.
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise TypeError(f"{name} must be an int or Decimal, not {type(value).__name__}")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def round_half_up(value: Decimal) -> int:
    """Round to an integer, ties away from zero (2.5 -> 3, -2.5 -> -3).

    Decimal's ROUND_HALF_UP already rounds the absolute value, which is what makes a refund of a
    charge mirror the charge exactly. The context is built here rather than inherited so that a
    caller's low precision or trapped Inexact cannot change (or break) the result.
    """
    exact = _require_decimal(value, "value")
    # Enough digits to hold the integer part exactly, however large it is.
    prec = max(28, exact.adjusted() + 2)
    ctx = Context(prec=prec, rounding=ROUND_HALF_UP, traps=[InvalidOperation])
    return int(exact.quantize(Decimal(1), context=ctx))


def round_fraction(value: Fraction | int) -> int:
    """Round an exact rational to an integer, ties away from zero, with no lossy division first.

    Proration (amount x remaining seconds / period seconds) and inclusive tax (amount x p / (100 + P))
    are exact fractions; dividing them into a Decimal first could round twice.
    """
    exact = Fraction(value)
    whole, remainder = divmod(abs(exact.numerator), exact.denominator)
    if 2 * remainder >= exact.denominator:
        whole += 1
    return -whole if exact < 0 else whole


def decimal_to_str(value: Decimal | int) -> str:
    """Plain decimal string without exponent or trailing zeros: Decimal("1E+3") -> "1000",
    Decimal("0.500") -> "0.5". This is the wire format for unit prices and quantities."""
    exact = _require_decimal(value, "value")
    if exact == 0:
        # Also collapses "-0" so a zero never renders with a sign.
        return "0"
    text = format(exact, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_amount(amount_minor: int | Decimal, currency: str, *, min_decimals: int | None = None) -> str:
    """Render minor units in the currency's own format: (1000, "usd") -> "$10.00",
    (1000, "jpy") -> "¥1,000", (Decimal("0.04"), "usd") -> "$0.0004", (1500, "kwd") -> "KWD 1.500".

    Fractional minor units keep all their digits because a sub-cent unit price shown as "$0.00" would
    misstate what the customer pays. Trailing zeros are trimmed, but never below `min_decimals`
    (default: the currency's exponent), so whole amounts still look like money.
    """
    exact = _require_decimal(amount_minor, "amount_minor")
    normalized = normalize_currency(currency)
    exponent = CURRENCY_EXPONENTS[normalized]
    keep = exponent if min_decimals is None else min_decimals
    if keep < 0:
        raise ValueError("min_decimals must be >= 0")

    # Shift the decimal point through the tuple form: exact, with no context rounding at all.
    sign, digits, exp = exact.as_tuple()
    assert isinstance(exp, int)  # finite, checked above
    major = Decimal((0, digits, exp - exponent))

    text = format(major, "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0")
    fraction = fraction.ljust(keep, "0")
    grouped = f"{int(whole):,}"
    number = f"{grouped}.{fraction}" if fraction else grouped
    minus = "-" if sign and exact != 0 else ""
    return f"{minus}{currency_symbol(normalized)}{number}"
