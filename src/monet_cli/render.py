"""Render adjustments onto an image: validate, bake the ops into tables, run the fused kernel.

The formulas are those of :mod:`monet_cli.operations`. Here the tone curve becomes a table
on ``log2(Y)`` (256 samples per stop, linear interpolation: relative error < 1e-6), the
colour stage one 3×3 matrix, the HSL stage a table on hue (256 samples per sextant), and
input decoding / output encoding tables, so that a single parallel pass does all the work.

An all-zero plan returns the input pixels bit for bit when the output space and depth are
those of the input; an op at 0 is skipped, so it is the exact identity too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli import operations as ops
from monet_cli.catalog import catalog
from monet_cli.plan import validate_values


@dataclass(frozen=True)
class Program:
    """The baked form of a set of adjustments (working space to working space)."""

    gain: float
    tone_ratio: np.ndarray | None
    tone_pedestal: np.ndarray | None
    color: np.ndarray | None
    hsl: np.ndarray | None

    @property
    def is_identity(self) -> bool:
        return self.gain == 1.0 and self.tone_ratio is None and self.color is None and self.hsl is None


def _key(adjustments: dict, names) -> tuple:
    return tuple(sorted((n, float(adjustments[n])) for n in names if adjustments.get(n, 0)))


@lru_cache(maxsize=64)
def _tone_tables(key: tuple):
    from monet_cli import _tables as k

    a = dict(key)
    Y = k.log_table_points(k.LOG_MAX)
    Yt = ops.tone_curve(Y, a)
    ratio = Yt / Y
    pedestal = ops.blacks_pedestal(Yt, a.get("Blacks", 0.0))
    return ratio.astype(np.float32), pedestal.astype(np.float32)


@lru_cache(maxsize=64)
def _hsl_table(key: tuple) -> np.ndarray:
    from monet_cli import _tables as k

    h = np.arange(6 * k.HUE_STEPS) / k.HUE_STEPS
    theta, chroma, gain = ops.hsl_factors(h, dict(key))
    return np.stack([np.cos(theta), np.sin(theta), chroma, gain], axis=1).astype(np.float32)


def compile_program(adjustments: dict) -> Program:
    """Bake validated adjustments into a :class:`Program` (tables are cached per value set)."""
    stages = catalog().stages
    a = adjustments
    tone_key = _key(a, [n for n in stages["lighting"].ops if n != "Exposure"])
    color_key = _key(a, stages["color"].ops)
    hsl_key = _key(a, stages["hsl"].ops)
    ratio = pedestal = None
    if tone_key:
        ratio, pedestal = _tone_tables(tone_key)
    return Program(
        gain=ops.exposure_gain(a.get("Exposure", 0.0)),
        tone_ratio=ratio,
        tone_pedestal=pedestal,
        color=ops.color_matrix(dict(color_key)) if color_key else None,
        hsl=_hsl_table(hsl_key) if hsl_key else None,
    )


@lru_cache(maxsize=16)
def decode_table(trc: cs.TransferFunction, bits: int) -> np.ndarray:
    """float32 linear value of every ``bits``-bit code of a transfer function (exact, cached)."""
    codes = np.arange(2**bits, dtype=np.float64) / (2**bits - 1)
    return trc.decode(codes).astype(np.float32)


@lru_cache(maxsize=16)
def _encode_table(trc: cs.TransferFunction) -> np.ndarray:
    from monet_cli import _tables as k

    return np.clip(trc.encode(k.log_table_points(0)), 0.0, 1.0).astype(np.float32)


KERNELS = ("auto", "c", "numba")


@lru_cache(maxsize=1)
def kernel():
    """``(name, function)`` of the render kernel this process uses, chosen once.

    ``$MONET_KERNEL``: ``auto`` (default) — the C kernel (:mod:`monet_cli._ckernel`, built
    once with the system compiler), else numba's (:mod:`monet_cli._kernel`); ``c`` — the C
    kernel or an error saying why not; ``numba`` — numba's. Both compute the same thing
    (tests compare them); the C kernel starts in milliseconds instead of ~0.4 s.
    """
    from monet_cli.errors import InputError

    choice = os.environ.get("MONET_KERNEL", "auto").strip().lower() or "auto"
    if choice not in KERNELS:
        raise InputError(f"MONET_KERNEL={choice!r}: expected one of {', '.join(KERNELS)}")
    if choice in ("auto", "c"):
        from monet_cli import _ckernel

        try:
            _ckernel.load()
            return "c", _ckernel.render_kernel
        except _ckernel.KernelUnavailable as e:
            if choice == "c":
                raise InputError(f"MONET_KERNEL=c: {e}") from None
    from monet_cli import _kernel

    return "numba", _kernel.render_kernel


_EMPTY1 = np.zeros(0, np.float32)
_EMPTY2 = np.zeros((1, 4), np.float32)
_EYE = np.eye(3, dtype=np.float32)


def run_program(program: Program, src: np.ndarray, in_space: cs.ColorSpace, out_space: cs.ColorSpace,
                out_dtype) -> np.ndarray:
    """Apply ``program`` to encoded ``src`` pixels of ``in_space``; return ``out_dtype`` pixels.

    Integer input is decoded by table; float input is decoded in numpy first (float TIFFs are
    rare and usually linear already). Integer output is encoded by table and rounded; float
    output is encoded in numpy after the kernel.
    """
    render_kernel = kernel()[1]
    out_dtype = np.dtype(out_dtype)
    if src.ndim != 3 or src.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) pixels, got {src.shape}")
    if src.dtype.kind == "u":
        decode = decode_table(in_space.trc, src.dtype.itemsize * 8)
    else:
        src = src if in_space.trc.is_linear else in_space.trc.decode(src)
        src = np.ascontiguousarray(src, dtype=np.float32)
        decode = _EMPTY1
    if src.dtype == np.uint8:
        src = src.astype(np.uint16)  # one kernel specialisation for all integer input
    src = np.ascontiguousarray(src)
    m_in = (in_space.linear().matrix_to(cs.WORKING) * program.gain).astype(np.float32)
    m_out = cs.WORKING.matrix_to(out_space.linear()).astype(np.float32)
    if out_dtype.kind == "u":
        encode = _encode_table(out_space.trc)
        out_max = float(np.iinfo(out_dtype).max)
    else:
        encode, out_max = _EMPTY1, 1.0
    # 8-bit output is encoded with out_max 255 into a 16-bit buffer, then narrowed (exact):
    # the kernels take uint16/float32 only.
    dst = np.empty(src.shape, dtype=np.uint16 if out_dtype.kind == "u" else np.float32)
    render_kernel(
        src, dst, decode, m_in, cs.LUMA.astype(np.float32),
        program.tone_ratio is not None,
        program.tone_ratio if program.tone_ratio is not None else _EMPTY1,
        program.tone_pedestal if program.tone_pedestal is not None else _EMPTY1,
        program.color is not None,
        program.color.astype(np.float32) if program.color is not None else _EYE,
        program.hsl is not None,
        program.hsl if program.hsl is not None else _EMPTY2,
        m_out, encode, out_max,
    )
    if out_dtype == np.uint8:
        dst = dst.astype(np.uint8)
    if out_dtype.kind == "f" and not out_space.trc.is_linear:
        dst = out_space.trc.encode(dst).astype(np.float32)
    return dst


def render_linear(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    """Render working-space linear float RGB ``(H, W, 3)`` → the same (float32). For planners."""
    program = compile_program(validate_values(adjustments))
    if program.is_identity:
        return np.asarray(rgb, dtype=np.float32)
    return run_program(program, np.asarray(rgb, dtype=np.float32), cs.WORKING, cs.WORKING, np.float32)


def render_pixels(pixels: np.ndarray, adjustments: dict, in_space: cs.ColorSpace,
                  out_space: cs.ColorSpace | None = None, out_dtype=None) -> np.ndarray:
    """Render encoded ``pixels`` of ``in_space``; output in ``out_space`` (default: the same)
    with ``out_dtype`` (default: the same). Identity plans return the input unchanged."""
    out_space = out_space or in_space
    out_dtype = np.dtype(out_dtype or pixels.dtype)
    program = compile_program(validate_values(adjustments))
    if program.is_identity and out_space == in_space and out_dtype == pixels.dtype:
        return pixels
    return run_program(program, pixels, in_space, out_space, out_dtype)


def render_image(image, adjustments: dict, *, colorspace: cs.ColorSpace | None = None, dtype=None):
    """Render an :class:`~monet_cli.images.Image`; returns a new Image (same size, upright).

    ``colorspace`` and ``dtype`` choose the output encoding (default: the input's).
    """
    from monet_cli.images import Image

    out_space = colorspace or image.colorspace
    pixels = render_pixels(image.pixels, adjustments, image.colorspace, out_space, dtype)
    return Image(pixels=pixels, colorspace=out_space, format=image.format, source=image.source,
                 icc_profile=image.icc_profile if out_space == image.colorspace else None)
