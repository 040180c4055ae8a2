"""Reading and writing photos: RAW, TIFF, JPEG and PNG, colour-tagged, upright, at full depth.

:func:`read_image` returns the file's pixels *as encoded* (integers stay integers, nothing is
converted to float), upright (EXIF/TIFF orientation applied), with the
:class:`~monet_cli.colorspaces.ColorSpace` that gives them meaning. :func:`write_image` writes
such an image with an ICC profile of its colour space, atomically.

Colour management on read:

- an embedded ICC profile (TIFF tag 34675, JPEG APP2, PNG ``iCCP``) wins; it is parsed by
  :func:`monet_cli.icc.parse_icc` and must be an RGB matrix/TRC profile (greyscale images may
  carry a grey ``kTRC`` profile);
- PNG without ``iCCP``: an ``sRGB`` chunk means sRGB; ``cHRM`` together with ``gAMA`` give
  primaries and a pure gamma (the sRGB values with gAMA 45455 mean sRGB, as the PNG
  specification asks encoders to write them); ``gAMA`` alone is ignored;
- JPEG without a profile whose EXIF says ColorSpace = uncalibrated with interoperability
  index ``R03`` (a camera's "Adobe RGB" mode, DCF 2.0 option files) is Adobe RGB (1998);
- otherwise **untagged integer images are sRGB, and untagged float TIFFs are linear sRGB**
  (``linear-srgb``): float TIFFs are written by HDR and compositing tools in scene-linear
  light, which is also what Photoshop assumes for 32-bit files;
- RAW files are demosaiced by LibRaw (rawpy) with the camera's white balance into linear
  ProPhoto RGB, 16 bits (``linear-prophoto``), without auto-brightening.

The format is chosen by the file's suffix and confirmed by its first bytes. A ``.tif``,
``.jpg`` or ``.png`` whose content is one of the other two (a PNG saved as ``.jpg`` is
common on the web) is read *by its content*, and :attr:`Image.format` says what it really
was; content that is none of them is an :class:`InputError`. RAW suffixes go to LibRaw,
which identifies the camera format from the content itself.

Every failure is an :class:`~monet_cli.errors.InputError` (reading) or
:class:`~monet_cli.errors.OutputError` (writing) naming the file; no decoder's exception
escapes.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from monet_cli import colorspaces
from monet_cli.colorspaces import ADOBE_RGB, SRGB, ColorSpace, TransferFunction
from monet_cli.errors import InputError, MonetError, OutputError, UsageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RAW_SUFFIXES",
    "Image",
    "apply_orientation",
    "atomic_write",
    "is_raw",
    "max_pixels_limit",
    "output_format_for",
    "read_image",
    "write_image",
]

DEFAULT_MAX_PIXELS = 250_000_000

# Camera raw formats that LibRaw reads (LibRaw 0.21/0.22 "supported cameras" list).
RAW_SUFFIXES: frozenset[str] = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".braw", ".cap", ".cr2", ".cr3", ".crw", ".cs1", ".dcr", ".dcs",
    ".dng", ".drf", ".eip", ".erf", ".fff", ".gpr", ".iiq", ".k25", ".kdc", ".mdc", ".mef", ".mos",
    ".mrw", ".nef", ".nrw", ".orf", ".ori", ".pef", ".ptx", ".pxn", ".qtk", ".r3d", ".raf", ".raw",
    ".rw2", ".rwl", ".rwz", ".sr2", ".srf", ".srw", ".sti", ".x3f",
})
_SUFFIX_FORMAT = {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg",
                  ".jfif": "jpeg", ".png": "png"}
_OUTPUT_FORMAT = {".tif": "tiff", ".tiff": "tiff", ".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))


@dataclass(eq=False)
class Image:
    """A photo in memory: encoded pixels and the colour space that gives them meaning.

    Attributes
    ----------
    pixels
        (H, W, 3) C-contiguous array, ``uint8`` [0, 255], ``uint16`` [0, 65535] or
        ``float32`` (nominally [0, 1], not clipped), encoded with ``colorspace.trc`` and
        upright (orientation already applied).
    colorspace
        What the values mean; linear light is ``colorspace.trc.decode(pixels / max)``.
    format
        ``"tiff"``, ``"jpeg"``, ``"png"`` or ``"raw"``: what the source file contained.
    source
        The file it was read from, if any (:func:`write_image` never overwrites it).
    icc_profile
        The original embedded ICC profile, if any (for CMYK JPEGs, the CMYK profile that
        was used to convert to sRGB).
    """

    pixels: np.ndarray
    colorspace: ColorSpace
    format: str
    source: Path | None = None
    icc_profile: bytes | None = None

    def __post_init__(self):
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.ndim != 3 or p.shape[2] != 3 or p.dtype not in _DTYPES:
            desc = f"{p.shape} {p.dtype}" if isinstance(p, np.ndarray) else type(p).__name__
            raise ValueError(f"Image.pixels must be (H, W, 3) uint8, uint16 or float32, got {desc}")

    @property
    def bit_depth(self) -> int:
        """Bits per sample: 8, 16 or 32 (float)."""
        return self.pixels.dtype.itemsize * 8

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


# --- helpers --------------------------------------------------------------------------------

def is_raw(path) -> bool:
    """Whether ``path`` has a camera raw suffix (case-insensitive), e.g. ``.CR2``, ``.dng``."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def output_format_for(path) -> str:
    """The output format written for ``path``: ``"tiff"``, ``"jpeg"`` or ``"png"``, by suffix.

    Raises
    ------
    UsageError
        Any other suffix (monet writes TIFF, JPEG and PNG only).
    """
    suffix = Path(path).suffix.lower()
    try:
        return _OUTPUT_FORMAT[suffix]
    except KeyError:
        what = f"'{suffix}'" if suffix else "a name without a suffix"
        raise UsageError(f"cannot write {what}: the output must end in .tif, .tiff, .jpg, .jpeg or .png",
                         path=path) from None


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$MONET_MAX_PIXELS``, else 250 MP."""
    if max_pixels is not None:
        return int(max_pixels)
    env = os.environ.get("MONET_MAX_PIXELS", "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(env)) if "e" in env.lower() else int(env.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"MONET_MAX_PIXELS must be a positive integer, got {env!r}")
    return value


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """``pixels`` (H, W, …) turned upright for EXIF/TIFF orientation 1–8 (tag 274).

    The value says where the stored first row and column belong (TIFF 6.0, p. 36; EXIF 2.32,
    4.6.4): 1 as stored, 2 mirrored left-right, 3 rotated 180°, 4 mirrored top-bottom,
    5 transposed, 6 needs 90° clockwise, 7 transversed, 8 needs 90° counter-clockwise —
    the same as Pillow's ``ImageOps.exif_transpose``. Unknown values are treated as 1.
    Returns ``pixels`` itself for 1, else a C-contiguous copy.
    """
    o = int(orientation) if orientation else 1
    if o == 2:
        out = pixels[:, ::-1]
    elif o == 3:
        out = pixels[::-1, ::-1]
    elif o == 4:
        out = pixels[::-1]
    elif o == 5:
        out = pixels.swapaxes(0, 1)
    elif o == 6:
        out = np.rot90(pixels, -1)
    elif o == 7:
        out = pixels[::-1, ::-1].swapaxes(0, 1)
    elif o == 8:
        out = np.rot90(pixels, 1)
    else:
        return pixels
    return np.ascontiguousarray(out)


def _too_many(w: int, h: int, limit: int, path) -> InputError:
    return InputError(f"image is {w}×{h} = {w * h:,} pixels, more than the limit of {limit:,} "
                      "(a decompression bomb, or set MONET_MAX_PIXELS to raise it)", path=path)


def _check_file(path: Path) -> int:
    """Size of the regular, readable, non-empty file ``path``; :class:`InputError` otherwise."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("no such file", path=path) from None
    except PermissionError:
        raise InputError("permission denied", path=path) from None
    except OSError as e:
        raise InputError(f"cannot access: {e.strerror or e}", path=path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError("is a directory, not an image file", path=path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError("is not a regular file", path=path)
    if st.st_size == 0:
        raise InputError("empty file (0 bytes)", path=path)
    if not os.access(path, os.R_OK):
        raise InputError("permission denied", path=path)
    return st.st_size


def _sniff(head: bytes) -> str | None:
    """The format of a file from its first bytes: tiff, jpeg, png or None."""
    if head[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "tiff"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


_NAMES = {"tiff": "TIFF", "jpeg": "JPEG", "png": "PNG", "raw": "RAW"}


def _profile_space(icc: bytes, *, grey: bool, path) -> ColorSpace:
    """The colour space of an embedded profile; grey images accept grey profiles."""
    from monet_cli import icc as iccmod

    try:
        if grey and len(icc) >= 20 and icc[16:20] == b"GRAY":
            return iccmod.parse_gray_icc(icc)
        return iccmod.parse_icc(icc)
    except InputError as e:
        raise InputError(f"embedded ICC profile: {e.args[0]}", path=path) from None


def _png_space(icc, srgb, gamma, chrm, *, grey: bool, path) -> ColorSpace:
    """PNG colour chunks by precedence (PNG 3rd ed., 4.3): iCCP, sRGB, cHRM + gAMA, none."""
    if icc:
        return _profile_space(icc, grey=grey, path=path)
    if srgb or not gamma or not chrm or gamma <= 0:
        return SRGB
    from monet_cli.icc import match_named

    w, r, g, b = (tuple(chrm[i:i + 2]) for i in range(0, 8, 2))
    sRGB_chrm = SRGB.primaries + (SRGB.white,)
    if max(abs(u - v) for p, q in zip((r, g, b, w), sRGB_chrm) for u, v in zip(p, q)) <= 2e-3 \
            and abs(1 / gamma - 2.2) < 0.05:
        return SRGB  # the fallback chunks that the PNG spec asks sRGB encoders to write
    try:
        cs = ColorSpace("png-chrm-gama", (r, g, b), w, TransferFunction(g=1.0 / gamma),
                        f"PNG cHRM/gAMA (gamma {1 / gamma:.3g})")
        cs.to_xyz  # noqa: B018 - raises for degenerate chromaticities
    except (ZeroDivisionError, np.linalg.LinAlgError):
        raise InputError("PNG cHRM chunk has degenerate chromaticities", path=path) from None
    return match_named(cs) or cs


# --- readers ---------------------------------------------------------------------------------

def read_image(path, *, max_pixels: int | None = None, draft: bool = False) -> Image:
    """Read a photo: RAW, TIFF, JPEG or PNG, upright, at its own bit depth and colour space.

    Parameters
    ----------
    path
        The file. Its suffix selects the reader (see the module docstring for content
        checks); RAW suffixes are :data:`RAW_SUFFIXES`.
    max_pixels
        Refuse images with more pixels than this *before* decoding (decompression bombs).
        Default ``$MONET_MAX_PIXELS`` or 250 000 000.
    draft
        Half-size demosaic for RAW files (4× fewer pixels, several times faster): for
        planners and previews, which work on a proxy anyway. Other formats ignore it.

    Returns
    -------
    Image
        ``pixels`` (H, W, 3): ``uint8`` for 8-bit files, ``uint16`` for 16-bit files and all
        RAW files (linear ProPhoto), ``float32`` for float TIFFs (16/32/64-bit floats);
        grey images are replicated to three channels, alpha and extra samples dropped.

    Raises
    ------
    InputError
        Missing, a directory, empty, unreadable, unsupported type, truncated or corrupt,
        too many pixels, NaN/Inf in float data, unsupported sample layout (CMYK and palette
        TIFFs, Lab, 1/32-bit integers) or an embedded ICC profile that is not RGB matrix/TRC.

    Examples
    --------
    >>> img = read_image("IMG_0042.CR2")            # doctest: +SKIP
    >>> img.pixels.dtype, img.colorspace.name       # doctest: +SKIP
    (dtype('uint16'), 'linear-prophoto')
    """
    path = Path(path)
    limit = max_pixels_limit(max_pixels)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in RAW_SUFFIXES:
        fmt = "raw"
    elif suffix in _SUFFIX_FORMAT:
        fmt = _SUFFIX_FORMAT[suffix]
    else:
        what = f"'{suffix}'" if suffix else "(no suffix)"
        raise InputError(f"unsupported file type {what}; monet reads TIFF, JPEG, PNG and camera raw "
                         "files (.dng, .cr2, .nef, .arw, …)", path=path)
    if fmt != "raw":
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise InputError(f"cannot read: {e.strerror or e}", path=path) from None
        content = _sniff(head)
        if content is None:
            raise InputError(f"not a {_NAMES[fmt]} file: its content is not TIFF, JPEG or PNG "
                             f"(starts with {head[:8]!r})", path=path)
        fmt = content
    try:
        if fmt == "raw":
            return _read_raw(path, limit, half_size=draft)
        if fmt == "tiff":
            return _read_tiff(path, limit)
        if fmt == "png" and _png_is_16bit(path):
            return _read_png16(path, limit)
        return _read_pillow(path, fmt, limit)
    except MonetError:
        raise
    except MemoryError:
        raise InputError(f"not enough memory to decode this {_NAMES[fmt]} image", path=path) from None
    except Exception as e:  # noqa: BLE001 - a decoder's exception must not reach the user
        if "imagecodecs" in str(e):
            raise InputError(f"this {_NAMES[fmt]} file needs the 'imagecodecs' package to decode "
                             f"(pip install imagecodecs): {e}", path=path) from e
        raise InputError(f"truncated or corrupt {_NAMES[fmt]} file ({type(e).__name__}: {e})", path=path) from e


def _read_raw(path: Path, limit: int, *, half_size: bool = False) -> Image:
    """Demosaic with LibRaw into 16-bit linear ProPhoto with the camera's white balance.

    ``postprocess(output_color=ProPhoto, gamma=(1, 1), no_auto_bright=True, output_bps=16,
    use_camera_wb=True)``: black subtracted, white level at 65535, highlights clipped,
    orientation applied by LibRaw. ProPhoto rather than Rec. 2020 because LibRaw clips
    negative values, and ProPhoto holds nearly every colour a camera records.
    """
    import rawpy

    raw = rawpy.RawPy()
    try:
        try:
            raw.open_file(str(path))
            s = raw.sizes
            for w, h in ((s.width, s.height), (s.raw_width, s.raw_height)):
                if w * h > limit:
                    raise _too_many(w, h, limit, path)
            raw.unpack()
            rgb = raw.postprocess(output_color=rawpy.ColorSpace.ProPhoto, gamma=(1, 1), no_auto_bright=True,
                                  output_bps=16, use_camera_wb=True, half_size=half_size)
        except rawpy.LibRawFileUnsupportedError:
            raise InputError("not a camera raw file that LibRaw can read (unsupported format or camera)",
                             path=path) from None
        except (rawpy.LibRawIOError, rawpy.LibRawDataError) as e:
            raise InputError(f"truncated or corrupt RAW file ({_libraw_msg(e)})", path=path) from None
        except (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, rawpy.LibRawMemPoolOverflowError):
            raise InputError("RAW image is too large for LibRaw's memory limits", path=path) from None
        except rawpy.LibRawError as e:
            raise InputError(f"LibRaw cannot decode this RAW file ({_libraw_msg(e)})", path=path) from None
    finally:
        raw.close()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise InputError(f"LibRaw returned an unexpected image of shape {rgb.shape}", path=path)
    return Image(np.ascontiguousarray(rgb, dtype=np.uint16), colorspaces.NAMED["linear-prophoto"], "raw", path)


def _libraw_msg(e: Exception) -> str:
    m = e.args[0] if e.args else type(e).__name__
    return m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m)


def _read_tiff(path: Path, limit: int) -> Image:
    """First page of a TIFF through tifffile: RGB or grey, 8/16-bit int or float, any planar config."""
    import tifffile

    PH = tifffile.PHOTOMETRIC
    size = path.stat().st_size
    try:
        tif = tifffile.TiffFile(path)
    except struct.error:
        raise InputError("truncated or corrupt TIFF file (it ends inside its header)", path=path) from None
    except tifffile.TiffFileError as e:
        raise InputError(f"truncated or corrupt TIFF file ({e})", path=path) from None
    with tif:
        if not len(tif.pages):
            raise InputError("TIFF has no images", path=path)
        page = tif.pages.first
        w, h = int(page.imagewidth), int(page.imagelength)
        if w == 0 or h == 0:
            raise InputError(f"TIFF field ImageWidth/ImageLength is {w}×{h}", path=path)
        if w * h > limit:
            raise _too_many(w, h, limit, path)
        if int(page.imagedepth) > 1:
            raise InputError(f"TIFF is a volume ({page.imagedepth} slices), not a photo", path=path)
        photometric = page.photometric
        unsupported = {
            PH.SEPARATED: "CMYK (separated) TIFF is not supported; convert it to RGB first",
            PH.PALETTE: "palette (indexed-colour) TIFF is not supported; convert it to RGB first",
            PH.CIELAB: "Lab TIFF is not supported; convert it to RGB first",
            PH.ICCLAB: "Lab TIFF is not supported; convert it to RGB first",
            PH.ITULAB: "Lab TIFF is not supported; convert it to RGB first",
            PH.YCBCR: "YCbCr TIFF is not supported; save it as RGB",
            PH.CFA: "TIFF holds undemosaiced raw (CFA) data; name it .dng to read it as raw",
            PH.LINEAR_RAW: "TIFF holds linear raw data; name it .dng to read it as raw",
        }
        if photometric in unsupported:
            raise InputError(unsupported[photometric], path=path)
        if photometric not in (PH.RGB, PH.MINISBLACK, PH.MINISWHITE):
            raise InputError(f"TIFF field PhotometricInterpretation {int(photometric)} is not supported", path=path)
        bits, fmt = int(page.bitspersample), page.sampleformat
        SF = tifffile.SAMPLEFORMAT
        if not ((fmt == SF.UINT and bits in (8, 16)) or (fmt == SF.IEEEFP and bits in (16, 32, 64))):
            kind = {SF.UINT: "unsigned integer", SF.INT: "signed integer", SF.IEEEFP: "float"}.get(fmt, str(fmt))
            raise InputError(f"TIFF samples are {bits}-bit {kind} (BitsPerSample/SampleFormat); only 8/16-bit "
                             "unsigned integers and 16/32/64-bit floats are supported", path=path)
        if photometric == PH.RGB and page.samplesperpixel < 3:
            raise InputError(f"TIFF field SamplesPerPixel is {page.samplesperpixel} for an RGB image", path=path)
        if page.compression != 1 and page.compression not in tifffile.TIFF.DECOMPRESSORS:
            name = getattr(page.compression, "name", str(page.compression))
            raise InputError(f"TIFF compression {name} needs the 'imagecodecs' package "
                             "(pip install imagecodecs), or save the file uncompressed or with ZIP", path=path)
        if page.predictor not in (0, 1) and page.predictor not in tifffile.TIFF.UNPREDICTORS:
            name = getattr(page.predictor, "name", str(page.predictor))
            raise InputError(f"TIFF predictor {name} needs the 'imagecodecs' package (pip install imagecodecs)",
                             path=path)
        offsets, counts = page.dataoffsets, page.databytecounts
        if not offsets or len(offsets) != len(counts):
            raise InputError("TIFF has no image data (StripOffsets/TileOffsets missing)", path=path)
        for off, n in zip(offsets, counts):
            if off + n > size:
                raise InputError(f"TIFF is truncated: a strip or tile at byte {off} of {n} bytes runs past the "
                                 f"end of the {size:,}-byte file", path=path)
        if page.compression == 1:
            need = w * h * page.samplesperpixel * bits // 8
            if sum(counts) < need and not page.is_tiled:
                raise InputError(f"TIFF is truncated or corrupt: strips hold {sum(counts):,} of {need:,} bytes",
                                 path=path)
        orientation = page.tags.valueof(274, 1)
        icc = page.iccprofile
        axes = page.axes
        data = page.asarray()
    if data.size == 0 or data.shape != tuple(page.shape):
        raise InputError(f"TIFF is corrupt: decoded {data.shape}, its header says {tuple(page.shape)}", path=path)
    if "S" not in axes:
        data, axes = data[..., None], axes + "S"
    keep = [a for a in axes if a in "YXS"]
    if keep != list(axes) and any(data.shape[axes.index(a)] != 1 for a in axes if a not in "YXS"):
        raise InputError(f"TIFF page has an unsupported layout (axes {axes!r})", path=path)
    data = data.reshape([data.shape[axes.index(a)] for a in keep])
    data = np.moveaxis(data, [keep.index("Y"), keep.index("X"), keep.index("S")], [0, 1, 2])
    grey = photometric != PH.RGB
    data = data[..., :1] if grey else data[..., :3]
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype.kind == "f":
        data = data.astype(np.float32, copy=False)
        if not np.isfinite(data).all():
            raise InputError("float TIFF contains NaN/Inf values", path=path)
    if photometric == PH.MINISWHITE:
        data = (1.0 - data) if data.dtype.kind == "f" else (np.iinfo(data.dtype).max - data)
    if grey:
        data = np.repeat(data, 3, axis=2)
    data = apply_orientation(np.ascontiguousarray(data), orientation)
    if icc:
        cs = _profile_space(bytes(icc), grey=grey, path=path)
    else:
        cs = colorspaces.NAMED["linear-srgb"] if data.dtype.kind == "f" else SRGB
    return Image(data, cs, "tiff", path, bytes(icc) if icc else None)


def _png_is_16bit(path: Path) -> bool:
    from monet_cli import png16

    return png16.read_header(path).bit_depth == 16


def _read_png16(path: Path, limit: int) -> Image:
    from monet_cli import png16

    png = png16.read_png(path, max_pixels=limit)
    px = png.pixels
    grey = px.shape[2] <= 2
    px = np.repeat(px[..., :1], 3, axis=2) if grey else np.ascontiguousarray(px[..., :3])
    px = apply_orientation(px, png.orientation)
    cs = _png_space(png.icc_profile, png.srgb, png.gamma, png.chromaticity, grey=grey, path=path)
    return Image(px, cs, "png", path, png.icc_profile)


def _exif_adobe_rgb(exif) -> bool:
    """EXIF ColorSpace (0xA001) = 0xFFFF and interoperability index (0xA005/0x0001) "R03"."""
    try:
        if exif.get_ifd(0x8769).get(0xA001) != 0xFFFF:
            return False
        index = exif.get_ifd(0xA005).get(0x0001)
        return isinstance(index, (str, bytes)) and str(index if isinstance(index, str) else index.decode()
                                                       ).strip("\0 ") == "R03"
    except Exception:  # noqa: BLE001 - malformed EXIF only loses this hint
        return False


def _read_pillow(path: Path, fmt: str, limit: int) -> Image:
    """JPEG and 8-bit PNG through Pillow, with its decompression-bomb guard set to ``limit``."""
    from PIL import Image as PILImage

    # Pillow's guard is a module global: set it for this call only (not thread-safe, like
    # Pillow itself), and make its warning an error so that anything above ``limit`` fails.
    old = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path, formats=[fmt.upper()]) as im:
                w, h = im.size
                if w * h > limit:
                    raise _too_many(w, h, limit, path)
                try:
                    im.load()
                except OSError as e:
                    raise InputError(f"truncated or corrupt {_NAMES[fmt]} file ({e})", path=path) from None
                info = dict(im.info)
                exif = im.getexif()
                return _from_pillow(im, info, exif, fmt, path)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)):,} pixels, " if m else "too many pixels: "
        raise InputError(f"image has {size}more than the limit of {limit:,} (a decompression bomb, or "
                         "set MONET_MAX_PIXELS to raise it)", path=path) from None
    except PILImage.UnidentifiedImageError:
        raise InputError(f"not a readable {_NAMES[fmt]} file (corrupt header)", path=path) from None
    finally:
        PILImage.MAX_IMAGE_PIXELS = old


def _from_pillow(im, info: dict, exif, fmt: str, path: Path) -> Image:
    icc = info.get("icc_profile") or None
    orientation = exif.get(274, 1) if exif else 1
    mode = im.mode
    if mode == "CMYK":
        if not icc:
            raise InputError("CMYK JPEG without an ICC profile: its colours are undefined; convert it to RGB "
                             "first", path=path)
        from io import BytesIO

        from PIL import ImageCms

        try:
            src = ImageCms.ImageCmsProfile(BytesIO(icc))
            dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            im = ImageCms.profileToProfile(im, src, dst, outputMode="RGB",
                                           renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
        except (ImageCms.PyCMSError, OSError, ValueError) as e:
            raise InputError(f"CMYK JPEG: its ICC profile cannot convert to RGB ({e})", path=path) from None
        px = np.asarray(im, dtype=np.uint8)
        return Image(np.ascontiguousarray(apply_orientation(px, orientation)), SRGB, fmt, path, icc)
    grey = mode in ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise InputError(f"{_NAMES[fmt]} mode {mode} is not supported", path=path)
    if grey:
        g = np.asarray(im.convert("L") if mode != "L" else im, dtype=np.uint8)
        px = np.repeat(g[..., None], 3, axis=2)
    else:
        px = np.asarray(im if mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
    px = apply_orientation(np.ascontiguousarray(px), orientation)
    if fmt == "png":
        cs = _png_space(icc, "srgb" in info, info.get("gamma"), info.get("chromaticity"), grey=grey, path=path)
    elif icc:
        cs = _profile_space(icc, grey=grey, path=path)
    elif fmt == "jpeg" and exif and _exif_adobe_rgb(exif):
        cs = ADOBE_RGB
    else:
        cs = SRGB
    return Image(px, cs, fmt, path, icc)


# --- writers ---------------------------------------------------------------------------------

def atomic_write(path, write_fn: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Write a file all-or-nothing: ``write_fn(tmp)`` writes a temporary file, then it replaces ``path``.

    The temporary file lives in ``path``'s folder (so :func:`os.replace` is an atomic rename
    on the same file system), is created with the usual umask permissions (those of the
    file it replaces, if any), and is removed on any failure, ``KeyboardInterrupt``
    included. There is no fsync: the guarantee is against interruption and errors, not power
    loss.

    Parameters
    ----------
    path
        The final file.
    write_fn
        Called with the temporary path; writes the complete file there.
    overwrite
        Replace an existing ``path``; without it an existing file is an error.

    Raises
    ------
    OutputError
        ``path`` exists and ``overwrite`` is false (the message suggests ``--force``), is a
        directory, its folder is missing or not writable, or the disk is full
        ("no space left on device").
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a directory; give an output file name", path=path)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError("already exists; use --force to overwrite it", path=path)
    parent = path.parent
    if not parent.is_dir():
        raise OutputError(f"folder {str(parent)!r} does not exist", path=path)
    # The pid in the name lets a later run remove what a killed process left (batch.sweep_temp_files).
    tmp = parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.monet-tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
    except OSError as e:
        raise _output_error(e, path) from None
    try:
        write_fn(tmp)
        if path.exists():
            try:
                os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
            except OSError:
                pass
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and not isinstance(e, MonetError):
            raise _output_error(e, path) from e
        raise
    return path


def _output_error(e: OSError, path) -> OutputError:
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return OutputError("no space left on device while writing; free some space or write elsewhere", path=path)
    if e.errno in (errno.EACCES, errno.EPERM):
        return OutputError("permission denied: cannot write here", path=path)
    if e.errno == errno.EROFS:
        return OutputError("read-only file system", path=path)
    return OutputError(f"cannot write: {e.strerror or e}", path=path)


_U16_TO_U8 = None


def _to_uint8(px: np.ndarray) -> np.ndarray:
    """8-bit samples: uint16 by ``(x·255 + 32767) // 65535`` (a 64 K-entry table), float by
    ``round(clip(x, 0, 1)·255)`` with NaN as 0."""
    global _U16_TO_U8
    if px.dtype == np.uint8:
        return px
    if px.dtype == np.uint16:
        if _U16_TO_U8 is None:
            _U16_TO_U8 = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return _U16_TO_U8[px]
    return _float_to_int(px, 255, np.uint8)


def _float_to_int(px: np.ndarray, top: int, dtype) -> np.ndarray:
    out = np.clip(px, 0.0, 1.0) * np.float32(top)
    np.nan_to_num(out, copy=False, nan=0.0)
    return np.rint(out, out=out).astype(dtype)


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file (also through links; by path when one is missing)."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except OSError:
        return False


def write_image(path, image: Image, *, overwrite: bool = False, quality: int = 95, metadata=None) -> Path:
    """Write ``image`` to ``path`` as TIFF, JPEG or PNG (by suffix), with its ICC profile, atomically.

    Parameters
    ----------
    path
        Output file; the suffix picks the format (:func:`output_format_for`).
    image
        Encoded pixels and their colour space; ``build_icc(image.colorspace)`` is embedded.
    overwrite
        Replace an existing file (the CLI's ``--force``). The image's own source is never
        overwritten.
    quality
        JPEG quality 1–100 (95 by default); 4:4:4 chroma for 90 and above, else 4:2:0.
    metadata
        A :class:`monet_cli.metadata.OutputMetadata` (EXIF, GPS, XMP) to write into the file;
        a block that cannot be written is a warning in its ``warnings``, not a failed write.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    - TIFF: uncompressed, RGB, contiguous, the pixels' own type: 8/16-bit integers or 32-bit
      float (tifffile).
    - JPEG: 8-bit. uint16 becomes ``(x·255 + 32767) // 65535`` (round to nearest), float
      ``round(clip(x, 0, 1)·255)``.
    - PNG: uint8 through Pillow; uint16 through :mod:`monet_cli.png16`; float as 16-bit,
      ``round(clip(x, 0, 1)·65535)``. zlib level 6.
    - Metadata only as ``metadata`` gives it (:mod:`monet_cli.metadata`): EXIF in JPEG's APP1,
      PNG's ``eXIf`` and TIFF's IFD0 with Exif and GPS IFDs; the XMP packet in APP1, ``iTXt``
      or tag 700.

    Raises
    ------
    UsageError
        Unsupported suffix or quality out of range.
    OutputError
        The path is the input's, exists without ``overwrite``, the disk is full, or the
        encoder fails.
    """
    path = Path(path)
    fmt = output_format_for(path)
    if not isinstance(quality, int) or not 1 <= quality <= 100:
        raise UsageError(f"JPEG quality must be an integer from 1 to 100, got {quality!r}")
    if image.source is not None and same_file(path, Path(image.source)):
        raise OutputError("refusing to overwrite the input image; choose another output name", path=path)
    px = image.pixels
    if px.ndim != 3 or px.shape[2] != 3 or px.dtype not in _DTYPES:
        raise OutputError(f"cannot write pixels of shape {px.shape} and type {px.dtype}", path=path)
    px = np.ascontiguousarray(px)
    from monet_cli.icc import build_icc

    icc = build_icc(image.colorspace)

    if fmt == "tiff":
        def write(tmp: Path) -> None:
            import tifffile

            tifffile.imwrite(tmp, px, photometric="rgb", planarconfig="contig", compression=None,
                             iccprofile=icc, metadata=None, software="monet")
            if metadata is not None:
                from monet_cli.metadata import add_to_tiff

                try:
                    add_to_tiff(tmp, metadata)
                except (ValueError, struct.error, TypeError) as e:
                    metadata.warnings.append(f"the metadata could not be written into the TIFF ({e})")
    elif fmt == "jpeg":
        u8 = _to_uint8(px)

        def write(tmp: Path) -> None:
            from PIL import Image as PILImage

            extra = {}
            if metadata is not None:
                exif = metadata.exif_bytes()
                if len(exif) > 65000:  # one JPEG APP1 segment holds at most 64 KiB
                    metadata.warnings.append(f"the EXIF ({len(exif)} bytes) is too large for a JPEG; not written")
                else:
                    extra["exif"] = exif
                if metadata.xmp is not None:
                    if len(metadata.xmp) <= 65000:
                        extra["xmp"] = metadata.xmp
                    else:
                        metadata.warnings.append("the plan's XMP is too large for a JPEG; not written")
            PILImage.fromarray(u8).save(tmp, format="JPEG", quality=quality,
                                        subsampling=0 if quality >= 90 else 2, icc_profile=icc, **extra)
    else:
        if px.dtype == np.uint8:
            def write(tmp: Path) -> None:
                from PIL import Image as PILImage

                extra = {}
                if metadata is not None:  # the same chunks as the 16-bit writer's (eXIf through Pillow's own)
                    from PIL.PngImagePlugin import PngInfo

                    from monet_cli.metadata import png_chunks

                    info = PngInfo()
                    for typ, body in png_chunks(metadata):
                        if typ != b"eXIf":
                            info.add(typ, body)
                    extra.update(exif=metadata.exif_bytes(), pnginfo=info)
                PILImage.fromarray(px).save(tmp, format="PNG", compress_level=6, icc_profile=icc, **extra)
        else:
            u16 = px if px.dtype == np.uint16 else _float_to_int(px, 65535, np.uint16)

            def write(tmp: Path) -> None:
                from monet_cli import png16

                chunks = []
                if metadata is not None:
                    from monet_cli.metadata import png_chunks

                    chunks = png_chunks(metadata)
                png16.write_png(tmp, u16, icc_profile=icc, level=6, chunks=chunks)

    def guarded(tmp: Path) -> None:
        try:
            write(tmp)
        except (OSError, MonetError):
            raise
        except MemoryError:
            raise OutputError(f"not enough memory to encode the {_NAMES[fmt]} file", path=path) from None
        except Exception as e:  # noqa: BLE001 - an encoder's exception must not reach the user
            raise OutputError(f"cannot encode {_NAMES[fmt]}: {type(e).__name__}: {e}", path=path) from e

    return atomic_write(path, guarded, overwrite=overwrite)
