"""The final summaries (and, on a terminal, the progress bars) of the long-running commands."""

from __future__ import annotations

import io
import re

import orjson
import pytest
from django.core.management import call_command

from billing_site.tests.test_progress import Terminal


@pytest.mark.django_db
def test_billing_audit_prints_its_summary_and_a_bar_on_a_terminal():
    out, err = io.StringIO(), Terminal()
    call_command("billing_audit", stdout=out, stderr=err)
    from payments.audit import CHECKS

    assert re.search(rf"billing_audit: {len(CHECKS)} checks, 0 problems in \d+\.\d s", out.getvalue())
    assert "billing_audit:" in err.getvalue() and f"/{len(CHECKS)} [" in err.getvalue()
    quiet = io.StringIO()
    call_command("billing_audit", stdout=io.StringIO(), stderr=quiet)
    assert quiet.getvalue() == ""


@pytest.mark.django_db
def test_load_demo_data_summary():
    out = io.StringIO()
    call_command("load_demo_data", stdout=out, stderr=io.StringIO())
    assert re.search(r"load_demo_data: 3 customers created, catalog created in \d+\.\d s", out.getvalue())
    again = io.StringIO()
    call_command("load_demo_data", stdout=again, stderr=io.StringIO())
    assert re.search(r"load_demo_data: 0 customers created, catalog already there in", again.getvalue())


@pytest.mark.django_db
def test_run_job_counts_the_tasks_it_ran_and_keeps_stdout_json():
    from datetime import UTC, datetime

    from customers.tests.factories import CustomerFactory
    from payments.tests.factories import open_invoice

    now = datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    for _ in range(2):
        invoice = open_invoice(CustomerFactory(), now=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
        invoice.next_payment_attempt = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
        invoice.save(update_fields=["next_payment_attempt"])
    out, err = io.StringIO(), Terminal()
    call_command("run_job", "collect_invoices", "--now", now.isoformat(), stdout=out, stderr=err)
    assert orjson.loads(out.getvalue())["job"] == "collect_invoices"  # one JSON document, as before
    assert re.search(r"run_job collect_invoices: 2 tasks run, 0 failed in \d+\.\d s", err.getvalue())
    assert "collect_invoices:" in err.getvalue() and "task/s" in err.getvalue()  # the bar
