"""Long-running commands: a progress bar on a terminal, none otherwise, and a final summary either way."""

from __future__ import annotations

import io
import re

import orjson
import pytest
from django.core.management import call_command

from billing_site.progress import Summary, is_tty, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    assert list(progress_bar(range(3), stream=tty, desc="things")) == [0, 1, 2]
    assert list(progress_bar(range(3), stream=pipe, desc="things")) == [0, 1, 2]
    assert "things:" in tty.getvalue() and "/3 [" in tty.getvalue()
    assert pipe.getvalue() == ""
    assert is_tty(Terminal()) and not is_tty(io.StringIO())


def test_summary_line():
    assert re.fullmatch(r"audit: 9 checks, 0 problems in \d+\.\d s", Summary("audit").line(checks=9, problems=0))


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
    assert re.search(r"load_demo_data: 3 customers created, created catalog in \d+\.\d s", out.getvalue())
    again = io.StringIO()
    call_command("load_demo_data", stdout=again, stderr=io.StringIO())
    assert re.search(r"load_demo_data: 0 customers created, already there catalog", again.getvalue())


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
