"""Hosted invoice links, portal sessions, and the submissions of their forms.

Tokens are never stored: only their SHA-256 (`token_hash`), so a copy of the database opens no page. A
hosted link's token is an HMAC of the link's id and nonce under SECRET_KEY (the API can show the same URL
again without storing it); a portal session's token is random and shown once, when it is created.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from billing_site.ids import PublicIdField


class HostedInvoiceLink(models.Model):
    """The URL of one finalized invoice's page. At most one live (not revoked) link per invoice; revoking it
    closes the page, regenerating revokes it and makes a new one (a new URL)."""

    id = PublicIdField("hil")
    invoice = models.ForeignKey("invoicing.Invoice", on_delete=models.PROTECT, related_name="hosted_links")
    nonce = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["invoice"], condition=Q(revoked_at__isnull=True), name="hosted_link_one_live_per_invoice"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.invoice_id}{', revoked' if self.revoked_at else ''})"


class PortalSession(models.Model):
    """A short-lived bearer URL to one customer's portal (like Stripe's billing portal sessions)."""

    id = PublicIdField("bps")
    customer = models.ForeignKey("customers.Customer", on_delete=models.PROTECT, related_name="+")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="portal_session_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.customer_id})"


class PortalSubmission(models.Model):
    """One row per submitted form (the nonce the page rendered into it): a double click, a reload or a
    retried POST finds the row and gets the first submission's result instead of paying or adding twice."""

    key = models.CharField(max_length=200, primary_key=True)
    object_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return self.key
