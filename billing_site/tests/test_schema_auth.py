"""The OpenAPI schema documents both ways in (API keys and JWT bearer tokens), as alternatives."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _schema() -> dict:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def test_both_schemes_are_documented_and_every_operation_accepts_either():
    schema = _schema()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "http", "scheme": "bearer", "description": schemes["ApiKey"]["description"]}
    assert schemes["JwtBearer"]["type"] == "http"
    assert schemes["JwtBearer"]["scheme"] == "bearer"
    assert schemes["JwtBearer"]["bearerFormat"] == "JWT"
    assert "Oidc" not in schemes
    operations = [op for item in schema["paths"].values() for op in item.values() if isinstance(op, dict)]
    assert operations
    for operation in operations:
        assert operation["security"] == [{"ApiKey": []}, {"JwtBearer": []}], operation["operationId"]


def test_oidc_discovery_adds_an_openid_connect_scheme(settings):
    settings.OIDC_DISCOVERY_URL = "https://idp.example/pool/.well-known/openid-configuration"
    schema = _schema()
    assert schema["components"]["securitySchemes"]["Oidc"] == {
        "type": "openIdConnect",
        "openIdConnectUrl": "https://idp.example/pool/.well-known/openid-configuration",
        "description": schema["components"]["securitySchemes"]["Oidc"]["description"],
    }
    operation = schema["paths"]["/api/v1/customers"]["get"]
    assert operation["security"] == [{"ApiKey": []}, {"JwtBearer": []}, {"Oidc": []}]


def test_schema_with_oidc_is_warning_free_and_valid(settings, tmp_path):
    settings.OIDC_DISCOVERY_URL = "https://idp.example/pool/.well-known/openid-configuration"
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "openIdConnect" in yaml.safe_load(target.read_text())["components"]["securitySchemes"]["Oidc"]["type"]


def test_swagger_ui_offers_the_schema_with_both_schemes():
    page = APIClient().get("/api/docs/")
    assert page.status_code == 200
    assert b"/api/schema/" in page.content
    assert {"ApiKey", "JwtBearer"} <= set(_schema()["components"]["securitySchemes"])
