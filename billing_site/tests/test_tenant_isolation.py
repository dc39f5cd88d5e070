"""Tenant isolation on every endpoint of the OpenAPI schema.

The test walks the schema served at /api/schema/, so a new endpoint is covered the day it is added.
Tenant A's token (scope `admin`, so scopes never hide the answer) calls every operation with tenant B's
ids, and each operation must answer as its view declares (`ApiView.tenant_access`):
- TENANT_SCOPED: B's objects are 404 (lists: none of B's ids in the answer, even when filtered for B),
  while the same call with A's ids succeeds (so "404 for everything" cannot pass);
- OPERATORS_ONLY: 403 `operator_only`;
- undeclared: refused with 403 `tenant_scope_unsupported`, and reported here: every operation declares.
At the end, everything an operator can read of tenant B is byte for byte what it was before the walk.

The world is built through the public API only (this module is in the core: it imports no app). When an
app adds an endpoint, it declares its tenant_access, adds its objects to `world` (ids keyed by the path
parameter's name) and, for writes that need a valid body to get past validation, an entry in BODIES.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.urls import resolve
from rest_framework.test import APIClient

from billing_site.tenancy import OPERATORS_ONLY, TENANT_SCOPED

pytestmark = pytest.mark.django_db

TENANT_CLAIM = "custom:tenantId"
METHODS = ("get", "post", "put", "patch", "delete")
# Query parameters that select a customer: a list endpoint is also called with B's value in each.
CUSTOMER_QUERY_PARAMS = {"customer": "customer_id", "customer_id": "customer_id", "external_id": "external_id"}

# Path parameters that name the operator's shared catalog (the same meter for every tenant), not a tenant's
# object: a scoped operation whose path names only these is checked through its customer query parameter
# instead (another tenant's customer refused with 400 or 404, its own answered 200).
SHARED_PATH_PARAMS = frozenset({"meter_id"})

# Bodies that pass validation, so that a scoped write is refused for tenancy and not for its input.
BODIES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "customers_update": lambda other: {"name": "written by another tenant"},
    "customer_users_create": lambda other: {"email": "intruder@example.com", "name": "intruder"},
    "users_update": lambda other: {"name": "written by another tenant"},
    "payment_methods_create": lambda other: {"customer": other["customer_id"], "token": "tok_visa"},
    "setup_intents_create": lambda other: {"customer": other["customer_id"], "token": "tok_visa"},
    "events_ingest": lambda other: {"customer": other["customer_id"], "meter": "calls", "idempotency_key": "x"},
    "billing_events_ingest": lambda other: [{"TenantID": other["external_id"], "ProductCode": "calls", "Quantity": 1}],
    "subscriptions_cancel": lambda other: {"at_period_end": True},
}


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith("/api/v1/")
    ]


def _path_params(path: str) -> list[str]:
    return re.findall(r"{([^}]+)}", path)


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"{([^}]+)}", lambda m: ids.get(m.group(1), f"x_{m.group(1)}"), path)


def _view_access(url: str, method: str) -> str | None:
    view_class = resolve(url).func.view_class
    return view_class.tenant_access.get(method)


def _call(client: APIClient, method: str, url: str, body: dict[str, Any] | None = None, **query: str) -> Any:
    if method in ("GET", "DELETE") and not body:
        return getattr(client, method.lower())(url, query or None)
    return getattr(client, method.lower())(url, body if body is not None else {}, format="json")


def _text(response: Any) -> str:
    """A JSON answer's text; a PDF's bytes say nothing about whose it is (its status does)."""
    if response.get("Content-Type", "").startswith("application/json"):
        return response.content.decode()
    return ""


def _shows(response: Any, *identifiers: str) -> bool:
    """Whether the answer is about the tenant's own objects (it names one of them)."""
    if not response.get("Content-Type", "").startswith("application/json"):
        return True
    return any(identifier in _text(response) for identifier in identifiers)


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.content
    return response.json()


def _first(api: APIClient, url: str, **query: str) -> str:
    rows = _ok(api.get(url, query), 200)["data"]
    assert rows, f"{url} {query}: nothing to put in the test world"
    return rows[-1]["id"]


@pytest.fixture
def world(api: APIClient) -> dict[str, dict[str, str]]:
    """Two tenants and their objects, made by an operator through the API; ids by path-parameter name.
    Each tenant has a paid subscription invoice (charged to its card), a refund and a credit note on it,
    a credit grant, a pending invoice item and a setup intent; the catalog (a meter) is shared."""
    product = _ok(api.post("/api/v1/products", {"name": "Plan"}, format="json"))
    price = _ok(
        api.post(
            "/api/v1/prices",
            {
                "type": "product",
                "product": product["id"],
                "duration": {"amount": 1, "unit": "month"},
                "amount": {"model": "fixed", "currency": "usd", "unit": "2000"},
            },
            format="json",
        )
    )
    meter = _ok(api.post("/api/v1/meters", {"code": "calls", "name": "Calls", "aggregation": "count"}, format="json"))
    out: dict[str, dict[str, str]] = {}
    for name in ("a", "b"):
        external_id = f"tenant-{name}"
        customer = _ok(
            api.post(
                "/api/v1/customers",
                {
                    "external_id": external_id,
                    "name": f"Tenant {name}",
                    "email": f"{name}@example.com",
                    "currency": "usd",
                },
                format="json",
            )
        )
        cid = customer["id"]
        user = _ok(
            api.post(
                f"/api/v1/customers/{cid}/users",
                {"email": f"user@{name}.example", "external_id": f"u-{name}"},
                format="json",
            )
        )
        method = _ok(
            api.post("/api/v1/payment-methods", {"customer": cid, "token": "tok_visa", "default": True}, format="json")
        )
        subscription = _ok(
            api.post("/api/v1/subscriptions", {"customer": cid, "items": [{"price": price["id"]}]}, format="json")
        )
        invoice_id = subscription["latest_invoice"]
        paid = _ok(api.post(f"/api/v1/invoices/{invoice_id}/pay", {}, format="json"), 200)
        assert paid["invoice"]["status"] == "paid", paid
        refund = _ok(api.post("/api/v1/refunds", {"invoice": invoice_id, "amount": 100}, format="json"))
        note = _ok(
            api.post(
                "/api/v1/credit-notes", {"invoice": invoice_id, "amount": 100, "credit_amount": 100}, format="json"
            )
        )
        grant = _ok(api.post("/api/v1/credit-grants", {"customer": cid, "amount": 500}, format="json"))
        item = _ok(
            api.post("/api/v1/invoice-items", {"customer": cid, "amount": 250, "description": "Setup"}, format="json")
        )
        setup = _ok(api.post("/api/v1/setup-intents", {"customer": cid}, format="json"))
        _ok(
            api.post(
                "/api/v1/events", {"customer": cid, "meter": "calls", "idempotency_key": f"e-{name}"}, format="json"
            ),
            200,
        )
        out[name] = {
            "external_id": external_id,
            "customer_id": cid,
            "user_id": user["id"],
            "payment_method_id": method["id"],
            "subscription_id": subscription["id"],
            "invoice_id": invoice_id,
            "payment_intent_id": _first(api, "/api/v1/payment-intents", customer=cid),
            "refund_id": refund["id"],
            "credit_note_id": note["id"],
            "credit_grant_id": grant["id"],
            "invoice_item_id": item["id"],
            "setup_intent_id": setup["id"],
            "event_id": _first(api, "/api/v1/events", customer=cid),
            "meter_id": meter["id"],
        }
    return out


def _identifiers(tenant: dict[str, str]) -> set[str]:
    """What is the tenant's own (the shared catalog is everyone's)."""
    return {value for key, value in tenant.items() if key not in SHARED_PATH_PARAMS}


def _snapshot(api: APIClient, operations: list[tuple[str, str, dict[str, Any]]], ids: dict[str, str]) -> dict:
    """Everything an operator can read about a tenant: every GET whose path parameters the tenant fills."""
    seen = {}
    for method, path, _ in operations:
        if method != "GET" or not _path_params(path) or not all(p in ids for p in _path_params(path)):
            continue
        response = api.get(_fill(path, ids))
        seen[path] = (response.status_code, response.content)
    seen["list"] = api.get("/api/v1/customers", {"external_id": ids["external_id"]}).content
    return seen


def _walk(
    oidc: Any, world: dict[str, dict[str, str]], operations: list[tuple[str, str, dict[str, Any]]]
) -> Iterator[str]:
    """Yields a description of every operation that breaks isolation (none, when all is well)."""
    mine, other = world["a"], world["b"]
    client = oidc.client(sub="user-of-a", scope="admin", **{TENANT_CLAIM: mine["external_id"]})
    for method, path, operation in operations:
        name = f"{method} {path}"
        url = _fill(path, other)
        access = _view_access(url, method)
        if access is None:
            # Fails closed (403 tenant_scope_unsupported), but every operation must say how it treats a tenant.
            yield f"{name}: declares no tenant_access for {method}"
            continue
        body = BODIES.get(operation["operationId"], lambda o: {})(other)
        response = _call(client, method, url, body)
        if access == OPERATORS_ONLY:
            if response.status_code != 403 or response.json()["error"]["code"] != "operator_only":
                yield f"{name}: operators only, but answered {response.status_code}"
            continue
        if access != TENANT_SCOPED:
            yield f"{name}: unknown tenant_access {access!r}"
            continue
        params = _path_params(path)
        missing = [p for p in params if p not in other]
        if missing:
            yield f"{name}: scoped, but the test world has no object for {missing}: add one to `world`"
            continue
        if params and set(params) <= SHARED_PATH_PARAMS:
            yield from _walk_shared(client, name, path, operation, mine, other)
            continue
        if params:
            if response.status_code != 404:
                yield f"{name}: another tenant's object answered {response.status_code}, not 404"
            if method == "GET":
                control = client.get(_fill(path, mine))
                if control.status_code != 200 or not _shows(control, *_identifiers(mine)):
                    yield f"{name}: the tenant's own object answered {control.status_code}"
            continue
        if method != "GET":
            if operation["operationId"] not in BODIES:
                yield f"{name}: a scoped write without path ids needs a body naming the other tenant in BODIES"
            elif response.status_code not in (400, 404):
                yield f"{name}: a write naming another tenant answered {response.status_code}"
            continue
        answers = [response]
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter["name"] in CUSTOMER_QUERY_PARAMS:
                answers.append(client.get(url, {parameter["name"]: other[CUSTOMER_QUERY_PARAMS[parameter["name"]]]}))
        for answer in answers:
            text = answer.content.decode()
            leaked = [i for i in _identifiers(other) if i in text]
            if answer.status_code != 200 or leaked:
                yield f"{name}: list answered {answer.status_code} and showed {leaked}"
        if not _shows(response, *_identifiers(mine)):
            yield f"{name}: the list does not show the tenant's own objects"


def _walk_shared(
    client: APIClient, name: str, path: str, operation: dict[str, Any], mine: dict[str, str], other: dict[str, str]
) -> Iterator[str]:
    """A scoped read of a shared catalog object (a meter's usage): another tenant's customer, named in the
    query, is refused; the tenant's own answer shows its own customer."""
    url = _fill(path, mine)
    query = {"start": "2020-01-01T00:00:00Z", "end": "2020-12-31T00:00:00Z"}
    names = {p["name"] for p in operation.get("parameters", []) if p.get("in") == "query"}
    for parameter, key in CUSTOMER_QUERY_PARAMS.items():
        if parameter in names:
            answer = client.get(url, {**query, parameter: other[key]})
            echoed = other[key]  # "No such customer: <the id sent>" reveals nothing
            if answer.status_code not in (400, 404) or any(i in _text(answer) for i in _identifiers(other) - {echoed}):
                yield f"{name}: ?{parameter}= of another tenant answered {answer.status_code}"
    control = client.get(url, query)
    if control.status_code != 200 or mine["customer_id"] not in _text(control):
        yield f"{name}: the tenant's own answer was {control.status_code} {control.content[:200]!r}"


def test_no_endpoint_lets_a_tenant_read_or_write_another_tenants_objects(oidc, world, api):
    operations = _operations()
    assert len(operations) >= 80  # the whole API, not a part of it
    before = _snapshot(api, operations, world["b"])
    problems = list(_walk(oidc, world, operations))
    assert problems == [], "\n".join(problems)
    assert _snapshot(api, operations, world["b"]) == before


def test_every_operation_declares_its_tenant_access():
    """Nothing is left refusing tenants only because nobody decided (403 tenant_scope_unsupported)."""
    undeclared = [
        f"{method} {path}" for method, path, _ in _operations() if _view_access(_fill(path, {}), method) is None
    ]
    assert undeclared == []


def test_the_customers_endpoints_are_all_scoped_or_operator_only():
    """What issue 13 scoped first: every operation of the customers app declares its tenant access."""
    customers_paths = ("/api/v1/customers", "/api/v1/users", "/api/v1/control-plane")
    mine = [
        f"{method} {path}"
        for method, path, _ in _operations()
        if path.startswith(customers_paths)
        and not path.endswith(("/balance", "/balance-transactions", "/portal-sessions", "/entitlements"))
    ]
    assert len(mine) == 15
    assert all(_view_access(_fill(path.split(" ", 1)[1], {}), path.split(" ", 1)[0]) for path in mine)


def test_the_walk_finds_a_leak(oidc, world, api, monkeypatch):
    """The harness itself: a view that forgets to hand the tenant to its selectors is caught, for its
    reads and for its writes."""
    view_class = resolve("/api/v1/customers/x").func.view_class
    monkeypatch.setattr(view_class, "tenant_scope", property(lambda self: None))
    operations = _operations()
    before = _snapshot(api, operations, world["b"])
    problems = list(_walk(oidc, world, operations))
    assert problems == [
        "GET /api/v1/customers/{customer_id}: another tenant's object answered 200, not 404",
        "PATCH /api/v1/customers/{customer_id}: another tenant's object answered 200, not 404",
    ]
    assert _snapshot(api, operations, world["b"]) != before


def test_a_tenant_sends_usage_for_itself_only(oidc, world, api):
    mine, other = world["a"], world["b"]
    client = oidc.client(sub="user-of-a", scope="admin", **{TENANT_CLAIM: mine["external_id"]})
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(hours=2)).isoformat(), "end": (now + timedelta(hours=2)).isoformat()}

    def used(tenant: dict[str, str]) -> str:
        answer = api.get(f"/api/v1/usage/{tenant['meter_id']}", {"customer": tenant["customer_id"], **window})
        assert answer.status_code == 200, answer.content
        return answer.json()["data"][0]["value"]

    before = used(mine), used(other)
    unnamed = client.post("/api/v1/events", {"meter": "calls", "idempotency_key": "mine-1"}, format="json")
    assert unnamed.status_code == 200 and unnamed.json()["created"] == 1, unnamed.content
    batch = {
        "events": [
            {"meter": "calls", "idempotency_key": "mine-2"},
            {"customer": other["customer_id"], "meter": "calls", "idempotency_key": "theirs-1"},
        ]
    }
    refused = client.post("/api/v1/events", batch, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "events[1].customer"
    assert (used(mine), used(other)) == (str(int(before[0]) + 1), before[1])  # nothing of the refused batch
    own = client.get(f"/api/v1/usage/{mine['meter_id']}", window)
    assert own.status_code == 200 and own.json()["customer"] == mine["customer_id"]
