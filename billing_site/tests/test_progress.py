"""Long-running commands: a progress bar on a terminal, none otherwise, and a final summary either way."""

from __future__ import annotations

import io
import re

from billing_site.progress import Summary, is_tty, progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_shows_on_a_terminal_only():
    tty, pipe = Terminal(), io.StringIO()
    assert list(progress_bar(range(3), stream=tty, desc="things")) == [0, 1, 2]
    assert list(progress_bar(range(3), stream=pipe, desc="things")) == [0, 1, 2]
    assert "things:" in tty.getvalue() and "/3 [" in tty.getvalue()
    assert pipe.getvalue() == ""
    assert is_tty(Terminal()) and not is_tty(io.StringIO())


def test_summary_line():
    assert re.fullmatch(r"audit: 9 checks, 0 problems in \d+\.\d s", Summary("audit").line(checks=9, problems=0))
    assert Summary("x").line(catalog="created").startswith("x: catalog created in ")
