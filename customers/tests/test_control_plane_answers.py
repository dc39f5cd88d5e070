"""Answers to the control plane (sbt_aws_billingSuccess / sbt_aws_billingFailure) on a stubbed EventBridge bus:
written with the event's outcome, sent once after the commit and outside any transaction, retried, never
sent twice for one event however often the event or the send is retried."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from billing_site.tasks import run_job
from customers.control_plane import answers
from customers.models import ControlPlaneAnswer, ControlPlaneEvent, Customer
from customers.tests.eventbridge import BUS
from customers.tests.factories import CustomerFactory
from customers.tests.test_control_plane import URL, envelope, send

pytestmark = pytest.mark.django_db


def deliver(api, capture, detail_type: str, detail: dict, event_id: str | None = None):
    """One delivery, with what it queued after its commit run (the answer's send task)."""
    with capture(execute=True):
        return send(api, detail_type, detail, event_id)


def test_an_applied_event_is_answered_billing_success_once_after_the_commit(
    api, bus, django_capture_on_commit_callbacks
):
    bus.accept()
    detail = {"tenantId": "t-ans", "tenantName": "Answered", "email": "a@example.com"}
    response = deliver(api, django_capture_on_commit_callbacks, "sbt_aws_onboardingRequest", detail, "eb-1")
    assert response.status_code == 202

    assert len(bus.calls) == 1
    entry = bus.calls[0]["Entries"][0]
    assert entry["EventBusName"] == BUS
    assert entry["Source"] == "sbt.control.plane"
    assert entry["DetailType"] == "sbt_aws_billingSuccess"
    customer = Customer.objects.get(external_id="t-ans")
    answer = ControlPlaneAnswer.objects.get()
    assert json.loads(entry["Detail"]) == {
        "answerId": answer.id,
        "tenantId": "t-ans",
        "requestType": "onboardingRequest",
        "requestDetailType": "sbt_aws_onboardingRequest",
        "requestId": "eb-1",
        "status": "applied",
        "customerId": customer.id,
        "details": {},
    }
    assert bus.open_transactions == [0]  # put_events ran outside every transaction of ours
    assert (answer.status, answer.bus_event_id, answer.attempt_count) == ("sent", "bus-event-1", 1)
    assert answer.event == ControlPlaneEvent.objects.get()


def test_redeliveries_and_repeated_sends_put_one_answer(api, bus, django_capture_on_commit_callbacks):
    bus.accept()
    detail = {"tenantId": "t-once"}
    for _ in range(3):  # the control plane retries the same EventBridge event
        deliver(api, django_capture_on_commit_callbacks, "onboardingRequest", detail, "eb-same")
    answer = ControlPlaneAnswer.objects.get()
    # The send task delivered again (a worker died after put_events, the broker redelivered), and the sweep:
    now = timezone.now()
    assert answers.answer_send(answer_id=answer.id, now=now) == "skipped"
    run_job("send_control_plane_answers", now.isoformat())
    assert len(bus.calls) == 1
    assert list(ControlPlaneEvent.objects.values_list("status", flat=True).order_by("id")) == [
        "applied",
        "duplicate",
        "duplicate",
    ]


def test_a_rejected_event_is_answered_billing_failure_with_the_reason(api, bus, django_capture_on_commit_callbacks):
    bus.accept()
    detail = {"tenantId": "ghost", "userId": "u-1", "email": "u@example.com"}
    response = deliver(api, django_capture_on_commit_callbacks, "sbt_aws_tenantUserCreated", detail, "eb-r")
    assert response.status_code == 404
    assert bus.detail_types() == ["sbt_aws_billingFailure"]
    sent = bus.details()[0]
    assert sent["status"] == "rejected" and sent["tenantId"] == "ghost" and sent["requestId"] == "eb-r"
    assert sent["code"] == "customer_not_found"
    assert "No customer has external_id 'ghost'" in sent["reason"]
    assert ControlPlaneEvent.objects.get().details["error"]["param"] == "detail.tenantId"


def test_a_failed_send_is_retried_on_the_schedule_until_it_is_sent(api, bus, django_capture_on_commit_callbacks):
    bus.refuse_entry()
    bus.fail()
    bus.accept()
    deliver(api, django_capture_on_commit_callbacks, "onboardingRequest", {"tenantId": "t-retry"}, "eb-x")
    answer = ControlPlaneAnswer.objects.get()
    assert (answer.status, answer.attempt_count) == ("pending", 1)
    assert answer.last_error.startswith("ThrottlingException")
    first_retry = answer.next_attempt_at
    assert first_retry == answer.created_at + answers.RETRY_SCHEDULE[0]

    # Before the retry is due the sweep leaves it alone; then it is sent again, fails, waits longer.
    assert run_job("send_control_plane_answers", (first_retry - timedelta(seconds=1)).isoformat())["due"] == 0
    run_job("send_control_plane_answers", first_retry.isoformat())
    answer.refresh_from_db()
    assert answer.attempt_count == 2 and answer.last_error.startswith("ResourceNotFoundException")
    assert answer.next_attempt_at == first_retry + answers.RETRY_SCHEDULE[1]
    run_job("send_control_plane_answers", answer.next_attempt_at.isoformat())
    answer.refresh_from_db()
    assert (answer.status, answer.attempt_count, answer.last_error) == ("sent", 3, "")
    assert len(bus.calls) == 3
    assert len({json.loads(c["Entries"][0]["Detail"])["answerId"] for c in bus.calls}) == 1  # the same answer


def test_an_answer_fails_after_the_last_retry_and_admin_can_send_it_again(api, bus, django_capture_on_commit_callbacks):
    for _ in range(len(answers.RETRY_SCHEDULE) + 1):
        bus.fail()
    deliver(api, django_capture_on_commit_callbacks, "onboardingRequest", {"tenantId": "t-fail"}, "eb-f")
    answer = ControlPlaneAnswer.objects.get()
    while answer.status == "pending":
        run_job("send_control_plane_answers", answer.next_attempt_at.isoformat())
        answer.refresh_from_db()
    assert (answer.status, answer.attempt_count, answer.next_attempt_at) == ("failed", 9, None)

    bus.accept()
    with django_capture_on_commit_callbacks(execute=True):
        answers.answer_resend(answer=answer, now=timezone.now())
    answer.refresh_from_db()
    assert answer.status == "sent"
    assert len(bus.calls) == 10


def test_two_workers_racing_for_one_answer_send_it_once(api, bus, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):  # the send task is queued, not run
        send(api, "onboardingRequest", {"tenantId": "t-race"}, "eb-race")
    answer = ControlPlaneAnswer.objects.get()
    now = timezone.now()
    token = answers._claim(answer.id, now)  # the first worker holds the lease
    assert token is not None
    assert answers.answer_send(answer_id=answer.id, now=now) == "skipped"  # the second one passes
    assert bus.calls == []
    # The first worker died: once its lease runs out the sweep sends it.
    bus.accept()
    run_job("send_control_plane_answers", (now + answers.SEND_LEASE).isoformat())
    answer.refresh_from_db()
    assert answer.status == "sent" and len(bus.calls) == 1


def test_without_a_bus_nothing_is_queued(api, settings, django_capture_on_commit_callbacks):
    settings.SBT_EVENT_BUS_NAME = None
    deliver(api, django_capture_on_commit_callbacks, "onboardingRequest", {"tenantId": "t-quiet"}, "eb-q")
    assert Customer.objects.filter(external_id="t-quiet").exists()
    assert not ControlPlaneAnswer.objects.exists()


def test_duplicates_ignored_types_and_unreadable_envelopes_are_not_answered(api, bus):
    CustomerFactory(external_id="t-ign")
    assert send(api, "tenantTierChanged", {"tenantId": "t-ign"}).json()["status"] == "ignored"
    assert api.post(URL, {"detail": {"tenantId": "t-ign"}}, format="json").status_code == 400
    assert not ControlPlaneAnswer.objects.exists()


def test_the_bus_region_comes_from_an_arn(settings):
    settings.SBT_EVENT_BUS_REGION = None
    settings.SBT_EVENT_BUS_NAME = "arn:aws:events:ap-south-1:111111111111:event-bus/sbt"
    assert answers._region() == "ap-south-1"
    settings.SBT_EVENT_BUS_REGION = "eu-central-1"
    assert answers._region() == "eu-central-1"


def test_an_answer_carries_at_most_twenty_usage_rejections(settings):
    settings.SBT_EVENT_BUS_NAME = "bus"
    rejections = [{"index": i, "code": "meter_not_found", "message": "m", "param": "p"} for i in range(50)]
    event = ControlPlaneEvent.objects.create(
        payload=envelope("ingestUsage", {}),
        status="rejected",
        details={"usage": {"created": 0, "rejected": 50, "events": [None] * 50, "rejections": rejections}},
        received_at=timezone.now(),
    )
    answer = answers.answer_queue(event=event, request_name="ingestUsage", now=timezone.now(), failure="50 rejected")
    assert answer is not None
    assert len(answer.detail["details"]["usage"]["rejections"]) == 20
    assert "events" not in answer.detail["details"]["usage"]
    assert answer.detail_type == "sbt_aws_billingFailure" and answer.detail["reason"] == "50 rejected"
