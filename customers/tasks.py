"""Customers' tasks: thin, by id, safe to run twice (see `billing_site.tasks`)."""

from __future__ import annotations

from billing_site.tasks import billing_task, parse_now
from customers.control_plane import answers


@billing_task("customers.control_plane_answer_send", time_limit=120)
def control_plane_answer_send(answer_id: str, now: str | None = None) -> dict[str, int]:
    """Send one answer to the control plane's bus. A second delivery of the task finds the answer sent
    (or claimed by the first) and does nothing."""
    return {answers.answer_send(answer_id=answer_id, now=parse_now(now)): 1}
