"""Builders of test images, written at test time (importable: ``from fixtures import make_tiff``).

Every builder writes with an encoder that is *not* monet's own where one exists (tifffile,
Pillow, LibRaw-compatible DNG tags, a reference PNG encoder here that uses every row filter),
so that a reader test checks monet against an independent writer.
"""

from __future__ import annotations

import os
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from monet_cli.colorspaces import (
    D50_ICC_XYZ,
    ColorSpace,
    chromatic_adaptation_matrix,
    xy_to_XYZ,
)

# sRGB linear → XYZ (D65), IEC 61966-2-1; its inverse is the XYZ → camera matrix of a
# camera whose native RGB *is* linear sRGB, so rawpy's output is easy to predict.
SRGB_TO_XYZ = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])


# --- real photos -----------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def photo(name: str = "astronaut", *, step: int = 8) -> np.ndarray:
    """A real photo from ``skimage.data`` (astronaut, coffee, chelsea), uint8 (H, W, 3),
    decimated by ``step`` (astronaut: 512×512 → 64×64 at step 8). A fresh C-contiguous copy."""
    return np.ascontiguousarray(_photo(name)[::step, ::step, :3])


def astronaut(step: int = 8) -> np.ndarray:
    return photo("astronaut", step=step)


def coffee(step: int = 8) -> np.ndarray:
    return photo("coffee", step=step)


def chelsea(step: int = 8) -> np.ndarray:
    return photo("chelsea", step=step)


def to16(px8: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 16-bit image from an 8-bit one, with random low bits so every bit matters."""
    rng = np.random.default_rng(seed)
    return (px8.astype(np.uint16) * 257 + rng.integers(0, 256, px8.shape)).clip(0, 65535).astype(np.uint16)


def gradient16(h: int = 48, w: int = 64) -> np.ndarray:
    """A deterministic uint16 (h, w, 3) with every channel different and all 16 bits used."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 65535 // max(w - 1, 1))
    g = (y * 65535 // max(h - 1, 1))
    b = (x * 7919 + y * 104729) % 65536
    return np.stack([r, g, b], axis=2).astype(np.uint16)


# --- TIFF -----------------------------------------------------------------------------------

def make_tiff(path, pixels: np.ndarray, icc: bytes | None = None, orientation: int | None = None, **kw) -> Path:
    """Write ``pixels`` with tifffile: (H, W, 3|4) RGB(A) or (H, W) grey, any dtype tifffile takes.

    ``kw`` go to :func:`tifffile.imwrite` (``planarconfig``, ``compression``, ``byteorder``…).
    """
    import tifffile

    px = np.asarray(pixels)
    extratags = list(kw.pop("extratags", []))
    if orientation is not None:
        extratags.append((274, "H", 1, orientation, True))
    if "photometric" not in kw:
        kw["photometric"] = "rgb" if px.ndim == 3 and px.shape[-1] in (3, 4) else "minisblack"
    if px.ndim == 3 and px.shape[-1] == 4 and "extrasamples" not in kw:
        kw["extrasamples"] = ["unassalpha"]
    if kw.get("planarconfig") == "separate" and px.ndim == 3:
        px = np.ascontiguousarray(np.moveaxis(px, 2, 0))
    tifffile.imwrite(path, px, iccprofile=icc, extratags=extratags, metadata=None, **kw)
    return Path(path)


def bomb_tiff(path, width: int = 100_000, height: int = 100_000) -> Path:
    """A 200-byte TIFF whose header claims ``width`` × ``height`` RGB pixels (a decompression bomb)."""
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
        (273, 4, 1, 8 + 2 + 12 * 10 + 4), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, 16), (284, 3, 1, 1),
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        fmt = "<HHIHH" if typ == 3 else "<HHII"
        ifd += struct.pack(fmt, tag, typ, count, value, 0) if typ == 3 else struct.pack(fmt, tag, typ, count, value)
    data = b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + b"\x80" * 16
    Path(path).write_bytes(data)
    return Path(path)


# --- JPEG -----------------------------------------------------------------------------------

def make_jpeg(path, pixels: np.ndarray, icc: bytes | None = None, orientation: int | None = None, *,
              quality: int = 95, exif: bytes | None = None, mode: str | None = None) -> Path:
    """Write a JPEG with Pillow (4:4:4), optionally with an ICC profile and EXIF orientation."""
    from PIL import Image

    im = Image.fromarray(np.asarray(pixels))
    if mode:
        im = im.convert(mode)
    kw: dict = {"quality": quality, "subsampling": 0}
    if icc:
        kw["icc_profile"] = icc
    if orientation is not None:
        ex = Image.Exif()
        ex[274] = orientation
        kw["exif"] = ex.tobytes()
    elif exif is not None:
        kw["exif"] = exif if exif.startswith(b"Exif\0\0") else b"Exif\0\0" + exif
    im.save(path, format="JPEG", **kw)
    return Path(path)


def bomb_jpeg(path, size: int = 65000) -> Path:
    """A small JPEG whose SOF marker claims ``size`` × ``size`` pixels."""
    from PIL import Image

    import io

    b = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 120, 150)).save(b, format="JPEG")
    data = bytearray(b.getvalue())
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, size, size)
    Path(path).write_bytes(bytes(data))
    return Path(path)


# --- PNG (a reference encoder that exercises every filter type) --------------------------

def _chunk(typ: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body))


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _filter_rows(rows: np.ndarray, bpp: int, filters) -> bytes:
    """Filter (H, stride) uint8 rows with per-row types ``filters`` (plain Python, PNG spec 9)."""
    out = bytearray()
    prev = [0] * rows.shape[1]
    for y, row in enumerate(rows.tolist()):
        f = filters[y % len(filters)]
        out.append(f)
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[f]
            out.append((v - pred) & 255)
        prev = row
    return bytes(out)


def make_png(path, pixels: np.ndarray, icc: bytes | None = None, orientation: int | None = None, *,
             srgb: bool = False, gamma: float | None = None, chrm=None, filters=(0, 1, 2, 3, 4),
             interlace: bool = False, split_idat: int = 3) -> Path:
    """Write a PNG with a reference encoder: uint8/uint16, (H, W) grey, (H, W, 2) grey+alpha,
    (H, W, 3) RGB or (H, W, 4) RGBA; rows cycle through ``filters``; IDAT split in
    ``split_idat`` chunks. ``interlace`` only sets the IHDR flag (for the refusal test)."""
    px = np.asarray(pixels)
    if px.ndim == 2:
        px = px[..., None]
    h, w, c = px.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 16 if px.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(px.astype(">u2") if depth == 16 else px.astype(np.uint8))
    rows = rows.view(np.uint8).reshape(h, -1)
    raw = zlib.compress(_filter_rows(rows, c * depth // 8, filters), 6)
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if icc:
        out += _chunk(b"iCCP", b"test profile\0\0" + zlib.compress(icc))
    if srgb:
        out += _chunk(b"sRGB", b"\0")
    if gamma is not None:
        out += _chunk(b"gAMA", struct.pack(">I", round(gamma * 100000)))
    if chrm is not None:
        out += _chunk(b"cHRM", struct.pack(">8I", *(round(v * 100000) for v in chrm)))
    if orientation is not None:
        exif = b"MM\0*" + struct.pack(">I", 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 274, 3, 1, orientation, 0) \
            + struct.pack(">I", 0)
        out += _chunk(b"eXIf", exif)
    n = max(1, -(-len(raw) // max(split_idat, 1)))
    for i in range(0, len(raw), n):
        out += _chunk(b"IDAT", raw[i:i + n])
    out += _chunk(b"IEND", b"")
    Path(path).write_bytes(out)
    return Path(path)


def bomb_png(path, width: int = 100_000, height: int = 100_000) -> Path:
    """A tiny PNG whose IHDR claims ``width`` × ``height`` RGB 8-bit pixels."""
    out = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    out += _chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _chunk(b"IEND", b"")
    Path(path).write_bytes(out)
    return Path(path)


# --- DNG ------------------------------------------------------------------------------------

def _rationals(values, den: int = 1_000_000) -> list[int]:
    out: list[int] = []
    for v in np.ravel(values):
        out += [int(round(float(v) * den)), den]
    return out


def make_dng(path, rgb_linear: np.ndarray, *, black: int = 512, white: int = 16383,
             as_shot_neutral=(0.5, 1.0, 0.8), color_matrix1=None, orientation: int = 1,
             extra_tags=()) -> Path:
    """A Bayer RGGB DNG (uncompressed, 16-bit CFA in IFD0) that rawpy/LibRaw decodes.

    Parameters
    ----------
    rgb_linear
        (H, W, 3) float in [0, 1], even H and W: the *white-balanced* scene in the camera's
        native RGB. With the default ``color_matrix1`` the camera's native RGB is linear
        sRGB (D65), so a neutral (v, v, v) should come out of LibRaw as v in every channel.
    black, white
        BlackLevel and WhiteLevel; a value v maps to ``black + v·(white − black)``.
    as_shot_neutral
        AsShotNeutral: the camera values of a neutral object. The mosaic is
        ``rgb_linear · as_shot_neutral``, so the camera white balance undoes it exactly.
    color_matrix1
        XYZ → camera (ColorMatrix1, CalibrationIlluminant1 = 21, D65). Default inv(sRGB→XYZ).
    orientation
        TIFF/EXIF orientation 1–8 (LibRaw applies it).
    extra_tags
        More tifffile ``extratags`` for IFD0 (TIFF/EP keeps exposure settings there).
    """
    import tifffile

    rgb = np.asarray(rgb_linear, dtype=np.float64)
    h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError("make_dng needs even height and width (one RGGB quad per 2×2)")
    cam = rgb * np.asarray(as_shot_neutral, dtype=np.float64)
    mosaic = np.empty((h, w))
    mosaic[0::2, 0::2] = cam[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = cam[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = cam[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = cam[1::2, 1::2, 2]
    mosaic = np.rint(black + np.clip(mosaic, 0, 1) * (white - black)).astype(np.uint16)
    cm = np.linalg.inv(SRGB_TO_XYZ) if color_matrix1 is None else np.asarray(color_matrix1, dtype=np.float64)
    extratags = [
        (271, "s", 0, "Monet", True),                      # Make
        (272, "s", 0, "Test Camera", True),                # Model
        (274, "H", 1, int(orientation), True),             # Orientation
        (33421, "H", 2, (2, 2), True),                     # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),               # CFAPattern: R G / G B
        (50706, "B", 4, (1, 4, 0, 0), True),               # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),               # DNGBackwardVersion
        (50708, "s", 0, "Monet Test Camera", True),        # UniqueCameraModel
        (50714, "H", 1, int(black), True),                 # BlackLevel
        (50717, "H", 1, int(white), True),                 # WhiteLevel
        (50721, "2i", 9, _rationals(cm), True),            # ColorMatrix1 (SRATIONAL)
        (50778, "H", 1, 21, True),                         # CalibrationIlluminant1 = D65
        (50728, "2I", 3, _rationals(as_shot_neutral), True),  # AsShotNeutral (RATIONAL)
    ]
    tifffile.imwrite(path, mosaic, photometric=32803, metadata=None, extratags=extratags + list(extra_tags))
    return Path(path)


# --- ICC profiles in other tools' styles --------------------------------------------------

def _s15(v) -> bytes:
    return b"".join(struct.pack(">i", int(round(float(x) * 65536))) for x in np.ravel(v))


def make_v2_profile(cs: ColorSpace, *, table: int | None = 1024, gamma: float | None = None,
                    description: str | None = None) -> bytes:
    """A v2.1 RGB profile in the style of the classic HP/Microsoft "sRGB IEC61966-2.1" and
    Adobe's "Adobe RGB (1998)": ``desc`` (textDescriptionType) and ``cprt`` (text) tags,
    ``wtpt`` = the native white (not D50), **no** ``chad``, colorants Bradford-adapted to D50,
    and TRCs as a ``curv`` table of ``table`` entries or a ``curv`` u8Fixed8 ``gamma``."""
    white = xy_to_XYZ(cs.white)
    pcs = chromatic_adaptation_matrix(white, D50_ICC_XYZ) @ cs.to_xyz
    desc = (description if description is not None else cs.description).encode("ascii")
    desc_tag = b"desc" + b"\0" * 4 + struct.pack(">I", len(desc) + 1) + desc + b"\0" + b"\0" * (8 + 2 + 1 + 67)
    cprt_tag = b"text" + b"\0" * 4 + b"Copyright (c) test\0"
    if gamma is not None:
        curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    else:
        x = np.linspace(0, 1, table)
        t = np.rint(cs.trc.decode(x) * 65535).astype(">u2")
        curv = b"curv" + b"\0" * 4 + struct.pack(">I", table) + t.tobytes()
    tags = [(b"desc", desc_tag), (b"cprt", cprt_tag), (b"wtpt", b"XYZ " + b"\0" * 4 + _s15(white)),
            (b"rXYZ", b"XYZ " + b"\0" * 4 + _s15(pcs[:, 0])), (b"gXYZ", b"XYZ " + b"\0" * 4 + _s15(pcs[:, 1])),
            (b"bXYZ", b"XYZ " + b"\0" * 4 + _s15(pcs[:, 2])), (b"rTRC", curv), (b"gTRC", curv), (b"bTRC", curv)]
    return _assemble(tags, version=0x02100000, space=b"RGB ")


def _assemble(tags, *, version: int, space: bytes, device_class: bytes = b"mntr") -> bytes:
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    off = 128 + 4 + 12 * len(tags)
    table, blobs = b"", b""
    for sig, blob in tags:
        blob = pad(blob)
        table += struct.pack(">4sII", sig, off, len(blob))
        blobs += blob
        off += len(blob)
    header = bytearray(128)
    struct.pack_into(">I", header, 0, off)
    struct.pack_into(">I", header, 8, version)
    header[12:16] = device_class
    header[16:20] = space
    header[20:24] = b"XYZ "
    header[36:40] = b"acsp"
    header[68:80] = _s15(D50_ICC_XYZ)
    return bytes(header) + struct.pack(">I", len(tags)) + table + blobs


def lut_profile() -> bytes:
    """An RGB profile with only an ``A2B0`` LUT (no colorants or TRCs)."""
    return _assemble([(b"desc", b"desc" + b"\0" * 4 + struct.pack(">I", 4) + b"LUT\0" + b"\0" * 78),
                      (b"A2B0", b"mAB " + b"\0" * 28)], version=0x04300000, space=b"RGB ")


def gray_profile(gamma: float = 2.2) -> bytes:
    """A grey display profile (``kTRC`` gamma), like Photoshop's "Gray Gamma 2.2"."""
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(round(gamma * 256))) + b"\0\0"
    return _assemble([(b"wtpt", b"XYZ " + b"\0" * 4 + _s15(D50_ICC_XYZ)), (b"kTRC", curv)],
                     version=0x02100000, space=b"GRAY")


def with_color_space(profile: bytes, space: bytes) -> bytes:
    """``profile`` with its header's data colour space replaced (e.g. ``b"CMYK"``, ``b"Lab "``)."""
    return profile[:16] + space + profile[20:]


# --- damage ----------------------------------------------------------------------------------

def truncate(path, n_bytes: int) -> Path:
    """Cut the file to its first ``n_bytes`` (a negative value removes that many from the end)."""
    size = os.path.getsize(path)
    os.truncate(path, n_bytes if n_bytes >= 0 else max(size + n_bytes, 0))
    return Path(path)


def garbage(path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """``n_bytes`` of random bytes (not starting with any image signature)."""
    data = bytearray(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    data[:4] = b"GARB"
    Path(path).write_bytes(bytes(data))
    return Path(path)


def exif_adobe_rgb() -> bytes:
    """EXIF of a camera in "Adobe RGB" mode (DCF 2.0 option file): ColorSpace = 0xFFFF
    (uncalibrated) and interoperability index "R03", as raw TIFF-structured bytes."""
    # IFD0 at 8: one entry, ExifIFD pointer → 26; Exif IFD at 26: ColorSpace, Interop pointer → 56;
    # Interop IFD at 56: InteroperabilityIndex "R03".
    ifd0 = struct.pack(">H", 1) + struct.pack(">HHII", 0x8769, 4, 1, 26) + struct.pack(">I", 0)
    exif_ifd = struct.pack(">H", 2) + struct.pack(">HHIHH", 0xA001, 3, 1, 0xFFFF, 0) \
        + struct.pack(">HHII", 0xA005, 4, 1, 56) + struct.pack(">I", 0)
    interop = struct.pack(">H", 1) + struct.pack(">HHI4s", 0x0001, 2, 4, b"R03\0") + struct.pack(">I", 0)
    data = b"MM\0*" + struct.pack(">I", 8) + ifd0 + exif_ifd + interop
    assert data.index(exif_ifd) == 26 and data.index(interop) == 56
    return data


def cmyk_profile() -> bytes:
    """A toy CMYK output profile (v2, ``A2B0`` as lut16 with a 2-point grid): device CMYK
    ``(c, m, y, k)`` means linear sRGB ``((1−c)(1−k), (1−m)(1−k), (1−y)(1−k))``. Enough for
    littleCMS to convert a CMYK JPEG, with results easy to predict."""
    srgb_d50 = chromatic_adaptation_matrix(xy_to_XYZ((0.3127, 0.3290)), D50_ICC_XYZ) @ SRGB_TO_XYZ
    clut = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    rgb = np.array([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], dtype=float)
                    clut += [int(round(v * 32768)) for v in srgb_d50 @ rgb]  # PCS XYZ in u1Fixed15
    lut = b"mft2" + b"\0" * 4 + bytes([4, 3, 2, 0]) + _s15(np.eye(3)) + struct.pack(">HH", 2, 2)
    lut += struct.pack(">8H", *([0, 65535] * 4)) + struct.pack(f">{len(clut)}H", *clut)
    lut += struct.pack(">6H", *([0, 65535] * 3))
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", 10) + b"Toy CMYK\0\0" + b"\0" * 78
    return _assemble([(b"desc", desc), (b"wtpt", b"XYZ " + b"\0" * 4 + _s15(D50_ICC_XYZ)), (b"A2B0", lut)],
                     version=0x02100000, space=b"CMYK", device_class=b"prtr")
