"""Adobe XMP interoperability: monet plans as Lightroom / Camera Raw settings, and back.

A plan becomes the ``crs:`` (Camera Raw Settings, ``http://ns.adobe.com/camera-raw-settings/1.0/``)
properties that Lightroom Classic, Lightroom, Adobe Camera Raw and darktable's Lightroom
import read, written as an RDF/XML packet: a sidecar ``NAME.xmp`` (Adobe's naming:
``IMG_0042.CR2`` → ``IMG_0042.xmp``) or embedded into a *copy* of a TIFF, DNG (TIFF tag 700
in IFD0) or JPEG (an APP1 segment ``http://ns.adobe.com/xap/1.0/``). Originals are never
written. Reading takes the same three places and turns the settings back into a
:class:`~monet_cli.plan.Plan`, listing every setting monet cannot represent.

Mapping (monet value ``v`` in [-100, 100] → XMP property; read back by the inverse)
-----------------------------------------------------------------------------------

============================  ====================================  ==================================
monet op                      XMP property (as Lightroom writes it)  conversion and where it is approximate
============================  ====================================  ==================================
Exposure                      ``crs:Exposure2012`` (EV, 2 decimals)  ``EV = v / 50`` — exact: both are
                                                                     stops of a linear gain. Lightroom
                                                                     allows ±5 EV, monet ±2 EV: on import
                                                                     values beyond ±2 EV are clamped (and
                                                                     said so).
Contrast, Highlights,         ``crs:Contrast2012``,                  1:1 by name, rounded to integers
Shadows, Whites, Blacks       ``crs:Highlights2012``, … ,            (Lightroom's own −100..100 scale).
                              ``crs:Blacks2012``                     Approximate in effect: Adobe's
                                                                     tone curves are not published and
                                                                     differ from monet's.
Temperature (raw files)       ``crs:Temperature`` (kelvin),          ``K = 1e6 / (1e6/K₀ − 0.75·v)``: monet
                              ``crs:WhiteBalance="Custom"``          shifts the white by ``0.75·v`` mired
                                                                     (operations.TEMPERATURE_MIRED), so the
                                                                     assumed illuminant moves by the same
                                                                     mired from the as-shot ``K₀``.
Tint (raw files)              ``crs:Tint`` (−150..150)               ``tint = tint₀ + 0.6·v``: monet's ±100
                                                                     is ±0.02 Duv and Adobe's tint unit is
                                                                     1/3000 Duv (DNG SDK
                                                                     ``dng_temperature``: ``kTintScale``).
Temperature, Tint (rendered   ``crs:IncrementalTemperature``,        Defined as 1:1 (both −100..100,
files: JPEG, TIFF, PNG)       ``crs:IncrementalTint``                positive = warmer / more magenta).
                                                                     Approximate in effect: Adobe does not
                                                                     publish what its incremental units
                                                                     mean; monet's ±100 is ±75 mired and
                                                                     ±0.02 Duv.
Saturation                    ``crs:Saturation``                     1:1 (approximate in effect).
HueAdjustment<Band>,          ``crs:HueAdjustment<Band>``, …         1:1 for the eight bands Red … Magenta
SaturationAdjustment<Band>,   (24 properties)                        (approximate: band centres/widths and
LuminanceAdjustment<Band>                                            monet's ±30° hue / ±1 EV scales are
                                                                     monet's own).
============================  ====================================  ==================================

The as-shot white balance ``K₀, tint₀`` of a raw file is, in this order: given by the caller
(``--as-shot-kelvin/--as-shot-tint``); recorded by monet when it exported the XMP
(``monet:AsShotTemperature``); Lightroom's own as-shot values in an existing sidecar with
``crs:WhiteBalance="As Shot"``; estimated from the raw file's metadata by LibRaw (camera
white-balance multipliers and colour matrix → CIE xy → correlated colour temperature and Duv,
tint = 3000·Duv: close to, not equal to, Adobe's number, which uses its own camera profiles);
otherwise **assumed to be 5500 K, tint +10** (Lightroom's "Daylight" preset), and the result
says so. An XMP with ``crs:WhiteBalance="As Shot"`` reads back as Temperature = Tint = 0.

Every export also writes ``crs:Version`` and ``crs:ProcessVersion`` ``"11.0"`` (Process
Version 5, Camera Raw 11 / Lightroom Classic 8, whose sliders are the ``…2012`` ones),
``crs:HasSettings="True"``, ``crs:WhiteBalance`` (``Custom`` when Temperature or Tint is
set, else ``As Shot``: then a raw file's XMP has no Temperature/Tint at all), the other
mapped properties with zeros included (so importing the XMP resets those sliders), for raw
sidecars ``crs:RawFileName`` and, in the private namespace ``monet:`` (:data:`MONET_NS`),
each non-zero value exactly (``monet:Exposure="12.5"``) plus the as-shot white balance it
assumed. Reading prefers those exact values while they still agree with the ``crs:``
properties (i.e. nobody changed the slider in Lightroom since), so plan → XMP → plan keeps
every value exactly; otherwise it converts the ``crs:`` value and says so.

What import cannot represent is listed, never dropped: any other ``crs:`` setting that is
not neutral (Clarity2012, Texture, Dehaze, Vibrance, Sharpness, noise reduction, grain,
vignettes, tone curves that are not the identity, colour grading, calibration, lens
corrections, crops, local adjustments, Process Version 2010 sliders, …) and darktable's own
history (``darktable:history``, an opaque blob). Settings that only qualify another one
(SharpenRadius, GrainSize, crop edges without HasCrop, …) and the base rendering (camera
profile, Look) are not listed.

Embedding keeps the file's own XMP (title, keywords, rating, camera data…) and replaces its
``crs:`` settings as a whole: the copy carries monet's plan, not a mixture with earlier
Lightroom edits. A JPEG packet must fit one APP1 segment (64 KiB; extended XMP is neither
written nor read). PNG is read (``iTXt`` ``XML:com.adobe.xmp``) but not written.

Safety: packets are parsed with :mod:`xml.etree.ElementTree` after a pre-check that refuses
packets over :data:`MAX_XMP_BYTES`, any ``<!DOCTYPE`` or other markup declaration (so no
entity expansion, "billion laughs", or external entity can happen), and nesting deeper than
:data:`MAX_DEPTH`; every failure is an :class:`~monet_cli.errors.InputError` naming the file.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import shutil
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape as _xml_escape

from monet_cli import __version__
from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import InputError, OutputError, UsageError
from monet_cli.operations import EXPOSURE_EV, TEMPERATURE_MIRED, TINT_DUV
from monet_cli.plan import Plan, Planner, save_plan, sidecar_path, source_of, validate_values

__all__ = [
    "AsShot", "DEFAULT_AS_SHOT", "ExportResult", "ImportResult", "MAX_XMP_BYTES", "XmpSettings",
    "as_shot_from_raw", "build_xmp", "cct_duv", "default_embed_path", "embed_xmp", "export_xmp", "find_xmp",
    "import_xmp", "kelvin_for", "lr_tint_for", "parse_xmp", "plan_to_crs", "read_xmp_bytes",
    "save_imported_plan", "settings_to_plan", "temperature_for", "xmp_sidecar_path",
]

X_NS = "adobe:ns:meta/"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
CRS_NS = "http://ns.adobe.com/camera-raw-settings/1.0/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
XMPNOTE_NS = "http://ns.adobe.com/xmp/note/"
DARKTABLE_NS = "http://darktable.sf.net/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
# monet's private namespace (exact values, the as-shot assumption); any URI works as a name.
MONET_NS = "http://ns.monet-cli.org/xmp/1.0/"
PREFIXES = {X_NS: "x", RDF_NS: "rdf", CRS_NS: "crs", XMP_NS: "xmp", XMPNOTE_NS: "xmpNote",
            MONET_NS: "monet", DARKTABLE_NS: "darktable",
            "http://purl.org/dc/elements/1.1/": "dc", "http://ns.adobe.com/tiff/1.0/": "tiff",
            "http://ns.adobe.com/exif/1.0/": "exif", "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
            "http://ns.adobe.com/photoshop/1.0/": "photoshop", "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
            "http://ns.adobe.com/xap/1.0/sType/ResourceRef#": "stRef", "http://ns.adobe.com/lightroom/1.0/": "lr",
            "http://cipa.jp/exif/1.0/": "exifEX", "http://ns.adobe.com/exif/1.0/aux/": "aux"}

PROCESS_VERSION = "11.0"  # Process Version 5 (Lightroom Classic 8 / Camera Raw 11, 2018): the "…2012" sliders
MAX_XMP_BYTES = 8 * 2**20
MAX_DEPTH = 64
JPEG_XMP_SIG = b"http://ns.adobe.com/xap/1.0/\x00"
JPEG_MAX_XMP = 65535 - 2 - len(JPEG_XMP_SIG)
PNG_XMP_KEY = b"XML:com.adobe.xmp"
TIFF_XMP_TAG = 700

LR_TINT_PER_DUV = 3000.0  # Adobe DNG SDK: one tint unit is 1/3000 Duv (CIE 1960 uv)
LR_KELVIN = (2000.0, 50000.0)  # Lightroom's Temperature slider for raw files
LR_TINT = (-150.0, 150.0)
LR_EXPOSURE_EV = 5.0
EV_PER_UNIT = EXPOSURE_EV / 100.0  # 0.02 EV per monet unit: +50 = +1 EV
TINT_PER_UNIT = TINT_DUV * LR_TINT_PER_DUV / 100.0  # 0.6 Lightroom tint units per monet unit


@dataclass(frozen=True)
class AsShot:
    """A raw file's as-shot white balance on Lightroom's scales: kelvin and tint (−150..150)."""

    kelvin: float
    tint: float
    source: str

    def to_dict(self) -> dict:
        return {"kelvin": round(self.kelvin, 1), "tint": round(self.tint, 2), "source": self.source}


DEFAULT_AS_SHOT = AsShot(5500.0, 10.0, "assumed: 5500 K, tint +10 (Lightroom's Daylight preset); "
                                       "pass --as-shot-kelvin for an exact Temperature")


# ============================================================================ value mapping


def _round_half_away(x: float, decimals: int = 0) -> float:
    q = 10.0 ** decimals
    return math.copysign(math.floor(abs(x) * q + 0.5), x) / q


def _signed_int(x: float) -> str:
    n = int(_round_half_away(x))
    return "0" if n == 0 else f"{n:+d}"


def _ev_text(ev: float) -> str:
    ev = _round_half_away(ev, 2)
    return "0.00" if ev == 0 else f"{ev:+.2f}"


def _exact_text(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def kelvin_for(value: float, as_shot_kelvin: float) -> float:
    """Lightroom's absolute Temperature (K) for monet Temperature ``value`` on a raw file.

    ``K = 1e6 / (1e6/K₀ − 0.75·value)``, clamped to Lightroom's 2000–50000 K.

    >>> round(kelvin_for(0, 5500)), round(kelvin_for(100, 5500)), round(kelvin_for(-100, 5500))
    (5500, 9362, 3894)
    """
    mired = 1e6 / as_shot_kelvin - value * TEMPERATURE_MIRED / 100.0
    if mired <= 1e6 / LR_KELVIN[1]:
        return LR_KELVIN[1]
    return min(max(1e6 / mired, LR_KELVIN[0]), LR_KELVIN[1])


def temperature_for(kelvin: float, as_shot_kelvin: float) -> float:
    """Inverse of :func:`kelvin_for`: ``value = (1e6/K₀ − 1e6/K) / 0.75`` (not clamped)."""
    return (1e6 / as_shot_kelvin - 1e6 / kelvin) * 100.0 / TEMPERATURE_MIRED


def lr_tint_for(value: float, as_shot_tint: float) -> float:
    """Lightroom's absolute Tint for monet Tint ``value`` on a raw file: ``tint₀ + 0.6·value``."""
    return min(max(as_shot_tint + value * TINT_PER_UNIT, LR_TINT[0]), LR_TINT[1])


@dataclass(frozen=True)
class _Tag:
    op: str
    prop: str  # crs local name
    kind: str  # "ev", "slider", "kelvin", "tint"


def _tags(raw: bool) -> list[_Tag]:
    """The 33 op ↔ property pairs (names from ops/catalog.yaml; raw files use absolute WB)."""
    out = []
    for op in catalog().ops.values():
        prop = op.xmp.split(":", 1)[1]
        kind = "ev" if op.name == "Exposure" else "slider"
        if raw and op.name == "Temperature":
            prop, kind = "Temperature", "kelvin"
        elif raw and op.name == "Tint":
            prop, kind = "Tint", "tint"
        out.append(_Tag(op.name, prop, kind))
    return out


def plan_to_crs(adjustments: dict, *, raw: bool, as_shot: AsShot | None = None) -> dict[str, str]:
    """The ``crs:`` properties (local name → text, as Lightroom writes them) for ``{op: value}``.

    All 33 mapped properties are present (zeros included), except that a raw file whose
    white balance is unchanged gets ``WhiteBalance="As Shot"`` instead of Temperature/Tint.
    For raw files Temperature/Tint are absolute (kelvin, tint) from ``as_shot`` (default
    :data:`DEFAULT_AS_SHOT`). ``WhiteBalance`` is ``Custom`` when either is non-zero.
    """
    a = as_shot or DEFAULT_AS_SHOT
    out: dict[str, str] = {}
    wb_changed = bool(adjustments.get("Temperature", 0) or adjustments.get("Tint", 0))
    for t in _tags(raw):
        if t.kind in ("kelvin", "tint") and not wb_changed:
            continue  # WhiteBalance="As Shot" below: the camera's own white balance
        v = float(adjustments.get(t.op, 0.0))
        if t.kind == "ev":
            out[t.prop] = _ev_text(v * EV_PER_UNIT)
        elif t.kind == "slider":
            out[t.prop] = _signed_int(v)
        elif t.kind == "kelvin":
            out[t.prop] = str(int(_round_half_away(kelvin_for(v, a.kelvin))))
        else:
            out[t.prop] = _signed_int(lr_tint_for(v, a.tint))
    out["WhiteBalance"] = "Custom" if wb_changed else "As Shot"
    return out


def _crs_to_value(t: _Tag, text: str, as_shot: AsShot) -> float:
    x = float(text.strip())
    if not math.isfinite(x):
        raise ValueError("not finite")
    if t.kind == "ev":
        return x / EV_PER_UNIT
    if t.kind == "slider":
        return x
    if t.kind == "kelvin":
        if x <= 0:
            raise ValueError("not a temperature")
        return temperature_for(x, as_shot.kelvin)
    return (x - as_shot.tint) / TINT_PER_UNIT


# ============================================================================ as-shot white balance

# linear sRGB → XYZ (IEC 61966-2-1): LibRaw's colour matrix maps camera RGB to linear sRGB.
_SRGB_TO_XYZ = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))


def cct_duv(xy) -> tuple[float, float] | None:
    """Correlated colour temperature (K) and Duv of a chromaticity, 1000–15000 K.

    Nearest point of the Planckian locus (Krystek's approximation,
    :func:`monet_cli.colorspaces.planck_uv`) in CIE 1960 uv, searched on a 0.25-mired grid and
    refined by a parabola; Duv is the signed distance, positive above the locus (greenish).
    Returns ``None`` outside 1000–15000 K or for |Duv| > 0.05 (not a plausible illuminant).

    >>> t, d = cct_duv((0.3324, 0.3474)); round(t, -1), round(d, 3)
    (5500.0, 0.003)
    """
    import numpy as np

    from monet_cli import colorspaces as cs

    u, v = cs.xy_to_uv1960(xy)
    mired = np.arange(1e6 / 15000.0, 1000.0 + 0.25, 0.25)
    pu, pv = cs.planck_uv(1e6 / mired)
    d2 = (pu - u) ** 2 + (pv - v) ** 2
    i = int(np.argmin(d2))
    if i == 0 or i == len(mired) - 1:
        return None
    y0, y1, y2 = d2[i - 1], d2[i], d2[i + 1]
    denom = y0 - 2 * y1 + y2
    m = mired[i] + (0.25 * 0.5 * (y0 - y2) / denom if denom > 0 else 0.0)
    T = 1e6 / m
    bu, bv = cs.planck_uv(T)
    du, dv = np.subtract(cs.planck_uv(T + 10.0), cs.planck_uv(T - 10.0))
    n = np.array([-dv, du]) / math.hypot(du, dv)
    if n[1] < 0:
        n = -n
    duv = float((u - bu) * n[0] + (v - bv) * n[1])
    if abs(duv) > 0.05:
        return None
    return float(T), duv


def as_shot_from_raw(photo) -> AsShot | None:
    """Estimate a raw file's as-shot white balance from its metadata (LibRaw), or ``None``.

    The camera's neutral under the shooting light is ``pre_mul / cam_mul`` in LibRaw's
    daylight-normalised camera RGB; LibRaw's ``rgb_cam`` takes it to linear sRGB, then to
    XYZ and :func:`cct_duv`; Lightroom's tint is ``3000·Duv``. Adobe's own number, from its
    camera profiles, is close but not identical.
    """
    try:
        import numpy as np
        import rawpy

        raw = rawpy.RawPy()
        try:
            raw.open_file(str(photo))
            mul = np.array(raw.camera_whitebalance[:3], dtype=float)
            pre = np.array(raw.daylight_whitebalance[:3], dtype=float)
            rgb_cam = np.array(raw.color_matrix, dtype=float)[:, :3]
        finally:
            raw.close()
    except Exception:  # noqa: BLE001 -- any LibRaw failure just means "unknown"
        return None
    if not (np.all(np.isfinite(mul)) and np.all(mul > 0) and np.all(pre > 0)) or not np.any(rgb_cam):
        return None
    xyz = np.array(_SRGB_TO_XYZ) @ (rgb_cam @ (pre / mul))
    if xyz.sum() <= 0 or xyz[1] <= 0:
        return None
    r = cct_duv((xyz[0] / xyz.sum(), xyz[1] / xyz.sum()))
    if r is None or not LR_KELVIN[0] <= r[0] <= LR_KELVIN[1]:
        return None
    tint = min(max(LR_TINT_PER_DUV * r[1], LR_TINT[0]), LR_TINT[1])
    return AsShot(round(r[0]), round(tint, 1) + 0.0, "estimated from the raw file's white balance (LibRaw)")


# ============================================================================ safe parsing

_MARKUP_DECL = re.compile(r"<!(?!--|\[CDATA\[)")


def _decode(data: bytes, where) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for bom, enc in ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                     (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le")):
        if data.startswith(bom):
            data, encoding = data[len(bom):], enc
            break
    else:
        encoding = "utf-16-be" if data[:2] == b"\x00<" else "utf-16-le" if data[:2] == b"<\x00" else "utf-8"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise InputError(f"XMP is not valid {encoding.upper()} text", path=where) from None


def _parse_tree(data: bytes, where) -> tuple[ET.Element, dict[str, str]]:
    """Parse an XMP packet safely: (root element, {uri: prefix} as declared in the packet)."""
    if len(data) > MAX_XMP_BYTES:
        raise InputError(f"XMP is larger than {MAX_XMP_BYTES // 2**20} MiB; refusing to parse it", path=where)
    text = _decode(data, where)
    if not text.strip():
        raise InputError("XMP is empty", path=where)
    if _MARKUP_DECL.search(text):
        raise InputError("XMP contains a DOCTYPE or entity declaration; refusing it "
                         "(XMP never needs one, and it can expand entities or load external files)", path=where)
    parser = ET.XMLPullParser(events=("start", "end", "start-ns"))
    try:
        parser.feed(text)
        parser.close()
    except ET.ParseError as e:
        raise InputError(f"XMP is not well-formed XML ({e})", path=where) from None
    root, depth, prefixes = None, 0, {}
    for event, item in parser.read_events():
        if event == "start-ns":
            prefix, uri = item
            if prefix and uri not in prefixes:
                prefixes[uri] = prefix
        elif event == "start":
            root = item if root is None else root
            depth += 1
            if depth > MAX_DEPTH:
                raise InputError(f"XMP is nested deeper than {MAX_DEPTH} levels; refusing it", path=where)
        else:
            depth -= 1
    if root is None:
        raise InputError("XMP is empty", path=where)
    return root, prefixes


def _rdf_of(root: ET.Element, where) -> ET.Element:
    if root.tag == f"{{{RDF_NS}}}RDF":
        return root
    rdf = root.find(f"{{{RDF_NS}}}RDF")
    if rdf is None:
        raise InputError("not an XMP packet (no rdf:RDF element)", path=where)
    return rdf


@dataclass
class XmpSettings:
    """What a packet says, split by namespace: simple ``crs:`` properties (local name → text),
    structured ``crs:`` properties (local name → the text of each item; "" for structures),
    ``monet:`` properties."""

    crs: dict[str, str] = field(default_factory=dict)
    crs_structs: dict[str, list[str]] = field(default_factory=dict)
    monet: dict[str, str] = field(default_factory=dict)
    creator_tool: str | None = None
    darktable_history: int | None = None
    extended_xmp: bool = False

    @property
    def has_settings(self) -> bool:
        return bool(self.crs or self.crs_structs)


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        uri, _, name = tag[1:].partition("}")
        return uri, name
    return "", tag


def _items(el: ET.Element) -> list[str]:
    """The items of an RDF array property (their text), or one item for a structure."""
    for c in el:
        if _local(c.tag) in ((RDF_NS, "Seq"), (RDF_NS, "Bag"), (RDF_NS, "Alt")):
            return [(li.text or "").strip() if len(li) == 0 else "" for li in c]
    return [""]


def parse_xmp(data: bytes, *, where="XMP") -> XmpSettings:
    """Read the top-level properties of an XMP packet (sidecar file or embedded bytes).

    Properties may be attributes of ``rdf:Description`` (Adobe's usual form) or child
    elements (exiftool's); only the top-level descriptions count (not history, snapshots or
    presets nested inside). Raises :class:`InputError` for unsafe or malformed packets.
    """
    root, _ = _parse_tree(data, where)
    rdf = _rdf_of(root, where)
    s = XmpSettings()
    for desc in rdf.findall(f"{{{RDF_NS}}}Description"):
        for key, value in desc.attrib.items():
            uri, name = _local(key)
            if uri == CRS_NS:
                s.crs[name] = value
            elif uri == MONET_NS:
                s.monet[name] = value
            elif (uri, name) == (XMP_NS, "CreatorTool"):
                s.creator_tool = value
            elif (uri, name) == (XMPNOTE_NS, "HasExtendedXMP"):
                s.extended_xmp = True
        for child in desc:
            uri, name = _local(child.tag)
            simple = len(child) == 0 and f"{{{RDF_NS}}}parseType" not in child.attrib
            if uri == CRS_NS:
                if simple:
                    s.crs[name] = (child.text or "").strip()
                else:
                    s.crs_structs[name] = _items(child)
            elif uri == MONET_NS and simple:
                s.monet[name] = (child.text or "").strip()
            elif (uri, name) == (XMP_NS, "CreatorTool") and simple:
                s.creator_tool = (child.text or "").strip()
            elif (uri, name) == (XMPNOTE_NS, "HasExtendedXMP"):
                s.extended_xmp = True
            elif (uri, name) == (DARKTABLE_NS, "history"):
                s.darktable_history = len(_items(child)) if len(child) else 0
    return s


# ============================================================================ settings → plan

# Settings that describe the file or the base rendering, not an edit (never listed).
_BOOKKEEPING = {
    "Version", "ProcessVersion", "CompatibleVersion", "HasSettings", "HasCrop", "AlreadyApplied",
    "RawFileName", "WhiteBalance", "CameraProfile", "CameraProfileDigest", "Look", "LookTable",
    "AutoWhiteVersion", "ToneCurveName", "ToneCurveName2012", "CropConstrainToWarp", "CropUnit",
    "CropWidth", "CropHeight", "OverrideLookVignette", "SupportsAmount", "SupportsAmount2",
    "SupportsColor", "SupportsMonochrome", "SupportsHighDynamicRange", "SupportsNormalDynamicRange",
    "SupportsSceneReferred", "SupportsOutputReferred", "Copyright", "Group", "Name", "UUID",
    "JPEGHandling", "LensProfileSetup", "LensProfileName", "LensProfileFilename", "LensProfileDigest",
    "LensProfileIsEmbedded", "DefaultsSpecificToSerial", "DefaultsSpecificToISO", "Cluster",
    "Orientation",
}
# Settings that only qualify another one (the amount they qualify is listed when it is set).
_SECONDARY = re.compile(
    r"^(Sharpen(Radius|Detail|EdgeMasking)|LuminanceNoiseReduction(Detail|Contrast)|"
    r"ColorNoiseReduction(Detail|Smoothness)|Grain(Size|Frequency|Seed)|"
    r"PostCropVignette(Midpoint|Roundness|Feather|Style|HighlightContrast)|VignetteMidpoint|"
    r"SplitToning(ShadowHue|HighlightHue|Balance)|ColorGrade(Blending|\w*Hue)|"
    r"Parametric(Shadow|Midtone|Highlight)Split|Defringe(Purple|Green)Hue(Lo|Hi)|"
    r"Crop\w*|GrayMixer\w*|LensProfile\w*Scale|Upright\w*|Enable\w*|"
    r"Auto\w*Version|LensManualDistortionAmount_?Version)$")
# Defaults that are not zero (a setting at its default is not an edit).
_DEFAULTS = {"PerspectiveScale": 100.0, "CurveRefineSaturation": 100.0, "LensProfileDistortionScale": 100.0,
             "LensProfileVignettingScale": 100.0, "LensProfileChromaticAberrationScale": 100.0}
_RAW_DEFAULTS = {"Sharpness": 40.0, "ColorNoiseReduction": 25.0}
# Process Version 2003/2010 tone sliders: only active below PV 6.7, superseded by the "2012" ones.
_LEGACY_PV = {"Exposure", "Contrast", "Brightness", "Shadows", "FillLight", "HighlightRecovery",
              "Clarity", "ToneCurve"}
_LEGACY_DEFAULTS = {"Contrast": 25.0, "Brightness": 50.0, "Shadows": 5.0}
_NEUTRAL_TEXT = {"", "false", "none", "linear", "0"}
_IDENTITY_CURVE = {"ToneCurvePV2012", "ToneCurvePV2012Red", "ToneCurvePV2012Green", "ToneCurvePV2012Blue",
                   "ToneCurve", "ToneCurveRed", "ToneCurveGreen", "ToneCurveBlue"}


def _is_neutral(name: str, text: str) -> bool:
    t = text.strip()
    if t.lower() in _NEUTRAL_TEXT:
        return True
    try:
        x = float(t)
    except ValueError:
        return False
    return x == _DEFAULTS.get(name, 0.0)


def _is_identity_curve(points: list[str]) -> bool:
    try:
        xy = [tuple(float(c) for c in p.split(",")) for p in points]
    except ValueError:
        return False
    return all(len(q) == 2 and q[0] == q[1] for q in xy)


def _pv_number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


@dataclass
class ImportResult:
    """A plan read from XMP, what could not be represented, and how values were obtained."""

    plan: Plan
    xmp: Path
    embedded: bool
    photo: Path | None
    unsupported: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    as_shot: AsShot | None = None
    plan_path: Path | None = None

    @property
    def adjustments(self) -> dict[str, float]:
        return self.plan.adjustments

    def to_dict(self) -> dict:
        return {"xmp": str(self.xmp), "embedded": self.embedded,
                "photo": str(self.photo) if self.photo else None,
                "plan_path": str(self.plan_path) if self.plan_path else None,
                "adjustments": {k: int(v) if float(v).is_integer() else round(v, 3)
                                for k, v in self.adjustments.items()},
                "unsupported": self.unsupported, "notes": self.notes,
                "as_shot": self.as_shot.to_dict() if self.as_shot else None,
                "plan": self.plan.to_dict()}


def _unsupported(s: XmpSettings, *, raw: bool) -> list[dict]:
    pv = _pv_number(s.crs.get("ProcessVersion"))
    legacy = pv is not None and pv < 6.7
    mapped = {t.prop for t in _tags(True)} | {t.prop for t in _tags(False)}
    out = []
    for name, text in s.crs.items():
        if name in _BOOKKEEPING or _SECONDARY.match(name):
            continue
        if name in mapped and not (legacy and name.endswith("2012")):
            continue
        if name in _LEGACY_PV and not legacy:
            continue
        if name in _LEGACY_PV and legacy:
            try:
                if float(text) == _LEGACY_DEFAULTS.get(name, 0.0):
                    continue
            except ValueError:
                pass
            out.append({"tag": f"crs:{name}", "value": text,
                        "reason": "a Process Version 2010 slider; monet maps the 2012 sliders only"})
            continue
        if _is_neutral(name, text):
            continue
        entry = {"tag": f"crs:{name}", "value": text}
        try:
            if raw and float(text) == _RAW_DEFAULTS.get(name):
                entry["reason"] = "Lightroom's default for raw files; monet has no such operation"
        except ValueError:
            pass
        out.append(entry)
    if s.crs.get("HasCrop", "").lower() == "true":
        crop = ", ".join(f"{k[4:].lower()} {s.crs[k]}" for k in ("CropLeft", "CropTop", "CropRight", "CropBottom",
                                                                   "CropAngle") if k in s.crs)
        out.append({"tag": "crs:HasCrop", "value": "True", "reason": f"a crop ({crop}); monet does not crop"})
    for name, items in s.crs_structs.items():
        if name in _BOOKKEEPING or not items or (name in _IDENTITY_CURVE and _is_identity_curve(items)):
            continue
        n = len(items)
        value = ("points " + "; ".join(items)) if name in _IDENTITY_CURVE else f"{n} item{'s' * (n != 1)}"
        out.append({"tag": f"crs:{name}", "value": value})
    if s.darktable_history is not None:
        out.append({"tag": "darktable:history", "value": f"{s.darktable_history} steps",
                    "reason": "darktable's own edit history (binary module parameters) is not readable; "
                              "monet reads Lightroom/Camera Raw settings"})
    return out


def settings_to_plan(s: XmpSettings, *, raw: bool | None = None, as_shot: AsShot | None = None,
                     photo=None):
    """Build a :class:`~monet_cli.plan.Plan` (planner backend ``xmp``) from parsed settings.

    Returns ``(plan, unsupported, notes, as_shot_used)``. How the white balance is read
    follows the packet (``IncrementalTemperature`` → rendered file, absolute ``Temperature``
    → raw file); ``raw`` (the photo's kind) decides only when the packet has neither.
    ``as_shot`` overrides the as-shot white balance; ``photo`` (a raw file) lets it be
    estimated when neither the caller nor the packet gives it.
    """
    notes: list[str] = []
    crs = s.crs
    has_inc = "IncrementalTemperature" in crs or "IncrementalTint" in crs
    has_abs = "Temperature" in crs or "Tint" in crs
    raw = bool(raw) if has_inc == has_abs else has_abs
    pv = _pv_number(crs.get("ProcessVersion"))
    legacy = pv is not None and pv < 6.7
    if legacy:
        notes.append(f"Process Version {crs['ProcessVersion']} (2010 or earlier): its tone sliders are listed, "
                     "not mapped; HSL, Saturation and white balance are read")
    if not s.has_settings:
        notes.append("the XMP holds no Camera Raw settings (crs:)")

    wb_as_shot = raw and crs.get("WhiteBalance", "").strip().lower() == "as shot"
    used = None
    if raw:
        if as_shot is not None:
            used = as_shot
        elif wb_as_shot:
            used = _lightroom_values_as_shot(crs)
        else:
            used = _recorded_as_shot(s) or (as_shot_from_raw(photo) if photo is not None else None)
            if used is None:
                used = DEFAULT_AS_SHOT
                if has_abs:
                    notes.append("white balance: the as-shot white balance is unknown; " + DEFAULT_AS_SHOT.source)

    exact = _exact_values(s)
    expected = plan_to_crs(exact, raw=raw, as_shot=_recorded_as_shot(s)) if exact is not None else None
    values: dict[str, float] = {}
    changed: list[str] = []
    for t in _tags(raw):
        if legacy and t.prop.endswith("2012"):
            continue
        text = crs.get(t.prop)
        if wb_as_shot and t.kind in ("kelvin", "tint"):
            if exact and exact.get(t.op):
                changed.append(t.op)
            continue  # "As Shot": the camera's own white balance, i.e. no change
        if expected is not None:
            if _same_setting(t, text, expected.get(t.prop)):
                if exact.get(t.op):
                    values[t.op] = exact[t.op]
                continue
            if text is not None or exact.get(t.op):
                changed.append(t.op)
        if text is None:
            continue
        try:
            v = _crs_to_value(t, text, used or DEFAULT_AS_SHOT)
        except ValueError:
            notes.append(f"crs:{t.prop}={text!r} is not a number; ignored")
            continue
        v = _round_half_away(v, 2 if t.kind in ("kelvin", "tint") else 6)
        op = catalog().ops[t.op]
        if not op.min <= v <= op.max:
            clamped = min(max(v, op.min), op.max)
            if t.kind == "ev":
                notes.append(f"crs:Exposure2012 {text} EV is beyond monet's ±{EXPOSURE_EV:g} EV; "
                             f"{t.op} clamped to {clamped:+g}")
            else:
                notes.append(f"crs:{t.prop}={text} is beyond monet's range; {t.op} clamped to {clamped:+g}")
            v = clamped
        if v != 0:
            values[t.op] = v
    if changed:
        notes.append("changed in Lightroom since monet exported it (Lightroom's value is used): " + ", ".join(changed))
    if s.extended_xmp:
        notes.append("the packet points to extended XMP (JPEG), which is not read")

    plan = Plan.from_adjustments(values, where="xmp")
    plan.planner = Planner(backend="xmp", model=s.creator_tool)
    for st in STAGES:
        if not plan.stages[st].adjustments:
            plan.stages[st].status = "no_change"
    return plan, _unsupported(s, raw=raw), notes, used


def _lightroom_values_as_shot(crs: dict) -> AsShot | None:
    """Lightroom writes the as-shot kelvin and tint next to ``WhiteBalance="As Shot"``."""
    try:
        return AsShot(float(crs["Temperature"]), float(crs.get("Tint", "0")), "Lightroom's as-shot white balance")
    except (KeyError, ValueError):
        return None


def _same_setting(t: _Tag, text: str | None, expected: str | None) -> bool:
    """Whether a ``crs:`` value still says what monet wrote (numerically, at Lightroom's precision)."""
    if expected is None:
        return text is None
    if text is None:
        return False
    try:
        a, b = float(text), float(expected)
    except ValueError:
        return False
    return abs(a - b) <= (0.005 if t.kind == "ev" else 0.5)


def _exact_values(s: XmpSettings) -> dict[str, float] | None:
    if "PlanVersion" not in s.monet:
        return None
    ops = catalog().ops
    out = {}
    for name, text in s.monet.items():
        if name not in ops:
            continue
        try:
            v = float(text)
        except ValueError:
            return None
        if not (math.isfinite(v) and ops[name].min <= v <= ops[name].max):
            return None
        out[name] = v
    return out


def _recorded_as_shot(s: XmpSettings) -> AsShot | None:
    try:
        k, t = float(s.monet["AsShotTemperature"]), float(s.monet["AsShotTint"])
    except (KeyError, ValueError):
        return None
    if not (LR_KELVIN[0] <= k <= LR_KELVIN[1] and math.isfinite(t)):
        return None
    return AsShot(k, t, s.monet.get("AsShotSource", "recorded by monet at export"))


# ============================================================================ building packets


def _description(crs: dict[str, str] | None, exact: dict[str, float], as_shot: AsShot | None, *,
                 raw_name: str | None, source_name: str | None) -> ET.Element:
    d = ET.Element(f"{{{RDF_NS}}}Description", {f"{{{RDF_NS}}}about": ""})
    a = d.attrib
    a[f"{{{XMP_NS}}}MetadataDate"] = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
    if crs is not None:
        a[f"{{{CRS_NS}}}Version"] = PROCESS_VERSION  # the Camera Raw version that introduced it
        a[f"{{{CRS_NS}}}ProcessVersion"] = PROCESS_VERSION
        for k, v in crs.items():
            a[f"{{{CRS_NS}}}{k}"] = v
        if raw_name:
            a[f"{{{CRS_NS}}}RawFileName"] = raw_name
        a[f"{{{CRS_NS}}}HasSettings"] = "True"
    a[f"{{{MONET_NS}}}PlanVersion"] = "1"
    a[f"{{{MONET_NS}}}Generator"] = f"monet {__version__}"
    if source_name:
        a[f"{{{MONET_NS}}}Source"] = source_name
    for op, v in exact.items():
        if v:
            a[f"{{{MONET_NS}}}{op}"] = _exact_text(v)
    if as_shot is not None:
        a[f"{{{MONET_NS}}}AsShotTemperature"] = _exact_text(as_shot.kelvin)
        a[f"{{{MONET_NS}}}AsShotTint"] = _exact_text(as_shot.tint)
        a[f"{{{MONET_NS}}}AsShotSource"] = as_shot.source
    return d


def build_xmp(adjustments: dict, *, raw: bool, as_shot: AsShot | None = None, raw_name: str | None = None,
              source_name: str | None = None, packet: bool = False, existing: bytes | None = None,
              develop: bool = True) -> bytes:
    """An XMP document (UTF-8 bytes) holding ``adjustments`` as Camera Raw settings.

    ``packet`` wraps it in ``<?xpacket?>`` with padding (for embedding). ``existing`` is a
    packet already in the file: its other metadata (title, keywords, rating, camera data…)
    is kept and its ``crs:`` / ``monet:`` properties are replaced by ours. ``develop=False``
    writes only monet's own record (``monet:``), no ``crs:`` settings: for a file monet has
    already rendered, which Lightroom would otherwise develop a second time.
    """
    values = validate_values(dict(adjustments), "plan")
    crs = plan_to_crs(values, raw=raw, as_shot=as_shot) if develop else None
    desc = _description(crs, values, (as_shot or DEFAULT_AS_SHOT) if raw else None, raw_name=raw_name,
                        source_name=source_name)
    prefixes = dict(PREFIXES)
    if existing is not None:
        root, declared = _parse_tree(existing, "the file's XMP")
        for uri, p in declared.items():
            if uri not in prefixes and p not in prefixes.values():
                prefixes[uri] = p
        if root.tag == f"{{{RDF_NS}}}RDF":
            wrapper = ET.Element(f"{{{X_NS}}}xmpmeta")
            wrapper.append(root)
            root = wrapper
        rdf = _rdf_of(root, "the file's XMP")
        about = next((d.get(f"{{{RDF_NS}}}about") for d in rdf.findall(f"{{{RDF_NS}}}Description")), None)
        if about:  # every top-level description must describe the same resource
            desc.set(f"{{{RDF_NS}}}about", about)
        drop = (CRS_NS, MONET_NS)
        for old in rdf.findall(f"{{{RDF_NS}}}Description"):
            for key in [k for k in old.attrib if _local(k)[0] in drop or _local(k) == (XMP_NS, "MetadataDate")]:
                del old.attrib[key]
            for child in [c for c in old if _local(c.tag)[0] in drop or _local(c.tag) == (XMP_NS, "MetadataDate")]:
                old.remove(child)
            if len(old) == 0 and set(old.attrib) <= {f"{{{RDF_NS}}}about"}:
                rdf.remove(old)
        rdf.append(desc)
    else:
        root = ET.Element(f"{{{X_NS}}}xmpmeta")
        rdf = ET.SubElement(root, f"{{{RDF_NS}}}RDF")
        rdf.append(desc)
    root.set(f"{{{X_NS}}}xmptk", f"monet {__version__}")
    ET.indent(root, space=" ")
    body = _serialize(root, prefixes)
    if not packet:
        return (body + "\n").encode("utf-8")
    pad = "\n".join([" " * 99] * 20) + "\n"  # ~2 KiB of room for in-place edits by other tools
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n' + body + "\n" + pad
            + '<?xpacket end="w"?>').encode("utf-8")


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _attr_escape(v: str) -> str:
    v = _NOT_XML.sub("\ufffd", v)  # e.g. a control character in a file name: not representable in XML 1.0
    return _xml_escape(v, {'"': "&quot;", "\n": "&#xA;", "\r": "&#xD;", "\t": "&#x9;"})


def _serialize(root: ET.Element, prefixes: dict[str, str]) -> str:
    """RDF/XML text of ``root``; each namespace is declared on the first element that uses it."""
    assigned = {**prefixes, XML_NS: "xml"}
    used_prefixes = set(assigned.values())
    out: list[str] = []

    def prefix(uri: str) -> str:
        if uri not in assigned:
            n = 0
            while f"ns{n}" in used_prefixes:
                n += 1
            assigned[uri] = f"ns{n}"
            used_prefixes.add(f"ns{n}")
        return assigned[uri]

    def qname(tag: str, declared: set, new: list) -> str:
        uri, name = _local(tag)
        if not uri:
            return name
        if uri not in declared and uri != XML_NS:  # xml: is bound by definition, never declared
            declared.add(uri)
            new.append(uri)
        return f"{prefix(uri)}:{name}"

    def write(el: ET.Element, declared: set, depth: int) -> None:
        declared = set(declared)
        new: list[str] = []
        tag = qname(el.tag, declared, new)
        attrs = [(qname(k, declared, new), v) for k, v in el.attrib.items()]
        parts = [f'xmlns:{prefix(u)}="{_attr_escape(u)}"' for u in new]
        parts += [f'{k}="{_attr_escape(v)}"' for k, v in attrs]
        sep = "\n" + " " * (depth + 3) if len(parts) > 3 else " "  # one per line, as Adobe writes them
        out.append("<" + tag + "".join(sep + x for x in parts))
        if len(el) == 0 and not el.text:
            out.append("/>")
        else:
            out.append(">")
            if el.text:
                out.append(_xml_escape(el.text))
            for c in el:
                write(c, declared, depth + 1)
            out.append(f"</{tag}>")
        if el.tail:
            out.append(_xml_escape(el.tail))

    write(root, set(), 0)  # recursion depth is bounded by MAX_DEPTH (checked when parsing)
    return "".join(out)


# ============================================================================ finding and reading XMP


def xmp_sidecar_path(photo) -> Path:
    """Adobe's sidecar name: ``IMG_0042.CR2`` → ``IMG_0042.xmp`` (same folder)."""
    p = Path(photo)
    return p.with_name(p.stem + ".xmp")


def _darktable_sidecar(photo) -> Path:
    p = Path(photo)
    return p.with_name(p.name + ".xmp")


def _sniff(head: bytes) -> str | None:
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    return None


def read_xmp_bytes(path) -> tuple[bytes | None, bool]:
    """The XMP of ``path``: an XMP file's bytes, or the packet embedded in a TIFF/DNG (and
    TIFF-based raw), JPEG or PNG. Returns ``(packet or None, embedded)``; other files (CR3,
    RAF, …) have no embedded XMP that monet reads: ``(None, True)``."""
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.is_dir():
        raise InputError("is a directory", path=p)
    try:
        with open(p, "rb") as f:
            head = f.read(16)
            kind = _sniff(head)
            if kind is None and (p.suffix.lower() == ".xmp" or head.lstrip()[:1] in (b"<", b"\xef", b"\xfe", b"\xff")):
                if p.stat().st_size > MAX_XMP_BYTES:
                    raise InputError(f"XMP is larger than {MAX_XMP_BYTES // 2**20} MiB; refusing to parse it", path=p)
                f.seek(0)
                return f.read(), False
            f.seek(0)
            if kind == "jpeg":
                return _jpeg_xmp(f, p), True
            if kind == "tiff":
                return _tiff_xmp(f, p), True
            if kind == "png":
                return _png_xmp(f, p), True
            return None, True
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or e}", path=p) from None


def _jpeg_segments(data: bytes, path) -> tuple[list[tuple[int, bytes]], int]:
    """JPEG header segments up to SOS: ``[(marker, whole segment bytes)]`` and where the rest begins."""
    if data[:2] != b"\xff\xd8":
        raise InputError("not a JPEG file", path=path)
    pos, segs = 2, []
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise InputError("corrupt JPEG: bad marker before the image data", path=path)
        while pos < len(data) and data[pos] == 0xFF and pos + 1 < len(data) and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 1 >= len(data):
            raise InputError("truncated JPEG", path=path)
        marker = data[pos + 1]
        if marker in (0xDA, 0xD9):
            return segs, pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            segs.append((marker, data[pos:pos + 2]))
            pos += 2
            continue
        if pos + 4 > len(data):
            raise InputError("truncated JPEG", path=path)
        n = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if n < 2 or pos + 2 + n > len(data):
            raise InputError("truncated or corrupt JPEG segment", path=path)
        segs.append((marker, data[pos:pos + 2 + n]))
        pos += 2 + n


def _is_xmp_app1(marker: int, seg: bytes) -> bool:
    return marker == 0xE1 and seg[4:4 + len(JPEG_XMP_SIG)] == JPEG_XMP_SIG


def _jpeg_xmp(f, path) -> bytes | None:
    """The standard XMP APP1 segment's packet; reads the header segments only, not the scan."""
    if f.read(2) != b"\xff\xd8":
        raise InputError("not a JPEG file", path=path)
    while True:
        if f.read(1) != b"\xff":
            raise InputError("corrupt JPEG: bad marker before the image data", path=path)
        m = f.read(1)
        while m == b"\xff":  # fill bytes
            m = f.read(1)
        if not m:
            raise InputError("truncated JPEG", path=path)
        marker = m[0]
        if marker in (0xDA, 0xD9):
            return None
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        ln = f.read(2)
        n = struct.unpack(">H", ln)[0] if len(ln) == 2 else 0
        if n < 2:
            raise InputError("truncated or corrupt JPEG segment", path=path)
        body = f.read(n - 2)
        if len(body) < n - 2:
            raise InputError("truncated JPEG", path=path)
        if marker == 0xE1 and body.startswith(JPEG_XMP_SIG):
            return body[len(JPEG_XMP_SIG):]


# --- TIFF: IFD0 -------------------------------------------------------------------------------

_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8}


@dataclass
class _Ifd:
    bo: str  # "<" or ">"
    big: bool
    offset_pos: int  # where the header stores IFD0's offset
    offset: int
    entries: list[bytes]  # raw entries, file byte order
    next_ifd: int

    def entry(self, raw: bytes) -> tuple[int, int, int, bytes]:
        if self.big:
            tag, typ, count = struct.unpack(self.bo + "HHQ", raw[:12])
            return tag, typ, count, raw[12:20]
        tag, typ, count = struct.unpack(self.bo + "HHI", raw[:8])
        return tag, typ, count, raw[8:12]


def _read_ifd0(f, path, size: int) -> _Ifd:
    f.seek(0)
    head = f.read(16)
    bo = "<" if head[:2] == b"II" else ">"
    magic = struct.unpack(bo + "H", head[2:4])[0]
    big = magic == 43
    if big:
        offset_pos, off = 8, struct.unpack(bo + "Q", head[8:16])[0]
        n_fmt, n_size, e_size, o_fmt = "Q", 8, 20, "Q"
    else:
        offset_pos, off = 4, struct.unpack(bo + "I", head[4:8])[0]
        n_fmt, n_size, e_size, o_fmt = "H", 2, 12, "I"
    if not 8 <= off < size:
        raise InputError("corrupt TIFF: IFD0 offset outside the file", path=path)
    f.seek(off)
    n = struct.unpack(bo + n_fmt, f.read(n_size))[0]
    if n == 0 or n > 4096 or off + n_size + n * e_size > size:
        raise InputError("corrupt TIFF: bad IFD0 entry count", path=path)
    raw = f.read(n * e_size)
    nxt = struct.unpack(bo + o_fmt, f.read(n_size if big else 4))[0]
    return _Ifd(bo, big, offset_pos, off, [raw[i:i + e_size] for i in range(0, len(raw), e_size)], nxt)


def _tiff_xmp(f, path) -> bytes | None:
    size = os.fstat(f.fileno()).st_size
    ifd = _read_ifd0(f, path, size)
    for raw in ifd.entries:
        tag, typ, count, value = ifd.entry(raw)
        if tag != TIFF_XMP_TAG:
            continue
        nbytes = count * _TYPE_SIZE.get(typ, 1)
        if nbytes > MAX_XMP_BYTES:
            raise InputError(f"embedded XMP is larger than {MAX_XMP_BYTES // 2**20} MiB; refusing to parse it", path=path)
        if nbytes <= len(value):
            return value[:nbytes]
        off = struct.unpack(ifd.bo + ("Q" if ifd.big else "I"), value)[0]
        if off + nbytes > size:
            raise InputError("corrupt TIFF: the XMP tag points outside the file", path=path)
        f.seek(off)
        return f.read(nbytes)
    return None


def _png_xmp(f, path) -> bytes | None:
    f.seek(8)
    while True:
        hdr = f.read(8)
        if len(hdr) < 8:
            return None
        n, ctype = struct.unpack(">I4s", hdr)
        if ctype == b"IEND":
            return None
        if ctype == b"iTXt" and n <= MAX_XMP_BYTES + 1024:
            body = f.read(n)
            f.seek(4, os.SEEK_CUR)
            key, _, rest = body.partition(b"\x00")
            if key != PNG_XMP_KEY or len(rest) < 2:
                continue
            compressed = rest[0] == 1
            rest = rest[2:]
            _, _, rest = rest.partition(b"\x00")  # language
            _, _, text = rest.partition(b"\x00")  # translated keyword
            if compressed:
                d = zlib.decompressobj()
                try:
                    text = d.decompress(text, MAX_XMP_BYTES + 1)
                except zlib.error:
                    raise InputError("corrupt PNG: bad compressed XMP", path=path) from None
                if len(text) > MAX_XMP_BYTES:
                    raise InputError(f"embedded XMP is larger than {MAX_XMP_BYTES // 2**20} MiB; refusing it",
                                     path=path)
            return text
        f.seek(n + 4, os.SEEK_CUR)


def find_xmp(photo) -> list[tuple[Path, bool]]:
    """Where a photo's Lightroom settings may be, in the order they are tried: ``(path, embedded)``.

    Raw files (but DNG): Adobe's sidecar ``NAME.xmp``, then darktable's ``NAME.EXT.xmp``, then
    XMP embedded in the file. DNG, TIFF, JPEG, PNG (which Lightroom edits in place): embedded,
    then the sidecars.
    """
    from monet_cli.images import is_raw

    p = Path(photo)
    sidecars = []
    for c in (xmp_sidecar_path(p), p.with_name(p.stem + ".XMP"), _darktable_sidecar(p)):
        if c.is_file() and c not in sidecars:
            sidecars.append(c)
    embedded = [(p, True)]
    side = [(c, False) for c in sidecars]
    return (side + embedded) if is_raw(p) and p.suffix.lower() != ".dng" else (embedded + side)


_IMAGE_SUFFIXES = {".tif", ".tiff", ".jpg", ".jpeg", ".jpe", ".jfif", ".png"}


def _photo_for_xmp(xmp: Path, s: XmpSettings) -> Path | None:
    """The photo an ``.xmp`` sidecar belongs to: RawFileName, monet:Source, else one same-stem sibling."""
    from monet_cli.images import RAW_SUFFIXES

    for name in (s.crs.get("RawFileName"), s.monet.get("Source")):
        if name and "/" not in name and "\\" not in name and (xmp.parent / name).is_file():
            return xmp.parent / name
    stem = xmp.name[:-4]
    if Path(stem).suffix.lower() in RAW_SUFFIXES | _IMAGE_SUFFIXES and (xmp.parent / stem).is_file():
        return xmp.parent / stem  # darktable's NAME.EXT.xmp
    import glob

    siblings = [c for c in xmp.parent.glob(f"{glob.escape(xmp.stem)}.*")
                if c.suffix.lower() in RAW_SUFFIXES | _IMAGE_SUFFIXES and c.is_file()]
    raws = [c for c in siblings if c.suffix.lower() in RAW_SUFFIXES]
    if len(raws) == 1:
        return raws[0]  # RAW+JPEG pairs: Adobe's sidecar belongs to the raw
    return siblings[0] if len(siblings) == 1 else None


def import_xmp(path, *, photo=None, as_shot: AsShot | None = None) -> ImportResult:
    """Read Lightroom / Camera Raw settings into a monet plan.

    ``path`` is an ``.xmp`` sidecar or a photo (its sidecar or embedded XMP is found, see
    :func:`find_xmp`). ``photo`` names the photo when ``path`` is a sidecar whose photo cannot
    be found from its name. The plan's ``source`` is the photo's (when known); nothing is
    written (see :func:`save_imported_plan`).
    """
    from monet_cli.images import is_raw

    p = Path(path)
    if not p.exists():
        raise InputError("no such file", path=p)
    if p.suffix.lower() == ".xmp":
        data, embedded = read_xmp_bytes(p)
    else:
        data, embedded = None, True
    if not embedded:
        settings = parse_xmp(data, where=p)
        xmp_path = p
        ph = Path(photo) if photo is not None else _photo_for_xmp(p, settings)
    else:
        ph = p
        found, error = None, None
        for cand, emb in find_xmp(p):
            try:
                d = read_xmp_bytes(cand)[0]
                if d is None:
                    continue
                s = parse_xmp(d, where=f"{cand} (embedded XMP)" if emb else cand)
            except InputError as e:  # a corrupt container or packet: try the next place, report if none
                error = error or e
                continue
            if found is None or (s.has_settings and not found[2].has_settings):
                found = (cand, emb, s)
            if s.has_settings:
                break
        if found is None:
            if error is not None:
                raise error
            raise InputError(f"no XMP found: none embedded, and no sidecar {xmp_sidecar_path(p).name} "
                             f"or {_darktable_sidecar(p).name}", path=p)
        xmp_path, embedded, settings = found
    if ph is not None and not ph.is_file():
        raise InputError("no such photo", path=ph)
    raw = is_raw(ph) if ph is not None else None
    plan, unsupported, notes, used = settings_to_plan(settings, raw=raw, as_shot=as_shot, photo=ph if raw else None)
    if ph is not None:
        plan.source = source_of(ph)
    else:
        notes.append("the photo this XMP belongs to was not found; the plan has no source")
    return ImportResult(plan=plan, xmp=Path(xmp_path), embedded=embedded, photo=ph, unsupported=unsupported,
                        notes=notes, as_shot=used)


def save_imported_plan(result: ImportResult, output=None, *, overwrite: bool = False) -> Path:
    """Write an imported plan: to ``output``, else the photo's sidecar ``PHOTO.monet.json``."""
    if output is None:
        if result.photo is None:
            raise UsageError(f"{result.xmp}: cannot tell which photo this XMP belongs to; "
                             "pass --photo PHOTO, -o PLAN.json or --stdout")
        output = sidecar_path(result.photo)
    result.plan_path = save_plan(result.plan, output, overwrite=overwrite)
    return result.plan_path


# ============================================================================ writing


@dataclass
class ExportResult:
    photo: Path
    output: Path
    embedded: bool
    raw: bool
    tags: dict[str, str]
    as_shot: AsShot | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"photo": str(self.photo), "output": str(self.output), "embedded": self.embedded, "raw": self.raw,
                "tags": {f"crs:{k}": v for k, v in self.tags.items()},
                "as_shot": self.as_shot.to_dict() if self.as_shot else None, "notes": self.notes}


def default_embed_path(photo) -> Path:
    """``photo.jpg`` → ``photo.monet-xmp.jpg`` beside it."""
    p = Path(photo)
    return p.with_name(f"{p.stem}.monet-xmp{p.suffix}")


EXPORT_VALUES = ("rendered", "model")


def export_xmp(photo, plan, *, embed: bool = False, output=None, overwrite: bool = False,
               as_shot: AsShot | None = None, values: str = "rendered") -> ExportResult:
    """Write ``plan`` (a :class:`~monet_cli.plan.Plan` or ``{op: value}``) as Camera Raw settings.

    Without ``embed``: the sidecar ``NAME.xmp`` (or ``output``); an existing one is kept unless
    ``overwrite`` (it may hold the photographer's own Lightroom edits). With ``embed``: a copy
    of the TIFF/DNG/JPEG with the packet inside (default ``<stem>.monet-xmp.<ext>``), the
    file's other XMP metadata kept; pixels and every other byte of the image data unchanged.
    The original photo is never written, ``overwrite`` or not. ``values``: ``rendered`` (the
    values monet renders) or ``model`` (where a preset's value map changed the model's values,
    the model's own: ``Plan.model_adjustments``).
    """
    from monet_cli.images import atomic_write, is_raw, same_file

    if values not in EXPORT_VALUES:
        raise UsageError(f"values must be {' or '.join(EXPORT_VALUES)}, got {values!r}")
    p = Path(photo)
    if not p.is_file():
        raise InputError("no such photo" if not p.exists() else "not a file", path=p)
    if hasattr(plan, "adjustments"):
        adjustments = plan.model_adjustments if values == "model" else plan.adjustments
    else:
        adjustments = dict(plan)
    raw = is_raw(p)
    notes: list[str] = []
    mapped = hasattr(plan, "stages") and any(sp.model_adjustments is not None for sp in plan.stages.values())
    if values == "model" and not mapped:
        notes.append("--values model: this plan's values were rendered as the model said them (no value map); "
                     "the export is the same as --values rendered")
    elif values == "rendered" and mapped:
        notes.append("the values are those monet renders, after the model preset's value map; "
                     "--values model exports the model's own")
    out = Path(output) if output is not None else (default_embed_path(p) if embed else xmp_sidecar_path(p))
    if same_file(out, p):
        raise OutputError("refusing to write over the original photo; choose another output", path=out)
    if embed and _suffix_kind(out) != _suffix_kind(p):
        raise UsageError(f"{out}: the copy must keep the photo's format ({p.suffix})")
    if not embed and out.suffix.lower() != ".xmp":
        raise UsageError(f"{out}: an XMP sidecar's name ends in .xmp")
    if not embed and out.exists() and not overwrite:
        raise OutputError("already exists and may hold your own Lightroom/darktable edits; "
                          "use --force to replace it", path=out)

    used = None
    if as_shot is not None and not raw:
        notes.append("--as-shot-kelvin/--as-shot-tint apply to raw files only; ignored")
    if raw:
        used = as_shot
        if used is None and out.exists() and not embed:
            used = _lightroom_as_shot(out)
        if used is None:
            used = as_shot_from_raw(p) or DEFAULT_AS_SHOT
        if used is DEFAULT_AS_SHOT and (adjustments.get("Temperature") or adjustments.get("Tint")):
            notes.append("white balance: the as-shot white balance is unknown; " + DEFAULT_AS_SHOT.source)
    crs = plan_to_crs(adjustments, raw=raw, as_shot=used)
    if raw and adjustments.get("Temperature") and crs["Temperature"] in (str(int(LR_KELVIN[0])), str(int(LR_KELVIN[1]))):
        notes.append(f"crs:Temperature clamped to Lightroom's {LR_KELVIN[0]:g}–{LR_KELVIN[1]:g} K")

    kind = None
    if embed:
        with open(p, "rb") as f:
            kind = _sniff(f.read(16))
        if kind not in ("jpeg", "tiff") or (raw and p.suffix.lower() != ".dng"):
            raise UsageError(f"{p}: --embed writes into JPEG, TIFF and DNG copies; "
                             "for other files use the sidecar (without --embed)")
        existing, _ = read_xmp_bytes(p)
        try:
            if existing is not None and parse_xmp(existing, where=p).has_settings:
                notes.append("the file's own Camera Raw settings are replaced by the plan's in the copy")
        except InputError as e:
            notes.append(f"the file's own XMP could not be read and is replaced ({e})")
            existing = None
        data = build_xmp(adjustments, raw=raw, as_shot=used, source_name=p.name, packet=True, existing=existing)
        writer = _embed_jpeg if kind == "jpeg" else _embed_tiff
        atomic_write(out, lambda tmp: writer(p, Path(tmp), data), overwrite=overwrite)
    else:
        data = build_xmp(adjustments, raw=raw, as_shot=used, raw_name=p.name if raw else None, source_name=p.name)
        atomic_write(out, lambda tmp: Path(tmp).write_bytes(data), overwrite=overwrite)
        if not raw or p.suffix.lower() == ".dng":
            notes.append("Lightroom and Camera Raw read settings from inside JPEG, TIFF and DNG files, not from "
                         "sidecars: use --embed for them (darktable's Lightroom import reads this sidecar)")
    return ExportResult(photo=p, output=out, embedded=embed, raw=raw, tags=crs, as_shot=used, notes=notes)


def _suffix_kind(p: Path) -> str:
    x = p.suffix.lower()
    return {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".jfif": "jpeg",
            ".tif": "tiff", ".tiff": "tiff"}.get(x, x)


def _lightroom_as_shot(sidecar: Path) -> AsShot | None:
    """Lightroom's own as-shot white balance from an existing sidecar, if it says "As Shot"."""
    try:
        s = parse_xmp(read_xmp_bytes(sidecar)[0] or b"", where=sidecar)
        if s.crs.get("WhiteBalance", "").lower() != "as shot":
            return None
        return AsShot(float(s.crs["Temperature"]), float(s.crs.get("Tint", "0")),
                      f"Lightroom's as-shot white balance in {sidecar.name}")
    except (InputError, KeyError, ValueError):
        return None


def embed_xmp(src, dst, packet: bytes) -> None:
    """Write a copy of JPEG/TIFF/DNG ``src`` to ``dst`` with ``packet`` as its XMP (not atomic;
    :func:`export_xmp` wraps it in :func:`~monet_cli.images.atomic_write`)."""
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as f:
        kind = _sniff(f.read(16))
    if kind == "jpeg":
        _embed_jpeg(src, dst, packet)
    elif kind == "tiff":
        _embed_tiff(src, dst, packet)
    else:
        raise UsageError(f"{src}: XMP can be embedded into JPEG, TIFF and DNG files only")


def _embed_jpeg(src: Path, dst: Path, packet: bytes) -> None:
    if len(packet) > JPEG_MAX_XMP:
        # drop the padding first; a packet that still does not fit would need extended XMP
        packet = re.sub(rb"\n( {99}\n)+", b"\n", packet)
        if len(packet) > JPEG_MAX_XMP:
            raise OutputError(f"the XMP packet ({len(packet)} bytes) does not fit in a JPEG APP1 segment "
                              f"({JPEG_MAX_XMP} bytes); extended XMP is not supported", path=dst)
    data = src.read_bytes()
    segs, rest = _jpeg_segments(data, src)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(JPEG_XMP_SIG) + len(packet)) + JPEG_XMP_SIG + packet
    at = next((i for i, (m, s) in enumerate(segs) if _is_xmp_app1(m, s)), None)
    kept = [s for m, s in segs if not _is_xmp_app1(m, s)]
    if at is None:
        at = 0  # after the leading APP0 (JFIF) / APP1 (Exif) segments, as the XMP spec asks
        while at < len(segs) and segs[at][0] in (0xE0, 0xE1):
            at += 1
    else:
        at = sum(1 for m, s in segs[:at] if not _is_xmp_app1(m, s))
    kept.insert(at, app1)
    with open(dst, "wb") as f:
        f.write(b"\xff\xd8")
        f.writelines(kept)
        f.write(memoryview(data)[rest:])


def _embed_tiff(src: Path, dst: Path, packet: bytes) -> None:
    """Copy the file, append the packet and a new IFD0 (the old entries + tag 700), re-point the
    header. Nothing else moves, so every offset in the file (strips, SubIFDs, Exif, maker
    notes, DNG raw data) stays valid; the old IFD0 stays behind as unused bytes."""
    shutil.copyfile(src, dst)
    with open(dst, "r+b") as f:
        size = os.fstat(f.fileno()).st_size
        ifd = _read_ifd0(f, src, size)
        bo, big = ifd.bo, ifd.big
        off_fmt = "Q" if big else "I"
        f.seek(0, os.SEEK_END)
        pos = f.tell()
        if pos % 2:
            f.write(b"\x00")
            pos += 1
        xmp_at = pos
        f.write(packet)
        pos += len(packet)
        if pos % 2:
            f.write(b"\x00")
            pos += 1
        ifd_at = pos
        if big:
            entry = struct.pack(bo + "HHQQ", TIFF_XMP_TAG, 1, len(packet), xmp_at)
        else:
            if ifd_at + 2 + 12 * (len(ifd.entries) + 1) + 4 > 0xFFFFFFFF:
                raise OutputError("the copy would exceed 4 GiB, the limit of a classic TIFF", path=dst)
            entry = struct.pack(bo + "HHII", TIFF_XMP_TAG, 1, len(packet), xmp_at)
        entries = [e for e in ifd.entries if ifd.entry(e)[0] != TIFF_XMP_TAG] + [entry]
        entries.sort(key=lambda e: struct.unpack(bo + "H", e[:2])[0])
        f.write(struct.pack(bo + ("Q" if big else "H"), len(entries)))
        f.writelines(entries)
        f.write(struct.pack(bo + off_fmt, ifd.next_ifd))
        f.seek(ifd.offset_pos)
        f.write(struct.pack(bo + off_fmt, ifd_at))
