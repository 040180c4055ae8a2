"""Exact area (box-filter) downscaling in one pass (numba, compiled once and cached).

The same result as :func:`monet_cli.measure.area_integrate` applied along both axes (the
tests check it), but reading each input pixel once, decoding integer codes through a table
on the way, with no float copy of the input: a 24 MP 16-bit photo becomes a 1280 px linear
proxy in well under a second on two cores.
"""

from __future__ import annotations

import numba
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


@numba.njit(parallel=True, cache=True, nogil=True)
def _box_kernel(src, lut, use_lut, ry0, rw0, rw1, cx0, cw0, cw1, h, w, scale):  # pragma: no cover - compiled
    H, W = src.shape[0], src.shape[1]
    out = np.zeros((h, w, 3), np.float64)
    # input rows contributing to output row j: those with ry0 == j, or ry0 == j - 1 and rw1 > 0
    starts = np.zeros(h + 1, np.int64)
    for y in range(H):
        starts[ry0[y] + 1] += 1
    for j in range(h):
        starts[j + 1] += starts[j]
    for j in numba.prange(h):
        y_begin = starts[j] - 1 if starts[j] > 0 else 0
        for y in range(y_begin, starts[j + 1]):
            if ry0[y] == j:
                wy = rw0[y]
            elif ry0[y] == j - 1:
                wy = rw1[y]
            else:
                continue
            if wy == 0.0:
                continue
            for x in range(W):
                a = cx0[x]
                for c in range(3):
                    v = lut[np.int64(src[y, x, c])] if use_lut else np.float64(src[y, x, c])
                    out[j, a, c] += wy * cw0[x] * v
                    if cw1[x] > 0.0:
                        out[j, a + 1, c] += wy * cw1[x] * v
    for j in numba.prange(h):
        for a in range(w):
            for c in range(3):
                out[j, a, c] *= scale
    return out


_NO_LUT = np.zeros(1, np.float32)


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
    return _box_kernel(src, lut if use_lut else _NO_LUT, use_lut, ry0, rw0, rw1, cx0, cw0, cw1, h, w,
                       (h / H) * (w / W))
