"""Progress of long-running management commands: a tqdm bar on a terminal, nothing when the output is not a
TTY (cron, CI, a pipe, tests), and one summary line at the end either way (`Summary`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_tty(stream: Any) -> bool:
    out = getattr(stream, "_out", stream)  # Django's OutputWrapper keeps the real stream in `_out`
    isatty = getattr(out, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    stream: Any,
    desc: str,
    unit: str = "item",
    total: int | None = None,
    disable: bool = False,
) -> tqdm:
    """A bar on `stream` (a command's stderr) when it is a terminal; otherwise a silent pass-through."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=getattr(stream, "_out", stream),
        disable=disable or not is_tty(stream),
        leave=False,
        dynamic_ncols=True,
    )


class Summary:
    """Counts and the elapsed time, written as one line: "billing_audit: 9 checks, 0 problems in 0.4 s"."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()

    def line(self, **counts: int | str) -> str:
        parts = ", ".join(
            f"{value} {key.replace('_', ' ')}" if isinstance(value, int) else f"{key.replace('_', ' ')} {value}"
            for key, value in counts.items()
        )
        return f"{self.name}: {parts} in {time.perf_counter() - self.started:.1f} s"
