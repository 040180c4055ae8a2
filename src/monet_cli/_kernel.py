"""The fused per-pixel render kernel (numba, parallel over rows, compiled once and cached).

One pass reads each pixel, decodes it, runs the three stages and encodes the result, so a
24 MP 16-bit image needs no float copy of itself. The math is that of
:mod:`monet_cli.operations` with the per-op curves baked into small 1-D tables by
:mod:`monet_cli.render`; the tests check both agree.
"""

from __future__ import annotations

import math
import sys
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _skip_blas_probe() -> None:
    """Load ``numba.np.arraymath`` now, without its BLAS probe. numba loads that module on the
    first compile or cache load, and it then imports ``scipy.linalg`` where SciPy is installed
    (about 0.1 s here) to offer ``np.dot`` and friends in jitted code, which this kernel never
    uses. The probe is answered "absent" only while that one module loads, and only while this
    is the process's only thread (another thread's import of SciPy must never see the answer);
    SciPy stays importable as usual afterwards."""
    name = "scipy.linalg"
    if name in sys.modules or "numba.np.arraymath" in sys.modules or threading.active_count() != 1:
        return
    sys.modules[name] = None  # ``import scipy.linalg…`` raises ImportError: numba notes "no BLAS"
    try:
        import numba.np.arraymath  # noqa: F401
    except ImportError:
        pass
    finally:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


_skip_blas_probe()

from monet_cli._tables import (  # noqa: E402 - after the probe; the layout both kernels share
    _BASE,
    _SHIFT,
    CHROMA_FULL,
    HUE_STEPS,
    LOG_MAX,
    LOG_MIN,
    MANT_BITS,
    log_table_points,
)

__all__ = ["CHROMA_FULL", "HUE_STEPS", "LOG_MAX", "LOG_MIN", "MANT_BITS", "log_table_points", "render_kernel"]


@intrinsic
def _f32_bits(typingctx, x):
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


BLOCK = 256  # pixels per step; each step is a branch-free loop that LLVM vectorises


@numba.njit(fastmath=True, inline="always", cache=True)
def _log_index(v, n):
    """Entry and fraction of float32 ``v`` in a bit-indexed table of ``n`` + 1 points (below
    it: 0, 0; above it: the last interval, 1); selects, not branches, for vectorised loops."""
    bits = _f32_bits(np.float32(v))
    t = (bits >> _SHIFT) - _BASE
    f = np.float32(bits & ((1 << _SHIFT) - 1)) * np.float32(1.0 / (1 << _SHIFT))
    lo = t < 0
    hi = t >= n
    i = np.int32(0) if lo else (np.int32(n - 1) if hi else np.int32(t))
    f = np.float32(0.0) if lo else (np.float32(1.0) if hi else f)
    return i, f


@numba.njit(fastmath=True, inline="always", cache=True)
def _mat3_block(m, R, G, B, n):
    """rgb = m · rgb for the first ``n`` pixels of a block, in place."""
    for k in range(n):
        r, g, b = R[k], G[k], B[k]
        R[k] = m[0, 0] * r + m[0, 1] * g + m[0, 2] * b
        G[k] = m[1, 0] * r + m[1, 1] * g + m[1, 2] * b
        B[k] = m[2, 0] * r + m[2, 1] * g + m[2, 2] * b


# numba's workqueue threading layer (what numba uses without TBB or OpenMP, e.g. on a Mac
# without libomp) aborts the process when two threads run parallel code at once, as
# `monet apply -j 2` and `monet plan -j 2` would: their calls take turns (each already uses
# every core). The area downscale (_area_numba) takes the same lock.
LOCK = threading.Lock()


def render_kernel(*args) -> None:
    """:func:`_render_kernel` (same arguments), one call at a time in this process."""
    with LOCK:
        _render_kernel(*args)


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _render_kernel(src, dst, decode_lut, m_in, luma, tone_on, tone_ratio, tone_pedestal,
                   color_on, m_col, hsl_on, hsl_lut, m_out, encode_lut, out_max):
    """src (H, W, 3) uint8/uint16/float32 → dst (H, W, 3) uint8/uint16/float32.

    ``decode_lut``: float32 table from integer code to linear value (empty for float input,
    which is then linear already). ``m_in``: input RGB → working RGB, exposure gain
    included. ``tone_ratio``/``tone_pedestal``: bit-indexed tables on Y (see
    :func:`log_table_points`). ``encode_lut``: bit-indexed table on the linear output value
    in [2^-24, 1] giving the encoded value in [0, 1] (empty for float output, which then
    stays linear). ``out_max``: 255 or 65535.

    Each row goes through in blocks of :data:`BLOCK` pixels, one step at a time over the
    block, every step without branches, as in the C kernel (``_ckernel.c``).
    """
    H, W = src.shape[0], src.shape[1]
    use_decode = decode_lut.shape[0] > 0
    use_encode = encode_lut.shape[0] > 0
    n_tone = tone_ratio.shape[0] - 1
    n_enc = encode_lut.shape[0] - 1
    n_h = hsl_lut.shape[0]
    inv_sqrt3 = np.float32(1.0 / math.sqrt(3.0))
    l0, l1, l2 = luma[0], luma[1], luma[2]
    q_max = np.int32(out_max)
    for y in numba.prange(H):
        R = np.empty(BLOCK, np.float32)
        G = np.empty(BLOCK, np.float32)
        B = np.empty(BLOCK, np.float32)
        for x0 in range(0, W, BLOCK):
            n = min(BLOCK, W - x0)
            if use_decode:
                for k in range(n):
                    R[k] = decode_lut[np.int64(src[y, x0 + k, 0])]
                    G[k] = decode_lut[np.int64(src[y, x0 + k, 1])]
                    B[k] = decode_lut[np.int64(src[y, x0 + k, 2])]
            else:
                for k in range(n):
                    R[k] = np.float32(src[y, x0 + k, 0])
                    G[k] = np.float32(src[y, x0 + k, 1])
                    B[k] = np.float32(src[y, x0 + k, 2])
            _mat3_block(m_in, R, G, B, n)
            if tone_on:
                for k in range(n):
                    r, g, b = R[k], G[k], B[k]
                    i, f = _log_index(l0 * r + l1 * g + l2 * b, n_tone)
                    ratio = tone_ratio[i] + f * (tone_ratio[i + 1] - tone_ratio[i])
                    ped = tone_pedestal[i] + f * (tone_pedestal[i + 1] - tone_pedestal[i])
                    R[k] = r * ratio + ped
                    G[k] = g * ratio + ped
                    B[k] = b * ratio + ped
            if color_on:
                _mat3_block(m_col, R, G, B, n)
            if hsl_on:
                for k in range(n):
                    r, g, b = R[k], G[k], B[k]
                    mx = max(r, g, b)
                    c = mx - min(r, g, b)
                    on = c > 1e-12  # false for NaN too: such pixels pass unchanged
                    inv_c = np.float32(HUE_STEPS) / (c if on else np.float32(1.0))
                    rmax = mx == r
                    gmax = (not rmax) and mx == g
                    num = (g - b) if rmax else ((b - r) if gmax else (r - g))
                    off = np.float32(0.0) if rmax else (np.float32(2 * HUE_STEPS) if gmax
                                                        else np.float32(4 * HUE_STEPS))
                    t = num * inv_c + off
                    t = t + np.float32(6 * HUE_STEPS) if t < 0 else t
                    # in [0, 6 * HUE_STEPS] for finite input; anything else reads entry 0
                    t = t if (t >= 0 and t <= np.float32(6 * HUE_STEPS)) else np.float32(0.0)
                    i = np.int32(t)
                    f = t - np.float32(i)
                    i = i - n_h if i >= n_h else i
                    j = np.int32(0) if i + 1 >= n_h else i + 1
                    cs = hsl_lut[i, 0] + f * (hsl_lut[j, 0] - hsl_lut[i, 0])
                    sn = hsl_lut[i, 1] + f * (hsl_lut[j, 1] - hsl_lut[i, 1])
                    chroma = hsl_lut[i, 2] + f * (hsl_lut[j, 2] - hsl_lut[i, 2])
                    gain = hsl_lut[i, 3] + f * (hsl_lut[j, 3] - hsl_lut[i, 3])
                    Y = l0 * r + l1 * g + l2 * b
                    dr, dg, db = r - Y, g - Y, b - Y
                    # Rodrigues' rotation about the neutral axis (1, 1, 1)/sqrt(3)
                    dot = (dr + dg + db) * inv_sqrt3 * (np.float32(1.0) - cs) * inv_sqrt3
                    rr = dr * cs + (db - dg) * inv_sqrt3 * sn + dot
                    rg = dg * cs + (dr - db) * inv_sqrt3 * sn + dot
                    rb = db * cs + (dg - dr) * inv_sqrt3 * sn + dot
                    ly = l0 * rr + l1 * rg + l2 * rb
                    s = c / (mx if mx > 0 else np.float32(1.0)) if mx > 0 else np.float32(0.0)
                    q = min(s / np.float32(CHROMA_FULL), np.float32(1.0))
                    q = q * q * (np.float32(3.0) - np.float32(2.0) * q)
                    m = np.float32(1.0) + (gain - np.float32(1.0)) * q
                    R[k] = (Y + (rr - ly) * chroma) * m if on else r
                    G[k] = (Y + (rg - ly) * chroma) * m if on else g
                    B[k] = (Y + (rb - ly) * chroma) * m if on else b
            _mat3_block(m_out, R, G, B, n)
            for k in range(n):
                if use_encode:
                    dst[y, x0 + k, 0] = _encode(R[k], encode_lut, n_enc, out_max, q_max)
                    dst[y, x0 + k, 1] = _encode(G[k], encode_lut, n_enc, out_max, q_max)
                    dst[y, x0 + k, 2] = _encode(B[k], encode_lut, n_enc, out_max, q_max)
                else:
                    dst[y, x0 + k, 0] = R[k]
                    dst[y, x0 + k, 1] = G[k]
                    dst[y, x0 + k, 2] = B[k]


@numba.njit(fastmath=True, inline="always", cache=True)
def _encode(v, lut, n, out_max, q_max):
    """The output code of linear ``v``: 0 at or below 0 (and NaN), ``q_max`` from 1, else the
    table's value rounded; without branches. The table holds [0, 1], so truncation is floor."""
    i, f = _log_index(v, n)
    e = lut[i] + f * (lut[i + 1] - lut[i])
    code = np.int32(e * out_max + np.float32(0.5))
    code = q_max if v >= 1 else code
    return code if v > 0 else np.int32(0)
