"""The published MonetGPT renderer, re-implemented in numpy from the facts in
``shared/monetgpt-ops.md`` (written from the public code's behaviour; none of it is copied),
for fitting the value map of the ``monetgpt-7b`` preset (``benchmarks/value_map.py``).

Everything works as the published pipeline does: on **sRGB-encoded** floats in [0, 1], no
linearisation, clipped after each operation. A model value ``v`` (an integer in −100…100) is
first post-processed by :func:`damp` (the published pipeline's value rules), then rendered by
:func:`render_op` at ``x = v/100``.

Four of the published operations are GIMP 2.10 filters, run there through Python-Fu. They are
approximated here from GIMP's documented algorithms (all on R′G′B′, as GIMP 2.10 runs them on
an 8-bit sRGB image):

* ``brightness_contrast`` (Contrast): ``(c − 0.5)·tan((k + 1)·π/4) + 0.5`` per channel, ``k``
  the contrast on GIMP's ±1 scale.
* ``color_balance`` (Temperature, Tint's second half): each channel plus 0.7 × the amount of
  each tonal range, the ranges weighted by ramps of width 0.25 at HSL lightness 1/3 and 2/3
  (they sum to 1), then "preserve luminosity": the HSL lightness set back to the input's.
* ``hue_saturation`` (Saturation): HSL saturation × (1 + s).
* ``curves`` on the Value channel (Blacks): the same curve on R, G and B through (0, 0), P and
  (255, 255); GIMP's smooth spline is approximated by a monotone cubic (Fritsch–Carlson).
* ``shadows_highlights`` white point (Whites): L* / (1 − w/100) per ±10 chunk (GEGL's
  white-point adjustment; the shadows and highlights amounts are 0, so nothing else moves).

Not reproduced: Dehaze (the published pipeline derives it from Blacks, Contrast and
Saturation; monet has no such operation) and the 8-bit re-quantisation between operations.
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------- the value rules

HSL_BANDS = ("Red", "Orange", "Yellow", "Green", "Aqua", "Blue", "Purple", "Magenta")
DROPPED = tuple(f"HueAdjustment{b}" for b in ("Yellow", "Green", "Aqua", "Blue"))  # stage 3 drops them

#: the published post-processing, op by op, in words (the value map's ``rule`` per row)
RULES = {
    "Exposure": "v//2, then a gain of 2^(1.923·x) on sRGB-encoded values followed by the power 1/(1.2 + 0.2·f)",
    "Contrast": "negative: v//3; GIMP brightness-contrast at x/5",
    "Highlights": "luma + 0.15·x·mask (highlight trapezoid over 0.35…1)",
    "Shadows": "luma + 0.05·x·mask (shadow trapezoid over 0…0.65)",
    "Whites": "GEGL white point ±int(10·x·k), k 2.7 up / 1.5 down, in ±10 chunks",
    "Blacks": "v//2; a Value curve through (30, 30 ± d); positive: the curve at b/3 with Contrast +2b, "
              "Exposure +b/10, Saturation +b/2",
    "Temperature": "negative: v//2; GIMP colour balance on all ranges, cyan-red +37.5·x, yellow-blue −75·x",
    "Tint": "Lab a += 14·x (and b, L by sign), then GIMP colour balance midtones magenta-green +30·x",
    "Saturation": "negative: v//3; GIMP hue-saturation ×(1 + x)",
}
for _b in HSL_BANDS:
    RULES[f"HueAdjustment{_b}"] = ("dropped by the published stage 3: never rendered" if f"HueAdjustment{_b}" in DROPPED
                                   else "HLS hue shift x·max in ≤ max/3 passes, blurred cosine mask")
    RULES[f"SaturationAdjustment{_b}"] = "negative: v//3; HLS saturation shift x·max in ≤ max/3 passes"
    RULES[f"LuminanceAdjustment{_b}"] = "HLS lightness shift x·max in ≤ max/3 passes"


def damp(op: str, v: int) -> int:
    """A model value as the published pipeline passes it to its renderer (integers, Python's
    floor division, as there)."""
    v = int(v)
    if op in DROPPED:
        return 0
    if op in ("Exposure", "Blacks"):
        return v // 2
    if op == "Temperature" and v < 0:
        return v // 2
    if op == "Contrast" and v < 0:
        return v // 3
    if op.startswith("Saturation") and v < 0:
        return v // 3
    return v


# ----------------------------------------------------------------------------- colour helpers


def _luma601(rgb):
    return rgb @ np.array([0.299, 0.587, 0.114])


def rgb_to_hls(rgb):
    """Vectorised ``colorsys.rgb_to_hls``: hue in [0, 1), lightness, saturation (HSL)."""
    mx = rgb.max(axis=-1)
    mn = rgb.min(axis=-1)
    l = (mx + mn) / 2.0
    d = mx - mn
    s = np.where(d <= 1e-12, 0.0, np.where(l <= 0.5, d / np.maximum(mx + mn, 1e-12),
                                            d / np.maximum(2.0 - mx - mn, 1e-12)))
    dd = np.maximum(d, 1e-12)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rc, gc, bc = (mx - r) / dd, (mx - g) / dd, (mx - b) / dd
    h = np.where(r == mx, bc - gc, np.where(g == mx, 2.0 + rc - bc, 4.0 + gc - rc))
    h = np.where(d <= 1e-12, 0.0, (h / 6.0) % 1.0)
    return h, l, s


def hls_to_rgb(h, l, s):
    """Vectorised ``colorsys.hls_to_rgb``."""
    m2 = np.where(l <= 0.5, l * (1.0 + s), l + s - l * s)
    m1 = 2.0 * l - m2

    def v(hue):
        hue = hue % 1.0
        return np.where(hue < 1 / 6, m1 + (m2 - m1) * hue * 6.0,
                        np.where(hue < 0.5, m2, np.where(hue < 2 / 3, m1 + (m2 - m1) * (2 / 3 - hue) * 6.0, m1)))

    out = np.stack([v(h + 1 / 3), v(h), v(h - 1 / 3)], axis=-1)
    grey = (s <= 0)[..., None]
    return np.where(grey, l[..., None], out)


def srgb_to_lab(rgb):
    """sRGB-encoded → CIELAB (D65), monet's own conversion (:func:`monet_cli.metrics.srgb_to_lab`)."""
    from monet_cli.metrics import srgb_to_lab as to_lab

    return to_lab(np.clip(rgb, 0.0, 1.0))


def lab_to_srgb(lab):
    """The exact inverse of :func:`srgb_to_lab` (the same matrix and white), clipped to [0, 1]."""
    from monet_cli import colorspaces as cs
    from monet_cli.metrics import _SRGB_TO_XYZ, _WHITE_XYZ

    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], axis=-1)
    xyz = np.where(f > 6 / 29, f ** 3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * _WHITE_XYZ
    return cs.SRGB_TRC.encode(np.clip(xyz @ np.linalg.inv(_SRGB_TO_XYZ).T, 0.0, 1.0))


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gaussian_blur(a, sigma):
    if sigma <= 0:
        return a
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    out = a
    for axis in (0, 1):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        p = np.pad(out, pad, mode="reflect")
        out = sum(k[i] * np.take(p, np.arange(i, i + a.shape[axis]), axis=axis) for i in range(2 * r + 1))
    return out


def _monotone_cubic(xs, ys, x):
    """Fritsch–Carlson monotone cubic through the points ``(xs, ys)``, evaluated at ``x``."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    h = np.diff(xs)
    delta = np.diff(ys) / h
    m = np.empty_like(ys)
    m[0], m[-1] = delta[0], delta[-1]
    for i in range(1, len(xs) - 1):
        m[i] = 0.0 if delta[i - 1] * delta[i] <= 0 else (
            3 * (h[i - 1] + h[i]) / ((2 * h[i] + h[i - 1]) / delta[i - 1] + (h[i] + 2 * h[i - 1]) / delta[i]))
    i = np.clip(np.searchsorted(xs, x) - 1, 0, len(xs) - 2)
    t = (x - xs[i]) / h[i]
    h00, h10, h01, h11 = 2 * t**3 - 3 * t**2 + 1, t**3 - 2 * t**2 + t, -2 * t**3 + 3 * t**2, t**3 - t**2
    return h00 * ys[i] + h10 * h[i] * m[i] + h01 * ys[i + 1] + h11 * h[i] * m[i + 1]


# ----------------------------------------------------------------------------- the operations


def exposure(img, x):
    if x == 0:
        return img
    f = 1.923 * x
    return np.clip(img * 2.0**f, 0.0, 1.0) ** (1.0 / (1.2 + 0.2 * f))


def _trapezoid(L, lo, hi, soft):
    rise = 1.0 if lo <= 0 else _smoothstep((L - lo) / soft)
    return rise * _smoothstep((hi - L) / soft)


def shadows_highlights(img, xs=0.0, xh=0.0):
    if xs == 0 and xh == 0:
        return img
    L = _luma601(img)
    Lp = L + 0.05 * xs * _trapezoid(L, 0.0, 0.65, 0.13) + 0.15 * xh * _trapezoid(L, 0.35, 1.0, 0.5)
    ratio = np.where(L > 1e-6, Lp / np.maximum(L, 1e-6), 1.0)
    return np.clip(img * ratio[..., None], 0.0, 1.0)


def whites(img, x):
    n = int(10 * x * (2.7 if x > 0 else 1.5))
    if n == 0:
        return img
    lab = srgb_to_lab(img)
    left = n
    while left != 0:
        c = max(-10, min(10, left))
        lab[..., 0] = np.clip(lab[..., 0] / (1.0 - c / 100.0), 0.0, 100.0)
        left -= c
    return lab_to_srgb(lab)


def blacks_curve(img, x):
    if x == 0:
        return img
    d = 6.0 * (abs(x) + 1.0) ** 4
    px, py = (30.0 + d, 30.0) if x < 0 else (30.0, 30.0 + d)
    px, py = min(px, 254.0), min(py, 254.0)
    return np.clip(_monotone_cubic([0.0, px, 255.0], [0.0, py, 255.0], img * 255.0) / 255.0, 0.0, 1.0)


def contrast(img, x):
    if x == 0:
        return img
    slant = math.tan((x / 5.0 + 1.0) * math.pi / 4.0)
    return np.clip((img - 0.5) * slant + 0.5, 0.0, 1.0)


def saturation(img, x):
    s_amount = int(100 * x) / 100.0
    if s_amount == 0:
        return img
    h, l, s = rgb_to_hls(img)
    return np.clip(hls_to_rgb(h, l, np.clip(s * (1.0 + s_amount), 0.0, 1.0)), 0.0, 1.0)


def _range_weights(l):
    a, b = 0.25, 0.333
    shadows = np.clip((l - b) / -a + 0.5, 0, 1)
    mid = np.clip((l - b) / a + 0.5, 0, 1) * np.clip((l + b - 1) / -a + 0.5, 0, 1)
    high = np.clip((l + b - 1) / a + 0.5, 0, 1)
    return shadows, mid, high


def color_balance(img, cyan_red=(0, 0, 0), magenta_green=(0, 0, 0), yellow_blue=(0, 0, 0)):
    """GIMP's colour balance with preserve-luminosity; amounts per (shadows, midtones,
    highlights) on GIMP's −100…100 scale."""
    _, l, _ = rgb_to_hls(img)
    w = _range_weights(l)
    out = np.empty_like(img)
    for c, amounts in enumerate((cyan_red, magenta_green, yellow_blue)):
        add = sum(0.7 * (a / 100.0) * wi for a, wi in zip(amounts, w))
        out[..., c] = np.clip(img[..., c] + add, 0.0, 1.0)
    h2, _, s2 = rgb_to_hls(out)
    return np.clip(hls_to_rgb(h2, l, s2), 0.0, 1.0)


def temperature(img, x):
    if x == 0:
        return img
    cr, yb = 37.5 * x, -75.0 * x
    return color_balance(img, cyan_red=(cr, cr, cr), yellow_blue=(yb, yb, yb))


def tint(img, x):
    if x == 0:
        return img
    t = 1.4 * x
    lab = srgb_to_lab(img)
    lab[..., 1] += 10 * t
    if t < 0:
        lab[..., 2] -= 10 * t
        lab[..., 0] -= 10 * t
    else:
        lab[..., 2] -= 30 * t
        lab[..., 0] += 5 * t
    lab[..., 0] = np.clip(lab[..., 0], 0, 100)
    out = lab_to_srgb(lab)
    return color_balance(out, magenta_green=(0, 30.0 * x, 0))


HSL_TABLE = {  # centre°, window°, max hue shift°, max saturation shift, max lightness shift
    "Red": (355, 35, 110, 0.5, 0.12), "Orange": (25, 50, 80, 0.6, 0.13), "Yellow": (55, 45, 70, 0.8, 0.28),
    "Green": (100, 100, 70, 0.3, 0.15), "Aqua": (180, 48, 30, 0.2, 0.09), "Blue": (215, 60, 260, 0.9, 0.15),
    "Purple": (280, 90, 60, 0.6, 0.15), "Magenta": (320, 50, 35, 0.7, 0.19),
}


def hsl_band(img, kind: str, band: str, x: float, *, sigma: float = 1.0):
    """One published per-colour op: ``kind`` Hue, Saturation or Luminance of ``band`` at x.
    ``sigma``: the mask's blur in pixels (5 at the published full resolution; scaled here)."""
    if x == 0:
        return img
    centre, window, mh, ms, ml = HSL_TABLE[band]
    mx = {"Hue": mh / 360.0, "Saturation": ms, "Luminance": ml}[kind]
    total = x * mx
    passes = max(1, int(math.ceil(abs(total) / (mx / 3.0) - 1e-9)))
    shift = total / passes
    out = img
    for _ in range(passes):
        h, l, s = rgb_to_hls(out)
        d = np.abs((h * 360.0 - centre + 180.0) % 360.0 - 180.0)
        mask = np.where(d < window, np.maximum(np.cos(np.pi * d / window), 0.0), 0.0)
        mask = _gaussian_blur(mask, sigma) ** 1.3
        top = mask.max()
        if top <= 0:
            break
        mask = mask / top
        if kind == "Hue":
            h = (h + shift * mask) % 1.0
        elif kind == "Saturation":
            s = np.clip(s + shift * mask, 0.0, 1.0)
        else:
            l = np.clip(l + shift * mask, 0.0, 1.0)
        out = np.clip(hls_to_rgb(h, l, s), 0.0, 1.0)
    return out


def render_op(img, op: str, v: int, *, sigma: float = 1.0):
    """``img`` (sRGB-encoded float in [0, 1]) as the published pipeline renders the model's
    value ``v`` for ``op`` alone: the value rules (:func:`damp`), then the operation, in the
    published order (numpy first, then the GIMP filters)."""
    d = damp(op, v)
    if d == 0:
        return img
    x = d / 100.0
    img = np.asarray(img, dtype=np.float64)
    if op == "Exposure":
        return exposure(img, x)
    if op == "Shadows":
        return shadows_highlights(img, xs=x)
    if op == "Highlights":
        return shadows_highlights(img, xh=x)
    if op == "Whites":
        return whites(img, x)
    if op == "Contrast":
        return contrast(img, x)
    if op == "Saturation":
        return saturation(img, x)
    if op == "Temperature":
        return temperature(img, x)
    if op == "Tint":
        return tint(img, x)
    if op == "Blacks":
        if x > 0:  # the renderer's coupling of positive Blacks, in execution order
            img = exposure(img, x / 10)
            img = contrast(img, 2 * x)
            img = saturation(img, x / 2)
            return blacks_curve(img, x / 3)
        return blacks_curve(img, x)
    for kind in ("Hue", "Saturation", "Luminance"):
        if op.startswith(kind + "Adjustment"):
            return hsl_band(img, kind, op[len(kind) + len("Adjustment"):], x, sigma=sigma)
    raise ValueError(f"unknown op {op!r}")
