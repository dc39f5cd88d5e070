"""Outbound signatures against the reference verifier of the `standardwebhooks` package."""

from __future__ import annotations

import base64
import hmac
import json
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks.signing import SECRET_PREFIX, secret_generate, signature_headers

BODY = json.dumps({"id": "bev_1", "type": "invoice.paid", "data": {"object": {"amount_due": 100}}})


def _headers(secret: str, *, body: str = BODY, offset: timedelta = timedelta(0), others: list[str] = ()) -> dict:
    return signature_headers(msg_id="bev_1", timestamp=timezone.now() + offset, body=body, secrets_=[*others, secret])


def test_secret_format_is_whsec_and_base64_of_at_least_24_bytes():
    secret = secret_generate()
    assert secret.startswith(SECRET_PREFIX)
    assert len(base64.b64decode(secret[len(SECRET_PREFIX) :])) >= 24
    assert secret != secret_generate()


def test_reference_verifier_accepts_our_signature():
    secret = secret_generate()
    headers = _headers(secret)
    assert headers["webhook-id"] == "bev_1"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_tampered_body_is_refused():
    secret = secret_generate()
    headers = _headers(secret)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret).verify(BODY.replace("100", "900"), headers)


def test_wrong_secret_is_refused():
    headers = _headers(secret_generate())
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(secret_generate()).verify(BODY, headers)


@pytest.mark.parametrize(
    ("offset", "message"),
    [(timedelta(minutes=-6), "too old"), (timedelta(minutes=6), "too new")],
    ids=["expired", "future"],
)
def test_timestamp_outside_five_minutes_is_refused(offset, message):
    secret = secret_generate()
    with pytest.raises(WebhookVerificationError, match=message):
        Webhook(secret).verify(BODY, _headers(secret, offset=offset))


def test_timestamp_within_five_minutes_is_accepted():
    secret = secret_generate()
    assert Webhook(secret).verify(BODY, _headers(secret, offset=timedelta(minutes=-4)))


def test_several_signatures_one_valid_is_accepted_by_either_secret():
    """During a rotation both secrets sign: a consumer with the old one and one with the new one both verify."""
    old, new = secret_generate(), secret_generate()
    headers = _headers(new, others=[old])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(old).verify(BODY, headers)
    assert Webhook(new).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret_generate()).verify(BODY, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_refused(missing):
    secret = secret_generate()
    headers = _headers(secret)
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match="Missing required headers"):
        Webhook(secret).verify(BODY, headers)


def test_signature_id_is_part_of_what_is_signed():
    secret = secret_generate()
    headers = {**_headers(secret), "webhook-id": "bev_2"}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)


def test_comparison_is_constant_time():
    secret = secret_generate()
    headers = _headers(secret)
    with mock.patch("standardwebhooks.webhooks.hmac.compare_digest", wraps=hmac.compare_digest) as spy:
        Webhook(secret).verify(BODY, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY + " ", headers)
    assert spy.call_count == 2
