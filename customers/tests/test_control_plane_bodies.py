"""Whatever arrives at POST /control-plane/events ends as a stored row and a 4xx (or a 202), never a 5xx:
fractional numbers, lone surrogates, deep nesting, numbers beyond a double, NUL, not JSON at all."""

from __future__ import annotations

import pytest

from customers.models import ControlPlaneEvent, Customer

pytestmark = pytest.mark.django_db

URL = "/api/v1/control-plane/events"


def post_raw(api, raw: bytes):
    return api.generic("POST", URL, raw, content_type="application/json")


def onboarding(detail: bytes) -> bytes:
    return b'{"id": "eb-1", "detail-type": "sbt_aws_onboardingRequest", "source": "sbt.control.plane", "detail": ' + (
        detail + b"}"
    )


@pytest.mark.parametrize(
    ("raw", "code", "param"),
    [
        # a tenant id that is a number (a fraction, an integer, a boolean) is the sender's bug
        (onboarding(b'{"tenantId": 1.5}'), "parameter_invalid", "detail.tenantId"),
        (onboarding(b'{"tenantId": 42}'), "parameter_invalid", "detail.tenantId"),
        (onboarding(b'{"tenantId": true}'), "parameter_invalid", "detail.tenantId"),
        (onboarding(b'{"tenantId": "t", "email": 0.5}'), "parameter_invalid", "detail.email"),
        # lone surrogates (PostgreSQL text cannot hold them), in a value and in a key
        (onboarding(b'{"tenantId": "\\ud800"}'), "malformed_body", None),
        (onboarding(b'{"tenantId": "t", "\\udc00": "x"}'), "malformed_body", None),
        # nesting: deeper than any event, and deeper than JSON parsers go
        (onboarding(b'{"tenantId": "t", "n": ' + b"[" * 40 + b"]" * 40 + b"}"), "malformed_body", None),
        (onboarding(b'{"tenantId": "t", "n": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "malformed_body", None),
        # numbers a double cannot hold, NUL, not JSON, JSON that is not an envelope
        (onboarding(b'{"tenantId": "t", "n": 1e400}'), "malformed_body", None),
        (onboarding(b'{"tenantId": "t\\u0000"}'), "malformed_body", None),
        (b"{not json", "malformed_body", None),
        (b"", "malformed_body", None),
        (b'"just a string"', "malformed_envelope", None),
        (b'{"detail-type": 7, "detail": {}}', "malformed_envelope", "detail-type"),
        (b'{"detail-type": "onboardingRequest", "detail": [1]}', "malformed_envelope", "detail"),
        (
            b'{"detail-type": "onboardingRequest", "source": 5, "detail": {"tenantId": "t"}}',
            "malformed_envelope",
            "source",
        ),
    ],
)
def test_a_bad_body_is_a_400_naming_the_problem_and_is_stored(api, raw, code, param):
    response = post_raw(api, raw)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, param)
    stored = ControlPlaneEvent.objects.get()
    assert stored.status == "rejected" and stored.result
    assert not Customer.objects.exists()


def test_fractional_numbers_elsewhere_in_the_event_are_stored_as_sent(api):
    raw = onboarding(b'{"tenantId": "t-frac", "tenantName": "Frac", "discount": 0.15, "seats": 2.5e3}')
    response = post_raw(api, raw)
    assert response.status_code == 202
    assert response.json()["status"] == "applied"
    stored = ControlPlaneEvent.objects.get()
    assert stored.payload["detail"]["discount"] == pytest.approx(0.15)
    assert Customer.objects.get(external_id="t-frac").name == "Frac"


def test_surrogate_pairs_are_text_not_errors(api):
    response = post_raw(api, onboarding(b'{"tenantId": "t-emoji", "tenantName": "Caf\\u00e9 \\ud83d\\ude00"}'))
    assert response.status_code == 202
    assert Customer.objects.get(external_id="t-emoji").name == "Café 😀"


def test_the_stored_copy_of_an_unreadable_body_is_its_text(api):
    post_raw(api, b"\xff\xfe not utf-8 {")
    stored = ControlPlaneEvent.objects.get()
    assert stored.status == "rejected"
    assert "not utf-8" in stored.payload["raw"]
