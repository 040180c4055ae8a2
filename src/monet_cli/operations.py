"""The 33 operations as pure numpy formulas: the reference the fast renderer is checked against.

Every function works on **scene-linear working-space RGB** (linear BT.2020, D65; see
:mod:`monet_cli.colorspaces`) in float64, shape ``(..., 3)``, or on luminance ``Y``.
Values are the catalogue's numbers in [-100, 100]; 0 is the exact identity of each op.
Nothing here clips: values above 1 (highlights beyond white) and below 0 (out-of-gamut
colours) pass through.

Tone operations (stage ``lighting``) act on luminance ``Y`` (CIE Y of the working RGB) and
scale R, G, B by the same ratio ``Y'/Y``, so they keep hue and saturation. They are defined
on the *stop* coordinate ``x = log2(Y / 0.18)`` (0 at middle grey, +2.47 at diffuse white),
which makes them independent of image size and content.

The colour stage is a single 3×3 matrix (white balance, then saturation). The HSL stage
works per pixel on the hue of the working RGB; its band weights are a partition of unity
around the hue circle and it leaves neutral greys exactly untouched.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli.catalog import catalog

LUMA = cs.LUMA
GREY = cs.MIDDLE_GREY
X_WHITE = float(np.log2(1.0 / GREY))  # stops from middle grey to diffuse white (2.474)
X_BLACK = 7.0  # stops below middle grey taken as "black" by Contrast (Y = 0.0014)

# Scales: what ±100 means. Kept together so the catalogue text and the code agree.
EXPOSURE_EV = 2.0  # ±100 → ±2 EV
CONTRAST_SLOPE = 1.4  # ±100 → slope at middle grey ×1.4 or ÷1.4 in stops
HIGHLIGHTS_EV, HIGHLIGHTS_CENTRE, HIGHLIGHTS_RADIUS = 0.8, 1.6, 1.7
SHADOWS_EV, SHADOWS_CENTRE, SHADOWS_RADIUS = 1.2, -3.0, 2.6
WHITES_EV, WHITES_FROM = 0.7, 0.0  # ramps in from middle grey to diffuse white, then stays
BLACKS_LEVEL, BLACKS_RANGE = 0.02, 0.045  # +100 → +0.02 at Y = 0, fading out at Y = 0.045
BLACKS_TOE, BLACKS_TOE_WIDTH = 1.0, 2.0  # −100 → toe slope 2 in stops below Y = 0.045
TEMPERATURE_MIRED = 75.0  # ±100 → ±75 mired
TINT_DUV = 0.02  # ±100 → ∓0.02 Duv (positive = magenta, below the Planckian locus)
HUE_DEGREES = 30.0  # ±100 → ±30° rotation of the chroma about the neutral axis
HSL_LUM_EV = 1.0  # ±100 → ±1 EV on saturated colours
HSL_CHROMA_FULL = 0.5  # HSV saturation (linear) from which an HSL luminance change is complete
D65_CCT = 6504.0


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(x, centre, radius):
    """Raised cosine: 1 at ``centre``, 0 beyond ``radius``; slope at most π/(2·radius)."""
    z = np.clip((x - centre) / radius, -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * z))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """CIE Y of working-space RGB: ``Y = 0.2627 R + 0.6780 G + 0.0593 B`` (BT.2020)."""
    return np.asarray(rgb, dtype=np.float64) @ LUMA


# --------------------------------------------------------------------------- lighting


def exposure_gain(value: float) -> float:
    """Exposure as a linear gain: ``2 ** (value / 50)`` — +50 is exactly +1 EV.

    >>> exposure_gain(50), exposure_gain(-100)
    (2.0, 0.25)
    """
    return float(2.0 ** (value * EXPOSURE_EV / 100.0))


def exposure(rgb: np.ndarray, value: float) -> np.ndarray:
    """``rgb · 2^(value/50)``: a change of exposure in linear light (camera-like, hue kept)."""
    return np.asarray(rgb, dtype=np.float64) * exposure_gain(value)


def _stops(Y):
    with np.errstate(divide="ignore"):
        return np.log2(np.maximum(Y, 0.0) / GREY)


def _from_stops(x):
    return GREY * np.exp2(x)


def contrast_curve(Y: np.ndarray, value: float) -> np.ndarray:
    """Contrast on luminance, pivoting on middle grey (0.18), which never moves.

    On ``t = x / 2.474`` above grey and ``t = x / 7`` below (``x`` in stops from grey;
    ``t = ±1`` at diffuse white and at black) it applies the odd cubic
    ``s(t) = c·t + (1 − c)·t³`` with ``c = 1.4 ** (value / 100)``: slope ``c`` at grey,
    white and black kept, monotone for c in [1/1.4, 1.4]; beyond ``|t| = 1`` it continues
    with the end slope ``3 − 2c``. Domain Y ≥ 0, range Y' ≥ 0.
    """
    if value == 0:
        return np.asarray(Y, dtype=np.float64)
    c = CONTRAST_SLOPE ** (value / 100.0)
    x = _stops(Y)
    scale = np.where(x >= 0, X_WHITE, X_BLACK)
    t = x / scale
    at = np.abs(t)
    with np.errstate(invalid="ignore"):
        inner = c * at + (1.0 - c) * at**3
    s = np.where(at <= 1.0, inner, 1.0 + (3.0 - 2.0 * c) * (at - 1.0))
    x_new = np.where(np.isneginf(x), -np.inf, np.sign(t) * s * scale)
    return _from_stops(x_new)


def highlights_curve(Y: np.ndarray, value: float) -> np.ndarray:
    """Brighten (+) or recover (−) the bright tones.

    ``x' = x + 0.8·(value/100)·b(x)``, ``b`` a raised-cosine bump centred 1.6 stops above
    grey with a radius of 1.7 stops (no effect at or below middle grey, nor above 3.3 stops
    over it; about half at diffuse white). ``0.8 · π / 3.4 < 1`` keeps the curve monotone.
    """
    if value == 0:
        return np.asarray(Y, dtype=np.float64)
    x = _stops(Y)
    return _from_stops(x + HIGHLIGHTS_EV * value / 100.0 * _bump(x, HIGHLIGHTS_CENTRE, HIGHLIGHTS_RADIUS))


def shadows_curve(Y: np.ndarray, value: float) -> np.ndarray:
    """Open (+) or deepen (−) the dark tones: a 1.2 EV bump centred three stops under grey,
    radius 2.6 stops (middle grey and everything brighter untouched)."""
    if value == 0:
        return np.asarray(Y, dtype=np.float64)
    x = _stops(Y)
    return _from_stops(x + SHADOWS_EV * value / 100.0 * _bump(x, SHADOWS_CENTRE, SHADOWS_RADIUS))


def whites_curve(Y: np.ndarray, value: float) -> np.ndarray:
    """Move the white point: ``x' = x + 0.7·(value/100)·smoothstep((x − 0)/2.474)``.

    No effect at or below middle grey, the full ±0.7 EV at diffuse white and above (so it
    also pulls back highlights beyond white). Monotone: ``0.7 · 1.5 / 2.474 < 1``.
    """
    if value == 0:
        return np.asarray(Y, dtype=np.float64)
    x = _stops(Y)
    ramp = _smoothstep((x - WHITES_FROM) / (X_WHITE - WHITES_FROM))
    return _from_stops(x + WHITES_EV * value / 100.0 * ramp)


def blacks_crush_curve(Y: np.ndarray, value: float) -> np.ndarray:
    """Negative Blacks: a toe that deepens the darkest tones, smoothly and never clipping.

    With ``z = x − x_b`` the stops below ``x_b = log2(0.045/0.18) = −2`` and ``a = value/100``
    (negative), ``x' = x + a·φ(z)`` where ``φ = z²/4`` for ``−2 < z < 0`` and ``φ = −z − 1``
    below: slope ``1 − a·z/2 ≥ 1`` in stops, so the curve stays strictly monotone and at −100
    the deep shadows fall twice as fast as the input (a power toe of exponent 2). Identity
    for value ≥ 0 (positive Blacks is :func:`blacks_pedestal`).
    """
    Y = np.asarray(Y, dtype=np.float64)
    if value >= 0:
        return Y
    a = value / 100.0 * BLACKS_TOE
    z = _stops(Y) - np.log2(BLACKS_RANGE / GREY)
    w = BLACKS_TOE_WIDTH
    with np.errstate(invalid="ignore"):
        phi = np.where(z >= 0, 0.0, np.where(z > -w, z * z / (2 * w), -z - w / 2))
    out = _from_stops(_stops(Y) + a * phi)
    return np.where(Y > 0, out, 0.0)


def blacks_pedestal(Y: np.ndarray, value: float) -> np.ndarray:
    """Positive Blacks: the neutral amount ``β·(1 − Y/0.045)²`` (Y < 0.045) added to R, G and B.

    A lifted, matte black as in faded film (``β = 0.02·value/100``); it fades to nothing at
    Y = 0.045. Monotone in Y since ``2β/0.045 < 1``. Zero for value ≤ 0.
    """
    Y = np.asarray(Y, dtype=np.float64)
    if value <= 0:
        return np.zeros_like(Y)
    beta = BLACKS_LEVEL * value / 100.0
    return beta * np.clip(1.0 - np.maximum(Y, 0.0) / BLACKS_RANGE, 0.0, None) ** 2


def tone_curve(Y: np.ndarray, adjustments: dict) -> np.ndarray:
    """Contrast, Highlights, Shadows, Whites and (negative) Blacks composed in that order."""
    a = adjustments
    Y = contrast_curve(Y, a.get("Contrast", 0.0))
    Y = highlights_curve(Y, a.get("Highlights", 0.0))
    Y = shadows_curve(Y, a.get("Shadows", 0.0))
    Y = whites_curve(Y, a.get("Whites", 0.0))
    return blacks_crush_curve(Y, a.get("Blacks", 0.0))


def apply_lighting(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    """Stage 1: Exposure (gain), the tone curve on luminance as a ratio, then the black pedestal."""
    rgb = exposure(rgb, adjustments.get("Exposure", 0.0))
    Y = luminance(rgb)
    Yc = np.maximum(Y, 0.0)
    Yt = tone_curve(Yc, adjustments)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(Yc > 0, Yt / Yc, 1.0)
    rgb = rgb * ratio[..., None]
    return rgb + blacks_pedestal(Yt, adjustments.get("Blacks", 0.0))[..., None]


# --------------------------------------------------------------------------- colour


def white_point_uv(temperature: float, tint: float) -> tuple[float, float]:
    """CIE 1960 uv of the white that D65 neutrals are adapted to.

    D65 moved along the Planckian locus by ``temperature·0.75`` mired (Krystek 1985) and
    across it by ``−tint/100·0.02`` Duv (positive tint = magenta = below the locus).
    """
    u0, v0 = cs.xy_to_uv1960(cs.D65_XY)
    m0 = 1e6 / D65_CCT
    T1 = 1e6 / (m0 + temperature * TEMPERATURE_MIRED / 100.0)
    pu0, pv0 = cs.planck_uv(D65_CCT)
    pu1, pv1 = cs.planck_uv(T1)
    # unit normal to the locus at D65, pointing to the green side (+Duv)
    du, dv = np.subtract(cs.planck_uv(D65_CCT + 10.0), cs.planck_uv(D65_CCT - 10.0))
    n = np.array([-dv, du]) / np.hypot(du, dv)
    if n[1] < 0:
        n = -n
    shift = -tint / 100.0 * TINT_DUV
    return (u0 + pu1 - pu0 + shift * n[0], v0 + pv1 - pv0 + shift * n[1])


def white_balance_matrix(temperature: float, tint: float) -> np.ndarray:
    """Temperature/Tint as a Bradford chromatic adaptation in working RGB (3×3).

    Neutral D65 greys become the white of :func:`white_point_uv` with their luminance kept
    (the target white has Y = 1). Identity at (0, 0). Positive temperature warms.
    """
    if temperature == 0 and tint == 0:
        return np.eye(3)
    target = cs.xy_to_XYZ(cs.uv1960_to_xy(*white_point_uv(temperature, tint)))
    cat = cs.chromatic_adaptation_matrix(cs.xy_to_XYZ(cs.D65_XY), target)
    M = cs.WORKING.to_xyz
    return np.linalg.inv(M) @ cat @ M


def saturation_matrix(value: float) -> np.ndarray:
    """``rgb' = Y + s·(rgb − Y)`` with ``s = 1 + value/100`` as a 3×3 matrix (greys and Y kept)."""
    s = 1.0 + value / 100.0
    return s * np.eye(3) + (1.0 - s) * np.outer(np.ones(3), LUMA)


def color_matrix(adjustments: dict) -> np.ndarray:
    """Stage 2 as one matrix: white balance first, then saturation."""
    wb = white_balance_matrix(adjustments.get("Temperature", 0.0), adjustments.get("Tint", 0.0))
    return saturation_matrix(adjustments.get("Saturation", 0.0)) @ wb


def apply_color(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64) @ color_matrix(adjustments).T


# --------------------------------------------------------------------------- HSL


def hexagonal_hue(rgb: np.ndarray) -> np.ndarray:
    """HSV hue of linear RGB in sextants [0, 6) (0 red, 2 green, 4 blue); 0 for greys."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx, mn = rgb.max(-1), rgb.min(-1)
    c = mx - mn
    safe = np.where(c > 0, c, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    return np.where(c > 0, h, 0.0)


def _hsv_to_rgb(h, s, v):
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.stack([np.choose(i, [v, q, p, p, t, v]), np.choose(i, [t, v, v, q, p, p]),
                     np.choose(i, [p, p, t, v, v, q])], axis=-1)


def named_hue(h: np.ndarray) -> np.ndarray:
    """Degrees of sRGB-encoded HSV hue for a working-space hexagonal hue ``h`` (sextants).

    The HSL band centres (those of MonetGPT and close to Lightroom's) are given on the hue of
    sRGB-encoded values. This maps the hue measured on linear BT.2020 to that scale through
    the colour of that hue at HSV saturation 0.35, value 0.5 (inside sRGB, so unclipped).
    The map is smooth and strictly increasing around the circle (checked in the tests).
    """
    lin = _hsv_to_rgb(np.asarray(h, dtype=np.float64) % 6.0, 0.35, 0.5)
    enc = cs.SRGB_TRC.encode(lin @ cs.WORKING.matrix_to(cs.SRGB.linear()).T)
    return hexagonal_hue(enc) * 60.0


def band_weights(hue_deg: np.ndarray) -> np.ndarray:
    """Weights of the eight HSL bands at the given hue (degrees), shape ``(..., 8)``.

    Between two neighbouring band centres ``c_i < c_{i+1}`` the weights cross-fade with a
    smoothstep of ``(hue − c_i)/(c_{i+1} − c_i)``; all others are 0. They sum to exactly 1
    everywhere and each band is 1 at its own centre.
    """
    centres = np.array([b.centre for b in catalog().bands])
    order = np.argsort(centres)
    cs_sorted = centres[order]
    h = np.asarray(hue_deg, dtype=np.float64) % 360.0
    ext = np.concatenate([cs_sorted, [cs_sorted[0] + 360.0]])
    hh = np.where(h < cs_sorted[0], h + 360.0, h)
    seg = np.clip(np.searchsorted(ext, hh, side="right") - 1, 0, len(cs_sorted) - 1)
    t = _smoothstep((hh - ext[seg]) / (ext[seg + 1] - ext[seg]))
    w_sorted = np.zeros(h.shape + (len(centres),))
    idx = np.arange(len(centres))
    w_sorted += (idx == seg[..., None]) * (1.0 - t)[..., None]
    w_sorted += (idx == ((seg + 1) % len(centres))[..., None]) * t[..., None]
    w = np.empty_like(w_sorted)
    w[..., order] = w_sorted
    return w


def hsl_values(adjustments: dict) -> np.ndarray:
    """The 8×3 table (hue, saturation, luminance) of HSL values per band, catalogue band order."""
    bands = [b.name for b in catalog().bands]
    return np.array([[adjustments.get(f"{k}{b}", 0.0) for k in
                      ("HueAdjustment", "SaturationAdjustment", "LuminanceAdjustment")] for b in bands], float)


def hsl_factors(h: np.ndarray, adjustments: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hue (sextants): rotation angle θ (radians), chroma factor, full luminance gain.

    ``θ = Σ w_b·H_b/100·30°``, ``chroma = 1 + Σ w_b·S_b/100``, ``gain = 2^(Σ w_b·L_b/100)``.
    """
    w = band_weights(named_hue(h))
    v = hsl_values(adjustments) / 100.0
    theta = np.radians(HUE_DEGREES) * (w @ v[:, 0])
    chroma = 1.0 + w @ v[:, 1]
    gain = np.exp2(HSL_LUM_EV * (w @ v[:, 2]))
    return theta, chroma, gain


def chroma_weight(rgb: np.ndarray) -> np.ndarray:
    """``smoothstep(S / 0.5)`` with ``S = (max − min)/max`` (HSV saturation of linear RGB):
    0 for greys, 1 from S = 0.5. Scales the HSL luminance change so greys never move."""
    rgb = np.asarray(rgb, dtype=np.float64)
    mx, mn = rgb.max(-1), rgb.min(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(mx > 0, (mx - mn) / mx, 0.0)
    return _smoothstep(s / HSL_CHROMA_FULL)


def apply_hsl(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    """Stage 3: per-band hue rotation, chroma scale and luminance gain.

    With ``d = rgb − Y`` (the chroma, zero luminance), ``d`` is rotated by ``θ(h)`` about the
    neutral axis (Rodrigues' formula, positive = red towards green), made zero-luminance
    again, scaled by the band chroma factor, added back to ``Y`` (luminance kept), and the
    result multiplied by ``1 + (gain(h) − 1)·chroma_weight``. A grey has ``d = 0`` and
    chroma weight 0, so it is returned exactly.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    Y = luminance(rgb)[..., None]
    d = rgb - Y
    theta, chroma, gain = hsl_factors(hexagonal_hue(rgb), adjustments)
    cos, sin = np.cos(theta)[..., None], np.sin(theta)[..., None]
    axis = np.full(3, 1.0 / np.sqrt(3.0))
    cross = np.stack([d[..., 2] - d[..., 1], d[..., 0] - d[..., 2], d[..., 1] - d[..., 0]], -1) / np.sqrt(3.0)
    rot = d * cos + cross * sin + axis * (d @ axis)[..., None] * (1.0 - cos)
    rot = rot - (rot @ LUMA)[..., None]
    out = Y + rot * chroma[..., None]
    k = chroma_weight(rgb)
    return out * (1.0 + (gain - 1.0) * k)[..., None]


# --------------------------------------------------------------------------- all stages


@lru_cache(maxsize=1)
def _op_names() -> frozenset:
    return frozenset(catalog().ops)


def render_reference(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    """All three stages in order on working-space linear RGB (float64). Slow; for tests and docs."""
    unknown = set(adjustments) - _op_names()
    if unknown:
        raise KeyError(f"unknown operations: {sorted(unknown)}")
    stages = catalog().stages
    out = np.asarray(rgb, dtype=np.float64)
    if any(adjustments.get(n, 0) for n in stages["lighting"].ops):
        out = apply_lighting(out, adjustments)
    if any(adjustments.get(n, 0) for n in stages["color"].ops):
        out = apply_color(out, adjustments)
    if any(adjustments.get(n, 0) for n in stages["hsl"].ops):
        out = apply_hsl(out, adjustments)
    return out
