"""Read replicas: with the replica alias pointing at a second database, list endpoints and usage reads
come from it, while billing's reads, detail reads, writes and anything inside a transaction stay on the
primary. The second database is made for this test and holds different rows, so each answer shows
which database served it."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from billing_site.replicas import REPLICA, read_alias, replica_reads
from customers.models import Customer
from customers.tests.factories import CustomerFactory
from metering.selectors import usage_aggregate_many
from metering.tests.usage_support import NOW, ingest, make_meter

pytestmark = [
    pytest.mark.postgres(reason="a second PostgreSQL database"),
    pytest.mark.django_db(transaction=True, databases=["default", "replica"]),
]


def _admin_conn(settings: dict) -> psycopg.Connection:
    return psycopg.connect(
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture(scope="module")
def replica(django_db_setup, django_db_blocker):
    """Module-scoped, so the alias exists before the per-test database setup checks `databases`."""
    primary = connections.settings[DEFAULT_DB_ALIAS]
    name = f"{primary['NAME']}_replica"
    with _admin_conn(primary) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    had = REPLICA in connections.settings
    saved = connections.settings.get(REPLICA)
    connections.settings[REPLICA] = {**primary, "NAME": name, "TEST": {**primary.get("TEST", {}), "MIRROR": None}}
    try:
        with django_db_blocker.unblock():
            call_command("migrate", database=REPLICA, verbosity=0)
        yield REPLICA
    finally:
        conn = connections[REPLICA]
        conn.close()
        if hasattr(conn, "close_pool"):
            conn.close_pool()
        del connections[REPLICA]
        if had:
            connections.settings[REPLICA] = saved
        else:
            del connections.settings[REPLICA]
        with _admin_conn(primary) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def api(replica, make_client):
    return make_client("admin")


def test_lists_and_usage_read_the_replica_and_money_reads_the_primary(replica, api):
    shared = CustomerFactory(external_id="on-both")
    Customer.objects.using(replica).bulk_create(
        [Customer(**{f.attname: getattr(shared, f.attname) for f in Customer._meta.concrete_fields})]
    )
    only_primary = CustomerFactory(external_id="primary-only")
    Customer.objects.using(replica).create(external_id="replica-only", name="Replica only", currency="usd")

    # A list endpoint answers from the replica: it has not "replicated" the primary-only customer.
    listed = {c["external_id"] for c in api.get("/api/v1/customers").json()["data"]}
    assert listed == {"on-both", "replica-only"}
    # A detail read is not a list: the primary.
    assert api.get(f"/api/v1/customers/{only_primary.id}").status_code == 200

    # Usage: events ingested on the primary (a write) are not on the replica yet.
    meter = make_meter("sum")
    from metering.models import Meter

    Meter.objects.using(replica).bulk_create(
        [Meter(**{f.attname: getattr(meter, f.attname) for f in Meter._meta.concrete_fields})]
    )
    ingest(shared, meter, [(NOW - timedelta(minutes=5), "7")], now=NOW)
    window = {"customer": shared.id, "start": (NOW - timedelta(hours=1)).isoformat(), "end": NOW.isoformat()}
    data = api.get(f"/api/v1/usage/{meter.id}", window).json()["data"]
    assert [(b["value"], b["event_count"]) for b in data] == [("0", 0)]  # served by the replica
    # What billing reads (renewal, invoices) is the primary's, replica block or not.
    start, end = NOW - timedelta(hours=1), NOW
    assert usage_aggregate_many(meter=meter, customer_ids=[shared.id], start=start, end=end)[shared.id].value == 7

    # The routing rule itself: only inside replica_reads, and never inside a transaction on the primary.
    assert read_alias() == DEFAULT_DB_ALIAS
    with replica_reads():
        assert read_alias() == REPLICA
        assert Customer.objects.filter(external_id="replica-only").exists()
        with transaction.atomic():
            assert read_alias() == DEFAULT_DB_ALIAS
            assert not Customer.objects.filter(external_id="replica-only").exists()
    assert not Customer.objects.filter(external_id="replica-only").exists()
