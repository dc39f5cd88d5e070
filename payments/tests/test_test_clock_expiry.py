"""Test clocks expire: `deletes_after` is enforced by the `expire_test_clocks` job (the same soft delete as
`DELETE /test-clocks/{id}`, never of a clock that is advancing), advancing a clock keeps it at least
TEST_CLOCK_LIFETIME_DAYS more, and deleting an advancing clock is a 409."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import orjson
import pytest
from django.core.management import call_command
from django.utils import timezone

from billing_site.jobs import get_job, job_run, per_customer_jobs
from customers.clocks import test_clocks_expire_job as expire_job
from customers.models import Customer
from customers.models import TestClock as Clock
from payments.tests.test_test_clocks import START, _advance, _clock, _customer
from webhooks.models import BillingEvent

pytestmark = pytest.mark.django_db
DAY = timedelta(days=1)


def _events(clock_id: str) -> list[str]:
    return list(BillingEvent.objects.filter(object_id=clock_id).order_by("id").values_list("type", flat=True))


def test_the_job_deletes_expired_clocks_and_their_customers_once(api):
    expired, kept, failed = _clock(api, name="expired"), _clock(api, name="kept"), _clock(api, name="failed")
    customer = _customer(api, expired["id"])
    other = _customer(api, kept["id"], external_id="kept")
    now = timezone.now()
    Clock.objects.filter(pk=expired["id"]).update(deletes_after=now - DAY)
    Clock.objects.filter(pk=failed["id"]).update(deletes_after=now, status="internal_failure", failure="boom")

    assert expire_job(now=now) == {"deleted": 2, "skipped": 0}
    assert api.get(f"/api/v1/test-clocks/{expired['id']}").status_code == 404
    assert api.get(f"/api/v1/test-clocks/{failed['id']}").status_code == 404
    assert Customer.objects.get(pk=customer["id"]).status == Customer.Status.DELETED
    assert api.get(f"/api/v1/test-clocks/{kept['id']}").status_code == 200  # deletes_after still ahead
    assert Customer.objects.get(pk=other["id"]).status != Customer.Status.DELETED
    assert Clock.objects.get(pk=expired["id"]).deleted_at == now
    assert _events(expired["id"]) == ["test_clock.created", "test_clock.deleted"]
    # Re-run: nothing left to do, no second event.
    assert expire_job(now=now + DAY) == {"deleted": 0, "skipped": 0}
    assert _events(expired["id"]) == ["test_clock.created", "test_clock.deleted"]
    assert [c["id"] for c in api.get("/api/v1/test-clocks").json()["data"]] == [kept["id"]]


def test_an_advancing_clock_is_not_expired_until_it_is_ready(api):
    clock = _clock(api)
    now = timezone.now()
    Clock.objects.filter(pk=clock["id"]).update(
        status="advancing", target_frozen_time=START + DAY, deletes_after=now - DAY
    )
    assert expire_job(now=now) == {"deleted": 0, "skipped": 0}
    assert Clock.objects.get(pk=clock["id"]).deleted_at is None
    Clock.objects.filter(pk=clock["id"]).update(status="ready", target_frozen_time=None)
    assert expire_job(now=now) == {"deleted": 1, "skipped": 0}


def test_expiry_is_a_real_time_job_run_by_run_job(api, settings):
    job = get_job("expire_test_clocks")
    assert job.name not in {j.name for j in per_customer_jobs()}
    with pytest.raises(ValueError, match="not per customer"):
        job_run("expire_test_clocks", now=timezone.now(), clock="clock_x")
    clock = _clock(api)
    settings.TEST_CLOCKS_ENABLED = False  # expiry is cleanup: it runs in live mode too
    later = timezone.now() + timedelta(days=settings.TEST_CLOCK_LIFETIME_DAYS, hours=1)
    out = StringIO()
    call_command("run_job", "expire_test_clocks", "--now", later.isoformat(), stdout=out)
    assert orjson.loads(out.getvalue())["result"] == {"deleted": 1, "skipped": 0}
    assert Clock.objects.get(pk=clock["id"]).deleted_at is not None


def test_advancing_pushes_deletes_after_to_at_least_the_lifetime_from_now(api, settings):
    clock = _clock(api)
    soon = timezone.now() + DAY
    Clock.objects.filter(pk=clock["id"]).update(deletes_after=soon)
    before = timezone.now()
    response = _advance(api, clock["id"], START + 3 * DAY)
    assert response.status_code == 200, response.json()
    lifetime = timedelta(days=settings.TEST_CLOCK_LIFETIME_DAYS)
    pushed = Clock.objects.get(pk=clock["id"]).deletes_after
    assert before + lifetime <= pushed <= timezone.now() + lifetime
    shown = api.get(f"/api/v1/test-clocks/{clock['id']}").json()["deletes_after"]
    assert shown.startswith(pushed.strftime("%Y-%m-%dT%H:%M:%S"))
    assert expire_job(now=soon + DAY) == {"deleted": 0, "skipped": 0}  # its old date no longer deletes it
    # Never shortened: a clock kept longer keeps its date.
    far = timezone.now() + 3 * lifetime
    Clock.objects.filter(pk=clock["id"]).update(deletes_after=far)
    assert _advance(api, clock["id"], START + 5 * DAY).status_code == 200
    assert Clock.objects.get(pk=clock["id"]).deletes_after == far


def test_deleting_an_advancing_clock_is_a_409_and_changes_nothing(api):
    clock = _clock(api)
    customer = _customer(api, clock["id"])
    Clock.objects.filter(pk=clock["id"]).update(status="advancing", target_frozen_time=START + DAY)
    response = api.delete(f"/api/v1/test-clocks/{clock['id']}")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "test_clock_advancing" and error["type"] == "conflict"
    assert "advancing" in error["message"] and clock["id"] in error["message"]
    assert Clock.objects.get(pk=clock["id"]).deleted_at is None
    assert Customer.objects.get(pk=customer["id"]).status != Customer.Status.DELETED
    assert _events(clock["id"]) == ["test_clock.created"]
    # Once ready, the same request deletes it; again is a 404.
    Clock.objects.filter(pk=clock["id"]).update(status="ready", target_frozen_time=None)
    assert api.delete(f"/api/v1/test-clocks/{clock['id']}").status_code == 204
    again = api.delete(f"/api/v1/test-clocks/{clock['id']}")
    assert again.status_code == 404 and again.json()["error"]["param"] == "id"
    assert api.delete("/api/v1/test-clocks/clock_missing").status_code == 404
