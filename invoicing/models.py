from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from billing_site.ids import PublicIdField, TimestampedModel

AMOUNT_DIGITS = 40
AMOUNT_PLACES = 12


class TaxRate(TimestampedModel):
    """A tax rate for a country, or for one state of it. A customer's address selects every country-level
    rate of its country and every rate of its state. Rates are never deleted (invoices refer to them)."""

    id = PublicIdField("txr")
    display_name = models.CharField(max_length=100)
    description = models.CharField(max_length=255, blank=True)
    percentage = models.DecimalField(max_digits=7, decimal_places=4)
    inclusive = models.BooleanField(default=False)
    country = models.CharField(max_length=2)
    state = models.CharField(max_length=100, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(percentage__gte=0, percentage__lte=100), name="tax_rate_percentage_range"
            ),
        ]
        indexes = [models.Index(fields=["country", "state"], name="tax_rate_region_idx")]

    def __str__(self) -> str:
        return f"{self.display_name} {self.percentage}% ({self.country}{'-' + self.state if self.state else ''})"


class NumberSequence(models.Model):
    """A gapless counter (invoice numbers, credit note numbers).

    The next value is taken under a row lock in the transaction that finalizes the document, so a
    rolled-back finalization gives its number back and no two documents ever share one."""

    name = models.CharField(max_length=50, primary_key=True)
    next_value = models.PositiveBigIntegerField(default=1)

    def __str__(self) -> str:
        return f"{self.name}: next {self.next_value}"


class StoredDocument(models.Model):
    """The PDF of a finalized document (invoice, credit note, receipt) exactly as it was first rendered.

    What a customer received must never change, so the bytes are kept rather than re-rendered: a later
    change of the customer's name, the seller's settings or a template shows on new documents only. One
    per (kind, object) by constraint: two requests rendering the same document at once both try to insert,
    and the loser serves the winner's bytes. `object_id` is a plain column because credit notes and
    receipts belong to apps above this one."""

    class Kind(models.TextChoices):
        INVOICE = "invoice"
        CREDIT_NOTE = "credit_note"
        RECEIPT = "receipt"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    object_id = models.CharField(max_length=40, help_text="The public id of the invoice or credit note.")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    filename = models.CharField(max_length=100)
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    locale = models.CharField(max_length=20)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id"], name="stored_document_one_per_object"),
            models.CheckConstraint(condition=Q(size__gt=0), name="stored_document_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id} ({self.filename})"


class Invoice(TimestampedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        OPEN = "open"
        PAID = "paid"
        VOID = "void"
        UNCOLLECTIBLE = "uncollectible"

    class BillingReason(models.TextChoices):
        SUBSCRIPTION_CREATE = "subscription_create"
        SUBSCRIPTION_CYCLE = "subscription_cycle"
        SUBSCRIPTION_UPDATE = "subscription_update"
        SUBSCRIPTION_CANCEL = "subscription_cancel"
        SUBSCRIPTION_THRESHOLD = "subscription_threshold"  # progressive billing: a usage threshold crossed
        MANUAL = "manual"

    id = PublicIdField("in")
    number = models.CharField(max_length=40, null=True, blank=True, unique=True)
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="invoices")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="invoices"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.DRAFT)
    billing_reason = models.CharField(max_length=30, choices=BillingReason.choices)
    # Set on the invoice that bills a subscription's period (its first or a renewal): the unique constraint
    # below is what makes a re-run or a second renewal worker unable to bill a period twice.
    cycle_period_start = models.DateTimeField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    subtotal = models.BigIntegerField(default=0)
    discount = models.BigIntegerField(default=0)
    tax = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    credits_applied = models.BigIntegerField(default=0)
    balance_applied = models.BigIntegerField(default=0)
    credited = models.BigIntegerField(default=0, help_text="Sum of credit notes issued against this invoice.")
    amount_due = models.BigIntegerField(default=0)
    amount_paid = models.BigIntegerField(default=0)
    amount_remaining = models.BigIntegerField(default=0)
    collection_method = models.CharField(max_length=20, default="charge_automatically")
    # Payment terms of a send_invoice invoice (copied from its subscription, or given for a manual one);
    # NULL takes INVOICE_DAYS_UNTIL_DUE at finalization.
    days_until_due = models.PositiveSmallIntegerField(null=True, blank=True)
    description = models.CharField(max_length=500, blank=True, help_text="Shown to the customer (manual invoices).")
    due_date = models.DateTimeField(null=True, blank=True)
    tax_note = models.CharField(max_length=255, blank=True)
    customer_snapshot = models.JSONField(default=dict, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    marked_uncollectible_at = models.DateTimeField(null=True, blank=True)
    # Collection and dunning (payments): how many automatic attempts failed, and when the next one is due.
    attempt_count = models.PositiveIntegerField(default=0)
    next_payment_attempt = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "cycle_period_start"],
                condition=Q(cycle_period_start__isnull=False),
                name="invoice_one_per_subscription_period",
            ),
            # A number is taken at finalization only, so a draft voided before it was finalized has none
            # (taking one would leave a hole in the sequence or number a document that was never issued).
            models.CheckConstraint(
                condition=Q(status="draft") | Q(status="void", finalized_at__isnull=True) | Q(number__isnull=False),
                name="invoice_numbered_once_finalized",
            ),
            models.CheckConstraint(condition=Q(amount_due__gte=0), name="invoice_amount_due_non_negative"),
            models.CheckConstraint(
                condition=Q(amount_remaining__gte=0) & Q(amount_paid__lte=F("amount_due")),
                name="invoice_paid_within_due",
            ),
            # Credit notes never credit more than the invoice's total.
            models.CheckConstraint(
                condition=Q(credited=0) | Q(credited__lte=F("total")), name="invoice_credited_within_total"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "-id"], name="invoice_customer_idx"),
            models.Index(fields=["subscription", "-id"], name="invoice_subscription_idx"),
            # Collection and dunning scan open invoices by their next attempt.
            models.Index(fields=["next_payment_attempt"], condition=Q(status="open"), name="invoice_open_attempt_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.number or self.id} ({self.status})"


class InvoiceLine(models.Model):
    class Kind(models.TextChoices):
        FIXED = "fixed"
        USAGE = "usage"
        LATE_USAGE = "late_usage"
        PRORATION = "proration"
        DISCOUNT = "discount"
        INVOICE_ITEM = "invoice_item"  # a one-off item added by the operator (POST /invoice-items)
        MINIMUM = "minimum"  # the true-up of a minimum spend the period's lines fell short of
        PROGRESSIVE_CREDIT = "progressive_credit"  # usage of the period already billed at a threshold

    id = PublicIdField("il")
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.CharField(max_length=500)
    price = models.ForeignKey("catalog.Price", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey("metering.Meter", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    subscription_item = models.ForeignKey(
        "subscriptions.SubscriptionItem", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The subscription the line bills (a consolidated invoice bills several); null for one-off lines.
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    quantity = models.DecimalField(max_digits=38, decimal_places=12, null=True, blank=True)
    unit_amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, null=True, blank=True)
    amount = models.BigIntegerField()
    discount_amount = models.BigIntegerField(default=0, help_text="Discount allocated to this line (>= 0).")
    taxes = models.JSONField(default=list, blank=True, help_text='[{"tax_rate": "txr_…", "amount": 89}]')
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    # A credit note can credit a line up to its amount; this is what was credited so far.
    credited = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="invoice_line_position_unique"),
            models.CheckConstraint(
                condition=Q(credited=0) | Q(credited__lte=F("amount")), name="invoice_line_credited_within_amount"
            ),
        ]
        ordering = ("position",)

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class UsageWatermark(models.Model):
    """What a metered line billed: the usage of one item's period as it stood when the line was computed.

    The newest watermark of an (item, period) holds the value billed so far, across the original usage
    line and any late-usage lines after it. Renewal re-rates recent periods against it: an event that
    arrived late, or was canceled after billing, shows up as a difference and becomes a `late_usage`
    line for exactly that difference. So no event is billed twice and none is dropped.
    """

    subscription_item = models.ForeignKey("subscriptions.SubscriptionItem", on_delete=models.PROTECT, related_name="+")
    meter = models.ForeignKey("metering.Meter", on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="watermarks")
    line = models.ForeignKey(InvoiceLine, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    value = models.DecimalField(max_digits=38, decimal_places=12)
    event_count = models.BigIntegerField()
    amount_billed = models.BigIntegerField(help_text="Cumulative amount billed for this item-period.")
    computed_at = models.DateTimeField()
    superseded = models.BooleanField(default=False)

    class Meta:
        constraints = [
            # One current watermark per item and period: re-rating supersedes it in the same transaction.
            models.UniqueConstraint(
                fields=["subscription_item", "period_start"],
                condition=Q(superseded=False),
                name="usage_watermark_current_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_item_id} {self.period_start:%Y-%m-%d} value={self.value}"


class PendingInvoiceItem(models.Model):
    """A line waiting for the customer's next invoice: prorations made with `create_prorations` (they
    belong to a subscription and go on its next invoice), and one-off items an operator adds
    (`POST /invoice-items`, no subscription: they go on the customer's next manual invoice)."""

    id = PublicIdField("ii")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    subscription = models.ForeignKey(
        "subscriptions.Subscription", null=True, blank=True, on_delete=models.PROTECT, related_name="pending_items"
    )
    kind = models.CharField(max_length=20, default=InvoiceLine.Kind.PRORATION)
    currency = models.CharField(max_length=3)
    description = models.CharField(max_length=500)
    price = models.ForeignKey("catalog.Price", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    quantity = models.DecimalField(max_digits=38, decimal_places=12, null=True, blank=True)
    unit_amount = models.DecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, null=True, blank=True)
    amount = models.BigIntegerField()
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    invoice = models.ForeignKey(Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # The next invoice's pending items: a subscription's (renewal) or a customer's one-off items.
            models.Index(fields=["subscription"], condition=Q(invoice__isnull=True), name="pending_item_open_idx"),
            models.Index(
                fields=["customer", "currency"],
                condition=Q(invoice__isnull=True, subscription__isnull=True),
                name="pending_item_customer_open_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(period_start__isnull=True, period_end__isnull=True)
                | Q(period_start__isnull=False, period_end__isnull=False, period_end__gt=F("period_start")),
                name="pending_item_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.description} {self.amount}"


class InvoiceCycle(models.Model):
    """The guard of a consolidated invoice: each further subscription it bills a cycle of, once per
    (subscription, cycle_period_start), as `Invoice` guards its own subscription's cycle."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="cycles")
    subscription = models.ForeignKey("subscriptions.Subscription", on_delete=models.PROTECT, related_name="+")
    cycle_period_start = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "cycle_period_start"], name="invoice_cycle_one_per_subscription_period"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subscription_id} @ {self.cycle_period_start:%Y-%m-%d} on {self.invoice_id}"
