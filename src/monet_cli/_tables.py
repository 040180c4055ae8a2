"""The table layout shared by the render kernels (numba: :mod:`monet_cli._kernel`; C:
:mod:`monet_cli._ckernel`), importable without either.

Tables on luminance and on output values are indexed by the bits of the float32 value:
exponent and the top 8 mantissa bits pick the entry, the other 15 bits interpolate. That is
a table uniform in log2 with 256 steps per stop (relative interpolation error ~5e-7 on a
power law) at the cost of a shift, no log2 or pow per pixel. ``_ckernel.c`` is compiled with
these constants as ``-D`` flags; a test checks that both kernels agree.
"""

from __future__ import annotations

import numpy as np

MANT_BITS = 8
LOG_MIN = -24  # values below 2^-24 use the first entry (tone) or encode to 0
LOG_MAX = 8  # tone table up to 2^8 (beyond: last ratio); encode tables up to 1
HUE_STEPS = 256  # per sextant; 1536 around the circle
CHROMA_FULL = 0.5
_SHIFT = 23 - MANT_BITS
_BASE = (127 + LOG_MIN) << MANT_BITS  # bits >> _SHIFT of 2^LOG_MIN


def log_table_points(log_max: int) -> np.ndarray:
    """The float64 values at which a bit-indexed table is sampled: 2^LOG_MIN .. 2^log_max."""
    n = (log_max - LOG_MIN) << MANT_BITS
    k = np.arange(n + 1)
    e, m = k >> MANT_BITS, k & ((1 << MANT_BITS) - 1)
    return np.ldexp(1.0 + m / float(1 << MANT_BITS), e + LOG_MIN)
