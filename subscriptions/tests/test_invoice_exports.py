"""CSV exports of invoices and invoice lines (issue 16): exact content, streamed, filtered, bad input."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import connection
from django.db.models.query import QuerySet
from django.test.utils import CaptureQueriesContext

from customers.tests.factories import CustomerFactory
from invoicing.models import Invoice
from subscriptions.tests.support import T0, fixed_price, subscribe

pytestmark = pytest.mark.django_db


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def _iso(value) -> str:
    return value.isoformat().replace("+00:00", "Z") if value else ""


@pytest.fixture
def invoices():
    usd = CustomerFactory(currency="usd", external_id="acme")
    jpy = CustomerFactory(currency="jpy", external_id="tokyo")
    _, first = subscribe(usd, fixed_price("1250", currency="usd"), now=T0)
    _, second = subscribe(jpy, fixed_price("1500", currency="jpy"), now=T0)
    return first, second


def test_invoices_export_is_exact(api, invoices):
    first, second = invoices
    rows = _csv(api.get("/api/v1/exports/invoices.csv"))
    assert [r["id"] for r in rows] == sorted([first.id, second.id])
    row = next(r for r in rows if r["id"] == first.id)
    first.refresh_from_db()
    assert row == {
        "id": first.id,
        "number": first.number,
        "customer": first.customer_id,
        "customer_external_id": "acme",
        "subscription": first.subscription_id,
        "status": "open",
        "billing_reason": "subscription_create",
        "collection_method": "charge_automatically",
        "currency": "usd",
        "subtotal": "1250",
        "discount": "0",
        "tax": "0",
        "total": "1250",
        "amount_due": "1250",
        "amount_paid": "0",
        "amount_remaining": "1250",
        "total_formatted": "$12.50",
        "amount_due_formatted": "$12.50",
        "period_start": _iso(first.period_start),
        "period_end": _iso(first.period_end),
        "due_date": _iso(first.due_date),
        "finalized_at": _iso(first.finalized_at),
        "paid_at": "",
        "created_at": _iso(first.created_at),
    }
    yen = next(r for r in rows if r["id"] == second.id)
    assert (yen["currency"], yen["total"], yen["total_formatted"]) == ("jpy", "1500", "¥1,500")


def test_invoice_lines_export_is_exact(api, invoices):
    first, _ = invoices
    rows = _csv(api.get("/api/v1/exports/invoice-lines.csv", {"customer": first.customer_id}))
    line = first.lines.get()
    assert rows == [
        {
            "id": line.id,
            "invoice": first.id,
            "invoice_number": first.number,
            "invoice_status": "open",
            "customer": first.customer_id,
            "position": str(line.position),
            "kind": line.kind,
            "description": line.description,
            "price": line.price_id,
            "meter": "",
            "quantity": "1",
            "unit_amount": "1250",
            "currency": "usd",
            "amount": "1250",
            "discount_amount": "0",
            "amount_formatted": "$12.50",
            "period_start": _iso(line.period_start),
            "period_end": _iso(line.period_end),
        }
    ]


def test_filters(api, invoices):
    first, second = invoices
    assert [r["id"] for r in _csv(api.get("/api/v1/exports/invoices.csv", {"currency": "JPY"}))] == [second.id]
    assert [r["id"] for r in _csv(api.get("/api/v1/exports/invoices.csv", {"customer": first.customer_id}))] == [
        first.id
    ]
    Invoice.objects.filter(pk=first.pk).update(status="void")
    assert [r["id"] for r in _csv(api.get("/api/v1/exports/invoices.csv", {"status": "void"}))] == [first.id]
    later = _csv(api.get("/api/v1/exports/invoices.csv", {"created_gte": "2100-01-01T00:00:00Z"}))
    assert later == []
    assert [r["invoice"] for r in _csv(api.get("/api/v1/exports/invoice-lines.csv", {"currency": "jpy"}))] == [
        second.id
    ]


def test_bad_input_is_a_400_in_the_json_envelope(api, invoices):
    for params in ({"colour": "red"}, {"status": "sideways"}, {"created_gte": "yesterday"}):
        response = api.get("/api/v1/exports/invoices.csv", params, HTTP_ACCEPT="text/csv")
        assert response.status_code == 400, params
        assert response["Content-Type"].startswith("application/json")
        assert response.json()["error"]["param"] == next(iter(params))
    lines = api.get("/api/v1/exports/invoice-lines.csv", {"nope": "1"})
    assert lines.status_code == 400 and lines.json()["error"]["param"] == "nope"


def test_scopes_and_tenants(make_client, oidc, invoices):
    assert make_client("customers:read").get("/api/v1/exports/invoices.csv").status_code == 403
    assert make_client("billing:read").get("/api/v1/exports/invoice-lines.csv").status_code == 200
    tenant = oidc.client(scope="admin", **{"custom:tenantId": "acme"})
    refused = tenant.get("/api/v1/exports/invoices.csv")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "operator_only"


def test_streamed_through_one_cursor_without_a_row_limit(api, monkeypatch):
    """Rows leave as they are read: the header goes out before any query, the rows come from
    QuerySet.iterator() (a cursor read in chunks, never a list of every row), and all of them come."""
    customer = CustomerFactory(currency="usd")
    Invoice.objects.bulk_create(
        [
            Invoice(customer=customer, currency="usd", billing_reason="manual", total=i, subtotal=i)
            for i in range(1, 2501)
        ]
    )
    chunks = []
    real_iterator = QuerySet.iterator

    def spy(self, chunk_size=None):
        chunks.append(chunk_size)
        return real_iterator(self, chunk_size=chunk_size)

    monkeypatch.setattr(QuerySet, "iterator", spy)
    response = api.get("/api/v1/exports/invoices.csv")
    assert response.streaming
    content = iter(response.streaming_content)
    with CaptureQueriesContext(connection) as queries:
        header = next(content)
    assert header.startswith(b"id,number,customer,") and len(queries) == 0
    first = next(content)
    assert chunks == [2000]
    rest = list(content)
    assert len(rest) + 1 == 2500
    assert first.decode().split(",")[12] == "1"  # total of the oldest invoice


def test_admin_exports_the_selection(admin_client, invoices):
    first, second = invoices
    response = admin_client.post("/admin/invoicing/invoice/", {"action": "export_csv", "_selected_action": [first.id]})
    rows = _csv(response)
    assert [(r["id"], r["total"], r["total_formatted"]) for r in rows] == [(first.id, "1250", "$12.50")]
    lines = _csv(
        admin_client.post(
            "/admin/invoicing/invoice/", {"action": "export_lines_csv", "_selected_action": [first.id, second.id]}
        )
    )
    assert sorted(r["invoice"] for r in lines) == sorted([first.id, second.id])
