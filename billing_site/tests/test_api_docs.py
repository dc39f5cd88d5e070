"""Issue 14, "an API that documents itself": the generated OpenAPI schema is walked and every operation
must have its own summary and description (no base-class docstring leaking), one tag, its 4xx responses
documented with the error envelope, and examples that validate against their schemas."""

from __future__ import annotations

import copy
import inspect
import json
from collections import Counter
from typing import Any

import jsonschema
import pytest
from rest_framework.test import APIClient

from billing_site.api import ApiView, InputSerializer

METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _base_docstrings() -> list[str]:
    docs = [inspect.cleandoc(ApiView.__doc__ or "")]
    if InputSerializer.__doc__:
        docs.append(inspect.cleandoc(InputSerializer.__doc__))
    return [d for d in docs if d]


def test_no_description_is_a_base_class_docstring(schema):
    bases = _base_docstrings()
    leaking = [
        f"{method} {path}"
        for method, path, operation in _operations(schema)
        if any(base in operation.get("description", "") for base in bases)
    ]
    assert leaking == []
    components = [
        name
        for name, component in schema["components"]["schemas"].items()
        if any(base in component.get("description", "") for base in bases)
    ]
    assert components == []


def test_every_operation_has_one_tag_and_its_own_summary_and_description(schema):
    operations = _operations(schema)
    assert len(operations) >= 100
    for method, path, operation in operations:
        assert len(operation.get("tags", [])) == 1, f"{method} {path}"
        assert operation.get("summary"), f"{method} {path}"
        assert operation.get("description", "").startswith(operation["summary"]), f"{method} {path}"
        assert "Tenant-bound tokens" in operation["description"], f"{method} {path}"
    scoped = [op for _, _, op in operations if "Scope: `" in op["description"]]
    assert len(scoped) >= len(operations) - 5  # every ApiView names the scope it needs
    for what in ("summary", "description"):
        repeated = [text for text, n in Counter(op[what] for _, _, op in operations).items() if n > 1]
        assert repeated == [], what


def test_operations_are_grouped_by_resource(schema):
    tags = {operation["tags"][0] for _, _, operation in _operations(schema)}
    assert {"Customers", "Invoices", "Prices", "Subscriptions", "Payment intents", "Usage events"} <= tags
    by_path = {path: operation["tags"][0] for _, path, operation in _operations(schema)}
    assert by_path["/api/v1/invoices/{invoice_id}/pay"] == "Invoices"
    assert by_path["/api/v1/customers/{customer_id}/balance"] == "Balances"


def test_every_4xx_response_is_the_error_envelope(schema):
    missing = []
    for method, path, operation in _operations(schema):
        statuses = [status for status in operation["responses"] if status.startswith("4")]
        if not {"400", "401", "403", "429"} <= set(statuses):
            missing.append(f"{method} {path}: documents only {statuses}")
        for status in statuses:
            content = operation["responses"][status].get("content", {}).get("application/json", {})
            if content.get("schema", {}).get("$ref") != ERROR_REF:
                missing.append(f"{method} {path} {status}")
    assert missing == []
    envelope = schema["components"]["schemas"]["Error"]
    assert envelope["required"] == ["error"]


# --- Examples --------------------------------------------------------------------------------------


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: `nullable: true` becomes a null alternative."""
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out or "allOf" in out or "oneOf" in out:
            inner = {k: v for k, v in out.items() if k not in ("type",)}
            out = {"anyOf": [inner, {"type": "null"}]}
    return out


_components: dict[int, Any] = {}


def _validator(schema: dict[str, Any], target: dict[str, Any]) -> jsonschema.Validator:
    if id(schema) not in _components:
        _components[id(schema)] = _json_schema(copy.deepcopy(schema["components"]))
    wrapped = {**_json_schema(target), "components": _components[id(schema)]}
    return jsonschema.Draft202012Validator(wrapped)


def _examples(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], Any]]:
    found = []
    for method, path, operation in _operations(schema):
        media = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        for name, example in media.get("examples", {}).items():
            found.append((f"{method} {path} request {name}", media["schema"], example["value"]))
        for status, response in operation["responses"].items():
            media = response.get("content", {}).get("application/json", {})
            for name, example in media.get("examples", {}).items():
                found.append((f"{method} {path} {status} {name}", media["schema"], example["value"]))
    return found


def test_every_example_validates_against_its_schema(schema):
    examples = _examples(schema)
    assert len(examples) >= 100  # the error envelope's example on every operation, and the hand-written ones
    invalid = []
    for where, target, value in examples:
        errors = sorted(_validator(schema, target).iter_errors(value), key=str)
        if errors:
            invalid.append(f"{where}: {errors[0].message}")
    assert invalid == []


def test_the_validation_itself_refuses_a_bad_example(schema):
    target = schema["paths"]["/api/v1/prices"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert list(_validator(schema, target).iter_errors({"type": "product", "duration": {"amount": "x"}}))


def test_the_price_example_is_a_sensible_monthly_price(schema):
    media = schema["paths"]["/api/v1/prices"]["post"]["requestBody"]["content"]["application/json"]
    example = next(iter(media["examples"].values()))["value"]
    assert example["duration"] == {"amount": 1, "unit": "month"}
    assert example["amount"] == {"model": "fixed", "currency": "usd", "unit": "2000"}


@pytest.mark.django_db
def test_the_price_example_is_accepted_by_the_api(schema, api):
    media = schema["paths"]["/api/v1/prices"]["post"]["requestBody"]["content"]["application/json"]
    example = dict(next(iter(media["examples"].values()))["value"])
    product = api.post("/api/v1/products", {"name": "Pro"}, format="json").json()
    example["product"] = product["id"]
    response = api.post("/api/v1/prices", example, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "$20.00 / month"
