"""PNG plots without a plotting library: violin plots drawn with numpy and Pillow's ImageDraw.

Two figures, both returned as ``(H, W, 3)`` uint8 sRGB arrays (:func:`save_png` writes one):

* :func:`metric_distributions` — one panel per metric, one violin per group (best/mean over
  targets in ``monet eval``; degraded/restored/baselines in ``monet bench restore``);
* :func:`plan_value_distributions` — per stage, one violin per operation of the values the
  plans gave it (the paper's violin plots of adjustment values).

A violin is a Gaussian kernel density estimate (Silverman's rule-of-thumb bandwidth,
``1.06·σ·n^(-1/5)``, B. W. Silverman, *Density Estimation*, 1986, eq. 3.28) mirrored about
the group's axis and scaled to the slot's width, cut at the data's minimum and maximum; the
dark bar is the interquartile range and the white dot the median. Fewer than two distinct
values are drawn as a short line.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

PALETTE = [(52, 101, 164), (204, 0, 0), (78, 154, 6), (196, 160, 0), (117, 80, 123), (6, 152, 154),
           (206, 92, 0), (85, 87, 83)]
INK = (30, 30, 30)
GRID = (225, 225, 225)
BG = (255, 255, 255)


@lru_cache(maxsize=8)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _text_w(draw, text: str, font) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return x1 - x0


def kde(values, grid) -> np.ndarray:
    """Gaussian kernel density of ``values`` on ``grid`` (Silverman bandwidth); integrates to 1.

    >>> d = kde(np.array([0.0, 1.0, 2.0]), np.linspace(-5, 7, 2001))
    >>> round(float(d.sum() * 12 / 2000), 3)
    1.0
    """
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(grid, dtype=np.float64)
    sd = v.std()
    iqr = np.subtract(*np.percentile(v, [75, 25]))
    spread = min(sd, iqr / 1.34) if iqr > 0 else sd
    h = 1.06 * max(spread, 1e-12) * v.size ** (-0.2)
    z = (g[:, None] - v[None, :]) / h
    return np.exp(-0.5 * z * z).sum(axis=1) / (v.size * h * math.sqrt(2.0 * math.pi))


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2 or 5 × 10^k) within [lo, hi].

    >>> nice_ticks(0, 100)
    [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    """
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [float(round(first + i * step, 10)) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _tint(c, f: float = 0.55):
    return tuple(int(round(255 - (255 - x) * (1 - f))) for x in c)


def violin_panel(draw, box, categories: list[str], series: list[tuple[str, tuple, list]], lo: float, hi: float,
                 *, title: str = "", zero_line: bool = False, counts: bool = False) -> None:
    """Draw violins into ``box`` = (x0, y0, x1, y1) of a Pillow ``draw``.

    ``series`` is ``[(name, colour, values_per_category)]``; within each category slot the
    series sit side by side. The y axis spans [lo, hi] with round ticks.
    """
    x0, y0, x1, y1 = box
    f_small, f_title = _font(11), _font(13)
    left, bottom, top = x0 + 46, y1 - (34 if counts else 22), y0 + (22 if title else 8)
    right = x1 - 8
    if title:
        draw.text((x0 + 46, y0 + 4), title, fill=INK, font=f_title)

    def y_of(v):
        return bottom - (np.clip(v, lo, hi) - lo) / (hi - lo) * (bottom - top)

    for t in nice_ticks(lo, hi):
        yy = y_of(t)
        draw.line([(left, yy), (right, yy)], fill=GRID)
        label = _fmt(t)
        draw.text((left - 6 - _text_w(draw, label, f_small), yy - 6), label, fill=INK, font=f_small)
    if zero_line and lo < 0 < hi:
        draw.line([(left, y_of(0)), (right, y_of(0))], fill=(150, 150, 150), width=1)
    draw.rectangle([left, top, right, bottom], outline=(160, 160, 160))
    n_cat = max(1, len(categories))
    slot = (right - left) / n_cat
    n_ser = max(1, len(series))
    sub = slot / n_ser
    for ci, cat in enumerate(categories):
        cx0 = left + ci * slot
        label = cat if _text_w(draw, cat, f_small) <= slot - 2 else cat[: max(1, int(len(cat) * (slot - 2) /
                                                                                 _text_w(draw, cat, f_small)))]
        draw.text((cx0 + slot / 2 - _text_w(draw, label, f_small) / 2, bottom + 4), label, fill=INK, font=f_small)
        for si, (_, colour, per_cat) in enumerate(series):
            vals = np.asarray([v for v in per_cat[ci] if v is not None and np.isfinite(v)], dtype=np.float64)
            cx = cx0 + (si + 0.5) * sub
            half = min(sub * 0.42, 40)
            if counts:
                n = f"n={vals.size}"
                draw.text((cx - _text_w(draw, n, f_small) / 2, bottom + 17), n, fill=(110, 110, 110), font=f_small)
            if vals.size == 0:
                continue
            if vals.size < 2 or np.ptp(vals) == 0:
                yy = y_of(float(np.median(vals)))
                draw.line([(cx - half, yy), (cx + half, yy)], fill=colour, width=3)
                continue
            grid = np.linspace(vals.min(), vals.max(), 64)
            d = kde(vals, grid)
            w = d / d.max() * half
            pts = [(cx - wi, y_of(g)) for g, wi in zip(grid, w)] + [(cx + wi, y_of(g)) for g, wi in
                                                                      zip(grid[::-1], w[::-1])]
            draw.polygon(pts, fill=_tint(colour), outline=colour)
            q1, med, q3 = np.percentile(vals, [25, 50, 75])
            draw.line([(cx, y_of(q1)), (cx, y_of(q3))], fill=INK, width=4)
            r = 2.5
            ym = y_of(med)
            draw.ellipse([cx - r, ym - r, cx + r, ym + r], fill=(255, 255, 255), outline=INK)


def _legend(draw, x, y, series) -> None:
    f = _font(12)
    for name, colour, _ in series:
        draw.rectangle([x, y + 2, x + 12, y + 12], fill=_tint(colour), outline=colour)
        draw.text((x + 16, y), name, fill=INK, font=f)
        x += 16 + _text_w(draw, name, f) + 18


def _range(values: np.ndarray, bounds: tuple[float | None, float | None]) -> tuple[float, float]:
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = (hi - lo) * 0.06 or max(abs(hi) * 0.05, 0.05)
    lo, hi = lo - pad, hi + pad
    if bounds[0] is not None:
        lo = max(lo, bounds[0])
    if bounds[1] is not None:
        hi = min(hi, bounds[1])
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


_BOUNDS = {"ssim": (None, 1.0), "delta_e": (0.0, None), "l1": (0.0, None), "lpips": (0.0, None),
           "histogram": (0.0, 100.0), "hist_luminance": (0.0, 100.0), "hist_contrast": (0.0, 100.0),
           "hist_saturation": (0.0, 100.0), "psnr": (0.0, None)}


def metric_distributions(groups: dict[str, list[dict]], metrics: list[str], *, title: str = "",
                         columns: int = 3, panel: tuple[int, int] = (340, 250)) -> np.ndarray:
    """One violin panel per metric; ``groups`` maps a group name to its per-image metric dicts."""
    from PIL import Image, ImageDraw

    from monet_cli.evaluate import METRICS

    metrics = list(metrics) or ["psnr"]
    cols = min(columns, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    head = 46
    im = Image.new("RGB", (cols * panel[0] + 10, rows * panel[1] + head), BG)
    draw = ImageDraw.Draw(im)
    draw.text((12, 6), title or "metric distributions", fill=INK, font=_font(15))
    series = [(name, PALETTE[i % len(PALETTE)], None) for i, name in enumerate(groups)]
    _legend(draw, 12, 26, series)
    for k, m in enumerate(metrics):
        r, c = divmod(k, cols)
        box = (5 + c * panel[0], head + r * panel[1], 5 + (c + 1) * panel[0], head + (r + 1) * panel[1])
        per = [[[d.get(m) for d in rows_]] for rows_ in groups.values()]
        allv = np.array([v for p in per for v in p[0] if v is not None and np.isfinite(v)], dtype=np.float64)
        lo, hi = _range(allv, _BOUNDS.get(m, (None, None)))
        label, sign = METRICS.get(m, (m, 1))
        label = label.replace("Δ", "d").replace("∩", "intersection")
        ser = [(name, colour, p) for (name, colour, _), p in zip(series, per)]
        violin_panel(draw, box, [""], ser, lo, hi,
                     title=f"{label} ({'higher' if sign > 0 else 'lower'} is better)")
    return np.asarray(im)


def short_op_name(op: str) -> str:
    """``SaturationAdjustmentBlue`` → ``Sat Blue`` (plot labels); other names unchanged."""
    for long, short in (("HueAdjustment", "Hue "), ("SaturationAdjustment", "Sat "),
                        ("LuminanceAdjustment", "Lum ")):
        if op.startswith(long):
            return short + op[len(long):]
    return op


def plan_value_distributions(groups: dict[str, list[dict]], *, title: str = "") -> np.ndarray:
    """Per stage, one violin per operation of the values the plans of each group gave it.

    ``groups`` maps a name to a list of adjustment dicts (``{op: value}``). Only ops that some
    plan sets are drawn; a plan that leaves an op at 0 does not count for it (``n=`` under each
    violin says how many plans set it), so the violin shows how strongly it is used.
    """
    from PIL import Image, ImageDraw

    from monet_cli.catalog import STAGES, catalog

    cat = catalog()
    series = [(name, PALETTE[i % len(PALETTE)], None) for i, name in enumerate(groups)]
    stage_ops = []
    for s in STAGES:
        used = [op for op in cat.stages[s].ops if any(p.get(op, 0) for plans in groups.values() for p in plans)]
        if used:
            stage_ops.append((s, used))
    if not stage_ops:
        stage_ops = [("lighting", [])]
    per_op_w = max(84, 36 * len(series))
    width = max(520, 60 + per_op_w * max(len(ops) for _, ops in stage_ops))
    panel_h, head = 260, 46
    im = Image.new("RGB", (width + 10, head + panel_h * len(stage_ops)), BG)
    draw = ImageDraw.Draw(im)
    n = sum(len(p) for p in groups.values())
    draw.text((12, 6), title or f"plan values ({n} plans)", fill=INK, font=_font(15))
    _legend(draw, 12, 26, series)
    for k, (s, ops) in enumerate(stage_ops):
        box = (5, head + k * panel_h, 5 + max(300, 60 + per_op_w * max(1, len(ops))), head + (k + 1) * panel_h)
        ser = [(name, colour, [[p[op] for p in plans if p.get(op, 0)] for op in ops])
               for (name, colour, _), plans in zip(series, groups.values())]
        title_s = f"{cat.stages[s].title}" + ("" if ops else " (no adjustments in any plan)")
        violin_panel(draw, box, [short_op_name(o) for o in ops], ser, -100.0, 100.0, title=title_s,
                     zero_line=True, counts=True)
    return np.asarray(im)


def save_png(path, pixels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write an 8-bit sRGB ``(H, W, 3)`` array as a PNG, atomically (existing file: ``overwrite``)."""
    from monet_cli.colorspaces import SRGB
    from monet_cli.images import Image, write_image

    return write_image(Path(path), Image(np.ascontiguousarray(pixels, dtype=np.uint8), SRGB, "png"),
                       overwrite=overwrite)
