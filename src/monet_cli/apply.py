"""Apply a plan to a photo: read, render at full resolution and bit depth, write atomically.

Output rules (each overridable):

* file: ``<stem>.monet.<ext>`` beside the input; RAW inputs give ``.tif``;
* depth: 16-bit TIFF for RAW and integer TIFF inputs, 32-bit float for float TIFFs (they may
  hold values beyond white); JPEG is 8-bit; PNG keeps the input's depth;
* colour space: the input's (its ICC profile, or sRGB when untagged); RAW becomes 16-bit
  ProPhoto RGB, or sRGB when written as JPEG/PNG. The output embeds a matching ICC profile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli.errors import OutputError, UsageError
from monet_cli.plan import Plan

DEPTHS = {8: np.uint8, 16: np.uint16, 32: np.float32}


@dataclass
class ApplyResult:
    source: Path
    output: Path
    width: int
    height: int
    bit_depth: int
    colorspace: str
    adjustments: dict
    seconds: dict = field(default_factory=dict)
    metadata: dict | None = None  # what was carried (monet_cli.metadata.OutputMetadata.to_dict); None: --no-metadata

    def to_dict(self) -> dict:
        return {"source": str(self.source), "output": str(self.output), "width": self.width,
                "height": self.height, "bit_depth": self.bit_depth, "colorspace": self.colorspace,
                "adjustments": self.adjustments, "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                "metadata": self.metadata}


def default_output_path(photo, out_dir=None, fmt: str | None = None) -> Path:
    """``IMG_0042.CR2`` → ``IMG_0042.monet.tif``; ``a.jpg`` → ``a.monet.jpg`` (in ``out_dir``
    if given; ``fmt`` = tif/jpg/png picks another format)."""
    from monet_cli.images import is_raw

    p = Path(photo)
    if fmt:
        ext = "." + {"tiff": "tif", "jpeg": "jpg"}.get(fmt.lower().lstrip("."), fmt.lower().lstrip("."))
    else:
        ext = ".tif" if is_raw(p) else p.suffix.lower()
    folder = Path(out_dir) if out_dir is not None else p.parent
    return folder / f"{p.stem}.monet{ext}"


def output_encoding(image, out_path: Path, *, colorspace: str | None = None, depth: int | None = None):
    """The (ColorSpace, numpy dtype) an output at ``out_path`` gets (module docstring rules)."""
    from monet_cli.images import output_format_for

    fmt = output_format_for(out_path)
    src_bits = image.bit_depth
    if depth is None:
        if fmt == "jpeg":
            depth = 8
        elif fmt == "png":
            depth = 16 if src_bits >= 16 else 8
        else:
            depth = 32 if src_bits == 32 else 16
    if depth not in DEPTHS:
        raise UsageError(f"--depth must be 8, 16 or 32, not {depth}")
    if fmt == "jpeg" and depth != 8:
        raise UsageError("JPEG output is 8-bit only; use .tif or .png for 16-bit")
    if fmt == "png" and depth == 32:
        raise UsageError("PNG output is 8- or 16-bit; use .tif for 32-bit float")
    if colorspace is not None:
        try:
            space = cs.get(colorspace)
        except ValueError as e:
            raise UsageError(str(e)) from None
    elif image.format == "raw":
        space = cs.PROPHOTO if fmt == "tiff" else cs.SRGB
    else:
        space = image.colorspace
    return space, np.dtype(DEPTHS[depth])


def check_output(photo: Path, out: Path, overwrite: bool) -> None:
    """Refuse to write over the input, or over an existing output without ``overwrite``."""
    if out.exists() and photo.exists() and out.resolve() == photo.resolve():
        raise OutputError("refusing to overwrite the input photo; choose another -o", path=out)
    if out.is_dir():
        raise OutputError("output is a directory; give a file name", path=out)
    if out.exists() and not overwrite:
        raise OutputError("output exists; use --force to overwrite it", path=out)


def apply_plan(photo, plan: Plan, out=None, *, overwrite: bool = False, colorspace: str | None = None,
               depth: int | None = None, metadata: bool = True, strip_gps: bool = False) -> ApplyResult:
    """Render ``plan`` onto ``photo`` and write it to ``out`` (default :func:`default_output_path`).

    ``metadata``: carry the photo's EXIF, GPS (unless ``strip_gps``), copyright and the plan as
    XMP into the output (:mod:`monet_cli.metadata`); what could not be read or written is a
    warning in the result's ``metadata``, never a failed render."""
    from monet_cli.images import read_image, write_image
    from monet_cli.render import render_image

    photo = Path(photo)
    out = Path(out) if out is not None else default_output_path(photo)
    check_output(photo, out, overwrite)
    t0 = time.perf_counter()
    image = read_image(photo)
    t1 = time.perf_counter()
    space, dtype = output_encoding(image, out, colorspace=colorspace, depth=depth)
    adjustments = plan.adjustments
    result = render_image(image, adjustments, colorspace=space, dtype=dtype)
    t2 = time.perf_counter()
    om = None
    if metadata:
        from monet_cli.metadata import output_metadata, plan_xmp, read_metadata

        h, w = result.pixels.shape[:2]
        om = output_metadata(read_metadata(photo), width=w, height=h, colorspace=space.name, strip_gps=strip_gps,
                             xmp=plan_xmp(adjustments, photo.name))
    write_image(out, result, overwrite=overwrite, metadata=om)
    t3 = time.perf_counter()
    return ApplyResult(source=photo, output=out, width=image.width, height=image.height,
                       bit_depth=result.bit_depth, colorspace=space.name, adjustments=adjustments,
                       seconds={"read": t1 - t0, "render": t2 - t1, "write": t3 - t2, "total": t3 - t0},
                       metadata=om.to_dict() if om is not None else None)


def apply_photo(photo, *, plan: Plan | None = None, out=None, out_dir=None, fmt: str | None = None,
                overwrite: bool = False, skip_existing: bool = True, colorspace: str | None = None,
                depth: int | None = None, sidecar_dir=None, check_source: bool = True, metadata: bool = True,
                strip_gps: bool = False) -> ApplyResult:
    """One photo of ``monet apply``: find its plan (``plan`` or its sidecar), render, write.

    An existing output is skipped (:class:`~monet_cli.batch.Skip`) when ``skip_existing``,
    an error otherwise, unless ``overwrite``. A stale sidecar is an error when ``check_source``.
    """
    from monet_cli.batch import Skip
    from monet_cli.sidecars import read_sidecar

    photo = Path(photo)
    target = Path(out) if out is not None else default_output_path(photo, out_dir, fmt)
    if target.exists() and not overwrite and skip_existing and not target.is_dir():
        if photo.exists() and target.resolve() != photo.resolve():
            raise Skip(f"{target.name} exists (use --force to render again)")
    if plan is None:
        plan, _ = read_sidecar(photo, sidecar_dir, check_source=check_source)
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    return apply_plan(photo, plan, target, overwrite=overwrite, colorspace=colorspace, depth=depth,
                      metadata=metadata, strip_gps=strip_gps)
