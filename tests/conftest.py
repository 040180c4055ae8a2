"""Shared pytest fixtures. Test-data builders live in ``fixtures.py`` (importable too);
this file only exposes the common ones as pytest fixtures. Append new fixtures below."""

from __future__ import annotations

import numpy as np
import pytest

import fixtures as fx


@pytest.fixture
def photo8() -> np.ndarray:
    """A real photo (skimage astronaut), 64×64 uint8 RGB."""
    return fx.astronaut()


@pytest.fixture
def photo16() -> np.ndarray:
    """A real photo (skimage coffee), 50×75 uint16 RGB with random low bits."""
    return fx.to16(fx.coffee())


@pytest.fixture
def tiff16_path(tmp_path, photo16):
    """An untagged 16-bit RGB TIFF (written by tifffile) of :func:`photo16`."""
    return fx.make_tiff(tmp_path / "photo16.tif", photo16)


@pytest.fixture
def jpeg_path(tmp_path, photo8):
    """An untagged quality-95 4:4:4 JPEG (written by Pillow) of :func:`photo8`."""
    return fx.make_jpeg(tmp_path / "photo.jpg", photo8)


@pytest.fixture
def png16_path(tmp_path, photo16):
    """An untagged 16-bit RGB PNG (reference encoder, all five filters) of :func:`photo16`."""
    return fx.make_png(tmp_path / "photo16.png", photo16)


@pytest.fixture
def dng_path(tmp_path):
    """A 64×48 RGGB DNG of a uniform mid grey (linear 0.18) under a warm light."""
    return fx.make_dng(tmp_path / "grey.dng", np.full((48, 64, 3), 0.18))
