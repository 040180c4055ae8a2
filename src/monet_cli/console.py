"""Output helpers shared by the CLI commands: rich consoles and JSON lines."""

from __future__ import annotations

import json
import sys


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
