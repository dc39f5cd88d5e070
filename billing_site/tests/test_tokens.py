"""JWT bearer tokens over HTTP: the token matrix, with keys made here and a JWKS served on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from billing_site.models import IdempotencyRecord
from billing_site.services import api_key_create
from billing_site.tests.oidc import AUDIENCE, bearer

pytestmark = pytest.mark.django_db

URL = "/api/v1/customers"


def _refused(response, status: int, code: str, claim: str | None = None) -> dict:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["type"] == ("authentication" if status == 401 else "api_error" if status == 503 else "permission")
    if claim is not None:
        assert error["claim"] == claim
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    return error


# --- accepted ---------------------------------------------------------------------------------------


def test_valid_rs256_token_is_accepted(oidc):
    response = oidc.client(scope="customers:read").get(URL)
    assert response.status_code == 200, response.content
    assert response.json()["data"] == []


def test_valid_es256_token_is_accepted(oidc):
    assert oidc.client(kid="kid-2", scope="customers:read").get(URL).status_code == 200


def test_the_key_set_is_fetched_once_and_then_cached(oidc):
    for _ in range(3):
        assert oidc.client(scope="customers:read").get(URL).status_code == 200
    assert oidc.jwks_fetches() == 1


def test_audience_may_be_a_list(oidc):
    assert oidc.client(aud=["someone-else", AUDIENCE]).get(URL).status_code == 200


def test_cognito_access_token_without_aud_is_checked_by_client_id(oidc):
    # Cognito access tokens carry the app client in `client_id` and have no `aud`.
    ok = oidc.client(aud=None, client_id=AUDIENCE, sub=None, scope="tenant/tenant_read")
    assert ok.get(URL).status_code == 200
    wrong = oidc.client(aud=None, client_id="another-client")
    _refused(wrong.get(URL), 401, "token_audience_invalid", claim="aud")


# --- the refusals -----------------------------------------------------------------------------------


def test_expired_token_is_401_token_expired(oidc):
    now = int(time.time())
    _refused(oidc.client(iat=now - 7200, exp=now - 3600).get(URL), 401, "token_expired", claim="exp")


def test_token_not_yet_valid_is_401(oidc):
    now = int(time.time())
    _refused(oidc.client(nbf=now + 3600).get(URL), 401, "token_not_yet_valid", claim="nbf")


def test_token_issued_in_the_future_is_401(oidc):
    now = int(time.time())
    _refused(oidc.client(iat=now + 3600, exp=now + 7200).get(URL), 401, "token_issued_in_future", claim="iat")


def test_wrong_issuer_is_401_and_fetches_no_keys(oidc):
    _refused(oidc.client(iss="https://evil.example/pool").get(URL), 401, "token_issuer_invalid", claim="iss")
    assert oidc.jwks_fetches() == 0


def test_wrong_audience_is_401(oidc):
    _refused(oidc.client(aud="another-service").get(URL), 401, "token_audience_invalid", claim="aud")


def test_missing_audience_is_401(oidc):
    _refused(oidc.client(aud=None).get(URL), 401, "token_audience_invalid", claim="aud")


def test_alg_none_is_401_algorithm_not_allowed(oidc):
    _refused(bearer(oidc.unsigned_token()).get(URL), 401, "token_algorithm_not_allowed")


def test_hs256_signed_with_the_public_key_is_401(oidc):
    _refused(bearer(oidc.hs256_with_public_key()).get(URL), 401, "token_algorithm_not_allowed")
    _refused(bearer(oidc.hs256_with_public_key(kid="kid-2")).get(URL), 401, "token_algorithm_not_allowed")


def test_algorithm_outside_the_allowed_list_is_401(oidc, settings):
    settings.JWT_ALGORITHMS = ("RS256",)
    _refused(oidc.client(kid="kid-2").get(URL), 401, "token_algorithm_not_allowed")


def test_header_algorithm_that_does_not_match_the_key_is_401(oidc):
    # An RS256 signature presented under the EC key's kid.
    token = oidc.token(kid="kid-1", headers={"kid": "kid-2"})
    _refused(bearer(token).get(URL), 401, "token_algorithm_not_allowed")


def test_tampered_payload_is_401_signature_invalid(oidc):
    header, payload, signature = oidc.token(scope="customers:read").split(".")
    forged = oidc.token(scope="admin").split(".")[1]
    _refused(bearer(f"{header}.{forged}.{signature}").get(URL), 401, "token_signature_invalid")
    assert payload != forged


def test_token_signed_by_a_key_that_is_not_the_kids_is_401_signature_invalid(oidc):
    impostor = oidc.add_key("rsa", kid="impostor", publish=False)
    token = oidc.token(kid=impostor, headers={"kid": "kid-1"})
    _refused(bearer(token).get(URL), 401, "token_signature_invalid")


def test_unknown_kid_is_401_then_accepted_after_the_rotation_is_published(oidc, settings, monkeypatch):
    settings.JWT_JWKS_MIN_REFRESH_SECONDS = 1
    # The refresh bound runs on the request's clock: hold it still, then move it past the bound, so a slow
    # machine cannot let a second go by between two requests.
    from django.utils import timezone

    start = timezone.now()
    clock = {"now": start}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    assert oidc.client().get(URL).status_code == 200  # keys fetched once
    new_kid = oidc.add_key("rsa", kid="rotated", publish=False)
    # Signed with a key the provider has not published yet.
    _refused(oidc.client(kid=new_kid).get(URL), 401, "token_key_unknown")
    oidc.published = [new_kid]  # the rotation: the new key published, the old one withdrawn
    # Right after a fetch the unknown kid does not fetch again (the refresh bound).
    _refused(oidc.client(kid=new_kid).get(URL), 401, "token_key_unknown")
    assert oidc.jwks_fetches() == 1
    clock["now"] = start + timedelta(seconds=1.5)
    assert oidc.client(kid=new_kid).get(URL).status_code == 200
    assert oidc.jwks_fetches() == 2
    # The withdrawn key is gone with the refresh.
    _refused(oidc.client(kid="kid-1").get(URL), 401, "token_key_unknown")


def test_many_tokens_with_made_up_kids_fetch_the_keys_once(oidc):
    assert oidc.client().get(URL).status_code == 200
    for index in range(20):
        stranger = oidc.add_key("ec", kid=f"made-up-{index}", publish=False)
        _refused(oidc.client(kid=stranger).get(URL), 401, "token_key_unknown")
    assert oidc.jwks_fetches() == 1


def test_missing_scope_is_403_and_names_the_scope(oidc):
    client = oidc.client(scope="customers:read")
    response = client.post(URL, {"external_id": "t-1"}, format="json")
    error = _refused(response, 403, "missing_scope")
    assert error["scope"] == "customers:write"
    assert error["message"] == "This token lacks the scope 'customers:write'."


def test_token_without_any_of_our_scopes_is_403(oidc):
    _refused(oidc.client(scope="openid email profile").get(URL), 403, "missing_scope")
    _refused(oidc.client(scope=None).get(URL), 403, "missing_scope")


def test_scp_list_claim_is_read_like_scope(oidc):
    assert oidc.client(scope=None, scp=["customers:read"]).get(URL).status_code == 200


def test_control_plane_scopes_map_onto_ours(oidc):
    reader = oidc.client(scope="openid tenant/tenant_read user/user_read")
    assert reader.get(URL).status_code == 200
    _refused(reader.post(URL, {"external_id": "t-1"}, format="json"), 403, "missing_scope")
    writer = oidc.client(scope="createTenantScope")
    assert writer.post(URL, {"external_id": "t-1"}, format="json").status_code == 201


def test_the_scope_table_is_a_setting(oidc, settings):
    settings.JWT_SCOPE_MAP = {**settings.JWT_SCOPE_MAP, "billing.readonly": ("customers:read",), "admin": ()}
    assert oidc.client(scope="billing.readonly").get(URL).status_code == 200
    # An entry for one of our own names overrides its pass-through: here tokens cannot carry admin.
    _refused(oidc.client(scope="admin").get(URL), 403, "missing_scope")


# --- malformed and odd tokens: 401, never a 500 -------------------------------------------------------


@pytest.mark.parametrize(
    "credential",
    [
        "a.b",
        "a.b.c",
        "...",
        "eyJhbGciOiJSUzI1NiJ9.eyJ.x",
        "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",  # payload is not JSON
        "W10.e30.c2ln",  # header is a JSON list
        "x" * 20000 + ".y.z",
    ],
)
def test_malformed_tokens_are_401_token_malformed(oidc, credential):
    _refused(bearer(credential).get(URL), 401, "token_malformed")


def test_token_without_kid_is_401_malformed(oidc):
    token = jwt.encode(oidc.claims(), oidc.keys["kid-1"], algorithm="RS256")
    _refused(bearer(token).get(URL), 401, "token_malformed")


def test_missing_exp_is_401_claim_missing(oidc):
    _refused(oidc.client(exp=None).get(URL), 401, "token_claim_missing", claim="exp")


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_time_claims_that_are_not_numbers_are_401(oidc, claim):
    _refused(oidc.client(**{claim: "tomorrow"}).get(URL), 401, "token_claim_invalid", claim=claim)


def test_scope_claim_of_the_wrong_type_is_401(oidc):
    _refused(oidc.client(scope={"admin": True}).get(URL), 401, "token_claim_invalid", claim="scope")


def test_token_without_subject_is_401(oidc):
    _refused(oidc.client(sub=None).get(URL), 401, "token_claim_missing", claim="sub")


def test_tenant_claim_that_is_not_a_string_is_401(oidc):
    response = oidc.client(**{"custom:tenantId": 42}).get(URL)
    _refused(response, 401, "token_claim_invalid", claim="custom:tenantId")


def test_tokens_are_refused_when_no_issuer_is_configured(oidc, settings, make_client):
    settings.JWT_ISSUER = None
    _refused(oidc.client().get(URL), 401, "token_not_accepted")
    assert make_client("customers:read").get(URL).status_code == 200


# --- leeway ---------------------------------------------------------------------------------------


def test_leeway_accepts_a_token_just_expired_and_refuses_one_expired_beyond_it(oidc, settings):
    now = int(time.time())
    settings.JWT_LEEWAY_SECONDS = 60
    assert oidc.client(iat=now - 600, exp=now - 30).get(URL).status_code == 200
    _refused(oidc.client(iat=now - 600, exp=now - 90).get(URL), 401, "token_expired")
    assert oidc.client(nbf=now + 30).get(URL).status_code == 200
    settings.JWT_LEEWAY_SECONDS = 0
    _refused(oidc.client(iat=now - 600, exp=now - 30).get(URL), 401, "token_expired")
    _refused(oidc.client(nbf=now + 30).get(URL), 401, "token_not_yet_valid")


# --- the key endpoint down: 503 for tokens, API keys unaffected ------------------------------------


def test_jwks_endpoint_down_is_503_for_tokens_and_api_keys_keep_working(oidc, make_client):
    oidc.stop()
    error = _refused(oidc.client().get(URL), 503, "token_keys_unavailable")
    assert "API keys are not affected" in error["message"]
    assert make_client("customers:read").get(URL).status_code == 200


def test_jwks_endpoint_down_answers_retry_after(oidc, settings):
    settings.JWT_JWKS_MIN_REFRESH_SECONDS = 30
    oidc.stop()
    response = oidc.client().get(URL)
    assert response.status_code == 503
    assert response["Retry-After"] == "30"


@pytest.mark.parametrize("mode", ["error", "garbage"])
def test_jwks_endpoint_answering_nonsense_is_503(oidc, mode, make_client):
    oidc.mode = mode
    _refused(oidc.client().get(URL), 503, "token_keys_unavailable")
    assert make_client("customers:read").get(URL).status_code == 200


def test_a_failed_fetch_is_not_retried_by_every_request(oidc):
    oidc.mode = "error"
    for _ in range(5):
        _refused(oidc.client().get(URL), 503, "token_keys_unavailable")
    assert oidc.jwks_fetches() == 1


def test_cached_keys_keep_working_while_the_endpoint_is_down(oidc):
    assert oidc.client().get(URL).status_code == 200
    oidc.stop()
    assert oidc.client().get(URL).status_code == 200


# --- OIDC discovery -------------------------------------------------------------------------------


def test_keys_found_through_oidc_discovery(oidc, settings):
    settings.JWT_JWKS_URL = None
    settings.OIDC_DISCOVERY_URL = oidc.discovery_url
    assert oidc.client().get(URL).status_code == 200
    assert oidc.client(kid="kid-2").get(URL).status_code == 200
    assert oidc.requests["/pool/.well-known/openid-configuration"] == 1
    assert oidc.jwks_fetches() == 1


def test_discovery_document_of_another_issuer_is_503(oidc, settings):
    settings.JWT_JWKS_URL = None
    settings.OIDC_DISCOVERY_URL = oidc.discovery_url
    oidc.discovery_issuer = "https://someone-else.example/pool"
    _refused(oidc.client().get(URL), 503, "token_keys_unavailable")
    assert oidc.jwks_fetches() == 0


def test_discovery_pointing_at_plain_http_elsewhere_is_refused_without_fetching(oidc, settings):
    settings.JWT_JWKS_URL = None
    settings.OIDC_DISCOVERY_URL = oidc.discovery_url
    oidc.discovery_jwks_uri = "http://keys.example.com/jwks.json"
    _refused(oidc.client().get(URL), 503, "token_keys_unavailable")


# --- tokens as principals: idempotency and rate limits --------------------------------------------


def test_idempotency_key_replays_for_the_same_subject_across_refreshed_tokens(oidc):
    body = {"external_id": "tenant-idem"}
    first = oidc.client(sub="svc-a").post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    # A new token (a refresh) for the same subject replays the stored response.
    again = oidc.client(sub="svc-a", iat=int(time.time()) - 5).post(
        URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    # Another subject's key space is its own: the request runs, and meets the duplicate.
    other = oidc.client(sub="svc-b").post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "customer_exists"


def test_rate_limit_counts_per_token_subject(oidc, settings):
    cache.clear()
    settings.API_RATE_LIMIT = (2, 3600)
    client = oidc.client(sub="busy")
    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 429]
    assert oidc.client(sub="calm").get(URL).status_code == 200


def test_api_keys_still_work_beside_tokens(oidc, make_client):
    assert make_client("customers:read").get(URL).status_code == 200
    response = APIClient().get(URL, HTTP_AUTHORIZATION="Bearer bk_" + "x" * 40)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_idempotency_records_belong_to_exactly_one_owner_by_constraint():
    key, _ = api_key_create(name="k", scopes=["admin"])
    now = timezone.now()
    common = {"fingerprint": "f", "method": "POST", "path": "/", "locked_at": now, "created_at": now}
    for owner in ({"api_key": key, "token_subject": "jwt_x"}, {"api_key": None, "token_subject": ""}):
        with pytest.raises(IntegrityError), transaction.atomic():
            IdempotencyRecord.objects.create(key="k", **owner, **common)
    IdempotencyRecord.objects.create(key="k", token_subject="jwt_x", **common)
    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyRecord.objects.create(key="k", token_subject="jwt_x", **common)
    IdempotencyRecord.objects.create(key="k", token_subject="jwt_y", **common)
    IdempotencyRecord.objects.create(key="k", api_key=key, **common)
    assert IdempotencyRecord.objects.count() == 3


def test_admin_lists_idempotency_records_of_tokens(oidc, admin_client):
    oidc.client(sub="svc").post(URL, {"external_id": "t-adm"}, format="json", HTTP_IDEMPOTENCY_KEY="adm-1")
    page = admin_client.get("/admin/billing_site/idempotencyrecord/")
    assert page.status_code == 200
    assert b"adm-1" in page.content and b"jwt_" in page.content


# Signing the test token with the weak key is what warns; the service refuses it outright.
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_a_weak_rsa_key_in_the_key_set_is_not_trusted(oidc):
    oidc.keys["weak"] = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    oidc.algorithms["weak"] = "RS256"
    oidc.published.append("weak")
    _refused(oidc.client(kid="weak").get(URL), 401, "token_signature_invalid")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_token_requests_with_one_idempotency_key_do_the_work_once(oidc, make_client):
    # Eight refreshed tokens of one subject race with one key: the key is the subject's, so one runs.
    tokens = [oidc.token(sub="svc-race", iat=int(time.time()) - i) for i in range(8)]
    results: list[int] = []
    barrier = threading.Barrier(len(tokens))

    def worker(token: str) -> None:
        barrier.wait()
        try:
            response = bearer(token).post(URL, {"external_id": "t-race"}, format="json", HTTP_IDEMPOTENCY_KEY="race")
            results.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(201) >= 1
    assert set(results) <= {201, 409}
    listed = make_client("customers:read").get(URL, {"external_id": "t-race"}).json()["data"]
    assert len(listed) == 1
    assert IdempotencyRecord.objects.filter(key="race", api_key=None).count() == 1
