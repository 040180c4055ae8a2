"""Quick-look images for reviewing plans: before/after, one panel per stage, contact sheets.

A preview is for the eye, not for delivery: the photo is reduced to a proxy (long side
``size``, box filter in linear light; RAW files are demosaiced at half size first) and the
plan is rendered on that proxy with the same renderer as ``monet apply`` — every op is per
pixel, so the proxy looks like a reduced full render. Panels are 8-bit sRGB with a caption
strip under each:

* before/after: ``original`` | ``after`` (the whole plan);
* with ``stages``: ``original`` | ``1 Lighting`` | ``2 Colour`` | ``3 HSL``, each panel the
  photo with the stages up to it applied, captioned with that stage's adjustments;
* :func:`contact_sheet`: a grid of such rows at thumbnail size, one cell per photo, with its
  file name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monet_cli.plots import BG, INK, _font, _text_w

PREVIEW_SIDE = 768
THUMB_SIDE = 280
CAPTION_H = 38
GAP = 6


@dataclass
class Panel:
    title: str
    detail: str
    pixels: np.ndarray  # (h, w, 3) uint8 sRGB


def _fmt_ops(adjustments: dict) -> str:
    from monet_cli.plots import short_op_name

    if not adjustments:
        return "no change"
    return ", ".join(f"{short_op_name(k)} {v:+g}" for k, v in adjustments.items())


def plan_panels(proxy: np.ndarray, plan, *, stages: bool = False) -> list[Panel]:
    """Panels of a working-space linear ``proxy`` under ``plan`` (a :class:`~monet_cli.plan.Plan`)."""
    from monet_cli.catalog import STAGES, catalog
    from monet_cli.degrade import working_to_srgb8
    from monet_cli.render import render_linear

    proxy = np.asarray(proxy, dtype=np.float32)
    panels = [Panel("original", "", working_to_srgb8(proxy))]
    if stages:
        cat = catalog()
        current = proxy
        for i, s in enumerate(STAGES, 1):
            sp = plan.stages[s]
            if sp.adjustments:
                current = render_linear(current, sp.adjustments)
            detail = "failed: " + (sp.error or "") if sp.status == "failed" else _fmt_ops(sp.adjustments)
            panels.append(Panel(f"{i} {cat.stages[s].title}", detail, working_to_srgb8(current)))
    else:
        adj = plan.adjustments
        panels.append(Panel("after", _fmt_ops(adj), working_to_srgb8(render_linear(proxy, adj))))
    return panels


def load_proxy(photo, size: int = PREVIEW_SIDE) -> np.ndarray:
    """``photo`` read (RAW at half size) and reduced to long side ``size``, working-space linear."""
    from monet_cli.images import read_image
    from monet_cli.planners.base import make_proxy

    return make_proxy(read_image(photo, draft=True), size)


def _fit_text(draw, text: str, font, width: int) -> str:
    if _text_w(draw, text, font) <= width:
        return text
    while text and _text_w(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def compose(panels: list[Panel], *, header: str = "", box: int | None = None, small: bool = False) -> np.ndarray:
    """Panels side by side with captions (and an optional header line): an ``(H, W, 3)`` uint8.

    ``box``: give each panel a column ``box`` pixels wide, the panel centred in it (contact
    sheet cells of equal width); default: the panels' own widths.
    """
    from PIL import Image, ImageDraw

    f_title, f_detail = (_font(12), _font(11)) if small else (_font(14), _font(12))
    cap = 30 if small else CAPTION_H
    head = (18 if small else 26) if header else 0
    ws = [box or p.pixels.shape[1] for p in panels]
    hs = [max(q.pixels.shape[0] for q in panels)] * len(panels)
    W = sum(ws) + GAP * (len(panels) + 1)
    H = head + max(hs) + cap + GAP
    im = Image.new("RGB", (W, H), BG)
    draw = ImageDraw.Draw(im)
    if header:
        draw.text((GAP, 3), _fit_text(draw, header, _font(12 if small else 15), W - 2 * GAP), fill=INK,
                  font=_font(12 if small else 15))
    x = GAP
    for p, w, h in zip(panels, ws, hs):
        ph, pw = p.pixels.shape[:2]
        ox, oy = x + (w - pw) // 2, head + (h - ph) // 2
        im.paste(Image.fromarray(np.ascontiguousarray(p.pixels)), (ox, oy))
        ty = head + h + 3
        draw.text((x, ty), _fit_text(draw, p.title, f_title, w), fill=INK, font=f_title)
        if p.detail:
            draw.text((x, ty + (13 if small else 17)), _fit_text(draw, p.detail, f_detail, w), fill=(90, 90, 90),
                      font=f_detail)
        x += w + GAP
    return np.asarray(im)


def preview_photo(photo, plan, *, stages: bool = False, size: int = PREVIEW_SIDE) -> np.ndarray:
    """The preview image of one photo: before/after (or per-stage) panels, long side ``size`` each."""
    if size < 16:
        from monet_cli.errors import UsageError

        raise UsageError(f"--size must be at least 16 pixels, got {size}")
    panels = plan_panels(load_proxy(photo, size), plan, stages=stages)
    return compose(panels, header=Path(photo).name)


def contact_sheet(cells: list[tuple[str, list[Panel]]], *, columns: int | None = None,
                  thumb: int = THUMB_SIDE, title: str = "") -> np.ndarray:
    """A grid of photos, each cell its panels at thumbnail size (``thumb`` square per panel)
    with the file name above; ``columns`` defaults to about a 4:3 sheet."""
    from PIL import Image, ImageDraw

    if not cells:
        raise ValueError("no photos for the contact sheet")
    imgs = [compose(p, header=name, box=thumb, small=True) for name, p in cells]
    cw = max(i.shape[1] for i in imgs)
    ch = float(np.mean([i.shape[0] for i in imgs]))
    if columns is None:
        columns = max(1, round(np.sqrt(len(imgs) * 4 / 3 * ch / cw)))
    columns = max(1, min(columns, len(imgs)))
    rows = [imgs[i:i + columns] for i in range(0, len(imgs), columns)]
    heights = [max(a.shape[0] for a in row) for row in rows]
    head = 30 if title else 0
    sheet = Image.new("RGB", (columns * cw, head + sum(heights)), BG)
    if title:
        ImageDraw.Draw(sheet).text((GAP, 6), title, fill=INK, font=_font(16))
    y = head
    for row, h in zip(rows, heights):
        for c, a in enumerate(row):
            sheet.paste(Image.fromarray(a), (c * cw, y))
        y += h
    return np.asarray(sheet)


def sheet_cell(photo, plan, *, stages: bool = False, thumb: int = THUMB_SIDE) -> tuple[str, list[Panel]]:
    """One contact-sheet cell: the photo's name and its panels at thumbnail size."""
    return Path(photo).name, plan_panels(load_proxy(photo, thumb), plan, stages=stages)


def default_preview_path(photo, out_dir=None) -> Path:
    """``a.CR2`` → ``a.monet.preview.jpg`` beside the photo (or in ``out_dir``). The ``.monet.``
    in the name keeps previews out of later folder runs."""
    p = Path(photo)
    return (Path(out_dir) if out_dir is not None else p.parent) / f"{p.stem}.monet.preview.jpg"


def write_preview(path, pixels: np.ndarray, *, overwrite: bool = False, quality: int = 90) -> Path:
    """Write an 8-bit sRGB preview (JPEG or PNG by suffix), atomically."""
    from monet_cli.colorspaces import SRGB
    from monet_cli.images import Image, output_format_for, write_image

    path = Path(path)
    fmt = output_format_for(path)
    return write_image(path, Image(np.ascontiguousarray(pixels, dtype=np.uint8), SRGB, fmt), overwrite=overwrite,
                       quality=quality)
