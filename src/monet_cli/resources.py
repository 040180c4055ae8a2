"""Where monet's data folders (``ops/``, ``models/``) are, installed or in a checkout."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(name: str) -> Path:
    """The folder of data ``name`` ("ops" or "models").

    A wheel carries them as ``monet_cli/_data/<name>``; an editable install or a checkout
    reads them from the repository root (``src/monet_cli/../../<name>``).
    """
    for candidate in (_PKG / "_data" / name, _PKG.parent.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"monet data folder {name!r} not found (looked in {_PKG / '_data'})")
