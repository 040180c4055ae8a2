"""Exact area (box-filter) downscaling in one pass.

The same result as :func:`monet_cli.measure.area_integrate` applied along both axes (the
tests check it), but reading each input pixel once, decoding integer codes through a table
on the way, with no float copy of the input: a 24 MP 16-bit photo becomes a 1280 px linear
proxy in a fraction of a second on two cores.

The pass runs in the C library of the render kernel (:mod:`monet_cli._ckernel`) when that is
the kernel in use (:func:`monet_cli.render.kernel`), else in numba (:mod:`monet_cli._area_numba`):
the planner then starts without importing numba (about 0.4 s with its SciPy probe).
"""

from __future__ import annotations

import numpy as np


def _axis_weights(n_in: int, n_out: int):
    """For each input sample: its first output index, its weight there, and its weight in the
    next output (0 when the sample lies inside one output interval)."""
    r = n_in / n_out
    i = np.arange(n_in, dtype=np.float64)
    j = np.minimum(np.floor(i / r), n_out - 1)
    end = (j + 1.0) * r  # where output j ends, in input units
    # a sample whose start is (numerically) at the end of j belongs wholly to j + 1
    move = (end - i <= 1e-9) & (j < n_out - 1)
    j = np.where(move, j + 1.0, j)
    end = (j + 1.0) * r
    split = (i + 1.0 > end + 1e-9) & (j < n_out - 1)
    w0 = np.where(split, end - i, 1.0)
    w1 = np.where(split, i + 1.0 - end, 0.0)
    return j.astype(np.int64), w0, w1


def box_downscale(src: np.ndarray, h: int, w: int, lut: np.ndarray | None = None) -> np.ndarray:
    """Area-average ``(H, W, 3)`` ``src`` to ``(h, w, 3)`` float64 (``h ≤ H``, ``w ≤ W``).

    ``lut`` (integer input only) maps each code to its linear value first; without it the
    values are averaged as they are.
    """
    H, W = src.shape[:2]
    if not (0 < h <= H and 0 < w <= W):
        raise ValueError(f"box_downscale only shrinks: {H}×{W} → {h}×{w}")
    if src.ndim != 3 or src.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3), got {src.shape}")
    ry0, rw0, rw1 = _axis_weights(H, h)
    cx0, cw0, cw1 = _axis_weights(W, w)
    use_lut = lut is not None
    if use_lut and src.dtype.kind != "u":
        raise TypeError("a decode table needs integer pixels")
    src = np.ascontiguousarray(src)
    scale = (h / H) * (w / W)
    from monet_cli.render import kernel

    if kernel()[0] == "c":
        from monet_cli import _ckernel

        if src.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
            src = src.astype(np.float64)
        return _ckernel.box_kernel(src, lut, ry0, rw0, rw1, cx0, cw0, cw1, h, w, scale)
    from monet_cli._area_numba import NO_LUT, box_kernel

    return box_kernel(src, lut if use_lut else NO_LUT, use_lut, ry0, rw0, rw1, cx0, cw0, cw1, h, w, scale)
