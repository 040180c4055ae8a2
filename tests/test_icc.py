"""ICC profiles: build/parse round trips, other tools' profiles, littleCMS acceptance, bad input."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings

import numpy as np
import pytest

import fixtures as fx
from monet_cli import colorspaces as csp
from monet_cli.colorspaces import ADOBE_RGB, NAMED, PROPHOTO, SRGB, ColorSpace, TransferFunction
from monet_cli.errors import InputError
from monet_cli.icc import build_icc, match_named, parse_gray_icc, parse_icc, profile_description

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import colour

ImageCms = pytest.importorskip("PIL.ImageCms")

COLOUR_NAMES = {"srgb": "sRGB", "display-p3": "Display P3", "adobe-rgb": "Adobe RGB (1998)",
                "prophoto": "ProPhoto RGB", "rec2020": "ITU-R BT.2020", "linear-srgb": "sRGB",
                "linear-prophoto": "ProPhoto RGB", "linear-rec2020": "ITU-R BT.2020"}


def _tags(profile: bytes) -> dict[bytes, tuple[bytes, int, int]]:
    n = struct.unpack_from(">I", profile, 128)[0]
    out = {}
    for i in range(n):
        sig, off, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
        out[sig] = (profile[off:off + 4], off, size)
    return out


@pytest.mark.parametrize("name", list(NAMED))
def test_round_trip_named(name):
    cs = NAMED[name]
    assert parse_icc(build_icc(cs)) == cs


@pytest.mark.parametrize("name", list(NAMED))
def test_profile_structure(name):
    p = build_icc(NAMED[name])
    assert struct.unpack_from(">I", p, 0)[0] == len(p) and len(p) % 4 == 0
    assert p[8] == 4 and p[12:24] == b"mntrRGB XYZ " and p[36:40] == b"acsp"
    tags = _tags(p)
    assert set(tags) == {b"desc", b"cprt", b"wtpt", b"chad", b"rXYZ", b"gXYZ", b"bXYZ", b"rTRC", b"gTRC", b"bTRC"}
    assert tags[b"desc"][0] == b"mluc" and profile_description(p) == NAMED[name].description
    # Profile ID: MD5 over the profile with flags, intent and the ID itself zeroed.
    z = bytearray(p)
    z[44:48] = z[64:68] = b"\0" * 4
    z[84:100] = b"\0" * 16
    assert p[84:100] == hashlib.md5(bytes(z)).digest()
    # Colorants sum to the PCS white exactly, so (1, 1, 1) maps to D50 bit for bit.
    cols = [struct.unpack_from(">3i", p, tags[s][1] + 8) for s in (b"rXYZ", b"gXYZ", b"bXYZ")]
    assert tuple(np.sum(cols, axis=0)) == (0xF6D6, 0x10000, 0xD32D)


def test_trc_encodings():
    t = _tags(build_icc(NAMED["linear-srgb"]))
    p = build_icc(NAMED["linear-srgb"])
    typ, off, _ = t[b"rTRC"]
    assert typ == b"curv" and struct.unpack_from(">IH", p, off + 8) == (1, 256)  # gamma 1.0
    p = build_icc(ADOBE_RGB)
    typ, off, _ = _tags(p)[b"rTRC"]
    assert typ == b"curv" and struct.unpack_from(">IH", p, off + 8) == (1, 563)  # 2.19921875 exactly
    p = build_icc(SRGB)
    typ, off, _ = _tags(p)[b"rTRC"]
    assert typ == b"para" and struct.unpack_from(">H", p, off + 8)[0] == 3
    g = struct.unpack_from(">i", p, off + 12)[0] / 65536
    assert g == pytest.approx(2.4, abs=2e-5)


def test_custom_space_round_trips_approximately():
    cs = ColorSpace("mine", ((0.69, 0.30), (0.22, 0.72), (0.14, 0.05)), (0.3127, 0.3290),
                    TransferFunction(g=2.6), "My wide gamut")
    back = parse_icc(build_icc(cs))
    assert back.name == "My wide gamut" and back.description == "My wide gamut"
    np.testing.assert_allclose(back.primaries, cs.primaries, atol=1e-4)
    np.testing.assert_allclose(back.white, cs.white, atol=1e-4)
    x = np.linspace(0, 1, 101)
    np.testing.assert_allclose(back.trc.decode(x), cs.trc.decode(x), atol=1e-4)
    # A D50-white custom space (chad ≈ identity) and a sampled TRC.
    table = tuple(float(v) for v in np.linspace(0, 1, 256) ** 2.0)
    cs2 = ColorSpace("d50", PROPHOTO.primaries, (0.3457, 0.3585), TransferFunction(table=table), "Tabled")
    back2 = parse_icc(build_icc(cs2))
    np.testing.assert_allclose(back2.trc.decode(x), cs2.trc.decode(x), atol=2e-5)
    assert back2.name == "Tabled"


@pytest.mark.parametrize("name", ["srgb", "adobe-rgb", "prophoto", "display-p3", "rec2020"])
def test_v2_profiles_from_other_tools(name):
    cs = NAMED[name]
    assert parse_icc(fx.make_v2_profile(cs)) == cs  # curv table, wtpt = D65, no chad


def test_v2_gamma_profiles():
    # Adobe's "Adobe RGB (1998)": curv gamma 563/256; Adobe's ProPhoto: curv gamma 1.8, no toe.
    assert parse_icc(fx.make_v2_profile(ADOBE_RGB, gamma=563 / 256)) == ADOBE_RGB
    assert parse_icc(fx.make_v2_profile(PROPHOTO, gamma=1.8)) == PROPHOTO
    # Gamma 2.2 with sRGB primaries is not sRGB (8.5e-3 apart in linear light).
    g22 = parse_icc(fx.make_v2_profile(SRGB, gamma=2.2, description="sRGB-ish gamma 2.2"))
    assert g22 != SRGB and g22.name == "sRGB-ish gamma 2.2"
    assert g22.trc.g == pytest.approx(2.2, abs=2e-3)
    np.testing.assert_allclose(g22.primaries, SRGB.primaries, atol=1e-4)


def test_pillow_builtin_srgb_profile():
    data = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert parse_icc(data) == SRGB


def test_unadapted_broken_v2_profile():
    # Some old v2 profiles store D65-relative colorants with wtpt = D65 and no adaptation.
    cs = SRGB
    white = csp.xy_to_XYZ(cs.white)
    p = bytearray(fx.make_v2_profile(cs))
    tags = _tags(bytes(p))
    for i, s in enumerate((b"rXYZ", b"gXYZ", b"bXYZ")):
        off = tags[s][1]
        p[off + 8:off + 20] = fx._s15(cs.to_xyz[:, i])
    assert np.allclose(cs.to_xyz.sum(axis=1), white)
    assert parse_icc(bytes(p)) == SRGB


@pytest.mark.parametrize("name", list(NAMED))
def test_littlecms_accepts_and_agrees_with_colour_science(name):
    cs = NAMED[name]
    dst = ImageCms.ImageCmsProfile(io.BytesIO(build_icc(cs)))
    src = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    t = ImageCms.buildTransform(src, dst, "RGB", "RGB", renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    from PIL import Image

    rgb = np.array([[[200, 30, 40], [20, 180, 60], [40, 60, 220], [128, 128, 128], [250, 240, 230], [90, 60, 30]]],
                   dtype=np.uint8)
    got = np.asarray(ImageCms.applyTransform(Image.fromarray(rgb), t)).astype(float)
    lin = SRGB.trc.decode(rgb / 255.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_lin = colour.RGB_to_RGB(lin, colour.RGB_COLOURSPACES["sRGB"], colour.RGB_COLOURSPACES[COLOUR_NAMES[name]],
                                    chromatic_adaptation_transform="Bradford")
    ref = cs.trc.encode(ref_lin) * 255.0
    np.testing.assert_allclose(got, ref, atol=1.0)  # 8-bit transform: within one code value
    # neutrals stay neutral
    assert got[0, 3, 0] == got[0, 3, 1] == got[0, 3, 2]


def test_littlecms_description_and_round_trip_through_littlecms():
    p = ImageCms.ImageCmsProfile(io.BytesIO(build_icc(ADOBE_RGB)))
    assert ImageCms.getProfileDescription(p).strip() == "Adobe RGB (1998)"
    # Re-serialised by littleCMS, the profile still parses to the same space.
    assert parse_icc(p.tobytes()) == ADOBE_RGB


def test_parametric_types():
    base = build_icc(SRGB)
    off = _tags(base)[b"rTRC"][1]

    def with_para(ftype, params):
        body = b"para" + b"\0" * 4 + struct.pack(">HH", ftype, 0) + b"".join(
            struct.pack(">i", round(v * 65536)) for v in params)
        body += b"\0" * (-len(body) % 4)
        p = bytearray(base[:off]) + body
        n = struct.unpack_from(">I", p, 128)[0]
        for i in range(n):
            sig = bytes(p[132 + 12 * i:136 + 12 * i])
            if sig in (b"rTRC", b"gTRC", b"bTRC"):
                struct.pack_into(">I", p, 140 + 12 * i, len(body))
            elif struct.unpack_from(">I", p, 136 + 12 * i)[0] > off:
                raise AssertionError("TRC is expected to be the last tag")
        struct.pack_into(">I", p, 0, len(p))
        return bytes(p)

    x = np.linspace(0, 1, 201)
    t0 = parse_icc(with_para(0, [1.8])).trc
    np.testing.assert_allclose(t0.decode(x), x ** 1.8, atol=1e-4)
    t1 = parse_icc(with_para(1, [2.0, 1.2, -0.2])).trc  # (1.2x - 0.2)^2 above x = 1/6, else 0
    np.testing.assert_allclose(t1.decode(x), np.where(x >= 1 / 6, np.maximum(1.2 * x - 0.2, 0) ** 2, 0), atol=1e-4)
    t2 = parse_icc(with_para(2, [2.0, 1.0, 0.0, 0.05])).trc  # offset c: sampled table
    # (TransferFunction's odd extension maps exactly 0 to 0, whatever the curve's offset.)
    np.testing.assert_allclose(t2.decode(x[1:]), x[1:] ** 2 + 0.05, atol=1e-4)
    t4 = parse_icc(with_para(4, [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045, 0.01, 0.0])).trc
    ref = np.where(x >= 0.04045, ((x + 0.055) / 1.055) ** 2.4 + 0.01, x / 12.92)
    np.testing.assert_allclose(t4.decode(x[1:]), ref[1:], atol=1e-4)
    assert parse_icc(with_para(3, [2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045])) == SRGB
    with pytest.raises(InputError, match="parametric curve type 7"):
        parse_icc(with_para(7, [1.0]))


def test_match_named_tolerances():
    assert match_named(SRGB) is SRGB
    near = ColorSpace("x", tuple((x + 1e-3, y) for x, y in SRGB.primaries), SRGB.white, SRGB.trc)
    assert match_named(near) is SRGB
    far = ColorSpace("x", tuple((x + 5e-3, y) for x, y in SRGB.primaries), SRGB.white, SRGB.trc)
    assert match_named(far) is None
    assert match_named(ColorSpace("x", SRGB.primaries, SRGB.white, TransferFunction(g=2.2))) is None
    assert match_named(ColorSpace("x", SRGB.primaries, SRGB.white)) is NAMED["linear-srgb"]


def test_grey_profile():
    cs = parse_gray_icc(fx.gray_profile(2.2))
    assert cs.trc.g == pytest.approx(2.2, abs=4e-3)
    with pytest.raises(InputError, match="greyscale ICC profile"):
        parse_icc(fx.gray_profile())
    with pytest.raises(InputError, match="RGB ICC profile"):
        parse_gray_icc(build_icc(SRGB))


@pytest.mark.parametrize("data, message", [
    (b"", "truncated or not a profile"),
    (b"\0" * 200, "no 'acsp'"),
    (b"garbage" * 100, "no 'acsp'"),
    (build_icc(SRGB)[:300], "truncated"),
    (fx.with_color_space(build_icc(SRGB), b"CMYK"), "CMYK ICC profile"),
    (fx.with_color_space(build_icc(SRGB), b"Lab "), "Lab ICC profile"),
    (fx.lut_profile(), "LUT-based"),
])
def test_bad_profiles(data, message):
    with pytest.raises(InputError, match=message):
        parse_icc(data)


def test_corrupt_tag_table():
    p = bytearray(build_icc(SRGB))
    struct.pack_into(">I", p, 128 + 4 + 4, 10_000)  # first tag's offset points past the end
    with pytest.raises(InputError, match="outside the profile"):
        parse_icc(bytes(p))
    p = bytearray(build_icc(SRGB))
    struct.pack_into(">I", p, 128, 1_000_000)
    with pytest.raises(InputError, match="claims 1000000 tags"):
        parse_icc(bytes(p))


def test_per_channel_curves_rejected():
    p = bytearray(fx.make_v2_profile(SRGB, gamma=2.2))
    tags = _tags(bytes(p))
    # Point bTRC at a new, different curve appended at the end.
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, int(1.8 * 256)) + b"\0\0"
    n = struct.unpack_from(">I", p, 128)[0]
    for i in range(n):
        if p[132 + 12 * i:136 + 12 * i] == b"bTRC":
            struct.pack_into(">II", p, 136 + 12 * i, len(p), len(curv))
    p += curv
    struct.pack_into(">I", p, 0, len(p))
    assert tags  # sanity: the profile had tags
    with pytest.raises(InputError, match="different tone curve per channel"):
        parse_icc(bytes(p))


def test_build_is_deterministic():
    assert build_icc(SRGB) == build_icc(csp.get("srgb"))
    assert build_icc(SRGB) != build_icc(NAMED["linear-srgb"])
