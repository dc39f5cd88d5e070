"""Stripe's currency exponents (issue 10, item 8): our minor units (ISO 4217) to Stripe's amounts and
back, for charges, refunds, captures and webhook amounts."""

from __future__ import annotations

import pytest

from payments.processors.currencies import chargeable, from_provider, stripe_currency, to_provider
from payments.processors.stripe import payment_from_object, refund_from_object
from payments.tests.test_processor_stripe import payment_intent, processor

# (currency, ours, Stripe's): what we hold in minor units, and what Stripe is sent for it.
CASES = [
    ("usd", 1999, 1999),
    ("jpy", 500, 500),  # zero-decimal both sides
    ("krw", 15000, 15000),
    ("kwd", 1230, 1230),  # three decimals, last digit 0
    ("bhd", 5000, 5000),
    ("isk", 5, 500),  # ISO: 0 decimals; Stripe: two decimals, always 00
    ("ugx", 3700, 370000),
    ("mga", 12300, 123),  # ISO: 2 decimals; Stripe: zero-decimal
    ("huf", 60050, 60050),  # charges: two decimals as ISO
    ("twd", 10050, 10050),
]


@pytest.mark.parametrize(("currency", "ours", "theirs"), CASES)
def test_amounts_convert_both_ways_exactly(currency, ours, theirs):
    assert to_provider(ours, currency) == theirs
    assert from_provider(theirs, currency) == ours
    assert chargeable(ours, currency) == ours


def test_amounts_stripe_cannot_take_are_rounded_down_never_up():
    assert to_provider(1235, "kwd") == 1230  # the last of three decimals must be 0
    assert chargeable(1235, "kwd") == 1230
    assert to_provider(12399, "mga") == 123  # no fraction of an ariary at Stripe
    assert chargeable(12399, "mga") == 12300


def test_huf_and_twd_payouts_are_zero_decimal():
    assert stripe_currency("huf", purpose="payout").step == 100
    assert to_provider(60050, "huf", purpose="payout") == 60000
    assert to_provider(10099, "twd", purpose="payout") == 10000
    assert to_provider(60050, "huf") == 60050  # a charge keeps its two decimals


def test_bad_amounts_are_refused():
    for bad in (-1, True, "10"):
        with pytest.raises(ValueError):
            to_provider(bad, "usd")


@pytest.mark.parametrize(("currency", "ours", "theirs"), [c for c in CASES if c[1] != c[2]])
def test_the_stripe_processor_sends_stripes_amount_and_reads_ours_back(currency, ours, theirs):
    stripe_, http = processor(
        payment_intent("succeeded", amount=theirs, amount_received=theirs, currency=currency),
        (200, {"id": "re_1", "object": "refund", "amount": theirs, "status": "succeeded", "currency": currency}),
        payment_intent("succeeded", amount=theirs, amount_received=theirs, currency=currency),
    )
    paid = stripe_.charge(
        provider_customer="cus_P", method_ref="pm_P", amount=ours, currency=currency, idempotency_key="k"
    )
    assert http.sent[0].params["amount"] == str(theirs)
    assert (paid.amount, paid.amount_received) == (ours, ours)
    refund = stripe_.refund(payment_ref="pi_P", amount=ours, reason="", idempotency_key="r", currency=currency)
    assert http.sent[1].params["amount"] == str(theirs)
    assert refund.amount == ours
    stripe_.capture(payment_ref="pi_P", amount=ours, idempotency_key="c", currency=currency)
    assert http.sent[2].params["amount_to_capture"] == str(theirs)


def test_webhook_objects_are_read_in_our_units():
    _, body = payment_intent("succeeded", amount=500, amount_received=500, currency="isk")
    assert payment_from_object(body).amount_received == 5
    assert refund_from_object({"id": "re_1", "amount": 123, "currency": "mga", "status": "succeeded"}).amount == 12300
    _, body = payment_intent("succeeded", amount=500, amount_received=500, currency="jpy")
    assert payment_from_object(body).amount_received == 500
