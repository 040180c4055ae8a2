"""Seeded degradations of good photos, and two classic baselines, for the restore benchmark.

A degradation is a set of monet adjustments applied with the renderer, so what was done is
known exactly and its inverse is well defined within monet's own operations (the paper's
"puzzle C" idea). Magnitudes are drawn uniformly from the ranges below with
``numpy.random.default_rng(seed)``; the same ``(kind, seed)`` always gives the same values.

==================  ==============================================  ===========================
kind                adjustments                                     meaning
==================  ==============================================  ===========================
``under``           Exposure −40…−60                                0.8–1.2 EV under-exposed
``over``            Exposure +40…+60                                0.8–1.2 EV over-exposed
``warm``            Temperature +25…+45                             19–34 mired warm cast
``cool``            Temperature −25…−45                             19–34 mired cool cast
``flat``            Contrast −60…−90, Blacks +20…+40                flat, hazy, lifted blacks
``harsh``           Contrast +60…+90                                harsh contrast
``washed``          Saturation −30…−50                              washed-out colour
``oversaturated``   Saturation +30…+50                              over-saturated colour
==================  ==============================================  ===========================

Combined kinds join single ones with ``+`` (``"under+cool"``); each part draws its own
values from the seed.

*Independent* kinds (prefix ``x-``) use math that is not monet's own renderer, so a planner
that learned to undo monet's ops is also tested on damage it never saw made
(:func:`independent`):

================  ===========================================================================
``x-exposure``    linear gain of ±0.5…1.3 EV
``x-cast``        von Kries channel gains in linear sRGB: a warm/cool cast of 0.1…0.3 in
                  ln(R/B), a green/magenta tint of up to ±0.08 in ln G, luminance kept
``x-contrast``    a power curve about middle grey on sRGB-encoded values, γ 1.3…1.7 or its
                  inverse (harsher or flatter)
``x-saturation``  chroma scaled ×0.45…0.75 or ×1.3…1.6 about each pixel's luminance
``x-gamma``       a gamma of 0.7…0.85 or 1.2…1.4 on sRGB-encoded values (midtones moved)
``x-mix``         two or three of the above at once
================  =========================================================================== :func:`save_like_8bit` then does what saving the degraded photo as an
8-bit sRGB file does (clip to the sRGB gamut and range, quantise), so clipped highlights
and pinned colours are really lost, as in a real bad photo.

Baselines (the classic one-click fixes the auto planner must beat):
:func:`autocontrast` stretches luminance between its 1st and 99th percentile to black and
white (in L*, chroma following luminance); :func:`grey_world` scales R, G, B so that the
image averages to grey (Buchsbaum 1980).
"""

from __future__ import annotations

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli.measure import lstar, lstar_inverse
from monet_cli.metrics import srgb_rendition

RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "under": {"Exposure": (-60.0, -40.0)},
    "over": {"Exposure": (40.0, 60.0)},
    "warm": {"Temperature": (25.0, 45.0)},
    "cool": {"Temperature": (-45.0, -25.0)},
    "flat": {"Contrast": (-90.0, -60.0), "Blacks": (20.0, 40.0)},
    "harsh": {"Contrast": (60.0, 90.0)},
    "washed": {"Saturation": (-50.0, -30.0)},
    "oversaturated": {"Saturation": (30.0, 50.0)},
}
KINDS: tuple[str, ...] = tuple(RANGES)
COMBINED: tuple[str, ...] = ("under+cool", "over+warm", "flat+washed")
INDEPENDENT: tuple[str, ...] = ("x-exposure", "x-cast", "x-contrast", "x-saturation", "x-gamma", "x-mix")

_S2W = cs.SRGB.linear().matrix_to(cs.WORKING)


def degradation(kind: str, seed: int = 0) -> dict[str, float]:
    """The adjustments of degradation ``kind`` (``"warm"``, ``"under+cool"``, …) for ``seed``.

    Values are rounded to integers, as a plan stores them.

    >>> sorted(degradation("flat", 0))
    ['Blacks', 'Contrast']
    """
    parts = kind.split("+")
    unknown = [p for p in parts if p not in RANGES]
    if unknown:
        raise ValueError(f"unknown degradation {unknown[0]!r}; kinds are {', '.join(KINDS)}")
    # one stream per (kind part, seed) so that "warm" draws the same value alone or combined
    out: dict[str, float] = {}
    for p in parts:
        rng = np.random.default_rng([seed, KINDS.index(p)])
        for op, (lo, hi) in RANGES[p].items():
            out[op] = float(round(rng.uniform(lo, hi)))
    return out


def check_kind(kind: str) -> None:
    """Raise ValueError naming the kinds unless ``kind`` is a degradation this module makes."""
    if kind.startswith("x-"):
        if kind not in INDEPENDENT:
            raise ValueError(f"unknown degradation {kind!r}; independent kinds are {', '.join(INDEPENDENT)}")
    else:
        degradation(kind, 0)


def degrade(rgb: np.ndarray, kind: str, seed: int = 0) -> tuple[np.ndarray, dict[str, float]]:
    """Working-space linear ``rgb`` degraded by ``kind``: ``(pixels float32, adjustments)``.

    For an independent kind (``x-…``) the dict holds that degradation's own parameters
    (:func:`independent`), not monet adjustments."""
    from monet_cli.render import render_linear

    if kind.startswith("x-"):
        return independent(rgb, kind, seed)
    adjustments = degradation(kind, seed)
    return render_linear(np.asarray(rgb, dtype=np.float32), adjustments), adjustments


# ----------------------------------------------------------------------------- independent math

_W2S = cs.WORKING.matrix_to(cs.SRGB.linear())
_LUMA_SRGB = cs.SRGB.linear().to_xyz[1]
_GREY_ENCODED = float(cs.SRGB_TRC.encode(np.array(cs.MIDDLE_GREY)))


def independent_parameters(kind: str, seed: int = 0) -> dict[str, float]:
    """The parameters of independent degradation ``kind`` (module docstring) for ``seed``.

    Keys: ``ev`` (x-exposure), ``cast``/``tint`` (x-cast: ln R/B and ln G gains), ``gamma``
    (x-contrast, x-gamma), ``chroma`` (x-saturation); x-mix merges two or three of them,
    prefixed by their kind (``"x-cast.cast"``).
    """
    rng = np.random.default_rng([seed, 1000 + INDEPENDENT.index(kind)] if kind in INDEPENDENT else [seed])
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "x-exposure":
        return {"ev": round(sign * rng.uniform(0.5, 1.3), 3)}
    if kind == "x-cast":
        return {"cast": round(sign * rng.uniform(0.1, 0.3), 3), "tint": round(rng.uniform(-0.08, 0.08), 3)}
    if kind == "x-contrast":
        g = rng.uniform(1.3, 1.7)
        return {"gamma": round(g if sign > 0 else 1.0 / g, 3)}
    if kind == "x-saturation":
        return {"chroma": round(rng.uniform(1.3, 1.6) if sign > 0 else rng.uniform(0.45, 0.75), 3)}
    if kind == "x-gamma":
        return {"gamma": round(rng.uniform(1.2, 1.4) if sign > 0 else rng.uniform(0.7, 0.85), 3)}
    if kind == "x-mix":
        parts = [k for k in INDEPENDENT if k != "x-mix"]
        parts.remove("x-gamma" if rng.random() < 0.5 else "x-exposure")  # both move the midtones
        n = 2 if rng.random() < 0.6 else 3
        chosen = sorted(rng.choice(len(parts), size=n, replace=False))
        out: dict[str, float] = {}
        for i in chosen:
            for key, v in independent_parameters(parts[i], seed + 7919 * (i + 1)).items():
                out[f"{parts[i]}.{key}"] = v
        return out
    raise ValueError(f"unknown degradation {kind!r}; independent kinds are {', '.join(INDEPENDENT)}")


def apply_independent(rgb: np.ndarray, parameters: dict[str, float], kind: str) -> np.ndarray:
    """Apply independent degradation ``kind`` with ``parameters`` to working linear ``rgb``."""
    if kind == "x-mix":
        out = np.asarray(rgb, dtype=np.float64)
        for part in INDEPENDENT[:-1]:  # a fixed order: light first, then colour
            sub = {k.split(".", 1)[1]: v for k, v in parameters.items() if k.startswith(part + ".")}
            if sub:
                out = apply_independent(out, sub, part)
        return out.astype(np.float32)
    lin = np.asarray(rgb, dtype=np.float64) @ _W2S.T  # linear sRGB: the math of a typical editor
    if kind == "x-exposure":
        lin = lin * 2.0 ** parameters["ev"]
    elif kind == "x-cast":
        gains = np.exp([0.5 * parameters["cast"], parameters["tint"], -0.5 * parameters["cast"]])
        lin = lin * (gains / float(gains @ _LUMA_SRGB))
    elif kind in ("x-contrast", "x-gamma"):
        enc = cs.SRGB_TRC.encode(np.clip(lin, 0.0, None))
        g = parameters["gamma"]
        enc = _GREY_ENCODED * (enc / _GREY_ENCODED) ** g if kind == "x-contrast" else enc**g
        lin = cs.SRGB_TRC.decode(np.clip(enc, 0.0, None))
    elif kind == "x-saturation":
        Y = (lin @ _LUMA_SRGB)[..., None]
        lin = Y + parameters["chroma"] * (lin - Y)
    else:
        raise ValueError(f"unknown degradation {kind!r}; independent kinds are {', '.join(INDEPENDENT)}")
    return (lin @ np.linalg.inv(_W2S).T).astype(np.float32)


def independent(rgb: np.ndarray, kind: str, seed: int = 0) -> tuple[np.ndarray, dict[str, float]]:
    """Working linear ``rgb`` degraded by independent ``kind``: ``(pixels float32, parameters)``."""
    params = independent_parameters(kind, seed)
    return apply_independent(rgb, params, kind), params


def srgb8_to_working(u8: np.ndarray) -> np.ndarray:
    """8-bit sRGB codes → working-space linear float32."""
    lin = cs.SRGB_TRC.decode(np.asarray(u8, dtype=np.float64) / 255.0)
    return (lin @ _S2W.T).astype(np.float32)


def working_to_srgb8(rgb: np.ndarray) -> np.ndarray:
    """Working-space linear → 8-bit sRGB codes (clipped to the gamut and range, rounded)."""
    return np.round(srgb_rendition(rgb, bits=None) * 255.0).astype(np.uint8)


def save_like_8bit(rgb: np.ndarray) -> np.ndarray:
    """What writing ``rgb`` to an 8-bit sRGB file and reading it back gives (working linear)."""
    return srgb8_to_working(working_to_srgb8(rgb))


# ----------------------------------------------------------------------------- baselines


def autocontrast(rgb: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Per-image percentile stretch: luminance percentiles ``low``/``high`` → black/white.

    On lightness, ``L*′ = 100·(L* − L*_low)/(L*_high − L*_low)``, clipped to [0, 100]; each
    pixel's RGB is scaled by ``Y′/Y`` (hue and saturation ratio kept). Images whose
    percentiles coincide are returned unchanged.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    Y = np.maximum(rgb @ cs.LUMA, 0.0)
    lo, hi = np.percentile(lstar(Y), [low, high])
    if hi - lo < 1e-6:
        return rgb.astype(np.float32)
    Lp = np.clip(100.0 * (lstar(Y) - lo) / (hi - lo), 0.0, 100.0)
    Yp = lstar_inverse(Lp)
    ratio = np.where(Y > 1e-8, Yp / np.maximum(Y, 1e-8), 0.0)
    out = rgb * ratio[..., None]
    out = np.where((Y <= 1e-8)[..., None], Yp[..., None], out)  # black pixels become the new grey level
    return out.astype(np.float32)


def grey_world(rgb: np.ndarray) -> np.ndarray:
    """Grey-world white balance: gains ``mean(Y) / mean(channel)`` on R, G and B (Buchsbaum 1980)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    means = rgb.reshape(-1, 3).mean(axis=0)
    if np.any(means <= 0):
        return rgb.astype(np.float32)
    gains = float(means @ cs.LUMA) / means
    return (rgb * gains).astype(np.float32)
