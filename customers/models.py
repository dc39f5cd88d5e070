from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField, TimestampedModel


class TestClock(TimestampedModel):
    """A clock of its own for the customers attached to it at creation (Stripe's test clocks).

    Its customers live at `frozen_time`, not at the wall clock: the real-time jobs never touch them, and
    advancing the clock (`payments.clocks.test_clock_advance`) runs every per-customer job for them at each
    due moment up to the new time. Forward only; `target_frozen_time` is where an advance is heading while
    `status` is `advancing`. Deleting is soft, as for customers.
    """

    class Status(models.TextChoices):
        READY = "ready"
        ADVANCING = "advancing"
        INTERNAL_FAILURE = "internal_failure"

    id = PublicIdField("clock")
    name = models.CharField(max_length=300, blank=True)
    frozen_time = models.DateTimeField()
    target_frozen_time = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.READY)
    failure = models.CharField(max_length=500, blank=True)
    deletes_after = models.DateTimeField()
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["ready", "advancing", "internal_failure"]), name="test_clock_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(target_frozen_time__isnull=True) | Q(target_frozen_time__gt=models.F("frozen_time")),
                name="test_clock_target_ahead",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.id} @ {self.frozen_time.isoformat()}"


class Customer(TimestampedModel):
    """A tenant of the operator's SaaS: whoever is billed.

    Deleting is soft (status `deleted`, `deleted_at`): invoices, usage and payments keep pointing here.
    `external_id` is unique across every row, deleted ones included, so a tenant id can never silently
    start billing into somebody else's history; `customer_purge` frees it deliberately.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        DEACTIVATED = "deactivated"
        DELETED = "deleted"

    class TaxExempt(models.TextChoices):
        NONE = "none"
        EXEMPT = "exempt"
        REVERSE = "reverse"

    class BillingMode(models.TextChoices):
        NATIVE = "native"  # we invoice and collect
        PROVIDER = "provider"  # we meter and push usage to the provider (Stripe Billing), which invoices

    id = PublicIdField("cus")
    external_id = models.CharField(max_length=255, unique=True, help_text="The control plane's tenant id.")
    name = models.CharField(max_length=255, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, lower case; blank until set.")
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    address_city = models.CharField(max_length=255, blank=True)
    address_state = models.CharField(max_length=255, blank=True)
    address_postal_code = models.CharField(max_length=64, blank=True)
    address_country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2, upper case.")
    tax_exempt = models.CharField(max_length=10, choices=TaxExempt.choices, default=TaxExempt.NONE)
    invoice_consolidation = models.BooleanField(
        default=False,
        help_text="Bill the customer's subscriptions that renew together (same currency, collection method and "
        "period) on one invoice.",
    )
    timezone = models.CharField(
        max_length=64,
        blank=True,
        help_text="IANA time zone of the customer's calendar: its subscriptions' periods start at local midnight "
        "and its documents show local dates. Blank: UTC, periods anchored at the subscription's start instant.",
    )
    metadata = models.JSONField(default=dict, blank=True)
    provider = models.CharField(max_length=32, blank=True, help_text="Payment provider, e.g. stripe.")
    provider_customer_id = models.CharField(max_length=255, blank=True)
    billing_mode = models.CharField(max_length=10, choices=BillingMode.choices, default=BillingMode.NATIVE)
    billing_mode_since = models.DateTimeField(
        null=True, blank=True, help_text="When the current billing mode took effect (null: native since creation)."
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    deleted_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)
    # Whether the customer has an active usage alert on a meter: kept by metering's alert services, read by
    # ingestion in the query that resolves the batch's customers, so a batch of customers without alerts
    # costs no alert query at all.
    has_usage_alerts = models.BooleanField(default=False, editable=False)
    # Set at creation only: the customer lives on this clock's time (test mode), never the wall clock's.
    test_clock = models.ForeignKey(TestClock, null=True, blank=True, on_delete=models.PROTECT, related_name="customers")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status="deleted", deleted_at__isnull=False)
                | (~Q(status="deleted") & Q(deleted_at__isnull=True)),
                name="customer_deleted_at_matches_status",
            ),
            models.CheckConstraint(
                condition=Q(purged_at__isnull=True) | Q(status="deleted"),
                name="customer_purged_only_when_deleted",
            ),
            models.CheckConstraint(
                condition=Q(billing_mode__in=["native", "provider"]), name="customer_billing_mode_valid"
            ),
            # One provider customer maps to one of ours, so provider webhooks resolve unambiguously.
            models.UniqueConstraint(
                fields=["provider", "provider_customer_id"],
                condition=~Q(provider_customer_id=""),
                name="customer_provider_id_unique",
            ),
        ]
        indexes = [
            # Admin and API search by e-mail.
            models.Index(fields=["email"], name="customer_email_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name or self.external_id} ({self.id})"

    @property
    def address(self) -> dict[str, str]:
        return {
            "line1": self.address_line1,
            "line2": self.address_line2,
            "city": self.address_city,
            "state": self.address_state,
            "postal_code": self.address_postal_code,
            "country": self.address_country,
        }


class BillingModeChange(models.Model):
    """Append-only history of a customer's billing mode: from `effective_at` on, the customer is billed
    in `mode`. Usage pushed to a provider is exactly the usage of the provider intervals this history
    describes, so a switch in the middle of a slice pushes only the part after (or before) it."""

    class Source(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        CONTROL_PLANE = "control_plane"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="billing_mode_changes")
    mode = models.CharField(max_length=10, choices=Customer.BillingMode.choices)
    effective_at = models.DateTimeField()
    source = models.CharField(max_length=20, choices=Source.choices)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(mode__in=["native", "provider"]), name="billing_mode_change_mode_valid"),
        ]
        indexes = [
            # A customer's history in order (the usage push reads it per customer).
            models.Index(fields=["customer", "effective_at"], name="billing_mode_change_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} -> {self.mode} at {self.effective_at:%Y-%m-%d %H:%M:%S}"


class CustomerUser(TimestampedModel):
    """A user who belongs to a customer (the control plane's tenant user)."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    id = PublicIdField("usr")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="users")
    external_id = models.CharField(max_length=255, blank=True, help_text="The control plane's user id.")
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ENABLED)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A live user's external id is unique within its customer; a deleted user's id may come back.
            models.UniqueConstraint(
                fields=["customer", "external_id"],
                condition=Q(deleted_at__isnull=True) & ~Q(external_id=""),
                name="customer_user_external_id_unique",
            ),
            models.UniqueConstraint(
                fields=["customer", "email"],
                condition=Q(deleted_at__isnull=True),
                name="customer_user_email_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.id})"


class ControlPlaneEvent(models.Model):
    """Every event the control plane sent, stored as received, with what we did about it.

    `dedup_key` holds the envelope id on the first delivery only; a redelivery of the same id is stored
    with `dedup_key` empty and status `duplicate`. The unique constraint makes "applied once" hold even
    when two deliveries race.
    """

    class Status(models.TextChoices):
        APPLIED = "applied"
        NO_EFFECT = "no_effect"
        DUPLICATE = "duplicate"
        IGNORED = "ignored"
        REJECTED = "rejected"

    envelope_id = models.CharField(max_length=255, blank=True, db_index=True)
    dedup_key = models.CharField(max_length=255, null=True, blank=True, unique=True)
    detail_type = models.CharField(max_length=100, blank=True)
    source = models.CharField(max_length=255, blank=True)
    tenant_id = models.CharField(max_length=255, blank=True, db_index=True)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices)
    result = models.CharField(max_length=500, blank=True)
    # What the handlers did beyond `result`: the subscription a tier created, the invoices offboarding
    # issued, and for ingestUsage the counts and every rejected usage event with its code.
    details = models.JSONField(default=dict, blank=True)
    customer = models.ForeignKey(Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["-received_at"], name="cp_event_received_idx")]

    def __str__(self) -> str:
        return f"{self.detail_type} {self.tenant_id} ({self.status})"


class ControlPlaneAnswer(models.Model):
    """The answer to one control-plane event (`sbt_aws_billingSuccess` / `sbt_aws_billingFailure`), put on
    the EventBridge bus `SBT_EVENT_BUS_NAME`.

    This table is the answers' outbox: a row is written in the transaction that applies (or rejects) the
    event, so an answer exists exactly when the event's effect committed, and at most one per event (the
    one-to-one key). Sending happens after the commit, outside any transaction, claimed by compare-and-set
    of `claim_token` with a lease; a failed send is retried on `RETRY_SCHEDULE`. Delivery is at least once
    (EventBridge has no idempotency key): consumers de-duplicate on `detail.answerId`.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"

    id = PublicIdField("cpa")
    event = models.OneToOneField(ControlPlaneEvent, on_delete=models.PROTECT, related_name="answer")
    source = models.CharField(max_length=255)
    detail_type = models.CharField(max_length=100)
    detail = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempt_count = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # The id EventBridge gave the entry it accepted.
    bus_event_id = models.CharField(max_length=255, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False), name="cp_answer_sent_has_sent_at"
            ),
        ]
        indexes = [
            # The sweep's query: pending answers whose (next) attempt is due.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="cp_answer_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.detail_type} for event {self.event_id} ({self.status})"
