"""The numba version of the area downscale in :mod:`monet_cli._area` (used where the C
kernel is not: see :func:`monet_cli.render.kernel`); compiled once and cached."""

from __future__ import annotations

import numba
import numpy as np

from monet_cli._kernel import LOCK  # numba loaded without its SciPy BLAS probe


def box_kernel(*args) -> np.ndarray:
    """:func:`_box_kernel` (same arguments), one numba call at a time (``_kernel.LOCK``)."""
    with LOCK:
        return _box_kernel(*args)


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


NO_LUT = np.zeros(1, np.float32)
