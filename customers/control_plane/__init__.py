"""Events from the SaaS control plane (sbt-aws, in an EventBridge envelope) and our answers to it.

- `envelope`: reading the body and the envelope, and the fields of `detail`;
- `registry`: the table of handlers and steps that higher apps add to (metering: ingestUsage;
  subscriptions: a tier's subscription, ending subscriptions, renewals on activation; payments: open
  invoices on offboarding);
- `handlers`: what customers does itself (tenants and their users);
- `receive`: storing, applying once and answering one event;
- `answers`: the billingSuccess / billingFailure outbox and its EventBridge sender.
"""

from customers.control_plane.receive import control_plane_event_receive
from customers.control_plane.registry import (
    ControlPlaneRequest,
    Outcome,
    control_plane_handler_register,
    control_plane_step_register,
)

__all__ = [
    "ControlPlaneRequest",
    "Outcome",
    "control_plane_event_receive",
    "control_plane_handler_register",
    "control_plane_step_register",
]
