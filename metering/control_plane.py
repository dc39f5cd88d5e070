"""`ingestUsage` events from the application plane, ingested exactly as `POST /events` ingests.

The detail is one usage event, a list of them, or `{"events": [...]}`, each in either shape:
- sbt-aws's metering interface: `{tenantId, meterApiName, meterValue}`, optionally `timestamp` (RFC 3339
  or epoch ms; also `meterTimeInMillis`), `dimensions`, and a key (`idempotencyKey`, or Amberflo's
  `uniqueId`);
- the reference metering pipeline's `{TenantID, ProductCode, Quantity, Timestamp}` (as
  `POST /events/billing-events`).

Idempotency: an event's own key wins; otherwise the key is the EventBridge event id plus the event's
index in the detail, so a redelivery, or the same event put twice by a retrying sender, is a duplicate;
without an envelope id the shapes' content rules apply (the reference pipeline's content hash; an sbt
event with a timestamp is keyed by its content, one without is not deduplicated). Rejections are per
event, as on `POST /events`: one bad event never fails the others. They are recorded on the stored
control-plane event (admin shows them), with their param named as sent (`detail[2].meterApiName`).
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from billing_site.errors import InvalidRequest
from customers.control_plane import ControlPlaneRequest, Outcome, control_plane_handler_register
from customers.models import ControlPlaneEvent
from customers.selectors import customer_get_by_external_id
from metering.ingest import MAX_BATCH, billing_event_to_event, usage_ingest

Status = ControlPlaneEvent.Status

_SBT_FIELDS = {
    "tenantId": "external_id",
    "meterApiName": "meter",
    "meterValue": "value",
    "timestamp": "timestamp",
    "meterTimeInMillis": "timestamp",
    "dimensions": "dimensions",
    "idempotencyKey": "idempotency_key",
    "uniqueId": "idempotency_key",
}
_REFERENCE_FIELDS = ("TenantID", "ProductCode", "Quantity", "Timestamp")
# Our field names back to the ones each shape uses, so a rejection names the field as it was sent.
_SBT_PARAMS = {
    "customer": "tenantId",
    "external_id": "tenantId",
    "meter": "meterApiName",
    "value": "meterValue",
    "timestamp": "timestamp",
    "idempotency_key": "idempotencyKey",
    "dimensions": "dimensions",
}
_REFERENCE_PARAMS = {
    "customer": "TenantID",
    "external_id": "TenantID",
    "meter": "ProductCode",
    "value": "Quantity",
    "timestamp": "Timestamp",
    "idempotency_key": "IdempotencyKey",
    "dimensions": "Dimensions",
}
MAX_KEY = 255
_FAILURE_EXAMPLES = 5


def _items(detail: Any) -> tuple[list[Any], bool]:
    """The usage events of a detail, and whether it was a list (for naming params)."""
    if isinstance(detail, list):
        items, listed = detail, True
    elif isinstance(detail, dict) and isinstance(detail.get("events"), list):
        if len(detail) > 1:
            extra = sorted(key for key in detail if key != "events")[0]
            raise InvalidRequest(
                f"Unknown field '{extra}' next to events.", param=f"detail.{extra}", code="unknown_field"
            )
        items, listed = detail["events"], True
    else:
        items, listed = [detail], False
    if not items:
        raise InvalidRequest("The event carries no usage.", param="detail", code="parameter_missing")
    if len(items) > MAX_BATCH:
        raise InvalidRequest(
            f"One event holds at most {MAX_BATCH} usage events; this one has {len(items)}.",
            param="detail",
            code="batch_too_large",
        )
    return items, listed


def _envelope_key(envelope_id: str, index: int) -> str:
    key = f"{envelope_id}:{index}"
    if len(key) <= MAX_KEY and key.isprintable():
        return key
    return f"cp-{hashlib.sha256(envelope_id.encode()).hexdigest()[:40]}:{index}"


def _content_key(item: dict[str, Any]) -> str | None:
    if item.get("timestamp") is None and item.get("meterTimeInMillis") is None:
        return None  # two identical events at different (unstated) times are both real usage
    content = orjson.dumps(
        [
            item.get("tenantId"),
            item.get("meterApiName"),
            str(item.get("meterValue")),
            item.get("timestamp", item.get("meterTimeInMillis")),
        ],
        default=str,
    )
    return "sbt-" + hashlib.sha256(content).hexdigest()[:40]


def _from_sbt(item: dict[str, Any], envelope_id: str, index: int) -> dict[str, Any]:
    event: dict[str, Any] = {}
    unknown = sorted(item.keys() - _SBT_FIELDS.keys())
    if unknown:
        event[unknown[0]] = item[unknown[0]]  # refused by ingestion as an unknown field, named as sent
    for name, ours in _SBT_FIELDS.items():
        if item.get(name) is not None and ours not in event:
            event[ours] = item[name]
    if "idempotency_key" not in event:
        event["idempotency_key"] = _envelope_key(envelope_id, index) if envelope_id else _content_key(item)
    return event


def _from_reference(item: dict[str, Any], envelope_id: str, index: int) -> dict[str, Any]:
    event = billing_event_to_event(item)
    if envelope_id and item.get("IdempotencyKey") is None:
        event["idempotency_key"] = _envelope_key(envelope_id, index)
    return event


def _param(param: str | None, *, index: int, listed: bool, reference: bool) -> str:
    where = f"detail[{index}]" if listed else "detail"
    if param is None:
        return where
    head, dot, rest = param.partition(".")
    names = _REFERENCE_PARAMS if reference else _SBT_PARAMS
    return f"{where}.{names.get(head, head)}{dot}{rest}"


def usage_ingest_from_control_plane(request: ControlPlaneRequest) -> Outcome:
    items, listed = _items(request.detail)
    events: list[Any] = []
    reference: list[bool] = []
    for index, item in enumerate(items):
        is_reference = isinstance(item, dict) and any(name in item for name in _REFERENCE_FIELDS)
        reference.append(is_reference)
        if not isinstance(item, dict):
            events.append(item)  # refused by ingestion: not an object
        elif is_reference:
            events.append(_from_reference(item, request.envelope_id, index))
        else:
            events.append(_from_sbt(item, request.envelope_id, index))
    result = usage_ingest(events=events, now=request.now)

    rejections = [
        {
            "index": row["index"],
            "code": row["error"]["code"],
            "message": row["error"]["message"],
            "param": _param(
                row["error"]["param"], index=row["index"], listed=listed, reference=reference[row["index"]]
            ),
        }
        for row in result.results
        if row["status"] == "rejected"
    ]
    usage = {
        "created": result.created,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "events": [row["id"] for row in result.results],
        "rejections": rejections,
    }
    first = items[0] if isinstance(items[0], dict) else {}
    tenant = first.get("tenantId", first.get("TenantID"))
    customer = (
        customer_get_by_external_id(external_id=tenant, include_deleted=True) if isinstance(tenant, str) else None
    )
    summary = f"{result.created} created, {result.duplicates} duplicates, {result.rejected} rejected"
    if result.rejected == len(items):
        status = Status.REJECTED
    elif result.created == 0 and result.rejected == 0:
        status = Status.NO_EFFECT
    else:
        status = Status.APPLIED
    failure = ""
    if rejections:
        examples = "; ".join(f"[{r['index']}] {r['code']}: {r['message']}" for r in rejections[:_FAILURE_EXAMPLES])
        failure = f"{result.rejected} of {len(items)} usage events rejected: {examples}"
    return Outcome(
        status=status,
        result=summary,
        customer=customer,
        details={"usage": usage},
        failure=failure,
        failure_code="usage_rejected" if rejections else "",
    )


def register() -> None:
    control_plane_handler_register("ingestUsage", usage_ingest_from_control_plane)
