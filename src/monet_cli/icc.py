"""ICC profiles of RGB matrix/TRC spaces: build one for a :class:`ColorSpace`, parse one back.

Only the *matrix/TRC* model of ICC display profiles is handled (ICC.1:2010, F.3): three
colorant tags ``rXYZ``/``gXYZ``/``bXYZ`` (D50-adapted, in the PCS) and three tone curves
``rTRC``/``gTRC``/``bTRC``::

    XYZ_D50 = [rXYZ gXYZ bXYZ] · (TRC_r(R), TRC_g(G), TRC_b(B))ᵀ

That is what sRGB, Adobe RGB (1998), ProPhoto, Display P3, Rec. 2020 and the linear
variants are, in practice every profile embedded in a photo. LUT profiles (``A2B0`` only),
CMYK, grey and Lab profiles raise :class:`InputError` from :func:`parse_icc`.

The chromatic adaptation is Bradford (Lam 1985), as ICC.1:2010 Annex E prescribes: ``chad``
holds it for v4 profiles; v2 profiles without ``chad`` adapted their colorants from the media
white point ``wtpt`` to D50, so :func:`parse_icc` un-adapts with Bradford from ``wtpt``.

References
----------
- ICC.1:2010 (profile version 4.3.0.0), International Color Consortium.
- ICC.1:2001-04 (version 2.4.0), for ``desc``/``text`` tags of v2 profiles.
- K. M. Lam, *Metamerism and colour constancy*, PhD thesis, University of Bradford, 1985.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from monet_cli.colorspaces import (
    D50_ICC_XYZ,
    NAMED,
    SRGB,
    ColorSpace,
    TransferFunction,
    XYZ_to_xy,
    chromatic_adaptation_matrix,
    xy_to_XYZ,
)
from monet_cli.errors import InputError

__all__ = ["build_icc", "parse_icc", "parse_gray_icc", "match_named", "profile_description"]

# Fixed creation date so that a profile (and every file that embeds it) depends only on
# the colour space: the same render gives the same bytes.
_DATE = (2025, 1, 1, 0, 0, 0)
_VERSION_V4 = 0x04300000  # 4.3.0.0
_COPYRIGHT = "No copyright, use freely"

# Tolerances of :func:`match_named`: xy of primaries and white, and linear light of the TRC.
PRIMARIES_TOL = 2e-3
TRC_TOL = 1e-3


# --- fixed-point numbers ---------------------------------------------------------------

def _s15f16(x: float) -> int:
    """s15Fixed16Number (ICC.1:2010, 4.6): round(x · 65536) as a signed 32-bit integer."""
    v = int(round(float(x) * 65536.0))
    if not -(2**31) <= v < 2**31:
        raise ValueError(f"{x} does not fit an s15Fixed16Number")
    return v


def _s15f16_bytes(values) -> bytes:
    return b"".join(struct.pack(">i", _s15f16(v)) for v in values)


def _read_s15f16(data: bytes, offset: int, n: int) -> np.ndarray:
    return np.array(struct.unpack_from(f">{n}i", data, offset), dtype=np.float64) / 65536.0


# --- building ----------------------------------------------------------------------------

def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _mluc(text: str) -> bytes:
    """multiLocalizedUnicodeType (ICC.1:2010, 10.13) with one en-US record."""
    s = text.encode("utf-16-be")
    return b"mluc" + b"\0" * 4 + struct.pack(">II", 1, 12) + b"enUS" + struct.pack(">II", len(s), 28) + s


def _xyz(values) -> bytes:
    return b"XYZ " + b"\0" * 4 + _s15f16_bytes(values)


def _trc(trc: TransferFunction) -> bytes:
    """The tone curve of ``trc``: ``curv`` (table or u8Fixed8 gamma) or ``para`` type 0/3."""
    if trc.table is not None:
        t = np.clip(np.rint(np.asarray(trc.table, dtype=np.float64) * 65535.0), 0, 65535).astype(">u2")
        return b"curv" + b"\0" * 4 + struct.pack(">I", t.size) + t.tobytes()
    pure_gamma = trc.a == 1.0 and trc.b == 0.0 and trc.d == 0.0
    if pure_gamma and float(trc.g * 256).is_integer() and 0 < trc.g < 256:
        # Exact in u8Fixed8: the form every reader understands (Adobe RGB's 563/256, linear's 1.0).
        return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(trc.g * 256)) + b"\0\0"
    if pure_gamma:
        return b"para" + b"\0" * 4 + struct.pack(">HH", 0, 0) + _s15f16_bytes([trc.g])
    return b"para" + b"\0" * 4 + struct.pack(">HH", 3, 0) + _s15f16_bytes([trc.g, trc.a, trc.b, trc.c, trc.d])


def _colorants(cs: ColorSpace) -> tuple[np.ndarray, np.ndarray]:
    """The quantised ``chad`` matrix and the D50-adapted colorant matrix (columns r, g, b).

    The colorants are adjusted by at most one unit in the last place so that their sum is
    exactly the quantised PCS white: RGB (1, 1, 1) then maps to D50 bit for bit, and a
    colour-managed reader keeps neutrals neutral.
    """
    chad = chromatic_adaptation_matrix(xy_to_XYZ(cs.white), D50_ICC_XYZ)
    q_chad = np.array([[_s15f16(v) for v in row] for row in chad], dtype=np.int64)
    m = chad @ cs.to_xyz
    q = np.array([[_s15f16(v) for v in row] for row in m], dtype=np.int64)
    target = np.array([_s15f16(v) for v in D50_ICC_XYZ], dtype=np.int64)
    for i in range(3):
        q[i, int(np.argmax(np.abs(m[i])))] += target[i] - q[i].sum()
    return q_chad, q


def build_icc(cs: ColorSpace) -> bytes:
    """An ICC v4.3 RGB display profile (matrix/TRC) describing ``cs``.

    Parameters
    ----------
    cs
        The colour space: xy primaries, xy white and transfer function.

    Returns
    -------
    bytes
        A complete profile: header (class ``mntr``, ``RGB `` → ``XYZ `` PCS, D50 illuminant,
        fixed date, MD5 profile ID), tags ``desc`` (``cs.description`` or ``cs.name``),
        ``cprt``, ``wtpt`` (D50, as v4 requires), ``chad`` (Bradford, native white → D50),
        ``rXYZ``/``gXYZ``/``bXYZ`` (D50-adapted, s15Fixed16) and ``rTRC``/``gTRC``/``bTRC``
        (one shared curve: ``curv`` gamma for pure gammas exact in u8Fixed8 — 1.0 for linear
        spaces — else ``para`` function type 0 or 3, or a ``curv`` table for sampled TRCs).

    Notes
    -----
    The encoded value ``X`` and linear light ``Y`` of the parametric curve are those of
    :class:`~monet_cli.colorspaces.TransferFunction`, which is ICC function type 3::

        Y = (a·X + b)^g  for X >= d,     Y = c·X  for X < d

    References: ICC.1:2010 sections 7 (header), 9 (tags), 10.5 (curv), 10.18 (para), Annex E.

    Examples
    --------
    >>> from monet_cli.colorspaces import SRGB
    >>> p = build_icc(SRGB)
    >>> p[36:40], p[12:24]
    (b'acsp', b'mntrRGB XYZ ')
    >>> parse_icc(p) == SRGB
    True
    """
    q_chad, q = _colorants(cs)
    cols = q.T / 65536.0
    trc = _pad4(_trc(cs.trc))
    desc = (cs.description or cs.name or "RGB").strip()
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _pad4(_mluc(desc))),
        (b"cprt", _pad4(_mluc(_COPYRIGHT))),
        (b"wtpt", _xyz(D50_ICC_XYZ)),
        (b"chad", b"sf32" + b"\0" * 4 + b"".join(struct.pack(">i", int(v)) for v in q_chad.ravel())),
        (b"rXYZ", _xyz(cols[0])),
        (b"gXYZ", _xyz(cols[1])),
        (b"bXYZ", _xyz(cols[2])),
        (b"rTRC", trc),
        (b"gTRC", trc),  # shared: the same offset, as ICC.1 allows
        (b"bTRC", trc),
    ]
    table_len = 4 + 12 * len(tags)
    offset = 128 + table_len
    entries, blobs, placed = [], [], {}
    for sig, blob in tags:
        if blob in placed:
            entries.append((sig, placed[blob], len(blob)))
            continue
        placed[blob] = offset
        entries.append((sig, offset, len(blob)))
        blobs.append(blob)
        offset += len(blob)
    size = offset
    header = bytearray(128)
    struct.pack_into(">I", header, 0, size)
    struct.pack_into(">I", header, 8, _VERSION_V4)
    header[12:24] = b"mntrRGB XYZ "
    struct.pack_into(">6H", header, 24, *_DATE)
    header[36:40] = b"acsp"
    header[68:80] = _s15f16_bytes(D50_ICC_XYZ)
    header[80:84] = b"mnet"
    table = struct.pack(">I", len(entries)) + b"".join(struct.pack(">4sII", s, o, n) for s, o, n in entries)
    profile = bytearray(bytes(header) + table + b"".join(blobs))
    # Profile ID (ICC.1:2010, 7.2.18): MD5 with flags, rendering intent and the ID zeroed.
    profile[84:100] = hashlib.md5(bytes(profile)).digest()
    return bytes(profile)


# --- parsing -----------------------------------------------------------------------------

class _Profile:
    """The header fields and tag directory of a profile, validated against its length."""

    def __init__(self, data: bytes):
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InputError(f"ICC profile must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if len(data) < 132:
            raise InputError(f"ICC profile is truncated or not a profile ({len(data)} bytes; a header alone is 128)")
        if data[36:40] != b"acsp":
            raise InputError("not an ICC profile (no 'acsp' signature at byte 36)")
        size = struct.unpack_from(">I", data, 0)[0]
        if size > len(data):
            raise InputError(f"ICC profile is truncated: its header says {size} bytes, {len(data)} present")
        self.data = data[:size] if size >= 132 else data
        self.version = data[8]
        self.device_class = data[12:16]
        self.color_space = data[16:20]
        self.pcs = data[20:24]
        count = struct.unpack_from(">I", self.data, 128)[0]
        if count > (len(self.data) - 132) // 12:
            raise InputError(f"ICC profile is corrupt: its tag table claims {count} tags")
        self.tags: dict[bytes, tuple[int, int]] = {}
        for i in range(count):
            sig, off, n = struct.unpack_from(">4sII", self.data, 132 + 12 * i)
            if off + n > len(self.data) or n < 8:
                raise InputError(f"ICC profile is truncated or corrupt: tag {_sig(sig)} lies outside the profile")
            self.tags[sig] = (off, n)

    def tag(self, sig: bytes) -> tuple[bytes, int, int]:
        """(type signature, offset, size) of tag ``sig``."""
        off, n = self.tags[sig]
        return self.data[off:off + 4], off, n


def _sig(s: bytes) -> str:
    return repr(s.decode("latin-1"))


def _check_kind(p: _Profile, want: bytes) -> None:
    if not 2 <= p.version <= 4:
        raise InputError(f"ICC profile version {p.version} is not supported (only v2 and v4)")
    if p.device_class in (b"link", b"abst", b"nmcl"):
        raise InputError(f"ICC profile of class {_sig(p.device_class)} is not an image colour space")
    if p.color_space != want:
        kind = {b"CMYK": "CMYK", b"GRAY": "greyscale", b"Lab ": "Lab", b"RGB ": "RGB"}.get(
            p.color_space, f"{_sig(p.color_space)}")
        raise InputError(f"{kind} ICC profile is not supported here (only {'RGB' if want == b'RGB ' else 'grey'}"
                         " matrix/TRC profiles)")


def _text(p: _Profile, sig: bytes) -> str:
    """The text of a ``desc``/``cprt`` tag: v4 ``mluc`` (en preferred), v2 ``desc`` or ``text``."""
    if sig not in p.tags:
        return ""
    typ, off, n = p.tag(sig)
    d = p.data
    try:
        if typ == b"mluc":
            count, rec = struct.unpack_from(">II", d, off + 8)
            best = None
            for i in range(min(count, 256)):
                lang, length, soff = struct.unpack_from(">4sII", d, off + 16 + i * rec)
                if best is None or lang[:2] == b"en":
                    best = (length, soff)
                    if lang == b"enUS":
                        break
            if best is None:
                return ""
            length, soff = best
            if soff + length > n:
                return ""
            return d[off + soff:off + soff + length].decode("utf-16-be", "replace").rstrip("\0").strip()
        if typ == b"desc":
            length = struct.unpack_from(">I", d, off + 8)[0]
            return d[off + 12:off + 12 + min(length, n - 12)].split(b"\0")[0].decode("latin-1").strip()
        if typ == b"text":
            return d[off + 8:off + n].split(b"\0")[0].decode("latin-1").strip()
    except (struct.error, UnicodeDecodeError):
        return ""
    return ""


def profile_description(data: bytes) -> str:
    """The ``desc`` text of an ICC profile (any class), or ``""`` if it has none.

    Raises :class:`InputError` only for a profile whose header or tag table is corrupt.
    """
    return _text(_Profile(data), b"desc")


def _read_curve(p: _Profile, sig: bytes) -> TransferFunction:
    """A ``curv`` or ``para`` tag as a :class:`TransferFunction` (ICC.1:2010, 10.5 and 10.18).

    ``para`` types 0, 1 and 3, and 2 and 4 without offsets, map exactly onto function type 3;
    types 2 and 4 with offsets, and ``curv`` tables, become a sampled table.
    """
    typ, off, n = p.tag(sig)
    d = p.data
    name = _sig(sig)
    try:
        if typ == b"curv":
            count = struct.unpack_from(">I", d, off + 8)[0]
            if 12 + 2 * count > n:
                raise InputError(f"ICC profile is corrupt: tag {name} is shorter than its {count} entries")
            if count == 0:
                return TransferFunction()
            if count == 1:
                g = struct.unpack_from(">H", d, off + 12)[0] / 256.0
                if g <= 0:
                    raise InputError(f"ICC profile is corrupt: tag {name} has gamma {g}")
                return TransferFunction(g=g)
            t = np.frombuffer(d, dtype=">u2", count=count, offset=off + 12).astype(np.float64) / 65535.0
            return _table(t, name)
        if typ == b"para":
            ftype = struct.unpack_from(">H", d, off + 8)[0]
            nparams = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
            if nparams is None:
                raise InputError(f"ICC profile: unknown parametric curve type {ftype} in tag {name}")
            if 12 + 4 * nparams > n:
                raise InputError(f"ICC profile is corrupt: tag {name} is shorter than its parameters")
            prm = _read_s15f16(d, off + 12, nparams)
            g = prm[0]
            if not g > 0:
                raise InputError(f"ICC profile is corrupt: tag {name} has gamma {g}")
            if ftype == 0:
                return TransferFunction(g=g)
            a, b = prm[1], prm[2]
            if a == 0:
                raise InputError(f"ICC profile is corrupt: tag {name} has a = 0")
            if ftype == 1 or (ftype == 2 and prm[3] == 0):
                return TransferFunction(g=g, a=a, b=b, c=0.0, d=max(-b / a, 0.0))
            if ftype == 3 or (ftype == 4 and prm[5] == 0 and prm[6] == 0):
                return TransferFunction(g=g, a=a, b=b, c=prm[3], d=prm[4])
            x = np.linspace(0.0, 1.0, 4096)
            with np.errstate(invalid="ignore"):
                if ftype == 2:
                    y = np.where(x >= -b / a, np.power(np.maximum(a * x + b, 0), g) + prm[3], prm[3])
                else:
                    c, dd, e, f = prm[3:7]
                    y = np.where(x >= dd, np.power(np.maximum(a * x + b, 0), g) + e, c * x + f)
            return _table(y, name)
    except struct.error:
        raise InputError(f"ICC profile is truncated in tag {name}") from None
    raise InputError(f"ICC profile: tone curve type {_sig(typ)} in tag {name} is not supported (only curv and para)")


def _table(t: np.ndarray, name: str) -> TransferFunction:
    if not np.all(np.isfinite(t)) or np.any(np.diff(t) < 0):
        raise InputError(f"ICC profile: the tone curve in tag {name} is not monotone increasing")
    return TransferFunction(table=tuple(float(v) for v in t))


def _read_xyz(p: _Profile, sig: bytes) -> np.ndarray:
    typ, off, n = p.tag(sig)
    if typ != b"XYZ " or n < 20:
        raise InputError(f"ICC profile is corrupt: tag {_sig(sig)} is not an XYZ value")
    return _read_s15f16(p.data, off + 8, 3)


def _read_chad(p: _Profile) -> np.ndarray | None:
    if b"chad" in p.tags:
        typ, off, n = p.tag(b"chad")
        if typ != b"sf32" or n < 44:
            raise InputError("ICC profile is corrupt: tag 'chad' is not a 3×3 matrix")
        m = _read_s15f16(p.data, off + 8, 9).reshape(3, 3)
        if abs(np.linalg.det(m)) < 1e-6:
            raise InputError("ICC profile is corrupt: tag 'chad' is singular")
        return m
    if b"wtpt" in p.tags:
        wtpt = _read_xyz(p, b"wtpt")
        if wtpt[1] > 0 and not np.allclose(wtpt / wtpt[1], D50_ICC_XYZ, atol=2e-3):
            # v2 convention: the colorants were adapted with Bradford from the media white.
            return chromatic_adaptation_matrix(wtpt / wtpt[1], D50_ICC_XYZ)
    return None


def _curves_equal(t1: TransferFunction, t2: TransferFunction, tol: float) -> bool:
    if t1 == t2:
        return True
    x = np.linspace(0.0, 1.0, 1024)
    return bool(np.max(np.abs(t1.decode(x) - t2.decode(x))) <= tol)


def match_named(cs: ColorSpace, *, primaries_tol: float = PRIMARIES_TOL, trc_tol: float = TRC_TOL) -> ColorSpace | None:
    """The space of :data:`~monet_cli.colorspaces.NAMED` that ``cs`` is, within tolerance, else ``None``.

    A match needs every primary and the white within ``primaries_tol`` in CIE xy, and the
    transfer functions within ``trc_tol`` of linear light everywhere on [0, 1]. The default
    1e-3 accepts the quantised curves of real profiles — a 1024-entry ``curv`` sRGB table,
    Adobe RGB's ``curv`` gamma 2.19921875 versus 2.2 (1.3e-4), ProPhoto's common pure gamma
    1.8 versus ROMM's linear toe below 1/32 (4.2e-4) — and rejects gamma 2.2 versus sRGB
    (8.5e-3). Among several matches the closest primaries win.
    """
    best, best_err = None, np.inf
    mine = np.array(list(cs.primaries) + [cs.white], dtype=np.float64)
    for named in NAMED.values():
        ref = np.array(list(named.primaries) + [named.white], dtype=np.float64)
        err = float(np.max(np.abs(mine - ref)))
        if err <= primaries_tol and err < best_err and _curves_equal(cs.trc, named.trc, trc_tol):
            best, best_err = named, err
    return best


def parse_icc(data: bytes) -> ColorSpace:
    """The RGB colour space an ICC matrix/TRC profile describes.

    Parameters
    ----------
    data
        The profile bytes (v2 or v4), as embedded in a TIFF, JPEG or PNG.

    Returns
    -------
    ColorSpace
        The matching space of :data:`~monet_cli.colorspaces.NAMED` (see :func:`match_named`),
        else a space named and described by the profile's ``desc`` text, with the native
        primaries and white recovered as ``M_native = chad⁻¹ · [rXYZ gXYZ bXYZ]``, white
        ``M_native · (1, 1, 1)``. Without ``chad`` the v2 convention applies: Bradford from
        ``wtpt`` to D50 (identity when ``wtpt`` is D50).

    Raises
    ------
    InputError
        Truncated or corrupt data, a LUT-only (``A2B0``) profile, a CMYK, grey or Lab
        profile, unsupported curve types, per-channel curves that differ (calibration
        profiles), or a singular colorant matrix.

    Examples
    --------
    >>> from monet_cli.colorspaces import ADOBE_RGB
    >>> parse_icc(build_icc(ADOBE_RGB)).name
    'adobe-rgb'
    """
    p = _Profile(data)
    _check_kind(p, b"RGB ")
    needed = (b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC")
    missing = [s for s in needed if s not in p.tags]
    if missing:
        if b"A2B0" in p.tags or b"A2B1" in p.tags:
            raise InputError("LUT-based ICC profile (A2B0 only) is not supported; "
                             "only matrix/TRC RGB profiles are")
        raise InputError(f"ICC profile lacks the tag(s) {', '.join(_sig(s) for s in missing)}")
    pcs = np.stack([_read_xyz(p, s) for s in needed[:3]], axis=1)
    chad = _read_chad(p)
    if chad is not None and b"chad" not in p.tags and np.allclose(pcs.sum(axis=1), _read_xyz(p, b"wtpt"), atol=2e-3):
        chad = None  # a broken v2 profile whose colorants were never adapted to D50
    native = pcs if chad is None else np.linalg.solve(chad, pcs)
    if abs(np.linalg.det(native)) < 1e-9 or np.any(native[1] < -1e-6) or np.any(native.sum(axis=0) <= 0):
        raise InputError("ICC profile is corrupt: its colorant matrix is singular or not physical")
    primaries = tuple(XYZ_to_xy(native[:, i]) for i in range(3))
    white = XYZ_to_xy(native @ np.ones(3))
    curves = [_read_curve(p, s) for s in needed[3:]]
    if not (_curves_equal(curves[0], curves[1], 1e-4) and _curves_equal(curves[1], curves[2], 1e-4)):
        raise InputError("ICC profile has a different tone curve per channel (a calibration profile); "
                         "only profiles with one curve for R, G and B are supported")
    desc = _text(p, b"desc")
    cs = ColorSpace(desc or "icc-rgb", primaries, white, curves[1], desc)
    return match_named(cs) or cs


def parse_gray_icc(data: bytes) -> ColorSpace:
    """The colour space of a greyscale image tagged with a grey ICC profile (``kTRC``).

    Grey pixels become R = G = B, whose meaning depends only on the tone curve, so the
    result has sRGB's primaries and D65 white (both irrelevant to neutrals) and the
    profile's ``kTRC``; it is :data:`SRGB` itself when the curve is sRGB's.

    Raises
    ------
    InputError
        Not a grey profile, no ``kTRC``, or a corrupt one.
    """
    p = _Profile(data)
    _check_kind(p, b"GRAY")
    if b"kTRC" not in p.tags:
        raise InputError("grey ICC profile lacks the 'kTRC' tag (LUT-based grey profiles are not supported)")
    trc = _read_curve(p, b"kTRC")
    desc = _text(p, b"desc")
    cs = ColorSpace(desc or "icc-grey", SRGB.primaries, SRGB.white, trc, desc)
    return match_named(cs) or cs
