"""Metadata carried from input to output (monet_cli.metadata): EXIF, GPS, orientation,
copyright and the plan as XMP, into 16-bit TIFF, JPEG and 8/16-bit PNG outputs, read back with
ExifRead (monet writes with Pillow's serialiser); --strip-gps, --no-metadata, apply --json;
CR3 and RAF containers; corrupt EXIF is a warning and a correct render, never a crash."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess

import exifread
import fixtures as fx
import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from monet_cli import __version__
from monet_cli.apply import apply_plan
from monet_cli.images import read_image
from monet_cli.metadata import read_metadata
from monet_cli.plan import Plan

PLAN = Plan.from_adjustments({"Exposure": 10, "Saturation": 5})
OUTPUTS = {"tif": {}, "jpg": {}, "png": {"depth": 8}, "png16": {"depth": 16}}
GPS = {1: "N", 2: (IFDRational(48, 1), IFDRational(51, 1), IFDRational(2904, 100)), 3: "E",
       4: (IFDRational(2, 1), IFDRational(21, 1), IFDRational(0, 1)), 5: 0, 6: IFDRational(35, 1)}


def camera_exif(orientation: int = 6, gps: bool = True) -> Image.Exif:
    ex = Image.Exif()
    ex.update({271: "Canon", 272: "EOS R5", 315: "Ann Photographer", 33432: "(c) 2026 Ann", 270: "A lake at dawn",
               274: orientation, 305: "Camera firmware 1.2"})
    e = ex.get_ifd(0x8769)
    e.update({33434: IFDRational(1, 250), 33437: IFDRational(28, 10), 34855: 400, 36867: "2026:01:02 03:04:05",
              37521: "123", 36881: "+01:00", 37386: IFDRational(50, 1), 42036: "RF50mm F1.8 STM", 42035: "Canon",
              40962: 9999, 40963: 9999})
    if gps:
        ex.get_ifd(0x8825).update(GPS)
    return ex


def tags_of(path) -> dict[str, str]:
    with open(path, "rb") as f:
        t = exifread.process_file(f, details=False)
    return {k: str(v) for k, v in t.items() if k.split(" ")[0] in ("Image", "EXIF", "GPS")}


CARRIED = {"Image Make": "Canon", "Image Model": "EOS R5", "Image Artist": "Ann Photographer",
           "Image Copyright": "(c) 2026 Ann", "Image ImageDescription": "A lake at dawn",
           "EXIF ExposureTime": "1/250", "EXIF FNumber": "14/5", "EXIF ISOSpeedRatings": "400",
           "EXIF DateTimeOriginal": "2026:01:02 03:04:05", "EXIF SubSecTimeOriginal": "123",
           "EXIF OffsetTimeOriginal": "+01:00", "EXIF FocalLength": "50", "EXIF LensModel": "RF50mm F1.8 STM",
           "EXIF LensMake": "Canon", "GPS GPSLatitudeRef": "N", "GPS GPSLatitude": "[48, 51, 726/25]",
           "GPS GPSLongitudeRef": "E", "GPS GPSLongitude": "[2, 21, 0]", "GPS GPSAltitude": "35"}


def render(tmp_path, src, kind, **kw):
    out = tmp_path / f"out-{kind}.{kind[:3]}"
    r = apply_plan(src, PLAN, out, overwrite=True, **{**OUTPUTS[kind], **kw})
    return out, r


@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_jpeg_metadata_survives_into_every_output(tmp_path, kind):
    src = fx.make_jpeg(tmp_path / "in.jpg", fx.astronaut(16)[:24], exif=camera_exif().tobytes())  # 32 wide, 24 high
    before = src.read_bytes()
    out, r = render(tmp_path, src, kind)
    assert src.read_bytes() == before  # the original is never written
    tags = tags_of(out)
    for k, v in CARRIED.items():
        assert tags.get(k) == v, (kind, k, tags.get(k))
    assert tags["Image Orientation"] == "Horizontal (normal)"  # monet turned the pixels
    h, w = read_image(out).pixels.shape[:2]
    assert (h, w) == (32, 24)  # orientation 6: turned upright
    assert (tags["EXIF ExifImageWidth"], tags["EXIF ExifImageLength"]) == (str(w), str(h))  # not 9999
    assert tags["Image Software"] == f"monet {__version__}"
    assert not [k for k in tags if "Thumbnail" in k]
    assert set(r.metadata["carried"]) >= {"Make", "Model", "ExposureTime", "FNumber", "GPS", "Copyright"}
    assert r.metadata["xmp"] and r.metadata["warnings"] == []


def xmp_of(path) -> bytes:
    data = path.read_bytes()
    a = data.find(b"<x:xmpmeta")
    return data[a:data.find(b"</x:xmpmeta>", a) + 12] if a >= 0 else b""


@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_the_plan_is_embedded_as_monets_xmp_record_not_as_develop_settings(tmp_path, kind):
    from monet_cli.xmp import parse_xmp

    src = fx.make_jpeg(tmp_path / "in.jpg", fx.astronaut(16), exif=camera_exif().tobytes())
    out, _ = render(tmp_path, src, kind)
    packet = xmp_of(out)
    assert b"monet:Exposure=\"10\"" in packet and b"monet:Source=\"in.jpg\"" in packet
    assert b"crs:" not in packet  # Lightroom would develop the rendered pixels a second time
    assert parse_xmp(packet).has_settings is False or b"HasSettings" not in packet


def test_strip_gps_removes_gps_and_nothing_else(tmp_path):
    src = fx.make_jpeg(tmp_path / "in.jpg", fx.astronaut(16), exif=camera_exif().tobytes())
    for kind in ("tif", "jpg"):
        full, _ = render(tmp_path, src, kind)
        full_tags = tags_of(full)
        stripped = tmp_path / f"nogps.{kind}"
        r = apply_plan(src, PLAN, stripped, strip_gps=True)
        tags = tags_of(stripped)
        assert not [k for k in tags if k.startswith("GPS ") or k == "Image GPSInfo"], kind
        offsets = {"Image ExifOffset", "Image GPSInfo"}  # where the blocks lie moves with them
        assert {k: v for k, v in tags.items() if k not in offsets} == {
            k: v for k, v in full_tags.items() if not k.startswith("GPS ") and k not in offsets}, kind
        assert "GPS" not in r.metadata["carried"]


def test_no_metadata_writes_none_and_json_reports_what_was_carried(tmp_path, capsys):
    from monet_cli.cli import main

    src = fx.make_jpeg(tmp_path / "in.jpg", fx.astronaut(16), exif=camera_exif().tobytes())
    (tmp_path / "plan.json").write_text(json.dumps({"Exposure": 10}))
    for args, name in ((["--no-metadata"], "bare.jpg"), ([], "full.jpg")):
        try:
            main(["apply", str(src), str(tmp_path / "plan.json"), "-o", str(tmp_path / name), "--json", *args])
        except SystemExit as e:
            assert not e.code
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert lines[0]["metadata"] is None and lines[1]["metadata"]["carried"][:2] == ["ImageDescription", "Make"]
    assert "Image Make" not in tags_of(tmp_path / "bare.jpg") and xmp_of(tmp_path / "bare.jpg") == b""
    assert tags_of(tmp_path / "full.jpg")["Image Make"] == "Canon"


def test_dng_exif_written_by_tifffile_reaches_the_tiff(tmp_path):
    src = fx.make_dng(tmp_path / "in.dng", np.full((32, 48, 3), 0.2), orientation=6, extra_tags=[
        (315, "s", 0, "Ann Photographer", True), (33432, "s", 0, "(c) 2026 Ann", True),
        (33434, "2I", 1, (1, 125), True), (33437, "2I", 1, (4, 1), True), (34855, "H", 1, 200, True),
        (36867, "s", 0, "2026:03:04 05:06:07", True), (37386, "2I", 1, (35, 1), True)])
    out, r = render(tmp_path, src, "tif")
    tags = tags_of(out)
    assert (tags["Image Make"], tags["Image Model"], tags["Image Artist"]) == ("Monet", "Test Camera",
                                                                             "Ann Photographer")
    assert (tags["EXIF ExposureTime"], tags["EXIF FNumber"], tags["EXIF ISOSpeedRatings"],
            tags["EXIF DateTimeOriginal"], tags["EXIF FocalLength"]) == ("1/125", "4", "200", "2026:03:04 05:06:07", "35")
    assert tags["Image Orientation"] == "Horizontal (normal)"
    h, w = read_image(out).pixels.shape[:2]
    assert h > w and (tags["EXIF ExifImageWidth"], tags["EXIF ExifImageLength"]) == (str(w), str(h))
    assert "BlackLevel" not in " ".join(tags) and "CFAPattern" not in " ".join(tags)  # raw structure not carried


def test_photos_without_exif_give_no_warning(tmp_path):
    px = (fx.astronaut(16) * 255).astype(np.uint8)
    for src in (fx.make_tiff(tmp_path / "plain.tif", fx.to16(fx.astronaut(16))), fx.make_jpeg(tmp_path / "plain.jpg", px),
                fx.make_png(tmp_path / "plain.png", px)):
        m = read_metadata(src)
        assert m.warnings == [] and m.empty, src.name
        out, r = render(tmp_path, src, "tif")
        assert r.metadata["warnings"] == [] and r.metadata["carried"] == [], src.name
        assert tags_of(out)["Image Software"] == f"monet {__version__}"  # monet's own tags still written


def test_png_exif_input(tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray((fx.astronaut(16) * 255).astype(np.uint8)).save(src, exif=camera_exif(orientation=1).tobytes())
    out, _ = render(tmp_path, src, "jpg")
    tags = tags_of(out)
    assert tags["Image Model"] == "EOS R5" and tags["GPS GPSLatitudeRef"] == "N"


def _tiff_block(exif: Image.Exif) -> bytes:
    return exif.tobytes()[6:]  # the TIFF structure without "Exif\0\0"


def test_cr3_and_raf_containers_are_located(tmp_path):
    ex = camera_exif(orientation=8)

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", 8 + len(body)) + kind + body

    cmt2 = Image.Exif()  # CR3 keeps the Exif tags in a TIFF of their own
    cmt2.update({33434: IFDRational(1, 60), 42036: "RF24-105mm"})
    cmt4 = Image.Exif()
    cmt4.update(GPS)
    uuid = box(b"uuid", bytes.fromhex("85c0b687820f11e08111f4ce462b6a48") + box(b"CMT1", _tiff_block(ex))
               + box(b"CMT2", _tiff_block(cmt2)) + box(b"CMT4", _tiff_block(cmt4)))
    cr3 = tmp_path / "x.CR3"
    cr3.write_bytes(box(b"ftyp", b"crx \x00\x00\x00\x01crx isom") + box(b"moov", uuid) + box(b"mdat", b"\0" * 64))
    m = read_metadata(cr3)
    assert m.ifd0[271][1] == "Canon" and m.orientation == 8 and m.exif[42036][1] == "RF24-105mm"
    assert m.exif[33434][1] == ((1, 60),) and m.gps[1][1] == "N" and m.gps[6][1] == ((35, 1),) and m.warnings == []

    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(jpeg, format="JPEG", exif=ex.tobytes())
    head = b"FUJIFILMCCD-RAW 0201FF383501".ljust(84, b"\0") + struct.pack(">II", 100, len(jpeg.getvalue()))
    raf = tmp_path / "x.RAF"
    raf.write_bytes(head.ljust(100, b"\0") + jpeg.getvalue() + b"\0" * 32)
    m = read_metadata(raf)
    assert m.ifd0[272][1] == "EOS R5" and m.exif[34855][1] == (400,) and m.gps
    bad = tmp_path / "bad.RAF"
    bad.write_bytes(head[:84] + struct.pack(">II", 10**9, 5))
    assert "no embedded JPEG" in read_metadata(bad).warnings[0]


def _jpeg_with_app1(path, pixels, app1: bytes):
    """A JPEG whose EXIF APP1 is exactly ``app1`` (Exif\\0\\0 + a TIFF structure)."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    data = buf.getvalue()
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    path.write_bytes(data[:2] + seg + data[2:])
    return path


def _corrupt_blocks() -> dict[str, bytes]:
    good = camera_exif().tobytes()
    tiff = bytearray(good[6:])
    bo = "<" if tiff[:2] == b"II" else ">"
    ifd0 = struct.unpack_from(bo + "I", tiff, 4)[0]
    n = struct.unpack_from(bo + "H", tiff, ifd0)[0]
    past = bytearray(tiff)
    for i in range(n):  # every offset-valued entry points far past the end
        struct.pack_into(bo + "I", past, ifd0 + 2 + 12 * i + 8, 0x7FFFFFF0)
    loop = bytearray(tiff)
    struct.pack_into(bo + "I", loop, ifd0 + 2 + 12 * n, ifd0)  # IFD0's next IFD is itself
    return {"truncated IFD": b"Exif\0\0" + bytes(tiff[:ifd0 + 2 + 12 * 3]),
            "offsets past the end": b"Exif\0\0" + bytes(past),
            "loop of IFDs": b"Exif\0\0" + bytes(loop),
            "garbage": b"Exif\0\0II*\0" + b"\xff" * 40}


@pytest.mark.parametrize("case", list(_corrupt_blocks()))
def test_corrupt_exif_is_a_warning_and_a_correct_render(tmp_path, case):
    pixels = (fx.astronaut(16) * 255).astype(np.uint8)
    src = _jpeg_with_app1(tmp_path / "in.jpg", pixels, _corrupt_blocks()[case])
    out = tmp_path / "out.tif"
    r = apply_plan(src, PLAN, out)  # never raises
    apply_plan(src, PLAN, tmp_path / "bare.tif", metadata=False)
    assert np.array_equal(read_image(out).pixels, read_image(tmp_path / "bare.tif").pixels)  # the same render
    assert tags_of(out)["Image Software"] == f"monet {__version__}"
    if case == "loop of IFDs":  # read once, not forever: everything is carried
        assert "Make" in r.metadata["carried"] and r.metadata["warnings"] == []
    else:
        assert len(r.metadata["warnings"]) == 1 and r.metadata["warnings"][0].startswith("in.jpg: the ")
        assert "EXIF" in r.metadata["warnings"][0]


needs_exiftool = pytest.mark.skipif(shutil.which("exiftool") is None,
                                    reason="exiftool (libimage-exiftool-perl) not installed")


@needs_exiftool
@pytest.mark.parametrize("kind", list(OUTPUTS))
def test_exiftool_sees_the_same_tags_in_input_and_output(tmp_path, kind):
    src = fx.make_jpeg(tmp_path / "in.jpg", fx.astronaut(16), exif=camera_exif().tobytes())
    out, _ = render(tmp_path, src, kind)

    def tool(p):
        return json.loads(subprocess.run(["exiftool", "-j", "-n", "-G1", str(p)], capture_output=True,
                                         check=True, text=True).stdout)[0]

    a, b = tool(src), tool(out)
    for key in ("IFD0:Make", "IFD0:Model", "IFD0:Artist", "IFD0:Copyright", "IFD0:ImageDescription",
                "ExifIFD:ExposureTime", "ExifIFD:FNumber", "ExifIFD:ISO", "ExifIFD:DateTimeOriginal",
                "ExifIFD:SubSecTimeOriginal", "ExifIFD:OffsetTimeOriginal", "ExifIFD:FocalLength",
                "ExifIFD:LensModel", "GPS:GPSLatitude", "GPS:GPSLongitude", "GPS:GPSAltitude"):
        assert b.get(key) == a.get(key), (kind, key)
    assert b["IFD0:Orientation"] == 1 and b["IFD0:Software"] == f"monet {__version__}"


def test_an_exif_too_large_for_a_jpeg_is_a_warning_not_a_failed_render(tmp_path):
    ex = camera_exif(orientation=1)
    ex[270] = "x" * 70000  # a huge ImageDescription: fits a TIFF, not a JPEG's 64 KiB APP1
    src = tmp_path / "in.tif"
    Image.fromarray((fx.astronaut(16) * 255).astype(np.uint8)).save(src, exif=ex.tobytes())
    out, r = render(tmp_path, src, "jpg")
    assert Image.open(out).size[0] > 0 and any("too large for a JPEG" in w for w in r.metadata["warnings"])
    tif, r2 = render(tmp_path, src, "tif")
    assert tags_of(tif)["Image Make"] == "Canon" and r2.metadata["warnings"] == []
