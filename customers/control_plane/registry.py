"""What each control-plane event does, as a table higher apps add to.

customers sits below metering, subscriptions and payments, so it cannot call them; they register here
from their `AppConfig.ready()` instead:

- a **handler** owns a detail-type outright (metering registers `ingestUsage`): it gets the request
  and returns the `Outcome`;
- a **step** extends a detail-type that customers handles (subscriptions registers the tier's
  subscription on `onboardingRequest`, the ending of every subscription on `offboardingRequest`;
  payments what happens to open invoices). Steps run `before` or `after` customers' own effect, in
  registration order, which is the apps' order (subscriptions before payments), and only when the event
  changes something (a repeated onboarding runs no step).

Everything runs inside the one transaction that stores the event and writes its answer: a handler or a
step that raises an `ApiError` rolls the whole event back (the event is then stored as rejected, with
the error as the answer's reason). So neither may do slow I/O (a provider call, an HTTP request):
they enqueue it with `billing_site.tasks.enqueue`, which sends after the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from customers.models import Customer


@dataclass(frozen=True)
class ControlPlaneRequest:
    """One received event, validated as an envelope. `name` is the detail-type without `sbt_aws_`."""

    name: str
    detail_type: str
    envelope_id: str
    source: str
    detail: Any
    now: datetime


@dataclass
class Outcome:
    """What an event did. `status` is a `ControlPlaneEvent.Status`; `details` is stored on the event and
    carried by the answer; a non-empty `failure` makes the answer a billingFailure even though the event
    committed (an ingestUsage event some of whose usage was refused)."""

    status: str
    result: str
    customer: Customer | None = None
    details: dict[str, Any] = field(default_factory=dict)
    failure: str = ""
    failure_code: str = ""


Handler = Callable[[ControlPlaneRequest], Outcome]
# A step: `step(request=..., customer=...)` returns details to add to the outcome (or None).
Step = Callable[..., "dict[str, Any] | None"]
When = Literal["before", "after"]

_handlers: dict[str, Handler] = {}
_steps: dict[tuple[str, str], list[Step]] = {}


def control_plane_handler_register(name: str, handler: Handler) -> None:
    """Let `handler` handle the detail-type `name` (without the `sbt_aws_` prefix)."""
    _handlers[name] = handler


def control_plane_step_register(name: str, step: Step, *, when: When) -> None:
    """Run `step` `before` or `after` customers' own effect of `name`; once, however often `ready()` runs."""
    if when not in ("before", "after"):
        raise ValueError(f"when must be 'before' or 'after', not {when!r}")
    steps = _steps.setdefault((name, when), [])
    if step not in steps:
        steps.append(step)


def handler_for(name: str) -> Handler | None:
    return _handlers.get(name)


def steps_run(name: str, when: When, *, request: ControlPlaneRequest, customer: Customer) -> dict[str, Any]:
    details: dict[str, Any] = {}
    for step in list(_steps.get((name, when), [])):
        added = step(request=request, customer=customer)
        if added:
            details.update(added)
    return details
