"""Per-processor currency exponents: our minor units (ISO 4217, `billing_site.money.CURRENCY_EXPONENTS`)
to a processor's units and back.

Stripe's rules (its "Supported currencies" page, "Zero-decimal currencies" and "Special cases"):
- Zero-decimal currencies are sent in whole units: BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF VND VUV XAF
  XOF XPF. For most ISO says 0 too; MGA has 2 in ISO (the iraimbilanja), so ours are divided by 100.
- ISK and UGX: zero-decimal in ISO, but Stripe keeps them as two-decimal for backward compatibility,
  with the decimals always 00: 5 ISK is sent as 500 (ours times 100), and nothing finer exists.
- HUF and TWD: two-decimal for charges (as ISO), but zero-decimal for payouts: a payout amount must be
  evenly divisible by 100 (`purpose="payout"`).
- Three-decimal currencies (BHD JOD KWD OMR TND) are sent with three decimals, but the last digit must
  be 0: amounts are rounded to a multiple of 10.
- Every other currency: the ISO exponent.

Where the processor cannot represent an amount exactly (an MGA amount with cents, a KWD amount ending in
5 fils), it is rounded DOWN to what it can take: never more is charged, refunded or paid out than we
asked for (`amount_received <= amount` holds), and what was actually moved comes back converted from
the processor's answer, so the books record the real figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from billing_site.money import CURRENCY_EXPONENTS

Purpose = Literal["charge", "payout"]


@dataclass(frozen=True, slots=True)
class ProviderCurrency:
    """How a processor writes amounts of one currency: its exponent and the step its amounts must be a
    multiple of (in its own units)."""

    exponent: int
    step: int = 1


_STRIPE_ZERO_DECIMAL: Final = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf"]
)
_STRIPE_TWO_DECIMAL_ZEROS: Final = frozenset({"isk", "ugx"})  # two decimals, always 00
_STRIPE_THREE_DECIMAL: Final = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
_STRIPE_ZERO_DECIMAL_PAYOUTS: Final = frozenset({"huf", "twd"})


def _ours(currency: str) -> int:
    # A code outside our table (which the API refuses anyway) is passed through unchanged.
    return CURRENCY_EXPONENTS.get(currency.lower(), 2)


def stripe_currency(currency: str, *, purpose: Purpose = "charge") -> ProviderCurrency:
    code = currency.lower()
    if code in _STRIPE_ZERO_DECIMAL:
        return ProviderCurrency(exponent=0)
    if code in _STRIPE_TWO_DECIMAL_ZEROS:
        return ProviderCurrency(exponent=2, step=100)
    if code in _STRIPE_THREE_DECIMAL:
        return ProviderCurrency(exponent=3, step=10)
    if code in _STRIPE_ZERO_DECIMAL_PAYOUTS and purpose == "payout":
        return ProviderCurrency(exponent=2, step=100)
    return ProviderCurrency(exponent=_ours(code))


def to_provider(amount: int, currency: str, *, purpose: Purpose = "charge") -> int:
    """Our minor units -> Stripe's amount, rounded down to what Stripe can take."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise ValueError("amount must be a non-negative integer in minor units")
    theirs = stripe_currency(currency, purpose=purpose)
    shift = theirs.exponent - _ours(currency)
    value = amount * 10**shift if shift >= 0 else amount // 10**-shift
    return value - value % theirs.step


def from_provider(amount: int, currency: str, *, purpose: Purpose = "charge") -> int:
    """Stripe's amount -> our minor units (exact for everything Stripe sends: its amounts are multiples
    of the step; a stray finer digit is dropped, never rounded up)."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError("amount must be an integer")
    shift = stripe_currency(currency, purpose=purpose).exponent - _ours(currency)
    return amount * 10**-shift if shift <= 0 else amount // 10**shift


def chargeable(amount: int, currency: str, *, purpose: Purpose = "charge") -> int:
    """The largest amount <= `amount` (ours) that Stripe can move exactly."""
    return from_provider(to_provider(amount, currency, purpose=purpose), currency, purpose=purpose)
