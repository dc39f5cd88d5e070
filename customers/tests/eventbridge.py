"""A stubbed EventBridge bus for tests: a real boto3 client with botocore's Stubber (no network), put in
place of `answers.events_client`, that records every put_events call as it was made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from django.db import connection

from customers.control_plane import answers

BUS = "sbt-event-bus"
REGION = "eu-west-1"


@dataclass
class Bus:
    stubber: Stubber
    calls: list[dict[str, Any]] = field(default_factory=list)
    # For each call: the atomic blocks of ours (not the test's own) open while it was made.
    open_transactions: list[int] = field(default_factory=list)
    _accepted: int = 0

    def accept(self, count: int = 1) -> None:
        """Queue `count` successful put_events answers."""
        for _ in range(count):
            self._accepted += 1
            self.stubber.add_response(
                "put_events",
                {"FailedEntryCount": 0, "Entries": [{"EventId": f"bus-event-{self._accepted}"}]},
                {"Entries": ANY},
            )

    def refuse_entry(self, code: str = "ThrottlingException") -> None:
        """EventBridge answers 200 but refuses the entry (FailedEntryCount 1)."""
        self.stubber.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": code, "ErrorMessage": "Rate exceeded"}]},
            {"Entries": ANY},
        )

    def fail(self, code: str = "ResourceNotFoundException") -> None:
        self.stubber.add_client_error("put_events", service_error_code=code, service_message="Event bus not found")

    def details(self) -> list[dict[str, Any]]:
        return [json.loads(call["Entries"][0]["Detail"]) for call in self.calls]

    def detail_types(self) -> list[str]:
        return [call["Entries"][0]["DetailType"] for call in self.calls]


@pytest.fixture
def bus(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:
    settings.SBT_EVENT_BUS_NAME = BUS
    settings.SBT_EVENT_BUS_REGION = REGION
    settings.SBT_EVENT_SOURCE = "sbt.control.plane"
    client = boto3.client("events", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    stubbed = Bus(stubber=Stubber(client))

    def record(params: dict[str, Any], **_: Any) -> None:
        stubbed.calls.append(params)
        ours = [block for block in connection.atomic_blocks if not getattr(block, "_from_testcase", False)]
        stubbed.open_transactions.append(len(ours))

    client.meta.events.register("provide-client-params.events.PutEvents", record)
    monkeypatch.setattr(answers, "events_client", lambda: client)
    with stubbed.stubber:
        yield stubbed
    stubbed.stubber.assert_no_pending_responses()
