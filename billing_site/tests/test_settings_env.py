"""Settings fail at start, naming the variable, when the environment is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from billing_site.env import EnvError, env_bool, env_int, parse_database_url

ROOT = Path(__file__).resolve().parents[2]


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import billing_site.settings"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_secret_key_is_required_outside_debug():
    result = _import_settings(DEBUG="false", ALLOWED_HOSTS="example.com")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_debug_runs_without_secret_key():
    result = _import_settings(DEBUG="true")
    assert result.returncode == 0, result.stderr


def test_bad_boolean_names_the_variable():
    result = _import_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_bad_database_url_names_the_variable():
    result = _import_settings(DEBUG="true", DATABASE_URL="mysql://x/y")
    assert result.returncode != 0
    assert "DATABASE_URL must start with postgres:// or sqlite:///" in result.stderr


def test_bad_integer_names_the_variable():
    result = _import_settings(DEBUG="true", MAX_REQUEST_BODY_BYTES="lots")
    assert result.returncode != 0
    assert "MAX_REQUEST_BODY_BYTES must be an integer" in result.stderr


def test_bad_log_level_names_the_variable():
    result = _import_settings(DEBUG="true", LOG_LEVEL="LOUD")
    assert result.returncode != 0
    assert "LOG_LEVEL must be one of" in result.stderr


def test_parse_database_url():
    pg = parse_database_url("DATABASE_URL", "postgres://u:p%40ss@db.internal:6543/billing?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "u",
        "p@ss",
        "db.internal",
        "6543",
        "billing",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert parse_database_url("DATABASE_URL", "sqlite:///var/x.db")["NAME"] == "var/x.db"
    with pytest.raises(EnvError, match="DATABASE_URL"):
        parse_database_url("DATABASE_URL", "postgres://host/")


def test_env_helpers(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    assert env_bool("X_BOOL", False) is True
    monkeypatch.setenv("X_INT", "5")
    with pytest.raises(EnvError, match="X_INT must be >= 10"):
        env_int("X_INT", 20, minimum=10)


def test_bad_rate_limit_names_the_variable():
    result = _import_settings(DEBUG="true", API_RATE_LIMIT="lots/minute")
    assert result.returncode != 0
    assert "API_RATE_LIMIT must look like 6000/minute" in result.stderr


@pytest.mark.parametrize("value", ["soon", "-1", "100000"])
def test_bad_api_key_cache_seconds_names_the_variable(value):
    result = _import_settings(DEBUG="true", API_KEY_CACHE_SECONDS=value)
    assert result.returncode != 0
    assert "API_KEY_CACHE_SECONDS" in result.stderr
