"""How webhooks render this app's objects: with the API's own Output serializers (see webhooks.rendering)."""

from __future__ import annotations

from webhooks.rendering import queryset_renderer, renderer_register


def register() -> None:
    from metering.models import Meter
    from metering.serializers import MeterOutput

    # A deleted meter's row is gone: its events fall back to the data stored with them.
    renderer_register("meter", queryset_renderer(Meter.objects.all, lambda m: MeterOutput(m).data))
    # A cancellation is a request, not a row of its own: its events carry what was canceled.
    renderer_register("usage_cancellation", None)
    # A crossing is what the event reports (its level, value and period): the stored data, not the alert
    # as it is by the time the event is fanned out.
    renderer_register("usage_alert", None)
