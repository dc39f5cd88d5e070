"""Fixtures shared by every app's tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from billing_site.services import api_key_create

# --- The control plane's EventBridge bus, stubbed (issue 13): the `bus` fixture --------------------
pytest_plugins = ["customers.tests.eventbridge"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` need real row locks and concurrent connections; on SQLite they are reported
    as skipped with the reason, never silently passed."""
    if connection.vendor == "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("postgres")
        if marker is not None:
            why = marker.kwargs.get("reason", "row locks, concurrency")
            item.add_marker(pytest.mark.skip(reason=f"needs PostgreSQL ({why}); this run uses {connection.vendor}"))


@pytest.fixture(autouse=True)
def _books_audited(request: pytest.FixtureRequest) -> Iterator[None]:
    """Concurrency tests (`postgres`) and tests marked `audited` end with `billing_audit` passing: whatever
    raced, the books must still add up (issue 10)."""
    if request.node.get_closest_marker("postgres") is None and request.node.get_closest_marker("audited") is None:
        yield
        return
    # Set the database up inside this fixture, so it is torn down (flushed) after the audit below.
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        yield
        return
    request.getfixturevalue("transactional_db" if marker.kwargs.get("transaction") else "db")
    yield
    from payments.audit import audit_all

    problems = audit_all()
    assert problems == [], "billing_audit after the test:\n" + "\n".join(problems)


@pytest.fixture
def make_client(db: None) -> Callable[..., APIClient]:
    def make(*scopes: str, name: str = "test") -> APIClient:
        _, raw = api_key_create(name=name, scopes=list(scopes) or ["admin"])
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        client.raw_key = raw  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def api(make_client: Callable[..., APIClient]) -> APIClient:
    """A client whose key has every scope."""
    return make_client("admin")


# --- JWT bearer tokens (issue 13) -----------------------------------------------------------------


@pytest.fixture
def oidc(settings: Any) -> Iterator[Any]:
    """A local identity provider (billing_site.tests.oidc) with one RSA and one EC key, and the JWT
    settings pointing at its JWKS. `oidc.client(scope=..., **claims)` is an APIClient with a token."""
    from billing_site.tests.oidc import AUDIENCE, IdentityProvider

    provider = IdentityProvider().start()
    provider.add_key("rsa")
    provider.add_key("ec")
    settings.JWT_ISSUER = provider.issuer
    settings.JWT_AUDIENCES = [AUDIENCE]
    settings.JWT_JWKS_URL = provider.jwks_url
    settings.OIDC_DISCOVERY_URL = None
    settings.JWT_ALGORITHMS = ("RS256", "ES256")
    settings.JWT_LEEWAY_SECONDS = 60
    settings.JWT_TENANT_CLAIM = "custom:tenantId"
    yield provider
    provider.stop()


# --- Stripe (issue 12) --------------------------------------------------------------------------------

FAKE_STRIPE_KEY = "sk_test_51FakeStripeKeyForTests0123456789"


@pytest.fixture
def fake_stripe(settings: object) -> object:
    """A local fake Stripe API (billing_site.testing.fake_stripe) with the SDK pointed at it through the
    settings; at the end, no request may have broken the SDK's typed parameters."""
    from billing_site.testing.fake_stripe import FakeStripe

    with FakeStripe(hang_seconds=1.0) as fake:
        settings.STRIPE_API_KEY = FAKE_STRIPE_KEY  # type: ignore[attr-defined]
        settings.STRIPE_API_BASE = fake.url  # type: ignore[attr-defined]
        settings.STRIPE_TIMEOUT_SECONDS = 0.25  # type: ignore[attr-defined]
        yield fake
    assert fake.violations == [], fake.violations


# --- Browser tests (issue 14): pytest-playwright on the system's chromium -------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """Browser tests drive the system's chromium (Debian's package): Playwright's own download is never used."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("browser tests need chromium (Debian package `chromium`; .ci/run installs it)")
    return {**browser_type_launch_args, "executable_path": executable, "args": ["--no-sandbox"]}
