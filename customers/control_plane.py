"""Events from the SaaS control plane (SBT-style, in an EventBridge envelope).

Each received event is stored. Each is applied once: by the envelope's `id` when present (a unique
constraint on `dedup_key`), and by effect otherwise (onboarding a tenant that exists changes nothing).
The effect and the stored row commit together, so a crash never leaves an applied event unrecorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from rest_framework import serializers

from billing_site.errors import ApiError, Conflict, InvalidRequest, NotFound
from customers.models import BillingModeChange, ControlPlaneEvent, Customer, CustomerUser
from customers.selectors import customer_get_by_external_id
from customers.services import (
    customer_create,
    customer_delete,
    customer_set_status,
    customer_user_create,
    customer_user_delete,
)

logger = logging.getLogger(__name__)

PREFIX = "sbt_aws_"
Status = ControlPlaneEvent.Status


@dataclass(frozen=True)
class Outcome:
    status: str
    result: str
    customer: Customer | None = None


class _DetailSerializer(serializers.Serializer):
    """Field rules for what the detail carries; errors name `detail.<field>`."""

    tenantId = serializers.CharField(max_length=255)
    name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    userId = serializers.CharField(max_length=255, required=False, allow_blank=True)
    billingMode = serializers.ChoiceField(choices=Customer.BillingMode.choices, required=False)


def _first(detail: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = detail.get(name)
        if value not in (None, ""):
            return value
    return None


def _clean_detail(detail: dict[str, Any], *, need_user: bool = False) -> dict[str, Any]:
    """Accept the spellings SBT and its variants use, then validate with one set of rules."""
    candidate = {
        "tenantId": _first(detail, "tenantId", "tenantID", "tenant_id"),
        "name": _first(detail, "tenantName", "name", "userName"),
        "email": _first(detail, "email", "tenantEmail"),
        "userId": _first(detail, "userId", "userName", "username", "user_id"),
        "billingMode": _first(detail, "billingMode", "billing_mode"),
    }
    candidate = {key: value for key, value in candidate.items() if value is not None}
    serializer = _DetailSerializer(data=candidate)
    if not serializer.is_valid():
        raise serializers.ValidationError({"detail": serializer.errors})
    cleaned = dict(serializer.validated_data)
    if need_user and not (cleaned.get("userId") or cleaned.get("email")):
        raise InvalidRequest("A user event needs detail.userId (or userName) or detail.email.", param="detail.userId")
    return cleaned


def _tenant(cleaned: dict[str, Any]) -> Customer:
    customer = customer_get_by_external_id(external_id=cleaned["tenantId"])
    if customer is None:
        raise NotFound(
            f"No customer has external_id '{cleaned['tenantId']}'.", code="customer_not_found", param="detail.tenantId"
        )
    return customer


def _onboard(detail: dict[str, Any], now: datetime) -> Outcome:
    cleaned = _clean_detail(detail)
    try:
        customer = customer_create(
            external_id=cleaned["tenantId"],
            name=cleaned.get("name", ""),
            email=cleaned.get("email", ""),
            billing_mode=cleaned.get("billingMode"),
            source=BillingModeChange.Source.CONTROL_PLANE,
            now=now,
        )
    except Conflict as exc:
        if exc.code == "customer_exists":
            existing = customer_get_by_external_id(external_id=cleaned["tenantId"])
            return Outcome(Status.NO_EFFECT, "tenant already onboarded", existing)
        raise
    return Outcome(Status.APPLIED, "customer created", customer)


def _offboard(detail: dict[str, Any], now: datetime) -> Outcome:
    cleaned = _clean_detail(detail)
    customer = customer_get_by_external_id(external_id=cleaned["tenantId"])
    if customer is None:
        return Outcome(Status.NO_EFFECT, "no live customer with this tenant id (already offboarded?)")
    customer_delete(customer=customer, now=now)
    return Outcome(Status.APPLIED, "customer deleted", customer)


def _set_active(active: bool) -> Callable[[dict[str, Any], datetime], Outcome]:
    def apply(detail: dict[str, Any], now: datetime) -> Outcome:
        customer = _tenant(_clean_detail(detail))
        customer, changed = customer_set_status(customer=customer, active=active, now=now)
        if not changed:
            return Outcome(Status.NO_EFFECT, f"customer already {customer.status}", customer)
        return Outcome(Status.APPLIED, f"customer {customer.status}", customer)

    return apply


def _find_user(customer: Customer, cleaned: dict[str, Any]) -> CustomerUser | None:
    users = customer.users.filter(deleted_at__isnull=True)
    if cleaned.get("userId"):
        return users.filter(external_id=cleaned["userId"]).first()
    return users.filter(email__iexact=cleaned["email"]).first()


def _user_created(detail: dict[str, Any], now: datetime) -> Outcome:
    cleaned = _clean_detail(detail, need_user=True)
    if not cleaned.get("email"):
        raise InvalidRequest("tenantUserCreated needs detail.email.", param="detail.email", code="parameter_missing")
    customer = _tenant(cleaned)
    if _find_user(customer, cleaned) is not None:
        return Outcome(Status.NO_EFFECT, "user already exists", customer)
    customer_user_create(
        customer=customer,
        external_id=cleaned.get("userId", ""),
        email=cleaned["email"],
        name=cleaned.get("name", ""),
        now=now,
    )
    return Outcome(Status.APPLIED, "user created", customer)


def _user_deleted(detail: dict[str, Any], now: datetime) -> Outcome:
    cleaned = _clean_detail(detail, need_user=True)
    customer = _tenant(cleaned)
    user = _find_user(customer, cleaned)
    if user is None:
        return Outcome(Status.NO_EFFECT, "no such user (already deleted?)", customer)
    customer_user_delete(user=user, now=now)
    return Outcome(Status.APPLIED, "user deleted", customer)


HANDLERS: dict[str, Callable[[dict[str, Any], datetime], Outcome]] = {
    "onboardingRequest": _onboard,
    "offboardingRequest": _offboard,
    "activateRequest": _set_active(True),
    "deactivateRequest": _set_active(False),
    "tenantUserCreated": _user_created,
    "tenantUserDeleted": _user_deleted,
}


def _validate_envelope(envelope: Any) -> tuple[str, str, str, dict[str, Any]]:
    if not isinstance(envelope, dict):
        raise InvalidRequest("The event must be a JSON object (an EventBridge envelope).", code="malformed_envelope")
    detail_type = envelope.get("detail-type", envelope.get("detailType"))
    if not isinstance(detail_type, str) or not detail_type.strip():
        raise InvalidRequest(
            "The envelope needs a 'detail-type' string.", param="detail-type", code="malformed_envelope"
        )
    detail = envelope.get("detail")
    if not isinstance(detail, dict):
        raise InvalidRequest("The envelope needs a 'detail' object.", param="detail", code="malformed_envelope")
    envelope_id = envelope.get("id")
    if envelope_id is not None and (not isinstance(envelope_id, str) or not 1 <= len(envelope_id) <= 255):
        raise InvalidRequest(
            "The envelope 'id' must be a string of 1-255 characters.", param="id", code="malformed_envelope"
        )
    source = envelope.get("source") if isinstance(envelope.get("source"), str) else ""
    return detail_type.strip(), envelope_id or "", source[:255], detail


def _store(envelope: Any, **fields: Any) -> ControlPlaneEvent:
    tenant = ""
    if isinstance(envelope, dict) and isinstance(envelope.get("detail"), dict):
        raw = _first(envelope["detail"], "tenantId", "tenantID", "tenant_id")
        tenant = str(raw)[:255] if raw is not None else ""
    return ControlPlaneEvent.objects.create(
        payload=envelope if isinstance(envelope, (dict, list)) else {"raw": str(envelope)[:10000]},
        tenant_id=tenant,
        **fields,
    )


def control_plane_event_receive(*, envelope: Any, now: datetime) -> ControlPlaneEvent:
    """Store and apply one control-plane event. Raises an ApiError (after storing the event as rejected)
    when the envelope is malformed or the event cannot be applied."""
    try:
        detail_type, envelope_id, source, detail = _validate_envelope(envelope)
    except ApiError as exc:
        _store(envelope, status=Status.REJECTED, result=exc.message[:500], received_at=now)
        raise
    name = detail_type.removeprefix(PREFIX)
    handler = HANDLERS.get(name)
    common = {"envelope_id": envelope_id, "detail_type": detail_type[:100], "source": source, "received_at": now}
    if handler is None:
        return _store(envelope, status=Status.IGNORED, result=f"unknown detail-type {detail_type!r}", **common)

    try:
        with transaction.atomic():
            event = _store(envelope, dedup_key=envelope_id or None, status=Status.APPLIED, **common)
            outcome = handler(detail, now)
            event.status = outcome.status
            event.result = outcome.result
            event.customer = outcome.customer
            event.save(update_fields=["status", "result", "customer"])
        return event
    except IntegrityError:
        if not envelope_id or not ControlPlaneEvent.objects.filter(dedup_key=envelope_id).exists():
            raise
        # A redelivery of an event already applied: record it, change nothing.
        return _store(envelope, status=Status.DUPLICATE, result="already received with this id", **common)
    except (ApiError, serializers.ValidationError) as exc:
        message = exc.message if isinstance(exc, ApiError) else str(exc.detail)
        _store(envelope, status=Status.REJECTED, result=message[:500], **common)
        logger.warning("control-plane event %s rejected: %s", detail_type, message)
        raise
