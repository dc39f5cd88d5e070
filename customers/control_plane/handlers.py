"""What customers itself does with control-plane events: tenants and their users.

Higher apps extend these through steps (`registry.control_plane_step_register`): the tier's subscription
on onboarding, ending subscriptions and settling invoices on offboarding, catching up renewals on
activation.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from billing_site.errors import Conflict, InvalidRequest, NotFound
from customers.control_plane.envelope import detail_string
from customers.control_plane.registry import ControlPlaneRequest, Outcome, control_plane_handler_register, steps_run
from customers.locks import lock_customer
from customers.models import BillingModeChange, ControlPlaneEvent, Customer, CustomerUser
from customers.selectors import customer_get_by_external_id
from customers.services import (
    customer_create,
    customer_delete,
    customer_set_status,
    customer_user_create,
    customer_user_delete,
)

Status = ControlPlaneEvent.Status


def _tenant_id(detail: dict[str, Any]) -> str:
    return detail_string(detail, "tenantId", "tenantID", "tenant_id", param="detail.tenantId", required=True)


def _email(detail: dict[str, Any], *, required: bool = False) -> str:
    email = detail_string(detail, "email", "tenantEmail", "userEmail", max_length=254, required=required)
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise InvalidRequest("detail.email is not an e-mail address.", param="detail.email") from None
    return email


def _tenant(detail: dict[str, Any]) -> Customer:
    tenant_id = _tenant_id(detail)
    customer = customer_get_by_external_id(external_id=tenant_id)
    if customer is None:
        raise NotFound(
            f"No customer has external_id '{tenant_id}'.", code="customer_not_found", param="detail.tenantId"
        )
    return customer


def onboard(request: ControlPlaneRequest) -> Outcome:
    detail = request.detail
    tenant_id = _tenant_id(detail)
    name = detail_string(detail, "tenantName", "name")
    email = _email(detail)
    mode = detail_string(detail, "billingMode", "billing_mode", param="detail.billingMode", max_length=20) or None
    if mode is not None and mode not in Customer.BillingMode.values:
        raise InvalidRequest(
            f"billingMode must be one of {', '.join(Customer.BillingMode.values)}.",
            param="detail.billingMode",
            code="invalid_billing_mode",
        )
    try:
        customer = customer_create(
            external_id=tenant_id,
            name=name,
            email=email,
            billing_mode=mode,
            source=BillingModeChange.Source.CONTROL_PLANE,
            now=request.now,
        )
    except Conflict as exc:
        if exc.code == "customer_exists":
            existing = customer_get_by_external_id(external_id=tenant_id)
            return Outcome(Status.NO_EFFECT, "tenant already onboarded", existing)
        raise
    details = steps_run(request.name, "after", request=request, customer=customer)
    return Outcome(Status.APPLIED, "customer created", customer, details)


def offboard(request: ControlPlaneRequest) -> Outcome:
    """Steps first (every subscription ends now and its final usage is billed, open invoices are dealt
    with), then the soft delete, all in the event's transaction under the customer's row lock."""
    customer = customer_get_by_external_id(external_id=_tenant_id(request.detail))
    if customer is None:
        return Outcome(Status.NO_EFFECT, "no live customer with this tenant id (already offboarded?)")
    locked = lock_customer(customer.pk)
    if locked.status == Customer.Status.DELETED:  # offboarded concurrently, before we got the lock
        return Outcome(Status.NO_EFFECT, "no live customer with this tenant id (already offboarded?)")
    details = steps_run(request.name, "before", request=request, customer=locked)
    deleted = customer_delete(customer=locked, now=request.now)
    details.update(steps_run(request.name, "after", request=request, customer=deleted))
    return Outcome(Status.APPLIED, "customer deleted", deleted, details)


def _set_active(active: bool):  # type: ignore[no-untyped-def]
    def apply(request: ControlPlaneRequest) -> Outcome:
        customer, changed = customer_set_status(customer=_tenant(request.detail), active=active, now=request.now)
        if not changed:
            return Outcome(Status.NO_EFFECT, f"customer already {customer.status}", customer)
        details = steps_run(request.name, "after", request=request, customer=customer)
        return Outcome(Status.APPLIED, f"customer {customer.status}", customer, details)

    return apply


def _user_ref(detail: dict[str, Any]) -> tuple[str, str]:
    user_id = detail_string(detail, "userId", "userName", "username", "user_id")
    email = _email(detail)
    if not (user_id or email):
        raise InvalidRequest(
            "A user event needs detail.userId (or userName) or detail.email.",
            param="detail.userId",
            code="parameter_missing",
        )
    return user_id, email


def _find_user(customer: Customer, user_id: str, email: str) -> CustomerUser | None:
    users = customer.users.filter(deleted_at__isnull=True)
    if user_id:
        return users.filter(external_id=user_id).first()
    return users.filter(email__iexact=email).first()


def user_created(request: ControlPlaneRequest) -> Outcome:
    detail = request.detail
    user_id, email = _user_ref(detail)
    if not email:
        raise InvalidRequest("tenantUserCreated needs detail.email.", param="detail.email", code="parameter_missing")
    customer = _tenant(detail)
    if _find_user(customer, user_id, email) is not None:
        return Outcome(Status.NO_EFFECT, "user already exists", customer)
    name = detail_string(detail, "name", "userName")
    user = customer_user_create(customer=customer, external_id=user_id, email=email, name=name, now=request.now)
    return Outcome(Status.APPLIED, "user created", customer, {"user": user.id})


def user_deleted(request: ControlPlaneRequest) -> Outcome:
    user_id, email = _user_ref(request.detail)
    customer = _tenant(request.detail)
    user = _find_user(customer, user_id, email)
    if user is None:
        return Outcome(Status.NO_EFFECT, "no such user (already deleted?)", customer)
    customer_user_delete(user=user, now=request.now)
    return Outcome(Status.APPLIED, "user deleted", customer, {"user": user.id})


def register() -> None:
    control_plane_handler_register("onboardingRequest", onboard)
    control_plane_handler_register("offboardingRequest", offboard)
    control_plane_handler_register("activateRequest", _set_active(True))
    control_plane_handler_register("deactivateRequest", _set_active(False))
    control_plane_handler_register("tenantUserCreated", user_created)
    control_plane_handler_register("tenantUserDeleted", user_deleted)
