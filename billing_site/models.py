from __future__ import annotations

from django.db import models

from billing_site.ids import PublicIdField, TimestampedModel
from billing_site.scopes import SCOPES

__all__ = ["SCOPES", "ApiKey", "IdempotencyRecord"]


class ApiKey(TimestampedModel):
    """A secret that authenticates API calls. Only its SHA-256 and a short prefix are stored.

    Keys carry 240 random bits, so a fast hash is enough (as GitHub and Stripe do): a slow password hash
    would add nothing against brute force and would cost every request.
    """

    id = PublicIdField("key")
    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, kept to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    # The principal interface shared with JWT bearer tokens (billing_site.tokens.TokenPrincipal).
    kind = "api_key"
    # API keys are the operator's: they are never bound to one tenant.
    tenant_external_id: str | None = None

    @property
    def principal_key(self) -> str:
        """Names this caller in rate-limit counters and log lines."""
        return self.pk


class IdempotencyRecord(models.Model):
    """The stored outcome of a POST sent with an Idempotency-Key, replayed to retries of that request.

    It belongs to the API key that sent it, or, for a JWT bearer token, to the token's subject
    (`token_subject`: a hash of issuer, subject and tenant), so a retry with a refreshed token replays.
    """

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    token_subject = models.CharField(max_length=100, blank=True, default="")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and canonical body.")
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2000)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    response_content_type = models.CharField(max_length=100, blank=True)
    locked_at = models.DateTimeField()
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # The guard against two requests doing the same work: the second insert fails.
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_unique_per_api_key"),
            models.UniqueConstraint(
                fields=["token_subject", "key"],
                condition=models.Q(api_key__isnull=True),
                name="idempotency_key_unique_per_token_subject",
            ),
            models.CheckConstraint(
                condition=(models.Q(api_key__isnull=False) & models.Q(token_subject=""))
                | (models.Q(api_key__isnull=True) & ~models.Q(token_subject="")),
                name="idempotency_record_has_one_owner",
            ),
        ]
        indexes = [
            # purge_idempotency_keys deletes by age.
            models.Index(fields=["created_at"], name="idempotency_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"
