"""PUBLIC_BASE_URL (required without DEBUG, the request's origin under DEBUG) and the admin's actions on
hosted invoice links."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from billing_site.public_urls import DEVELOPMENT_ORIGIN, public_url
from portal.models import HostedInvoiceLink
from portal.tests.support import finalized_invoice, path_of

ROOT = Path(__file__).resolve().parents[2]


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "PUBLIC_BASE_URL"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import billing_site.settings"], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_public_base_url_is_required_without_debug():
    result = _import_settings(DEBUG="false", SECRET_KEY="x" * 40, ALLOWED_HOSTS="example.com")
    assert result.returncode != 0 and "PUBLIC_BASE_URL must be set when DEBUG is off" in result.stderr
    ok = _import_settings(
        DEBUG="false", SECRET_KEY="x" * 40, ALLOWED_HOSTS="example.com", PUBLIC_BASE_URL="https://billing.example.com/"
    )
    assert ok.returncode == 0, ok.stderr
    bad = _import_settings(DEBUG="true", PUBLIC_BASE_URL="ftp://example.com")
    assert bad.returncode != 0 and "PUBLIC_BASE_URL" in bad.stderr


@pytest.mark.django_db
def test_under_debug_without_the_setting_urls_use_the_requests_origin(api, settings):
    settings.DEBUG, settings.PUBLIC_BASE_URL = True, ""
    invoice = finalized_invoice(api)
    assert invoice["hosted_invoice_url"].startswith("http://testserver/i/")
    assert public_url("/x") == f"{DEVELOPMENT_ORIGIN}/x"  # outside a request: make run's origin
    settings.PUBLIC_BASE_URL = "https://billing.example.com"
    assert (
        api.get(f"/api/v1/invoices/{invoice['id']}")
        .json()["hosted_invoice_url"]
        .startswith("https://billing.example.com/i/")
    )


@pytest.mark.django_db
def test_admin_revokes_and_regenerates_links(api, client):
    invoice = finalized_invoice(api)
    old = path_of(invoice["hosted_invoice_url"])
    admin = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(admin)
    link = HostedInvoiceLink.objects.get(invoice_id=invoice["id"])
    changelist = "/admin/portal/hostedinvoicelink/"
    assert client.get(changelist).status_code == 200
    done = client.post(changelist, {"action": "regenerate", "_selected_action": [link.pk]}, follow=True)
    assert b"1 link(s) regenerated." in done.content
    new = path_of(api.get(f"/api/v1/invoices/{invoice['id']}").json()["hosted_invoice_url"])
    assert new != old and client.get(old).status_code == 404 and client.get(new).status_code == 200
    live = HostedInvoiceLink.objects.get(invoice_id=invoice["id"], revoked_at__isnull=True)
    assert client.get(f"{changelist}{live.pk}/change/").status_code == 200
    client.post(changelist, {"action": "revoke", "_selected_action": [live.pk]}, follow=True)
    assert client.get(new).status_code == 404
    assert api.get(f"/api/v1/invoices/{invoice['id']}").json()["hosted_invoice_url"] is None
