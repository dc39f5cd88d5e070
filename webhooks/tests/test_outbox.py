from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from webhooks.models import BillingEvent
from webhooks.services import OutboxMisuse, event_emit

pytestmark = pytest.mark.django_db(transaction=True)


def test_emit_outside_a_transaction_is_refused():
    with pytest.raises(OutboxMisuse):
        event_emit(type="x.happened", object_type="x", object_id="x_1", data={}, now=timezone.now())
    assert not BillingEvent.objects.exists()


def test_event_commits_and_rolls_back_with_the_change():
    with transaction.atomic():
        event = event_emit(type="x.happened", object_type="x", object_id="x_1", data={"a": 1}, now=timezone.now())
    assert event.id.startswith("bev_")
    with pytest.raises(RuntimeError), transaction.atomic():
        event_emit(type="x.failed", object_type="x", object_id="x_2", data={}, now=timezone.now())
        raise RuntimeError("the change failed")
    assert list(BillingEvent.objects.values_list("type", flat=True)) == ["x.happened"]
