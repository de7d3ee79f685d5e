"""A rich Console as a log or a pipe sees it: no terminal, a fixed width, no colour; and what it printed."""

from __future__ import annotations

import io
from collections.abc import Callable

from rich.console import Console


def recording_console(width: int = 80) -> tuple[Console, Callable[[], str]]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=False, color_system=None, soft_wrap=False)
    return console, buffer.getvalue
