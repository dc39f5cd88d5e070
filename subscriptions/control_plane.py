"""What the control plane's tenant lifecycle means for subscriptions (steps registered with customers).

- onboardingRequest with a `tier`: the tier's plan, subscribed in the onboarding's transaction (so the
  tenant exists with its subscription, or not at all). An unknown or archived tier, or one whose prices
  no longer make a subscription, rejects the event: a billingFailure naming the reason, never a default.
- offboardingRequest: every live subscription ends now through `subscription_end` (reason
  `tenant_offboarded`), which bills the usage of the current period up to now and any pending
  prorations, and credits unused time when CONTROL_PLANE_OFFBOARD_PRORATE is on; before the customer is
  soft-deleted, in the same transaction, so a redelivery finds nothing live to end again.
- activateRequest: renewal waited while the tenant was deactivated (`renewal.subscriptions_due`); the
  periods that ended meanwhile are billed now, in order, by the renewal task queued after the commit.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from billing_site.errors import InvalidRequest
from billing_site.tasks import enqueue
from customers.control_plane import ControlPlaneRequest, control_plane_step_register
from customers.control_plane.envelope import detail_string
from customers.models import BillingModeChange, Customer
from customers.services import customer_update
from subscriptions.locks import lock_customer_subscriptions
from subscriptions.models import Subscription
from subscriptions.selectors import tier_get_by_name
from subscriptions.services.lifecycle import LIVE, subscription_end
from subscriptions.services.renewal import subscriptions_due
from subscriptions.services.tiers import tier_subscribe


def tenant_onboarded(*, request: ControlPlaneRequest, customer: Customer) -> dict[str, Any] | None:
    name = detail_string(request.detail, "tier", "tenantTier", max_length=100)
    if not name:
        return None  # no tier: the customer only, subscribed later through the API
    tier = tier_get_by_name(name=name)
    if tier is None:
        raise InvalidRequest(
            f"No tier named {name!r}: add it with POST /api/v1/tiers, or onboard the tenant with a known tier.",
            param="detail.tier",
            code="unknown_tier",
        )
    if tier.billing_mode != customer.billing_mode:
        # The tier decides how the tenant is billed, through the customers service (checks and history).
        customer = customer_update(
            customer=customer,
            changes={"billing_mode": tier.billing_mode},
            now=request.now,
            source=BillingModeChange.Source.CONTROL_PLANE,
        )
    sub, invoice = tier_subscribe(tier=tier, customer=customer, now=request.now, param="detail.tier")
    return {
        "tier": tier.id,
        "billing_mode": customer.billing_mode,
        "subscription": sub.id,
        "invoice": invoice.id if invoice else None,
    }


def tenant_offboarding(*, request: ControlPlaneRequest, customer: Customer) -> dict[str, Any]:
    ended: list[str] = []
    invoices: list[str] = []
    for sub in lock_customer_subscriptions(customer.pk, statuses=LIVE):
        invoice = subscription_end(
            sub,
            at=request.now,
            now=request.now,
            prorate=settings.CONTROL_PLANE_OFFBOARD_PRORATE,
            reason=Subscription.CancellationReason.TENANT_OFFBOARDED,
        )
        ended.append(sub.id)
        if invoice is not None:
            invoices.append(invoice.id)
    return {"subscriptions_ended": ended, "final_invoices": invoices}


def tenant_activated(*, request: ControlPlaneRequest, customer: Customer) -> dict[str, Any]:
    from subscriptions.tasks import subscriptions_renew_batch

    ids = list(subscriptions_due(request.now).filter(customer=customer).order_by("id").values_list("id", flat=True))
    if ids:
        enqueue(subscriptions_renew_batch, ids, request.now.isoformat())
    return {"renewals_queued": ids}


def register() -> None:
    control_plane_step_register("onboardingRequest", tenant_onboarded, when="after")
    control_plane_step_register("offboardingRequest", tenant_offboarding, when="before")
    control_plane_step_register("activateRequest", tenant_activated, when="after")
