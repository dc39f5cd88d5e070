"""Money owed to and by customers: balances, credit grants, payment methods, intents, refunds, and the
record of every collection attempt.

Ledgers are append-only: a balance is the sum of its transactions and a grant's remaining amount is its
amount minus its burns; the cached `CustomerBalance.balance` is only ever changed in the same
transaction that appends the entry it sums (and `billing_audit` checks it).
"""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from billing_site.ids import PublicIdField, TimestampedModel


class CustomerBalance(models.Model):
    """A customer's balance in one currency. Positive: we owe the customer (credit to spend on invoices)."""

    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="balances")
    currency = models.CharField(max_length=3)
    balance = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "currency"], name="customer_balance_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.currency} {self.balance}"


class BalanceTransaction(models.Model):
    """One entry of a balance's ledger (append-only). `amount` > 0 credits the customer, < 0 debits."""

    class Type(models.TextChoices):
        ADJUSTMENT = "adjustment"
        CREDIT_NOTE = "credit_note"
        INVOICE_PAYMENT = "invoice_payment"  # balance spent on an invoice (negative)
        INVOICE_CREDIT = "invoice_credit"  # an invoice whose total was negative (positive)
        REFUND = "refund"
        REVERSAL = "reversal"
        # A provider payment that succeeded after its invoice was settled another way (or voided): what the
        # invoice could not take is owed to the customer (positive, once per payment intent).
        OVERPAYMENT = "overpayment"
        # A credit note's refund that the provider failed: the money came back to us and is still owed to
        # the customer (positive, once per refund).
        REFUND_FAILED = "refund_failed"

    id = PublicIdField("cbt")
    balance = models.ForeignKey(CustomerBalance, on_delete=models.PROTECT, related_name="transactions")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=20, choices=Type.choices)
    amount = models.BigIntegerField()
    ending_balance = models.BigIntegerField()
    description = models.CharField(max_length=500, blank=True)
    invoice = models.ForeignKey("invoicing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    credit_note = models.ForeignKey(
        "payments.CreditNote", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    payment_intent = models.ForeignKey(
        "payments.PaymentIntent", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    refund = models.ForeignKey("payments.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="balance_transaction_non_zero"),
            # An invoice's negative total is credited once, whatever retries happen.
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(type="invoice_credit"), name="balance_invoice_credit_once"
            ),
            # A payment's unapplied money and a failed refund are credited once, however often the provider's
            # events about them arrive (webhook redeliveries, resync, the resolver racing a webhook).
            models.UniqueConstraint(
                fields=["payment_intent"], condition=Q(type="overpayment"), name="balance_overpayment_once"
            ),
            models.UniqueConstraint(
                fields=["refund"], condition=Q(type="refund_failed"), name="balance_refund_failed_once"
            ),
            models.CheckConstraint(
                condition=~Q(type="overpayment") | Q(payment_intent__isnull=False, amount__gt=0),
                name="balance_overpayment_names_its_payment",
            ),
            models.CheckConstraint(
                condition=~Q(type="refund_failed") | Q(refund__isnull=False, amount__gt=0),
                name="balance_refund_failed_names_its_refund",
            ),
        ]
        indexes = [models.Index(fields=["customer", "-id"], name="balance_txn_customer_idx")]

    def __str__(self) -> str:
        return f"{self.type} {self.amount} -> {self.ending_balance}"


class CreditGrant(TimestampedModel):
    """Prepaid or promotional credit. Burned lowest `priority` first, then soonest expiry (none last),
    then oldest; only on the lines it is eligible for (its meters or prices; empty means every line)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        EXPIRED = "expired"
        VOIDED = "voided"

    id = PublicIdField("cg")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_grants")
    name = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    priority = models.PositiveSmallIntegerField(default=50)
    effective_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    eligible_meters = models.JSONField(default=list, blank=True)
    eligible_prices = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    voided_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_grant_amount_positive"),
            models.CheckConstraint(
                condition=Q(expires_at__isnull=True) | Q(expires_at__gt=F("effective_at")),
                name="credit_grant_expires_after_effective",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "currency"], condition=Q(status="active"), name="credit_grant_live_idx"),
            # The expiry job's scan.
            models.Index(fields=["expires_at"], condition=Q(status="active"), name="credit_grant_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency}"


class CreditBurn(models.Model):
    """Credit spent from a grant (append-only); a negative burn gives credit back (a voided invoice)."""

    grant = models.ForeignKey(CreditGrant, on_delete=models.PROTECT, related_name="burns")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="+")
    invoice_line = models.ForeignKey(
        "invoicing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.BigIntegerField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="credit_burn_non_zero")]

    def __str__(self) -> str:
        return f"{self.grant_id} {self.amount}"


class PaymentMethod(TimestampedModel):
    id = PublicIdField("pm")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="payment_methods")
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=255)
    type = models.CharField(max_length=20, default="card")
    brand = models.CharField(max_length=30, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    detached_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["customer"],
                condition=Q(is_default=True, detached_at__isnull=True),
                name="payment_method_one_default",
            ),
            # A Stripe payment method is recorded once, whether our attach or its webhook comes first (the
            # sandbox reuses one ref per test card, so it is not covered).
            models.UniqueConstraint(
                fields=["customer", "provider_ref"],
                condition=Q(provider="stripe", detached_at__isnull=True),
                name="payment_method_stripe_ref_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.brand} •••• {self.last4} ({self.id})"


class SetupIntent(TimestampedModel):
    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method"
        REQUIRES_CONFIRMATION = "requires_confirmation"
        REQUIRES_ACTION = "requires_action"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        CANCELED = "canceled"

    id = PublicIdField("seti")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    payment_method = models.ForeignKey(PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    token = models.CharField(max_length=100, blank=True, help_text="The provider token being set up.")
    usage = models.CharField(max_length=12, default="off_session")
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.REQUIRES_PAYMENT_METHOD)
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=255, blank=True)
    last_error = models.JSONField(null=True, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class PaymentIntent(TimestampedModel):
    class Status(models.TextChoices):
        REQUIRES_PAYMENT_METHOD = "requires_payment_method"
        REQUIRES_CONFIRMATION = "requires_confirmation"
        REQUIRES_ACTION = "requires_action"
        PROCESSING = "processing"
        REQUIRES_CAPTURE = "requires_capture"
        SUCCEEDED = "succeeded"
        CANCELED = "canceled"
        UNKNOWN = "unknown"  # the provider's answer was lost; a job reads the provider to settle it

    # A payment that may still move money: at most one of these per invoice (partial unique index).
    IN_FLIGHT = ("requires_confirmation", "requires_action", "processing", "requires_capture", "unknown")

    id = PublicIdField("pi")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey("invoicing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    capture_method = models.CharField(max_length=10, default="automatic")
    payment_method = models.ForeignKey(PaymentMethod, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=30, choices=Status.choices, default=Status.REQUIRES_PAYMENT_METHOD)
    amount_capturable = models.BigIntegerField(default=0)
    amount_received = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=255, blank=True)
    # Sent with every provider call that can move money, and stored before the call: a retry after a
    # crash reuses it, so the provider returns the first result instead of charging again.
    idempotency_key = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.JSONField(null=True, blank=True)
    # While requires_action: what the customer must do (the provider's `next_action`); null otherwise.
    next_action = models.JSONField(null=True, blank=True)
    # The provider's client secret of the current attempt: lets the customer's browser (Stripe.js) finish
    # an on-session payment. Shown to the API (like Stripe's); never logged.
    client_secret = models.CharField(max_length=255, blank=True)
    description = models.CharField(max_length=500, blank=True)
    canceled_at = models.DateTimeField(null=True, blank=True)
    cancellation_reason = models.CharField(max_length=100, blank=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="payment_intent_amount_positive"),
            models.CheckConstraint(
                condition=Q(amount_received__lte=F("amount")) & Q(amount_refunded__lte=F("amount_received")),
                name="payment_intent_amounts_consistent",
            ),
            models.UniqueConstraint(
                fields=["invoice"],
                condition=Q(
                    status__in=["requires_confirmation", "requires_action", "processing", "requires_capture", "unknown"]
                ),
                name="payment_intent_one_in_flight_per_invoice",
            ),
        ]
        indexes = [
            # The resolver's scan of payments whose outcome was lost.
            models.Index(fields=["updated_at"], condition=Q(status="unknown"), name="payment_intent_unknown_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} ({self.status})"


class Refund(TimestampedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate"
        FRAUDULENT = "fraudulent"
        REQUESTED_BY_CUSTOMER = "requested_by_customer"

    id = PublicIdField("re")
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="refunds")
    invoice = models.ForeignKey("invoicing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    credit_note = models.ForeignKey(
        "payments.CreditNote", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=30, choices=Reason.choices, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    provider_ref = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(max_length=100, blank=True)
    last_error = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            # One row per provider refund: a refund made at the provider (its dashboard) is recorded once,
            # whichever of its events (charge.refunded, refund.created, refund.updated) comes first.
            models.UniqueConstraint(
                fields=["payment_intent", "provider_ref"],
                condition=~Q(provider_ref=""),
                name="refund_provider_ref_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} ({self.status})"


class Dispute(TimestampedModel):
    """A cardholder's dispute (chargeback or inquiry) of a payment, as the provider reports it through its
    webhooks. A lost dispute is money returned to the cardholder: `amount_lost` (the disputed amount) is
    set when it closes lost, and counts with the payment's refunds against what it received
    (`billing_audit`). The invoice the payment paid stays paid: whether to bill the customer again is
    the operator's call."""

    class Status(models.TextChoices):
        WARNING_NEEDS_RESPONSE = "warning_needs_response"
        WARNING_UNDER_REVIEW = "warning_under_review"
        WARNING_CLOSED = "warning_closed"
        NEEDS_RESPONSE = "needs_response"
        UNDER_REVIEW = "under_review"
        WON = "won"
        LOST = "lost"
        PREVENTED = "prevented"

    # Final at the provider: nothing reported afterwards changes them.
    CLOSED = ("warning_closed", "won", "lost", "prevented")

    id = PublicIdField("dp")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    payment_intent = models.ForeignKey(PaymentIntent, on_delete=models.PROTECT, related_name="disputes")
    invoice = models.ForeignKey("invoicing.Invoice", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=20)
    provider_ref = models.CharField(max_length=255)
    provider_charge_ref = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=30, choices=Status.choices)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    provider_created_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    amount_lost = models.BigIntegerField(default=0, help_text="Returned to the cardholder (a lost dispute).")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="dispute_amount_positive"),
            models.UniqueConstraint(fields=["provider", "provider_ref"], name="dispute_provider_ref_once"),
            # A lost dispute returned exactly its amount; any other returned nothing.
            models.CheckConstraint(
                condition=Q(status="lost", amount_lost=F("amount")) | (~Q(status="lost") & Q(amount_lost=0)),
                name="dispute_lost_amount",
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(status__in=["warning_closed", "won", "lost", "prevented"]),
                name="dispute_closed_only_when_final",
            ),
        ]
        indexes = [models.Index(fields=["customer", "-id"], name="dispute_customer_idx")]

    def __str__(self) -> str:
        return f"{self.id} {self.amount} {self.currency} ({self.status})"


class CollectionAttempt(models.Model):
    """One run of the waterfall on an invoice: what credits, balance and the provider each paid."""

    class Trigger(models.TextChoices):
        API = "api"
        JOB = "job"
        DUNNING = "dunning"
        PAYMENT_METHOD = "payment_method"

    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="collection_attempts")
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    success = models.BooleanField(default=False)
    credit_used = models.BigIntegerField(default=0)
    balance_used = models.BigIntegerField(default=0)
    provider_used = models.BigIntegerField(default=0)
    amount_charged = models.BigIntegerField(default=0)
    provider_ref = models.CharField(max_length=255, blank=True)
    payment_intent = models.ForeignKey(PaymentIntent, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.invoice_id} {'ok' if self.success else 'failed'}"


class SandboxPayment(models.Model):
    """What the sandbox processor "holds" (as a real provider would): one row per payment, setup or refund
    it was asked for, keyed by the caller's idempotency key. Living in the database, it is seen by every
    process and job, a repeated call with the same key returns the first result without acting again,
    and tests can count charges exactly. Never used by the stripe processor."""

    class Kind(models.TextChoices):
        PAYMENT = "payment"
        SETUP = "setup"
        REFUND = "refund"

    ref = models.CharField(max_length=64, unique=True)
    idempotency_key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    card = models.CharField(max_length=40, help_text="The test card (token name), e.g. visa.")
    customer_ref = models.CharField(max_length=255, blank=True)
    payment_ref = models.CharField(max_length=64, blank=True, help_text="Refunds: the refunded payment.")
    amount = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    capture_method = models.CharField(max_length=10, blank=True)
    status = models.CharField(max_length=20)
    amount_capturable = models.BigIntegerField(default=0)
    amount_received = models.BigIntegerField(default=0)
    amount_refunded = models.BigIntegerField(default=0)
    error_code = models.CharField(max_length=50, blank=True)
    decline_code = models.CharField(max_length=50, blank=True)
    error_message = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_received__lte=F("amount")) & Q(amount_refunded__lte=F("amount_received")),
                name="sandbox_payment_amounts_consistent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} {self.amount} ({self.status})"


class CreditNote(TimestampedModel):
    """Money given back against a finalized invoice. Its total is split between what it takes off the
    invoice's amount still due (open invoices), credit to the customer's balance, a refund, and money
    returned outside the system. Numbers come from the gapless `credit_note` sequence."""

    class Status(models.TextChoices):
        ISSUED = "issued"
        VOID = "void"

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate"
        FRAUDULENT = "fraudulent"
        ORDER_CHANGE = "order_change"
        PRODUCT_UNSATISFACTORY = "product_unsatisfactory"

    id = PublicIdField("cn")
    number = models.CharField(max_length=40, unique=True)
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="credit_notes")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="credit_notes")
    currency = models.CharField(max_length=3)
    amount = models.BigIntegerField()
    invoice_amount = models.BigIntegerField(default=0, help_text="Taken off the open invoice's amount due.")
    credit_amount = models.BigIntegerField(default=0, help_text="Credited to the customer's balance.")
    refund_amount = models.BigIntegerField(default=0, help_text="Refunded to the payment method.")
    out_of_band_amount = models.BigIntegerField(default=0, help_text="Returned outside this system.")
    # The tax credited with the lines (inclusive and exclusive; only exclusive tax is added to `amount`),
    # and per rate: [{"tax_rate": "txr_...", "amount": 15380, "inclusive": false}].
    tax = models.BigIntegerField(default=0, help_text="Tax credited with the lines (every rate).")
    taxes = models.JSONField(default=list, blank=True)
    reason = models.CharField(max_length=30, choices=Reason.choices, blank=True)
    memo = models.CharField(max_length=1000, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ISSUED)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_amount_positive"),
            models.CheckConstraint(
                condition=Q(
                    amount=F("invoice_amount") + F("credit_amount") + F("refund_amount") + F("out_of_band_amount")
                ),
                name="credit_note_split_adds_up",
            ),
            models.CheckConstraint(
                condition=Q(
                    invoice_amount__gte=0, credit_amount__gte=0, refund_amount__gte=0, out_of_band_amount__gte=0
                ),
                name="credit_note_parts_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.amount}"


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(
        "invoicing.InvoiceLine", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    description = models.CharField(max_length=500)
    quantity = models.DecimalField(max_digits=38, decimal_places=12, null=True, blank=True)
    # What is credited of the invoice line's own amount (exclusive tax comes on top, as on the invoice).
    amount = models.BigIntegerField()
    # The line's tax credited with it, per rate: [{"tax_rate": "txr_...", "amount": 15380, "inclusive": false}].
    taxes = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(amount__gt=0), name="credit_note_line_amount_positive")]

    def __str__(self) -> str:
        return f"{self.description} {self.amount}"
