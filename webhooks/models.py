from __future__ import annotations

from django.db import models

from billing_site.ids import PublicIdField


class BillingEvent(models.Model):
    """The outbox: one row per thing that happened, written in the same transaction as the change.

    Append-only. Delivery to webhook endpoints reads from here (a later issue), so an event exists if and
    only if its change committed. `customer_id` is a plain column, not a foreign key: this app sits below
    `customers` in the import order, and events must outlive anything they mention.
    """

    id = PublicIdField("bev")
    type = models.CharField(max_length=100)
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=40)
    customer_id = models.CharField(max_length=40, blank=True, default="")
    data = models.JSONField()
    previous_attributes = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # "what happened to this customer", newest first
            models.Index(fields=["customer_id", "-id"], name="billingevent_customer_idx"),
            # "what happened to this object"
            models.Index(fields=["object_id"], name="billingevent_object_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.object_id}"
