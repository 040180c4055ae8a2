"""The photo's metadata carried from input to output: EXIF, GPS, copyright and the plan as XMP.

Reading uses **ExifRead** (pure Python, BSD): it parses the EXIF of TIFF-based files (TIFF,
DNG, CR2, NEF, ARW, ORF, RW2, PEF …), JPEG, PNG (``eXIf``), WebP and HEIF. Two raw containers
it does not open are located here and their EXIF blocks handed to it: Fujifilm RAF (the
embedded JPEG named by the RAF header) and Canon CR3 (the ``CMT1``/``CMT2``/``CMT4`` TIFF blocks
in its ISO-BMFF ``uuid`` box). Writing uses **Pillow**'s EXIF serialiser for JPEG and PNG, and
for TIFF the same serialiser's IFDs appended to the file tifffile wrote (a new IFD0 with the old
entries plus the metadata, so no strip moves).

What is carried (:data:`IFD0_TAGS`, :data:`EXIF_TAGS`, the whole GPS IFD): camera and lens,
exposure settings, capture time with sub-seconds and offset, GPS, artist, copyright and
description. ``Orientation`` becomes 1 (monet already turned the pixels), the pixel dimensions
are the output's, the input's thumbnails and maker notes are dropped, ``Software`` names monet
and its version, and the plan goes in as XMP (monet's own ``monet:`` record; not ``crs:``
develop settings, which Lightroom would apply to the rendered pixels a second time). A metadata block that cannot be parsed is a warning, never a failed render.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from monet_cli import __version__

# tag id → name, the tags of IFD0 that are carried (270 ImageDescription … 33432 Copyright)
IFD0_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 306: "DateTime", 315: "Artist",
             33432: "Copyright"}
EXIF_TAGS = {
    33434: "ExposureTime", 33437: "FNumber", 34850: "ExposureProgram", 34855: "ISOSpeedRatings",
    34864: "SensitivityType", 34866: "RecommendedExposureIndex", 36864: "ExifVersion",
    36867: "DateTimeOriginal", 36868: "DateTimeDigitized", 36880: "OffsetTime", 36881: "OffsetTimeOriginal",
    36882: "OffsetTimeDigitized", 37377: "ShutterSpeedValue", 37378: "ApertureValue", 37380: "ExposureBiasValue",
    37381: "MaxApertureValue", 37383: "MeteringMode", 37384: "LightSource", 37385: "Flash", 37386: "FocalLength",
    37520: "SubSecTime", 37521: "SubSecTimeOriginal", 37522: "SubSecTimeDigitized", 41985: "CustomRendered",
    41986: "ExposureMode", 41987: "WhiteBalance", 41988: "DigitalZoomRatio", 41989: "FocalLengthIn35mmFilm",
    41990: "SceneCaptureType", 42032: "CameraOwnerName", 42033: "BodySerialNumber", 42034: "LensSpecification",
    42035: "LensMake", 42036: "LensModel", 42037: "LensSerialNumber",
}
# TIFF/EP and DNG may keep exposure settings in IFD0: looked for there when the Exif IFD lacks them
_EP_IN_IFD0 = (33434, 33437, 34855, 36867, 37386)
EXIF_IFD, GPS_IFD, XMP_TAG = 0x8769, 0x8825, 700
ORIENTATION, SOFTWARE, COLORSPACE, PIXEL_X, PIXEL_Y = 274, 305, 40961, 40962, 40963
_ASCII, _RATIONAL, _SRATIONAL, _UNDEFINED = 2, 5, 10, 7
MAX_READ = 64 * 2**20  # container boxes larger than this are not read into memory


@dataclass
class Metadata:
    """What was read from an input: ``{tag id: (EXIF type, value)}`` per IFD, and warnings."""

    ifd0: dict[int, tuple[int, object]] = field(default_factory=dict)
    exif: dict[int, tuple[int, object]] = field(default_factory=dict)
    gps: dict[int, tuple[int, object]] = field(default_factory=dict)
    orientation: int = 1
    warnings: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.ifd0 or self.exif or self.gps)

    def names(self, *, gps: bool = True) -> list[str]:
        """The carried tags, by name (``GPS`` once for the whole GPS block)."""
        out = [IFD0_TAGS[t] for t in sorted(self.ifd0)] + [EXIF_TAGS[t] for t in sorted(self.exif)]
        return out + (["GPS"] if gps and self.gps else [])


# ----------------------------------------------------------------------------- reading


def _value(tag) -> tuple[int, object] | None:
    """An ExifRead tag → ``(type, value)`` as Pillow writes it, or None for what we cannot carry."""
    t = int(tag.field_type)
    vals = tag.values
    if t == _ASCII:
        text = vals if isinstance(vals, str) else bytes(vals).decode("utf-8", "replace")
        text = text.rstrip("\x00").strip()
        return (t, text) if text else None
    if isinstance(vals, (bytes, bytearray)):
        return (_UNDEFINED if t == _UNDEFINED else t, bytes(vals))
    try:
        seq = list(vals)
    except TypeError:
        seq = [vals]
    if not seq:
        return None
    if t in (_RATIONAL, _SRATIONAL):
        out = []
        for r in seq:
            num, den = int(getattr(r, "num", getattr(r, "numerator", 0))), int(getattr(r, "den", getattr(r, "denominator", 1)))
            out.append((num, den))
        return t, tuple(out)
    if t == _UNDEFINED:
        return t, bytes(int(v) & 0xFF for v in seq)
    if t in (1, 3, 4, 6, 8, 9):
        return t, tuple(int(v) for v in seq)
    return None


def _from_exifread(tags: dict, meta: Metadata) -> None:
    by_ifd: dict[str, dict[int, object]] = {"Image": {}, "EXIF": {}, "GPS": {}}
    for key, tag in tags.items():
        ifd = key.split(" ", 1)[0]
        if ifd in by_ifd and hasattr(tag, "tag") and hasattr(tag, "field_type"):
            by_ifd[ifd].setdefault(int(tag.tag), tag)
    for tid, tag in by_ifd["Image"].items():
        if tid == ORIENTATION:
            try:
                meta.orientation = int(list(tag.values)[0])
            except (TypeError, ValueError, IndexError):
                pass
        elif tid in IFD0_TAGS and (v := _value(tag)) is not None:
            meta.ifd0[tid] = v
    for tid, tag in by_ifd["EXIF"].items():
        if tid in EXIF_TAGS and (v := _value(tag)) is not None:
            meta.exif[tid] = v
    for tid in _EP_IN_IFD0:
        if tid not in meta.exif and tid in by_ifd["Image"] and (v := _value(by_ifd["Image"][tid])) is not None:
            meta.exif[tid] = v
    for tid, tag in by_ifd["GPS"].items():
        if (v := _value(tag)) is not None:
            meta.gps[tid] = v


_NO_EXIF = re.compile(r"(does not have|no) exif", re.IGNORECASE)


class _Problems(logging.Handler):
    """ExifRead's own warnings and errors while it reads one file (it reads leniently)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if not _NO_EXIF.search(msg):  # "PNG file does not have exif data.": nothing there, nothing wrong
            self.messages.append(msg)


_MARKERS = (b"Exif\x00\x00", b"eXIf")


def _process(src) -> tuple[dict, list[str]]:
    """ExifRead's tags of the file object ``src``, and its own warnings while reading (one
    place for both: its log messages become our warnings, not log noise). Raises what it
    raises for an unreadable block."""
    import exifread

    log = logging.getLogger("exifread")
    problems = _Problems()
    saved = (log.level, log.propagate)
    log.addHandler(problems)
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        return exifread.process_file(src, details=False, extract_thumbnail=False), problems.messages
    finally:
        log.removeHandler(problems)
        log.setLevel(saved[0])
        log.propagate = saved[1]


def _exifread(data: bytes | None, f, where: str, meta: Metadata) -> None:
    src = io.BytesIO(data) if data is not None else f
    try:
        tags, problems = _process(src)
    except Exception as e:  # noqa: BLE001 - a corrupt block is a warning, never a failed render
        meta.warnings.append(f"{where}: the EXIF cannot be read ({type(e).__name__}: {e}); no metadata carried")
        return
    before = len(meta.names())
    try:
        _from_exifread(tags, meta)
    except Exception as e:  # noqa: BLE001
        meta.warnings.append(f"{where}: the EXIF cannot be read ({type(e).__name__}: {e}); no metadata carried")
        return
    if problems:
        more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
        meta.warnings.append(f"{where}: the EXIF is partly corrupt ({problems[0]}{more}); "
                             f"what could be read is carried")
    elif len(meta.names()) == before:
        if data is None:
            src.seek(0)
            head = src.read(1 << 16)
        else:
            head = data[: 1 << 16]
        # an Exif or GPS IFD was found but gave nothing, or an EXIF block is there unparsed (a plain
        # TIFF's IFD0 holds only the image structure: no warning for it)
        exif_tags = [k for k in tags if k.split(" ", 1)[0] in ("EXIF", "GPS")]
        if exif_tags or any(m in head for m in _MARKERS):
            meta.warnings.append(f"{where}: the file has an EXIF block but nothing in it could be read; "
                                 f"no metadata carried")


def _raf_jpeg(f, size: int) -> bytes | None:
    """The embedded JPEG of a Fujifilm RAF (offset and length at bytes 84 and 88 of its header)."""
    f.seek(84)
    head = f.read(8)
    if len(head) < 8:
        return None
    off, length = struct.unpack(">II", head)
    if not (0 < off < size and 0 < length <= min(size - off, MAX_READ)):
        return None
    f.seek(off)
    return f.read(length)


CR3_UUID = bytes.fromhex("85c0b687820f11e08111f4ce462b6a48")


def _boxes(f, start: int, end: int):
    """ISO-BMFF boxes in [start, end): ``(type, payload start, payload end)``."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        hdr = 8
        if size == 1:
            big = f.read(8)
            if len(big) < 8:
                return
            size, hdr = struct.unpack(">Q", big)[0], 16
        elif size == 0:
            size = end - pos
        if size < hdr or pos + size > end:
            return
        yield kind, pos + hdr, pos + size
        pos += size


def _cr3_blocks(f, size: int) -> list[bytes]:
    """The TIFF blocks CMT1 (IFD0), CMT2 (Exif) and CMT4 (GPS) of a Canon CR3."""
    out = []
    for kind, a, b in _boxes(f, 0, size):
        if kind != b"moov":
            continue
        for k2, a2, b2 in _boxes(f, a, b):
            if k2 != b"uuid":
                continue
            f.seek(a2)
            if f.read(16) != CR3_UUID:
                continue
            for k3, a3, b3 in _boxes(f, a2 + 16, b2):
                if k3 in (b"CMT1", b"CMT2", b"CMT4") and b3 - a3 <= MAX_READ:
                    f.seek(a3)
                    out.append((k3, f.read(b3 - a3)))
    return out


def read_metadata(path) -> Metadata:
    """The metadata of ``path`` (module docstring). Never raises for the file's content: what
    cannot be read is a warning in :attr:`Metadata.warnings`."""
    p = Path(path)
    meta = Metadata()
    try:
        f = open(p, "rb")
    except OSError as e:
        meta.warnings.append(f"{p.name}: cannot be opened for its metadata ({e.strerror or e})")
        return meta
    with f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        if head.startswith(b"FUJIFILMCCD-RAW"):
            jpeg = _raf_jpeg(f, size)
            if jpeg is None:
                meta.warnings.append(f"{p.name}: the RAF header names no embedded JPEG; no metadata carried")
            else:
                _exifread(jpeg, None, p.name, meta)
        elif head[4:8] == b"ftyp" and head[8:12] == b"crx ":
            try:
                blocks = _cr3_blocks(f, size)
            except OSError as e:
                blocks = []
                meta.warnings.append(f"{p.name}: the CR3 boxes cannot be read ({e}); no metadata carried")
            for kind, data in blocks:
                part = Metadata()
                if kind == b"CMT1":
                    _exifread(data, None, f"{p.name} {kind.decode()}", part)
                else:  # the Exif (CMT2) or GPS (CMT4) IFD, stored as a TIFF of its own: its IFD0
                    part = _first_ifd_as(data, "exif" if kind == b"CMT2" else "gps", f"{p.name} {kind.decode()}")
                meta.ifd0.update(part.ifd0)
                meta.exif.update(part.exif)
                meta.gps.update(part.gps)
                meta.warnings.extend(part.warnings)
                if kind == b"CMT1":
                    meta.orientation = part.orientation
        else:
            f.seek(0)
            _exifread(None, f, p.name, meta)
    return meta


def _first_ifd_as(data: bytes, which: str, where: str) -> Metadata:
    """CR3's CMT2 / CMT4 hold the Exif / GPS tags in a TIFF's first IFD (ExifRead names it
    ``Image``): those tags as ``which`` ("exif" or "gps")."""
    out = Metadata()
    try:
        tags, _ = _process(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - a corrupt block is a warning
        out.warnings.append(f"{where}: the EXIF cannot be read ({type(e).__name__}: {e}); not carried")
        return out
    target = out.exif if which == "exif" else out.gps
    for key, tag in tags.items():
        tid = int(getattr(tag, "tag", -1))
        if key.startswith("Image ") and (which == "gps" or tid in EXIF_TAGS) and (v := _value(tag)) is not None:
            target[tid] = v
    if not target:
        out.warnings.append(f"{where}: nothing in this block could be read; not carried")
    return out


# ----------------------------------------------------------------------------- writing


@dataclass
class OutputMetadata:
    """What goes into one output: the EXIF (Pillow's), the XMP packet, and a summary."""

    exif: object  # PIL.Image.Exif
    xmp: bytes | None
    carried: list[str]
    warnings: list[str]

    def exif_bytes(self) -> bytes:
        """``Exif\\0\\0`` + TIFF structure (what JPEG's APP1 and Pillow's ``exif=`` take)."""
        return self.exif.tobytes()

    def to_dict(self) -> dict:
        return {"carried": self.carried, "xmp": self.xmp is not None, "warnings": self.warnings}


def _pil(t: int, v):
    from PIL.TiffImagePlugin import IFDRational

    if t in (_RATIONAL, _SRATIONAL):
        vals = tuple(IFDRational(n, d) if d else IFDRational(0, 1) for n, d in v)
        return vals[0] if len(vals) == 1 else vals
    if isinstance(v, tuple) and len(v) == 1:
        return v[0]
    return v


def output_metadata(meta: Metadata | None, *, width: int, height: int, colorspace: str = "srgb",
                    strip_gps: bool = False, xmp: bytes | None = None) -> OutputMetadata:
    """The EXIF of an output ``width`` × ``height`` made from ``meta`` (module docstring)."""
    from PIL import Image as PILImage

    exif = PILImage.Exif()
    carried: list[str] = []
    warnings = list(meta.warnings) if meta is not None else []
    if meta is not None:
        for tid, (t, v) in meta.ifd0.items():
            exif[tid] = _pil(t, v)
        carried = meta.names(gps=not strip_gps)
    exif[ORIENTATION] = 1
    exif[SOFTWARE] = f"monet {__version__}"
    sub = exif.get_ifd(EXIF_IFD)
    if meta is not None:
        for tid, (t, v) in meta.exif.items():
            sub[tid] = _pil(t, v)
    sub[COLORSPACE] = 1 if colorspace == "srgb" else 0xFFFF
    sub[PIXEL_X] = int(width)
    sub[PIXEL_Y] = int(height)
    if meta is not None and meta.gps and not strip_gps:
        g = exif.get_ifd(GPS_IFD)
        for tid, (t, v) in meta.gps.items():
            g[tid] = _pil(t, v)
    return OutputMetadata(exif=exif, xmp=xmp, carried=carried, warnings=warnings)


def png_chunks(om: OutputMetadata) -> list[tuple[bytes, bytes]]:
    """``eXIf`` and ``iTXt`` (``XML:com.adobe.xmp``) chunks for a PNG."""
    out = [(b"eXIf", om.exif_bytes()[6:])]
    if om.xmp is not None:
        out.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + om.xmp))
    return out


def add_to_tiff(path, om: OutputMetadata) -> None:
    """Append the metadata to a classic little- or big-endian TIFF (the file tifffile wrote):
    Pillow serialises the tags (Exif and GPS IFDs included) for the end of the file, and a new
    IFD0 holds the old entries plus these; the header points to it. No strip moves."""
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    with open(path, "r+b") as f:
        head = f.read(8)
        if head[:4] not in (b"II*\x00", b"MM\x00*"):
            raise ValueError("not a classic TIFF")
        bo = "<" if head[:2] == b"II" else ">"
        first = struct.unpack(bo + "I", head[4:8])[0]
        f.seek(first)
        n = struct.unpack(bo + "H", f.read(2))[0]
        old = f.read(12 * n)
        nxt = f.read(4)
        ifd = ImageFileDirectory_v2(ifh=head[:4] + b"\x00\x00\x00\x00")
        for tid, value in om.exif.items():
            if tid in (EXIF_IFD, GPS_IFD):
                continue
            ifd[tid] = value
        for tid in (EXIF_IFD, GPS_IFD):
            sub = om.exif.get_ifd(tid)
            if sub:
                ifd[tid] = dict(sub)
                ifd.tagtype[tid] = 4  # LONG: Pillow writes a dict value as a sub-IFD
        if om.xmp is not None:
            ifd[XMP_TAG] = om.xmp
            ifd.tagtype[XMP_TAG] = 1  # BYTE, as Adobe writes it
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        if pos % 2:
            f.write(b"\x00")
            pos += 1
        block = ifd.tobytes(pos)  # entries + data, offsets valid at ``pos``
        m = struct.unpack(bo + "H", block[:2])[0]
        new = block[2:2 + 12 * m]
        f.write(block)
        end = pos + len(block)
        if end % 2:
            f.write(b"\x00")
            end += 1
        ours = {struct.unpack(bo + "H", new[i:i + 2])[0] for i in range(0, len(new), 12)}
        keep = [old[i:i + 12] for i in range(0, len(old), 12) if struct.unpack(bo + "H", old[i:i + 2])[0] not in ours]
        entries = sorted(keep + [new[i:i + 12] for i in range(0, len(new), 12)],
                         key=lambda e: struct.unpack(bo + "H", e[:2])[0])
        if end + 2 + 12 * len(entries) + 4 > 0xFFFFFFFF:
            raise ValueError("the file would exceed 4 GiB, the limit of a classic TIFF")
        f.write(struct.pack(bo + "H", len(entries)))
        f.writelines(entries)
        f.write(nxt)
        f.seek(4)
        f.write(struct.pack(bo + "I", end))


def plan_xmp(adjustments: dict, source_name: str | None) -> bytes:
    """The plan as an XMP packet for a rendered output: monet's record (``monet:`` values,
    generator, source), as ``monet export-xmp`` writes it, **without** ``crs:`` develop
    settings: Lightroom and darktable apply those on import, which would edit the rendered
    pixels a second time. ``monet import-xmp`` reads the record back."""
    from monet_cli.xmp import build_xmp

    return build_xmp(adjustments, raw=False, source_name=source_name, packet=True, develop=False)
