"""Reading and writing: RAW (through LibRaw), TIFF, JPEG, PNG; orientation; colour tags; bad input; atomicity."""

from __future__ import annotations

import errno
import io
import os
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps

import fixtures as fx
from monet_cli import images, png16
from monet_cli.colorspaces import ADOBE_RGB, DISPLAY_P3, NAMED, PROPHOTO, SRGB, TransferFunction
from monet_cli.errors import InputError, OutputError, UsageError
from monet_cli.icc import build_icc, parse_icc
from monet_cli.images import (
    RAW_SUFFIXES,
    Image,
    apply_orientation,
    atomic_write,
    is_raw,
    output_format_for,
    read_image,
    write_image,
)


def _pil_orient(px: np.ndarray, orientation: int) -> np.ndarray:
    """Pillow's reference: what exif_transpose does for an orientation value."""
    im = PILImage.fromarray(px)
    ex = im.getexif()
    ex[274] = orientation
    im.info["exif"] = ex.tobytes()
    return np.asarray(ImageOps.exif_transpose(im))


def _psnr(a, b, peak=255.0) -> float:
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    return 10 * np.log10(peak ** 2 / mse) if mse else np.inf


# --- orientation -----------------------------------------------------------------------------

@pytest.mark.parametrize("o", range(1, 9))
def test_apply_orientation_matches_pillow(o):
    px = np.ascontiguousarray(fx.astronaut()[:40, :56])  # non-square, so transposes show
    got = apply_orientation(px, o)
    np.testing.assert_array_equal(got, _pil_orient(px, o))
    assert got.flags.c_contiguous


# --- RAW -------------------------------------------------------------------------------------

def test_raw_grey_is_neutral_with_expected_level(dng_path):
    img = read_image(dng_path)
    assert img.format == "raw" and img.colorspace is NAMED["linear-prophoto"]
    assert img.pixels.dtype == np.uint16 and img.pixels.shape == (48, 64, 3) and img.pixels.flags.c_contiguous
    mean = img.pixels.reshape(-1, 3).mean(axis=0) / 65535
    np.testing.assert_allclose(mean, 0.18, rtol=0.01)  # linear, no auto-brightening
    assert np.ptp(mean) / mean.mean() < 0.01  # the warm light is white-balanced away: neutral


@pytest.mark.parametrize("level", [0.05, 0.5])
def test_raw_levels_are_linear(tmp_path, level):
    img = read_image(fx.make_dng(tmp_path / "l.dng", np.full((32, 32, 3), level), black=256, white=4095))
    np.testing.assert_allclose(img.pixels[4:-4, 4:-4].reshape(-1, 3).mean(axis=0) / 65535, level, rtol=0.03)


def test_raw_colour_goes_to_prophoto(tmp_path):
    rgb = np.array([0.30, 0.15, 0.06])  # in the camera's native RGB = linear sRGB
    img = read_image(fx.make_dng(tmp_path / "c.dng", np.broadcast_to(rgb, (32, 32, 3))))
    got = img.pixels[8:-8, 8:-8].reshape(-1, 3).mean(axis=0) / 65535
    want = NAMED["linear-srgb"].matrix_to(NAMED["linear-prophoto"]) @ rgb
    np.testing.assert_allclose(got, want, rtol=0.005, atol=0.001)  # LibRaw agrees with Bradford


def test_raw_orientation(tmp_path):
    rng = np.random.default_rng(1)
    scene = np.kron(rng.random((6, 8, 3)), np.ones((8, 8, 1))) * 0.8  # 48×64 blocks
    base = read_image(fx.make_dng(tmp_path / "o1.dng", scene)).pixels
    for o in range(2, 9):
        got = read_image(fx.make_dng(tmp_path / f"o{o}.dng", scene, orientation=o)).pixels
        np.testing.assert_array_equal(got, apply_orientation(base, o), err_msg=f"orientation {o}")


def test_raw_pixel_limit_checked_before_decoding(dng_path):
    with pytest.raises(InputError, match="more than the limit of 1,000"):
        read_image(dng_path, max_pixels=1000)


def test_raw_truncated(dng_path):
    fx.truncate(dng_path, -2000)
    with pytest.raises(InputError, match="truncated or corrupt RAW") as e:
        read_image(dng_path)
    assert str(dng_path) in str(e.value)


@pytest.mark.parametrize("suffix", [".dng", ".CR2", ".nef"])
def test_raw_garbage(tmp_path, suffix):
    with pytest.raises(InputError, match="not a camera raw file"):
        read_image(fx.garbage(tmp_path / f"x{suffix}"))


def test_raw_suffixes():
    assert {".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".x3f", ".iiq"} <= RAW_SUFFIXES
    assert is_raw("IMG_0042.CR2") and is_raw("a/b.dng") and not is_raw("a.tif") and not is_raw("raw")


# --- TIFF ------------------------------------------------------------------------------------

def test_tiff16_round_trip_exact(tiff16_path, photo16, tmp_path):
    img = read_image(tiff16_path)
    assert img.format == "tiff" and img.colorspace is SRGB and img.icc_profile is None
    assert img.pixels.dtype == np.uint16 and img.bit_depth == 16 and (img.height, img.width) == photo16.shape[:2]
    np.testing.assert_array_equal(img.pixels, photo16)
    out = write_image(tmp_path / "out.tif", img)
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, photo16)
    assert back.colorspace is SRGB and back.icc_profile == build_icc(SRGB)


@pytest.mark.parametrize("cs", ["adobe-rgb", "linear-prophoto", "display-p3"])
def test_tiff_round_trip_keeps_colour_space(tmp_path, photo16, cs):
    img = Image(photo16, NAMED[cs], "tiff")
    back = read_image(write_image(tmp_path / "o.tiff", img))
    assert back.colorspace is NAMED[cs]
    np.testing.assert_array_equal(back.pixels, photo16)


def test_tiff8_and_float_round_trip(tmp_path, photo8):
    back = read_image(write_image(tmp_path / "8.tif", Image(photo8, SRGB, "tiff")))
    assert back.pixels.dtype == np.uint8 and back.bit_depth == 8
    np.testing.assert_array_equal(back.pixels, photo8)
    f = (photo8 / 255.0).astype(np.float32) * 1.5 - 0.1  # floats out of [0, 1] survive unclipped
    back = read_image(write_image(tmp_path / "f.tif", Image(f, NAMED["linear-rec2020"], "tiff")))
    assert back.pixels.dtype == np.float32 and back.bit_depth == 32
    np.testing.assert_array_equal(back.pixels, f)
    assert back.colorspace is NAMED["linear-rec2020"]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_untagged_float_tiff_is_linear_srgb(tmp_path, photo8, dtype):
    f = (photo8 / 255.0).astype(dtype)
    img = read_image(fx.make_tiff(tmp_path / "f.tif", f))
    assert img.pixels.dtype == np.float32 and img.colorspace is NAMED["linear-srgb"]
    np.testing.assert_array_equal(img.pixels, f.astype(np.float32))


@pytest.mark.parametrize("kw", [
    {"planarconfig": "separate"},
    {"byteorder": ">"},
    {"compression": "zlib"},
    {"compression": "zlib", "predictor": True},
    {"tile": (16, 16)},
    {"rowsperstrip": 5},
])
def test_tiff_layouts(tmp_path, photo16, kw):
    px = photo16[:48, :64]
    img = read_image(fx.make_tiff(tmp_path / "l.tif", px, **kw))
    np.testing.assert_array_equal(img.pixels, px)
    assert img.pixels.flags.c_contiguous and img.pixels.dtype == np.dtype("=u2")


def test_tiff_grey_and_alpha(tmp_path, photo16):
    grey = photo16[..., 1]
    img = read_image(fx.make_tiff(tmp_path / "g.tif", grey))
    assert img.pixels.shape == grey.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(img.pixels[..., c], grey)
    rgba = np.dstack([photo16, photo16[..., :1]])
    img = read_image(fx.make_tiff(tmp_path / "a.tif", rgba))
    np.testing.assert_array_equal(img.pixels, photo16)


def test_tiff_miniswhite(tmp_path, photo8):
    g = photo8[..., 0]
    img = read_image(fx.make_tiff(tmp_path / "w.tif", g, photometric="miniswhite"))
    np.testing.assert_array_equal(img.pixels[..., 0], 255 - g)


@pytest.mark.parametrize("o", range(1, 9))
def test_tiff_orientation(tmp_path, o):
    px = fx.chelsea()[:40, :56]
    img = read_image(fx.make_tiff(tmp_path / "o.tif", px, orientation=o))
    np.testing.assert_array_equal(img.pixels, _pil_orient(px, o))


def test_adobe_rgb_tagged_tiff(tmp_path, photo16):
    icc = fx.make_v2_profile(ADOBE_RGB, gamma=563 / 256)  # like Adobe's AdobeRGB1998.icc
    img = read_image(fx.make_tiff(tmp_path / "a.tif", photo16, icc=icc))
    assert img.colorspace is ADOBE_RGB and img.icc_profile == icc


def test_prophoto_tagged_tiff_from_littlecms(tmp_path, photo16):
    icc = build_icc(PROPHOTO)
    img = read_image(fx.make_tiff(tmp_path / "p.tif", photo16, icc=icc))
    assert img.colorspace is PROPHOTO


def test_grey_tiff_with_grey_profile(tmp_path, photo8):
    img = read_image(fx.make_tiff(tmp_path / "g.tif", photo8[..., 0], icc=fx.gray_profile(2.2)))
    assert img.colorspace.trc.g == pytest.approx(2.2, abs=4e-3)
    assert img.colorspace.primaries == SRGB.primaries


def test_rgb_tiff_with_cmyk_profile(tmp_path, photo8):
    with pytest.raises(InputError, match="embedded ICC profile: CMYK ICC profile is not supported"):
        read_image(fx.make_tiff(tmp_path / "c.tif", photo8, icc=fx.with_color_space(build_icc(SRGB), b"CMYK")))


@pytest.mark.parametrize("make, message", [
    (lambda p, px: fx.make_tiff(p, np.dstack([px, px[..., :1]]), photometric="separated"), "CMYK"),
    (lambda p, px: fx.make_tiff(p, px[..., 0], photometric="palette",
                                colormap=np.zeros((3, 256), np.uint16)), "palette"),
    (lambda p, px: fx.make_tiff(p, px.astype(np.uint32)), "32-bit unsigned integer"),
    (lambda p, px: fx.make_tiff(p, px.astype(np.int16)), "16-bit signed integer"),
    (lambda p, px: fx.make_tiff(p, (px / 255.0).astype(np.float32) * np.where(px == 7, np.nan, 1.0)
                                .astype(np.float32)), "NaN/Inf"),
    (lambda p, px: fx.make_tiff(p, np.where(px > 250, np.inf, px / 255.0).astype(np.float32)), "NaN/Inf"),
])
def test_unsupported_tiffs(tmp_path, photo8, make, message):
    path = make(tmp_path / "bad.tif", photo8)
    with pytest.raises(InputError, match=message) as e:
        read_image(path)
    assert str(path) in str(e.value)


def test_truncated_tiff(tiff16_path):
    fx.truncate(tiff16_path, -1000)
    with pytest.raises(InputError, match="TIFF is truncated"):
        read_image(tiff16_path)


@pytest.mark.parametrize("keep", [6, 30, 100])
def test_tiff_cut_in_header(tiff16_path, keep):
    fx.truncate(tiff16_path, keep)
    with pytest.raises(InputError, match="TIFF"):
        read_image(tiff16_path)


def test_tiff_strip_byte_count_zero(tmp_path, photo8):
    path = fx.make_tiff(tmp_path / "z.tif", photo8)
    data = bytearray(path.read_bytes())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        tag, typ = struct.unpack_from("<HH", data, ifd + 2 + 12 * i)
        if tag == 279:
            struct.pack_into("<I" if typ == 4 else "<H", data, ifd + 2 + 12 * i + 8, 0)
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="TIFF"):
        read_image(path)


def test_bomb_tiff_refused_instantly(tmp_path):
    path = fx.bomb_tiff(tmp_path / "bomb.tif")
    t = time.perf_counter()
    with pytest.raises(InputError, match="100000×100000 = 10,000,000,000 pixels, more than the limit"):
        read_image(path)
    assert time.perf_counter() - t < 0.5


def test_max_pixels_env(tmp_path, photo8, monkeypatch):
    path = fx.make_tiff(tmp_path / "s.tif", photo8)
    monkeypatch.setenv("MONET_MAX_PIXELS", "1000")
    with pytest.raises(InputError, match="limit of 1,000"):
        read_image(path)
    assert read_image(path, max_pixels=64 * 64).width == 64  # the argument wins
    monkeypatch.setenv("MONET_MAX_PIXELS", "lots")
    with pytest.raises(UsageError, match="MONET_MAX_PIXELS"):
        read_image(path)


def test_tif_that_is_a_jpeg_is_read_by_content(tmp_path, photo8):
    path = fx.make_jpeg(tmp_path / "really_a_jpeg.tif", photo8)
    img = read_image(path)
    assert img.format == "jpeg" and _psnr(img.pixels, photo8) > 35


def test_garbage_with_image_suffix(tmp_path):
    for suffix in (".tif", ".jpg", ".png"):
        with pytest.raises(InputError, match=r"not a (TIFF|JPEG|PNG) file: its content is not") as e:
            read_image(fx.garbage(tmp_path / f"g{suffix}"))
        assert f"g{suffix}" in str(e.value)


# --- JPEG ------------------------------------------------------------------------------------

def test_jpeg_round_trip(tmp_path, jpeg_path, photo8):
    img = read_image(jpeg_path)
    assert img.format == "jpeg" and img.colorspace is SRGB and img.pixels.dtype == np.uint8
    assert _psnr(img.pixels, photo8) > 35
    out = write_image(tmp_path / "o.jpg", Image(photo8, DISPLAY_P3, "tiff"))
    with PILImage.open(out) as im:
        from PIL import JpegImagePlugin

        assert JpegImagePlugin.get_sampling(im) == 0  # 4:4:4 at quality 95
        assert im.info["icc_profile"] == build_icc(DISPLAY_P3)
    back = read_image(out)
    assert back.colorspace is DISPLAY_P3 and _psnr(back.pixels, photo8) > 35
    low = write_image(tmp_path / "q.jpg", Image(photo8, SRGB, "tiff"), quality=60)
    with PILImage.open(low) as im:
        assert JpegImagePlugin.get_sampling(im) == 2
    assert low.stat().st_size < out.stat().st_size


def test_jpeg_from_16_bit_rounds_to_nearest(tmp_path):
    u16 = np.array([0, 128, 129, 257, 32896, 65406, 65407, 65535], dtype=np.uint16)
    np.testing.assert_array_equal(images._to_uint8(u16), [0, 0, 1, 1, 128, 254, 255, 255])
    x = np.arange(65536, dtype=np.uint16)
    np.testing.assert_array_equal(images._to_uint8(x), np.floor(x / 257 + 0.5).astype(np.uint8))
    px = np.full((16, 16, 3), 257 * 100, np.uint16)
    back = read_image(write_image(tmp_path / "u.jpg", Image(px, SRGB, "tiff")))
    assert np.abs(back.pixels.astype(int) - 100).max() <= 1


def test_float_to_jpeg_and_png(tmp_path):
    f = np.linspace(-0.2, 1.2, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3)
    j = read_image(write_image(tmp_path / "f.jpg", Image(f, SRGB, "tiff")))
    assert j.pixels.dtype == np.uint8 and j.pixels.min() <= 2 and j.pixels.max() >= 253
    p = read_image(write_image(tmp_path / "f.png", Image(f, SRGB, "tiff")))
    assert p.pixels.dtype == np.uint16
    np.testing.assert_array_equal(p.pixels, np.rint(np.clip(f, 0, 1) * 65535).astype(np.uint16))


@pytest.mark.parametrize("o", range(1, 9))
def test_jpeg_orientation(tmp_path, o):
    px = fx.coffee()[:40, :56]
    stored = read_image(fx.make_jpeg(tmp_path / "s.jpg", px)).pixels
    img = read_image(fx.make_jpeg(tmp_path / "o.jpg", px, orientation=o))
    np.testing.assert_array_equal(img.pixels, apply_orientation(stored, o))
    with PILImage.open(tmp_path / "o.jpg") as im:
        np.testing.assert_array_equal(img.pixels, np.asarray(ImageOps.exif_transpose(im)))


def test_jpeg_tagged_and_exif_adobe_rgb(tmp_path, photo8):
    assert read_image(fx.make_jpeg(tmp_path / "p.jpg", photo8, icc=build_icc(PROPHOTO))).colorspace is PROPHOTO
    assert read_image(fx.make_jpeg(tmp_path / "a.jpg", photo8, exif=fx.exif_adobe_rgb())).colorspace is ADOBE_RGB
    big = ADOBE_RGB  # a v2 profile with a 4096-entry table: still Adobe RGB
    icc = fx.make_v2_profile(big, table=4096)
    img = read_image(fx.make_jpeg(tmp_path / "t.jpg", photo8, icc=icc))
    assert img.colorspace is ADOBE_RGB and img.icc_profile == icc


def test_grey_jpeg(tmp_path, photo8):
    g = photo8[..., 0]
    img = read_image(fx.make_jpeg(tmp_path / "g.jpg", g, icc=fx.gray_profile(2.2)))
    assert img.pixels.shape == g.shape + (3,)
    assert (img.pixels[..., 0] == img.pixels[..., 2]).all() and _psnr(img.pixels[..., 0], g) > 35
    assert img.colorspace.trc.g == pytest.approx(2.2, abs=4e-3)


def test_cmyk_jpeg_without_profile(tmp_path, photo8):
    path = fx.make_jpeg(tmp_path / "c.jpg", photo8, mode="CMYK")
    with pytest.raises(InputError, match="CMYK JPEG without an ICC profile"):
        read_image(path)


def test_cmyk_jpeg_with_profile_is_converted_to_srgb(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 128]]], np.uint8)
    cmyk = cmyk.repeat(8, axis=0).repeat(8, axis=1)
    icc = fx.cmyk_profile()
    PILImage.frombytes("CMYK", (32, 8), cmyk.tobytes()).save(tmp_path / "c.jpg", quality=100, icc_profile=icc)
    img = read_image(tmp_path / "c.jpg")
    assert img.colorspace is SRGB and img.icc_profile == icc and img.pixels.dtype == np.uint8
    got = img.pixels[4, 4::8].astype(int)
    grey = round(SRGB.trc.encode(1 - 128 / 255) * 255)  # K = 50 %: linear 0.498
    want = [[255, 255, 255], [0, 255, 255], [0, 0, 0], [grey] * 3]
    assert np.abs(got - want).max() <= 2


def test_truncated_jpeg(jpeg_path):
    fx.truncate(jpeg_path, jpeg_path.stat().st_size // 2)
    with pytest.raises(InputError, match="truncated or corrupt JPEG") as e:
        read_image(jpeg_path)
    assert str(jpeg_path) in str(e.value)


def test_jpeg_cut_in_header(jpeg_path):
    fx.truncate(jpeg_path, 20)
    with pytest.raises(InputError, match="JPEG"):
        read_image(jpeg_path)


def test_bomb_jpeg(tmp_path):
    with pytest.raises(InputError, match="more than the limit"):
        read_image(fx.bomb_jpeg(tmp_path / "bomb.jpg"))


# --- PNG -------------------------------------------------------------------------------------

def test_png8_round_trip(tmp_path, photo8):
    out = write_image(tmp_path / "o.png", Image(photo8, ADOBE_RGB, "tiff"))
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, photo8)
    assert back.format == "png" and back.pixels.dtype == np.uint8 and back.colorspace is ADOBE_RGB


def test_png16_round_trip(tmp_path, png16_path, photo16):
    img = read_image(png16_path)  # reference encoder, all five filter types
    np.testing.assert_array_equal(img.pixels, photo16)
    assert img.pixels.dtype == np.uint16 and img.colorspace is SRGB and img.format == "png"
    out = write_image(tmp_path / "o.png", Image(photo16, NAMED["linear-rec2020"], "tiff"))
    back = read_image(out)
    np.testing.assert_array_equal(back.pixels, photo16)
    assert back.colorspace is NAMED["linear-rec2020"]
    with PILImage.open(out) as im:  # an independent reader: Pillow sees the high bytes
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (photo16 >> 8).astype(np.uint8))
        assert im.info["icc_profile"] == build_icc(NAMED["linear-rec2020"])


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_colour_types_and_filters(tmp_path, photo16, channels, dtype):
    base = photo16 if dtype == np.uint16 else (photo16 >> 8).astype(np.uint8)
    px = np.dstack([base, base[..., :1]])[..., :channels] if channels != 2 else np.dstack([base[..., 0], base[..., 1]])
    path = fx.make_png(tmp_path / "c.png", px[..., 0] if channels == 1 else px)
    raw = png16.read_png(path)  # the numba/numpy decoder directly
    np.testing.assert_array_equal(raw.pixels, px.reshape(px.shape[:2] + (channels,)))
    img = read_image(path)
    want = np.repeat(px[..., :1], 3, axis=2) if channels <= 2 else px[..., :3]
    np.testing.assert_array_equal(img.pixels, want)


@pytest.mark.parametrize("filters", [(0,), (1,), (2,), (3,), (4,), (2, 1)])
def test_png16_each_filter(tmp_path, photo16, filters):
    path = fx.make_png(tmp_path / "f.png", photo16, filters=filters, split_idat=1)
    np.testing.assert_array_equal(read_image(path).pixels, photo16)


@pytest.mark.parametrize("o", range(1, 9))
def test_png16_orientation(tmp_path, photo16, o):
    img = read_image(fx.make_png(tmp_path / "o.png", photo16, orientation=o))
    np.testing.assert_array_equal(img.pixels, apply_orientation(photo16, o))


def test_png8_orientation(tmp_path, photo8):
    img = read_image(fx.make_png(tmp_path / "o.png", photo8, orientation=6))
    np.testing.assert_array_equal(img.pixels, np.rot90(photo8, -1))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_colour_chunks(tmp_path, photo16, dtype):
    px = photo16 if dtype == np.uint16 else (photo16 >> 8).astype(np.uint8)
    srgb_chrm = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
    adobe_chrm = (0.3127, 0.3290, 0.64, 0.33, 0.21, 0.71, 0.15, 0.06)
    cases = [
        ({}, SRGB),
        ({"srgb": True, "gamma": 0.45455, "chrm": srgb_chrm}, SRGB),
        ({"gamma": 0.45455, "chrm": srgb_chrm}, SRGB),  # the sRGB fallback chunks
        ({"gamma": 1.0}, SRGB),  # gAMA alone is ignored
        ({"gamma": 1.0, "chrm": srgb_chrm}, NAMED["linear-srgb"]),
        ({"gamma": 256 / 563, "chrm": adobe_chrm}, ADOBE_RGB),
        ({"icc": build_icc(DISPLAY_P3), "gamma": 1.0, "chrm": srgb_chrm}, DISPLAY_P3),  # iCCP wins
    ]
    for kw, want in cases:
        icc = kw.pop("icc", None)
        img = read_image(fx.make_png(tmp_path / "c.png", px, icc=icc, **kw))
        assert img.colorspace is want, kw
    odd = read_image(fx.make_png(tmp_path / "o.png", px, gamma=1 / 2.6, chrm=adobe_chrm))
    assert odd.colorspace.trc.g == pytest.approx(2.6, abs=1e-3)
    assert odd.colorspace.primaries == ((0.64, 0.33), (0.21, 0.71), (0.15, 0.06))


def test_png16_interlaced_refused(tmp_path, photo16):
    with pytest.raises(InputError, match="interlaced 16-bit PNG not supported"):
        read_image(fx.make_png(tmp_path / "i.png", photo16, interlace=True))


def test_png_crc_mismatch(png16_path):
    data = bytearray(png16_path.read_bytes())
    i = data.index(b"IDAT")
    data[i + 10] ^= 0xFF
    png16_path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="CRC mismatch in chunk 'IDAT'"):
        read_image(png16_path)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("keep", [20, 40, -200])
def test_truncated_png(tmp_path, photo16, dtype, keep):
    px = photo16 if dtype == np.uint16 else (photo16 >> 8).astype(np.uint8)
    path = fx.truncate(fx.make_png(tmp_path / "t.png", px), keep)
    with pytest.raises(InputError, match="PNG") as e:
        read_image(path)
    assert str(path) in str(e.value)


def test_png_corrupt_zlib_stream(tmp_path, photo16):
    path = fx.make_png(tmp_path / "z.png", photo16, split_idat=1)
    data = bytearray(path.read_bytes())
    i = data.index(b"IDAT")
    n = struct.unpack_from(">I", data, i - 4)[0]
    body = bytes(data[i + 4:i + 4 + n])
    bad = body[:2] + bytes(b ^ 0x5A for b in body[2:40]) + body[40:]
    data[i + 4:i + 4 + n] = bad
    struct.pack_into(">I", data, i + 4 + n, zlib.crc32(b"IDAT" + bad))
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="PNG"):
        read_image(path)


@pytest.mark.parametrize("depth", [8, 16])
def test_bomb_png(tmp_path, depth):
    path = fx.bomb_png(tmp_path / "bomb.png")
    if depth == 16:
        data = bytearray(path.read_bytes())
        data[24] = 16
        struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
        path.write_bytes(bytes(data))
    t = time.perf_counter()
    with pytest.raises(InputError, match="more than the limit"):
        read_image(path)
    assert time.perf_counter() - t < 0.5


# --- general input errors ---------------------------------------------------------------------

def test_missing_directory_empty_unsupported(tmp_path):
    with pytest.raises(InputError, match="no such file") as e:
        read_image(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)
    with pytest.raises(InputError, match="is a directory"):
        read_image(tmp_path)
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "doc.xyz").write_bytes(b"hello")
    with pytest.raises(InputError, match=r"unsupported file type '\.xyz'"):
        read_image(tmp_path / "doc.xyz")
    (tmp_path / "noext").write_bytes(b"hello")
    with pytest.raises(InputError, match=r"unsupported file type \(no suffix\)"):
        read_image(tmp_path / "noext")


def test_decoder_exceptions_become_input_errors(tmp_path, photo8, monkeypatch):
    import tifffile

    path = fx.make_tiff(tmp_path / "x.tif", photo8)

    def boom(*a, **k):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", boom)
    with pytest.raises(InputError, match="truncated or corrupt TIFF file .RuntimeError: decoder exploded"):
        read_image(path)


def test_image_validates_pixels():
    with pytest.raises(ValueError, match="uint8, uint16 or float32"):
        Image(np.zeros((4, 4, 3)), SRGB, "tiff")
    with pytest.raises(ValueError):
        Image(np.zeros((4, 4), np.uint8), SRGB, "tiff")


# --- writing ---------------------------------------------------------------------------------

def test_output_format_for():
    assert output_format_for("a.TIF") == "tiff" and output_format_for("a.tiff") == "tiff"
    assert output_format_for("a.jpg") == "jpeg" and output_format_for("b.JPEG") == "jpeg"
    assert output_format_for("c.png") == "png"
    for bad in ("a.webp", "a.dng", "noext"):
        with pytest.raises(UsageError, match="must end in .tif"):
            output_format_for(bad)


def test_refuse_overwrite_without_force(tmp_path, photo8):
    img = Image(photo8, SRGB, "tiff")
    out = write_image(tmp_path / "o.tif", img)
    before = out.read_bytes()
    with pytest.raises(OutputError, match="already exists; use --force") as e:
        write_image(out, Image(photo8[::-1].copy(), SRGB, "tiff"))
    assert str(out) in str(e.value) and out.read_bytes() == before
    os.chmod(out, 0o640)
    write_image(out, Image(photo8[::-1].copy(), SRGB, "tiff"), overwrite=True)
    np.testing.assert_array_equal(read_image(out).pixels, photo8[::-1])
    assert (out.stat().st_mode & 0o777) == 0o640  # the replaced file's permissions are kept


def test_refuse_overwriting_the_input(tiff16_path):
    img = read_image(tiff16_path)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_image(tiff16_path, img, overwrite=True)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_image(tiff16_path.parent / "." / tiff16_path.name, img, overwrite=True)


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if "monet-tmp" in p.name]


@pytest.mark.parametrize("exc", [RuntimeError("encoder bug"), KeyboardInterrupt()])
def test_atomic_write_removes_temp_on_failure(tmp_path, exc):
    target = tmp_path / "out.tif"

    def write_fn(tmp):
        tmp.write_bytes(b"partial")
        raise exc

    with pytest.raises(type(exc)):
        atomic_write(target, write_fn)
    assert not target.exists() and _leftovers(tmp_path) == []
    target.write_bytes(b"old")
    with pytest.raises(type(exc)):
        atomic_write(target, write_fn, overwrite=True)
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_atomic_write_disk_full(tmp_path):
    def write_fn(tmp):
        with open(tmp, "wb") as f:
            f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OutputError, match="no space left on device") as e:
        atomic_write(tmp_path / "full.png", write_fn)
    assert "full.png" in str(e.value) and _leftovers(tmp_path) == [] and not (tmp_path / "full.png").exists()


def test_write_image_disk_full(tmp_path, photo8, monkeypatch):
    import tifffile

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tifffile, "imwrite", full)
    with pytest.raises(OutputError, match="no space left on device"):
        write_image(tmp_path / "o.tif", Image(photo8, SRGB, "tiff"))
    assert list(tmp_path.iterdir()) == []


def test_write_image_encoder_error(tmp_path, photo8, monkeypatch):
    import tifffile

    def bad(*a, **k):
        raise ValueError("cannot do that")

    monkeypatch.setattr(tifffile, "imwrite", bad)
    with pytest.raises(OutputError, match="cannot encode TIFF: ValueError: cannot do that"):
        write_image(tmp_path / "o.tif", Image(photo8, SRGB, "tiff"))
    assert list(tmp_path.iterdir()) == []


def test_write_errors(tmp_path, photo8):
    img = Image(photo8, SRGB, "tiff")
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "missing" / "o.tif", img)
    with pytest.raises(UsageError, match="quality"):
        write_image(tmp_path / "o.jpg", img, quality=0)
    with pytest.raises(UsageError):
        write_image(tmp_path / "o.webp", img)
    (tmp_path / "d.tif").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        write_image(tmp_path / "d.tif", img, overwrite=True)


def test_icc_embedded_in_every_format(tmp_path, photo8, photo16):
    cs = NAMED["linear-prophoto"]
    for name, px in (("a.tif", photo16), ("b.jpg", photo8), ("c.png", photo8), ("d.png", photo16)):
        out = write_image(tmp_path / name, Image(px, cs, "tiff"))
        img = read_image(out)
        assert img.icc_profile == build_icc(cs) and parse_icc(img.icc_profile) is cs and img.colorspace is cs


def test_written_tiff_is_plain(tmp_path, photo16):
    import tifffile

    out = write_image(tmp_path / "p.tif", Image(photo16, SRGB, "tiff"))
    with tifffile.TiffFile(out) as t:
        p = t.pages.first
        assert p.compression == 1 and p.photometric == tifffile.PHOTOMETRIC.RGB and p.bitspersample == 16
        assert p.planarconfig == 1 and p.iccprofile == build_icc(SRGB)


def test_png_writer_output_is_valid_for_pillow(tmp_path, photo8):
    buf = tmp_path / "w.png"
    png16.write_png(buf, photo8, icc_profile=build_icc(SRGB))
    with PILImage.open(io.BytesIO(buf.read_bytes())) as im:
        np.testing.assert_array_equal(np.asarray(im), photo8)


def test_transfer_function_table_survives_write(tmp_path, photo16):
    table = tuple(float(v) for v in np.linspace(0, 1, 64) ** 1.7)
    from monet_cli.colorspaces import ColorSpace

    cs = ColorSpace("tabled", SRGB.primaries, SRGB.white, TransferFunction(table=table), "Tabled sRGB")
    back = read_image(write_image(tmp_path / "t.tif", Image(photo16, cs, "tiff")))
    assert back.colorspace.name == "Tabled sRGB"
    x = np.linspace(0, 1, 50)
    np.testing.assert_allclose(back.colorspace.trc.decode(x), cs.trc.decode(x), atol=2e-5)


@pytest.mark.parametrize("workers", [1, 3])
def test_png_writer_parallel_blocks(tmp_path, photo16, monkeypatch, workers):
    # Small blocks: many independent deflate jobs, each primed with the previous 32 KiB.
    monkeypatch.setattr(png16, "_BLOCK_BYTES", 1000)
    path = tmp_path / "p.png"
    png16.write_png(path, photo16, workers=workers)
    np.testing.assert_array_equal(png16.read_png(path).pixels, photo16)
    data = path.read_bytes()
    idat, pos = b"", 8
    while pos < len(data):
        n, typ = struct.unpack_from(">I4s", data, pos)
        if typ == b"IDAT":
            idat += data[pos + 8:pos + 8 + n]
        pos += 12 + n
    assert zlib.decompress(idat)  # one valid zlib stream, Adler-32 included
    with PILImage.open(path) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), (photo16 >> 8).astype(np.uint8))




@pytest.mark.parametrize("compression,predictor,dtype", [
    ("lzw", None, np.uint16), ("zlib", True, np.uint16), ("packbits", None, np.uint8),
    ("zlib", True, np.float32), ("lzw", True, np.uint8),
])
def test_compressed_tiffs_as_lightroom_writes_them(tmp_path, photo16, compression, predictor, dtype):
    import tifffile

    if dtype == np.uint8:
        px = (photo16 >> 8).astype(np.uint8)
    elif dtype == np.float32:
        px = (photo16 / 65535.0).astype(np.float32)
    else:
        px = photo16
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, px, photometric="rgb", compression=compression, predictor=predictor)
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, px)


def test_draft_raw_is_half_size_and_same_colour(dng_path):
    full = read_image(dng_path)
    half = read_image(dng_path, draft=True)
    assert half.pixels.shape[0] == full.pixels.shape[0] // 2 and half.pixels.shape[1] == full.pixels.shape[1] // 2
    np.testing.assert_allclose(half.pixels.reshape(-1, 3).mean(0), full.pixels.reshape(-1, 3).mean(0), rtol=0.03)
