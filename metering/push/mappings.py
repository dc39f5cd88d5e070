"""Mappings from our meters to provider meters, and the checks provider billing depends on.

A meter's default mapping applies to every provider customer; a customer's override wins for that
customer. Only `sum` and `count` meters can be mapped: a slice's value of those adds up to the period's
value, so pushing one increment per slice bills the period right. A max, latest or unique_count value of a
period is not the sum of its slices' values, so the same pushes would bill the wrong amount.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q

from billing_site.errors import Conflict, InvalidRequest
from customers.models import Customer
from metering.locks import lock_meter_mapping
from metering.models import Meter, MeterEvent
from metering.push.models import PUSHABLE_AGGREGATIONS, MeterMapping, UsagePush
from webhooks.services import event_emit

PROVIDERS = ("stripe",)


def mapping_snapshot(mapping: MeterMapping) -> dict[str, Any]:
    return {
        "id": mapping.id,
        "meter": mapping.meter_id,
        "customer": mapping.customer_id,
        "provider": mapping.provider,
        "event_name": mapping.event_name,
        "provider_meter_id": mapping.provider_meter_id or None,
    }


def aggregation_check(meter: Meter, *, param: str = "meter") -> None:
    if meter.aggregation not in PUSHABLE_AGGREGATIONS:
        raise InvalidRequest(
            f"Meter {meter.code} aggregates with {meter.aggregation}; only sum and count meters can be pushed to a "
            "provider, because usage goes out as one increment per slice and only sums and counts of slices add "
            f"up to the period's value (the {meter.aggregation} of a period is not the sum of its slices').",
            param=param,
            code="aggregation_not_pushable",
        )


def mapping_for(*, meter_id: str, customer_id: str) -> MeterMapping | None:
    """The mapping that applies to this customer's usage of this meter: its override, else the default."""
    found = sorted(
        MeterMapping.objects.filter(Q(customer_id=customer_id) | Q(customer__isnull=True), meter_id=meter_id),
        key=lambda m: m.customer_id is None,
    )
    return found[0] if found else None


def _pushes_through(mapping: MeterMapping) -> Any:
    """The pushes that went out through this mapping."""
    pushes = UsagePush.objects.filter(meter_id=mapping.meter_id).exclude(status=UsagePush.Status.UNRECONCILABLE)
    if mapping.customer_id is not None:
        return pushes.filter(customer_id=mapping.customer_id)
    overridden = MeterMapping.objects.filter(meter_id=mapping.meter_id, customer__isnull=False).values("customer_id")
    return pushes.exclude(customer_id__in=overridden)


def meter_mapping_create(
    *, meter: Meter, event_name: str, now: datetime, customer: Customer | None = None, provider: str = "stripe"
) -> MeterMapping:
    aggregation_check(meter)
    with transaction.atomic():
        # A customer whose usage already went to the default meter would be split across two.
        if customer is not None and UsagePush.objects.filter(customer=customer, meter=meter).exists():
            raise Conflict(
                f"Usage of {meter.code} for {customer.id} was already pushed through the meter's default "
                "mapping; an override now would split its usage across two provider meters.",
                code="mapping_in_use",
                param="customer",
            )
        mapping = MeterMapping(meter=meter, customer=customer, provider=provider, event_name=event_name)
        try:
            with transaction.atomic():
                mapping.save(force_insert=True)
        except IntegrityError:
            scope = f"customer {customer.id}" if customer else "every customer"
            raise Conflict(
                f"Meter {meter.code} already has a mapping for {scope}.",
                code="mapping_exists",
                param="customer" if customer else "meter",
            ) from None
        event_emit(
            type="meter_mapping.created",
            object_type="meter_mapping",
            object_id=mapping.id,
            customer_id=mapping.customer_id or "",
            data=mapping_snapshot(mapping),
            now=now,
        )
    return mapping


def meter_mapping_update(*, mapping: MeterMapping, changes: dict[str, Any], now: datetime) -> MeterMapping:
    with transaction.atomic():
        locked = lock_meter_mapping(mapping.pk)
        new_name = changes.get("event_name", locked.event_name)
        if new_name == locked.event_name:
            return locked
        if _pushes_through(locked).exists():
            raise InvalidRequest(
                "event_name cannot change once usage was pushed through this mapping: the slices already pushed "
                "and their corrections must stay on one provider meter. Create a new meter instead.",
                param="event_name",
                code="immutable",
            )
        before = mapping_snapshot(locked)
        locked.event_name = new_name
        # The provider meter is looked up again for the new name.
        locked.provider_meter_id = locked.customer_payload_key = locked.value_payload_key = ""
        locked.resolved_at = locked.resolve_failed_at = None
        locked.resolve_error = ""
        locked.save()
        after = mapping_snapshot(locked)
        event_emit(
            type="meter_mapping.updated",
            object_type="meter_mapping",
            object_id=locked.id,
            customer_id=locked.customer_id or "",
            data=after,
            previous_attributes={k: v for k, v in before.items() if after[k] != v},
            now=now,
        )
    return locked


def meter_mapping_delete(*, mapping: MeterMapping, now: datetime) -> None:
    with transaction.atomic():
        locked = lock_meter_mapping(mapping.pk)
        if _pushes_through(locked).exists():
            raise Conflict(
                "Usage was pushed through this mapping; it stays so that corrections and reconciliation reach the "
                "same provider meter.",
                code="mapping_in_use",
            )
        if _provider_usage_covered(locked):
            raise Conflict(
                "Customers in provider mode have usage on this meter that only this mapping sends to the provider; "
                "without it their usage would never be billed. Switch them to native mode or map the meter "
                "otherwise first.",
                code="mapping_in_use",
            )
        snapshot = mapping_snapshot(locked)
        locked.delete()
        event_emit(
            type="meter_mapping.deleted",
            object_type="meter_mapping",
            object_id=snapshot["id"],
            customer_id=snapshot["customer"] or "",
            data=snapshot,
            now=now,
        )


def _provider_usage_covered(mapping: MeterMapping) -> bool:
    """Whether a provider-mode customer this mapping covers has usage on its meter."""
    events = MeterEvent.objects.filter(meter_id=mapping.meter_id, customer__billing_mode=Customer.BillingMode.PROVIDER)
    if mapping.customer_id is not None:
        return events.filter(customer_id=mapping.customer_id).exists()
    overridden = MeterMapping.objects.filter(meter_id=mapping.meter_id, customer__isnull=False).values("customer_id")
    return events.exclude(customer_id__in=overridden).exists()


def unmapped_meters_with_usage(*, customer: Customer) -> list[Meter]:
    """Meters this customer has usage on that no mapping covers for it."""
    mapped = MeterMapping.objects.filter(Q(customer=customer) | Q(customer__isnull=True), meter=OuterRef("pk"))
    used = MeterEvent.objects.filter(customer=customer, meter=OuterRef("pk"))
    return list(Meter.objects.filter(Exists(used)).exclude(Exists(mapped)).order_by("code"))


# --- checks registered with customers (see MeteringConfig.ready) ----------------------------------


def check_billing_mode_change(customer: Customer, mode: str) -> None:
    if mode != Customer.BillingMode.PROVIDER or customer._state.adding:
        return
    unmapped = unmapped_meters_with_usage(customer=customer)
    if unmapped:
        codes = ", ".join(meter.code for meter in unmapped)
        raise InvalidRequest(
            f"Customer {customer.id} has usage on meters with no provider mapping: {codes}. Map each of them to a "
            "provider meter (POST /api/v1/meter-mappings; only sum and count meters can be pushed) before billing "
            "this customer through the provider, or their usage would never be billed.",
            param="billing_mode",
            code="provider_mapping_missing",
        )


def check_provider_customer_id_change(customer: Customer, new_id: str) -> None:
    if not customer.provider_customer_id:
        return
    if UsagePush.objects.filter(customer=customer).exclude(status=UsagePush.Status.UNRECONCILABLE).exists():
        raise InvalidRequest(
            f"Usage of {customer.id} was already pushed to the provider customer {customer.provider_customer_id}; "
            "it cannot move to another one (its slices, corrections and summaries are that customer's).",
            param="provider_customer_id",
            code="immutable",
        )


def check_meter_aggregation(meter: Meter, aggregation: str) -> None:
    """A mapped meter cannot take an aggregation that cannot be pushed."""
    if aggregation not in PUSHABLE_AGGREGATIONS and MeterMapping.objects.filter(meter=meter).exists():
        raise InvalidRequest(
            f"Meter {meter.code} is mapped to a provider meter, and {aggregation} cannot be pushed: only sum and "
            "count slices add up to a period's value. Delete its mappings first.",
            param="aggregation",
            code="aggregation_not_pushable",
        )
