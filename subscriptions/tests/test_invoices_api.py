"""The invoices and tax-rates endpoints: read/list/filter, finalize/void/mark-uncollectible, scopes, events."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice, TaxRate
from invoicing.services import tax_rate_create
from subscriptions.tests.support import fixed_price, subscribe
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db

URL = "/api/v1/invoices"
RATES = "/api/v1/tax-rates"


def events(object_id: str) -> set[str]:
    return set(BillingEvent.objects.filter(object_id=object_id).values_list("type", flat=True))


@pytest.fixture
def draft(settings):
    """A draft invoice with a taxed line, made by the lifecycle with auto-finalization off."""
    settings.INVOICE_AUTO_FINALIZE = False
    now = timezone.now()
    rate = tax_rate_create(display_name="VAT", percentage=Decimal("19"), country="DE", now=now)
    _sub, invoice = subscribe(CustomerFactory(address_country="DE"), fixed_price("1000", now=now), now=now)
    assert invoice.status == "draft"
    invoice.rate = rate
    return invoice


def test_read_an_invoice(api, draft):
    response = api.get(f"{URL}/{draft.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == draft.id and body["object"] == "invoice"
    assert (body["status"], body["number"], body["billing_reason"]) == ("draft", None, "subscription_create")
    assert (body["customer"], body["subscription"], body["currency"]) == (
        draft.customer_id,
        draft.subscription_id,
        "usd",
    )
    assert (body["subtotal"], body["discount"], body["tax"], body["total"], body["amount_due"]) == (
        1000,
        0,
        190,
        1190,
        1190,
    )
    assert (body["amount_paid"], body["amount_remaining"], body["credits_applied"], body["balance_applied"]) == (
        0,
        1190,
        0,
        0,
    )
    [line] = body["lines"]
    assert line["id"].startswith("il_")
    assert (line["kind"], line["amount"], line["quantity"], line["unit_amount"]) == ("fixed", 1000, "1", "1000")
    assert line["tax"] == [{"tax_rate": draft.rate.id, "amount": 190}]
    assert line["period_start"] == body["period_start"] and line["period_end"] == body["period_end"]
    assert api.get(f"{URL}/in_nope").status_code == 404


def test_list_and_filter_invoices(api, draft, settings):
    settings.INVOICE_AUTO_FINALIZE = True
    other_sub, other = subscribe(None, fixed_price("500", now=timezone.now()), now=timezone.now())
    assert other.status == "open"
    all_ids = [i["id"] for i in api.get(URL).json()["data"]]
    assert sorted(all_ids) == sorted([draft.id, other.id])
    assert [i["id"] for i in api.get(URL, {"customer": draft.customer_id}).json()["data"]] == [draft.id]
    assert [i["id"] for i in api.get(URL, {"subscription": other_sub.id}).json()["data"]] == [other.id]
    assert [i["id"] for i in api.get(URL, {"status": "draft"}).json()["data"]] == [draft.id]
    assert [i["id"] for i in api.get(URL, {"status": "open"}).json()["data"]] == [other.id]
    assert api.get(URL, {"status": "bogus"}).status_code == 400
    page = api.get(URL, {"limit": 1}).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    rest = api.get(URL, {"limit": 1, "cursor": page["next_cursor"]}).json()
    assert {page["data"][0]["id"], rest["data"][0]["id"]} == {draft.id, other.id}


def test_finalize_void_and_mark_uncollectible_endpoints(api, draft, settings):
    response = api.post(f"{URL}/{draft.id}/finalize")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["number"]) == ("open", "INV-000001")
    assert body["finalized_at"] is not None and body["due_date"] is not None
    assert {"invoice.created", "invoice.finalized"} <= events(draft.id)

    conflict = api.post(f"{URL}/{draft.id}/finalize")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "invoice_status_conflict"

    assert api.post(f"{URL}/{draft.id}/mark-uncollectible").json()["status"] == "uncollectible"
    assert "invoice.marked_uncollectible" in events(draft.id)
    assert api.post(f"{URL}/{draft.id}/void").status_code == 409
    assert api.post(f"{URL}/{draft.id}/mark-uncollectible").status_code == 409

    second = subscribe(None, fixed_price(now=timezone.now()), now=timezone.now())[1]
    voided = api.post(f"{URL}/{second.id}/void")
    assert voided.status_code == 200
    assert (voided.json()["status"], voided.json()["number"], voided.json()["amount_remaining"]) == ("void", None, 0)
    assert "invoice.voided" in events(second.id)
    assert api.post(f"{URL}/{second.id}/finalize").status_code == 409
    assert api.post(f"{URL}/{second.id}/mark-uncollectible").status_code == 409
    assert api.post(f"{URL}/in_nope/void").status_code == 404


def test_invoice_scopes(make_client, draft):
    assert make_client("billing:read").get(f"{URL}/{draft.id}").status_code == 200
    assert make_client("billing:read").post(f"{URL}/{draft.id}/finalize").status_code == 403
    assert make_client("customers:write").get(URL).status_code == 403
    assert make_client("customers:read", "catalog:write").get(f"{URL}/{draft.id}").status_code == 403
    assert Invoice.objects.get(pk=draft.id).status == "draft"


# --- Tax rates ------------------------------------------------------------------------------------


def test_create_list_and_patch_tax_rates(api):
    response = api.post(
        RATES,
        {"display_name": "NYC", "percentage": "8.875", "inclusive": False, "country": "us", "state": "ny"},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["id"].startswith("txr_") and body["object"] == "tax_rate"
    assert (body["percentage"], body["country"], body["state"], body["inclusive"], body["active"]) == (
        "8.875",
        "US",
        "NY",
        False,
        True,
    )
    assert "tax_rate.created" in events(body["id"])
    vat = api.post(RATES, {"display_name": "VAT", "percentage": 19, "inclusive": True, "country": "DE"}, format="json")
    assert vat.status_code == 201 and vat.json()["state"] is None

    assert len(api.get(RATES).json()["data"]) == 2
    assert [r["id"] for r in api.get(RATES, {"country": "us"}).json()["data"]] == [body["id"]]
    assert [r["id"] for r in api.get(RATES, {"state": "NY"}).json()["data"]] == [body["id"]]
    assert api.get(f"{RATES}/{body['id']}").json()["display_name"] == "NYC"

    patched = api.patch(f"{RATES}/{body['id']}", {"display_name": "New York City", "active": False}, format="json")
    assert patched.status_code == 200
    assert (patched.json()["display_name"], patched.json()["active"], patched.json()["percentage"]) == (
        "New York City",
        False,
        "8.875",
    )
    assert [r["id"] for r in api.get(RATES, {"active": "false"}).json()["data"]] == [body["id"]]
    assert "tax_rate.updated" in events(body["id"])
    # The percentage is what invoices were taxed at: it never changes.
    immutable = api.patch(f"{RATES}/{body['id']}", {"percentage": "9"}, format="json")
    assert immutable.status_code == 400 and immutable.json()["error"]["param"] == "percentage"
    assert TaxRate.objects.get(pk=body["id"]).percentage == Decimal("8.875")
    assert api.get(f"{RATES}/txr_nope").status_code == 404


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"percentage": "101"}, "percentage"),
        ({"percentage": "-1"}, "percentage"),
        ({"percentage": "8.87501"}, "percentage"),
        ({"percentage": 8.5}, None),
        ({"country": "XX"}, "country"),
        ({"country": ""}, "country"),
        ({"display_name": ""}, "display_name"),
        ({"display_name": None}, "display_name"),
        ({"inclusive": "sometimes"}, "inclusive"),
    ],
)
def test_tax_rate_validation(api, body, param):
    payload = {"display_name": "VAT", "percentage": "19", "country": "DE", **body}
    response = api.post(RATES, payload, format="json")
    if param is None:  # a JSON number is accepted as the decimal it spells
        assert response.status_code == 201 and response.json()["percentage"] == "8.5"
        return
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not TaxRate.objects.exists()


def test_tax_rate_scopes(make_client):
    body = {"display_name": "VAT", "percentage": "19", "country": "DE"}
    assert make_client("billing:read").post(RATES, body, format="json").status_code == 403
    assert make_client("billing:read").get(RATES).status_code == 200
    assert make_client("billing:write").post(RATES, body, format="json").status_code == 201
