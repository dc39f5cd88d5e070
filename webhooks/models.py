from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField, TimestampedModel


class BillingEvent(models.Model):
    """The outbox: one row per thing that happened, written in the same transaction as the change.

    Append-only: what happened (type, object, data) never changes. The one column written later is
    `dispatched_at`, the fan-out's bookkeeping: NULL until the fan-out task has made this event's deliveries
    (see `webhooks.delivery.events_dispatch`). So an event exists if and only if its change committed, and an
    event nobody has fanned out yet is found by a partial index however it was written (`event_emit` or a
    bulk insert). `customer_id` is a plain column, not a foreign key: this app sits below `customers` in the
    import order, and events must outlive anything they mention.
    """

    id = PublicIdField("bev")
    type = models.CharField(max_length=100)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=40)
    customer_id = models.CharField(max_length=40, blank=True, default="")
    data = models.JSONField()
    previous_attributes = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # "what happened to this customer", newest first
            models.Index(fields=["customer_id", "-id"], name="billingevent_customer_idx"),
            # "what happened to this object"
            models.Index(fields=["object_id"], name="billingevent_object_idx"),
            # GET /events?type=..., newest first
            models.Index(fields=["type", "-id"], name="billingevent_type_idx"),
            # the fan-out's to-do list: events not yet turned into deliveries, oldest first
            models.Index(fields=["id"], condition=Q(dispatched_at__isnull=True), name="billingevent_undispatched_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id}"


class EventPayload(models.Model):
    """The exact body sent for an event (the envelope with the object rendered by its API serializer).

    Rendered once, when the event is first fanned out to an endpoint, so every endpoint and every retry
    gets the same bytes and the same signature input, and `GET /events/{id}` shows what was delivered.
    """

    event = models.OneToOneField(BillingEvent, on_delete=models.PROTECT, primary_key=True, related_name="payload")
    body = models.TextField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"payload of {self.event_id}"


class WebhookEndpoint(TimestampedModel):
    """An operator's URL that receives signed events.

    The signing secret is kept as it is (we must sign with it) but leaves the service only twice: in the
    response that creates the endpoint and in the response of `rotate-secret`. After a rotation the old
    secret keeps signing beside the new one until `previous_secret_expires_at`, so a consumer can switch
    without losing a delivery. Deleting is soft: deliveries and their attempts stay as history.
    """

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = PublicIdField("we")
    url = models.CharField(max_length=2048)
    description = models.CharField(max_length=500, blank=True)
    enabled_events = models.JSONField(default=list, help_text='Event types, "noun.*" prefixes, or ["*"].')
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ENABLED)
    disabled_reason = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    secret = models.CharField(max_length=100, editable=False)
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    # The first failed attempt since the last success; the endpoint is disabled once this is old enough.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(previous_secret="", previous_secret_expires_at__isnull=True)
                | (~Q(previous_secret="") & Q(previous_secret_expires_at__isnull=False)),
                name="webhookendpoint_previous_secret_has_expiry",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["enabled", "disabled"]), name="webhookendpoint_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.id})"


class WebhookDelivery(models.Model):
    """One event to one endpoint: the to-do list of the delivery task, and the record of what happened.

    At most one per (event, endpoint), by constraint: fanning out twice, a resend and a redelivery all reuse
    the row. `pending` with `next_attempt_at` is waiting for a send; a sender claims the row by writing its
    `claim_token` and a lease (compare-and-set), so two workers never send it at once, and a worker that died
    mid-send leaves a lease that expires and the sweep picks the row up again: nothing committed is lost.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    id = PublicIdField("wd")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.ForeignKey(BillingEvent, on_delete=models.PROTECT, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    # Failed attempts since the delivery was last queued (a redelivery starts the retry schedule again).
    failures_in_row = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhookdelivery_event_endpoint_unique"),
            models.CheckConstraint(
                condition=(Q(status="pending") & Q(next_attempt_at__isnull=False))
                | (~Q(status="pending") & Q(next_attempt_at__isnull=True)),
                name="webhookdelivery_pending_has_next_attempt",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="webhookdelivery_status_valid"
            ),
        ]
        indexes = [
            # the sweep: pending deliveries that are due
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="webhookdelivery_due_idx"),
            # an endpoint's deliveries, newest first (API list, admin inline)
            models.Index(fields=["endpoint", "-id"], name="webhookdelivery_endpoint_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery, whatever its outcome. Append-only."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 4 KiB of the response body.")
    succeeded = models.BooleanField()
    retryable = models.BooleanField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhookattempt_delivery_number_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}"


class ProviderEvent(models.Model):
    """An event a payment provider sent us (or that `provider_resync` read from it), stored once.

    The unique (provider, provider_event_id) makes a redelivery, a resync of an event we already have, and
    two deliveries racing each other all land on the one row. Processing runs later, in a task, through the
    handler registered for (provider, type) (`webhooks.inbound`); a type nobody handles is `ignored`.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        PROCESSED = "processed"
        IGNORED = "ignored"
        FAILED = "failed"

    class Source(models.TextChoices):
        WEBHOOK = "webhook"
        RESYNC = "resync"

    provider = models.CharField(max_length=32)
    provider_event_id = models.CharField(max_length=255)
    type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=255, blank=True, help_text="data.object.id of the event.")
    livemode = models.BooleanField(default=False)
    api_version = models.CharField(max_length=40, blank=True)
    provider_created_at = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.WEBHOOK)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    result = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    received_at = models.DateTimeField()
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "provider_event_id"], name="providerevent_once_per_provider"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "processing", "processed", "ignored", "failed"]),
                name="providerevent_status_valid",
            ),
        ]
        indexes = [
            # the sweep: events waiting to be (re)processed
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "processing"]),
                name="providerevent_todo_idx",
            ),
            # handlers asking "what else happened to this object", newest first
            models.Index(fields=["provider", "object_id", "-provider_created_at"], name="providerevent_object_idx"),
            models.Index(fields=["-received_at"], name="providerevent_received_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.type} {self.provider_event_id} ({self.status})"
