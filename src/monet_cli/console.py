"""Output helpers shared by the CLI commands: rich consoles and JSON lines."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager


def console(stderr: bool = False):
    """A rich console (created on demand: importing rich costs start-up time)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def print_json(obj) -> None:
    """One JSON document on one line of stdout, flushed (for scripts and pipes)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(str(text))


class _Bar:
    """What :func:`progress` yields: ``advance(*_)`` for one more item, ``update(done, total)``."""

    def __init__(self, bar=None, task=None):
        self._bar, self._task = bar, task

    def advance(self, *_):
        if self._bar is not None:
            self._bar.advance(self._task)

    def update(self, done: int, total: int | None = None):
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)


@contextmanager
def progress(verb: str, *, enabled: bool = True, total: int | None = None, transient: bool = False):
    """A rich progress bar on stderr when it is a terminal and ``enabled`` (else a no-op bar).

    Shows the verb, the bar, done/total, elapsed and remaining time. Yields a :class:`_Bar`.
    """
    con = console(stderr=True)
    if not enabled or not con.is_terminal or (total is not None and total < 2):
        yield _Bar()
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    with Progress(TextColumn(verb), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=con, transient=transient) as bar:
        yield _Bar(bar, bar.add_task(verb, total=total))
