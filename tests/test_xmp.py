"""XMP interop: mapping, round trips, valid RDF/XML, embedding into TIFF/JPEG/DNG copies,
Lightroom-style sidecars in, hostile packets refused, and the two CLI commands."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import fixtures as fx
from monet_cli import xmp
from monet_cli.catalog import catalog
from monet_cli.cli import main
from monet_cli.errors import InputError, OutputError, UsageError
from monet_cli.plan import Plan, load_plan, sidecar_path

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool (libimage-exiftool-perl) not installed")
OPS = list(catalog().ops)
NS = {"x": xmp.X_NS, "rdf": xmp.RDF_NS, "crs": xmp.CRS_NS, "monet": xmp.MONET_NS}
SAMPLE = {"Exposure": 12.5, "Contrast": -10, "Temperature": 20, "Tint": -5, "Saturation": 8,
          "HueAdjustmentBlue": -8, "SaturationAdjustmentOrange": 33, "LuminanceAdjustmentGreen": -12.25}


def random_values(rng, *, integers=False) -> dict[str, float]:
    v = rng.uniform(-100, 100, len(OPS))
    v = np.rint(v) if integers else v
    v[rng.integers(0, len(OPS))] = rng.choice([-100.0, 100.0])  # the ends of the range too
    return {op: float(x) for op, x in zip(OPS, v)}


def crs_of(data: bytes) -> dict[str, str]:
    return xmp.parse_xmp(data).crs


def strip_monet(data: bytes) -> bytes:
    """The packet as Lightroom would keep it if it dropped monet's private namespace."""
    return re.sub(rb'\s+monet:\w+="[^"]*"', b"", data)


def exiftool_json(path, *args) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-n", *args, str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)[0]


def cli(capsys, *args) -> tuple[int, str, str]:
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


# ---------------------------------------------------------------------------- mapping


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_round_trip_keeps_every_value_of_all_33_ops(raw, seed):
    rng = np.random.default_rng(seed)
    values = random_values(rng)
    as_shot = xmp.AsShot(float(rng.uniform(2800, 7500)), float(rng.uniform(-20, 20)), "test")
    data = xmp.build_xmp(values, raw=raw, as_shot=as_shot)
    plan, unsupported, notes, _ = xmp.settings_to_plan(xmp.parse_xmp(data), raw=raw)
    assert plan.adjustments == values
    assert unsupported == [] and notes == []
    assert plan.planner.backend == "xmp"


@pytest.mark.parametrize("raw", [False, True])
def test_lightroom_values_alone_give_integer_plans_back(raw):
    """Without monet's exact values (say Lightroom dropped them), integer plans still come back:
    exactly for every op but the raw white balance (integer kelvin and tint in Lightroom)."""
    rng = np.random.default_rng(7)
    for _ in range(5):
        values = random_values(rng, integers=True)
        data = strip_monet(xmp.build_xmp(values, raw=raw, as_shot=xmp.AsShot(5000, 5, "test")))
        assert b"monet:Exposure" not in data
        got = xmp.settings_to_plan(xmp.parse_xmp(data), raw=raw, as_shot=xmp.AsShot(5000, 5, "test"))[0].adjustments
        for op in OPS:
            tol = 0.0
            if raw and op == "Temperature":
                tol = 0.05  # kelvin rounded to an integer
            if raw and op == "Tint":
                tol = 0.5 / xmp.TINT_PER_UNIT + 1e-9  # Lightroom tint rounded to an integer, 0.6 per unit
            assert got.get(op, 0.0) == pytest.approx(values[op], abs=tol), op


def test_tag_names_and_scales():
    crs = xmp.plan_to_crs({"Exposure": 100, "Contrast": -100, "SaturationAdjustmentBlue": 37.6}, raw=False)
    expected = {o.xmp.split(":")[1] for o in catalog().ops.values()} | {"WhiteBalance"}
    assert set(crs) == expected and len(expected) == 34
    assert crs["Exposure2012"] == "+2.00" and crs["Contrast2012"] == "-100"
    assert crs["SaturationAdjustmentBlue"] == "+38" and crs["Highlights2012"] == "0"
    assert xmp.plan_to_crs({"Exposure": 50}, raw=False)["Exposure2012"] == "+1.00"  # +50 is exactly +1 EV
    assert xmp.plan_to_crs({"Exposure": -1}, raw=False)["Exposure2012"] == "-0.02"
    assert crs["WhiteBalance"] == "As Shot" and crs["IncrementalTemperature"] == "0"
    rendered = xmp.plan_to_crs({"Temperature": 100, "Tint": -100}, raw=False)
    assert (rendered["IncrementalTemperature"], rendered["IncrementalTint"]) == ("+100", "-100")
    # raw files: absolute kelvin via mired from the as-shot white balance
    raw = xmp.plan_to_crs({"Temperature": 100, "Tint": -100}, raw=True, as_shot=xmp.AsShot(5500, 10, "t"))
    assert raw["Temperature"] == "9362" and raw["Tint"] == "-50" and raw["WhiteBalance"] == "Custom"
    assert "IncrementalTemperature" not in raw
    assert xmp.plan_to_crs({"Temperature": -100}, raw=True, as_shot=xmp.AsShot(5500, 10, "t"))["Temperature"] == "3894"
    unchanged = xmp.plan_to_crs({"Exposure": 3}, raw=True)
    assert unchanged["WhiteBalance"] == "As Shot" and "Temperature" not in unchanged
    # Lightroom's ranges hold for every value
    for v in (-100, -37.3, 0.4, 100):
        for as_shot in (xmp.AsShot(2000, -150, "t"), xmp.AsShot(12000, 150, "t")):
            c = xmp.plan_to_crs({op: v for op in OPS}, raw=True, as_shot=as_shot)
            assert 2000 <= int(c["Temperature"]) <= 50000 and -150 <= int(c["Tint"]) <= 150
            assert abs(float(c["Exposure2012"])) <= 2.0
            assert all(-100 <= int(c[k]) <= 100 for k in c if k.endswith(("2012", "Adjustment")) or "Adjustment" in k
                       if k != "Exposure2012")


def test_kelvin_conversion_is_a_mired_shift_and_inverts():
    for k0 in (2500.0, 5500.0, 9000.0):
        for v in (-100.0, -33.3, 0.0, 12.5, 100.0):
            k = xmp.kelvin_for(v, k0)
            assert 1e6 / k0 - 1e6 / k == pytest.approx(0.75 * v)
            assert xmp.temperature_for(k, k0) == pytest.approx(v)
    assert xmp.kelvin_for(100, 40000) == 50000  # clamped to Lightroom's range


def test_as_shot_is_estimated_from_a_raw_file(tmp_path):
    """A DNG shot under a 3200 K black body (camera RGB = linear sRGB) reads back as about 3200 K, tint 0."""
    from monet_cli import colorspaces as cs

    xyz = cs.xy_to_XYZ(cs.uv1960_to_xy(*cs.planck_uv(3200.0)))
    neutral = np.linalg.solve(fx.SRGB_TO_XYZ, xyz)
    dng = fx.make_dng(tmp_path / "tungsten.dng", np.full((32, 32, 3), 0.18), as_shot_neutral=neutral / neutral.max())
    a = xmp.as_shot_from_raw(dng)
    assert a is not None and a.kelvin == pytest.approx(3200, abs=30) and abs(a.tint) <= 1.5
    assert xmp.as_shot_from_raw(tmp_path / "missing.CR2") is None
    assert xmp.cct_duv((0.3127, 0.3290))[0] == pytest.approx(6504, abs=30)


# ---------------------------------------------------------------------------- RDF/XML


def test_packet_is_valid_rdf_xml_with_adobe_namespaces():
    data = xmp.build_xmp(SAMPLE, raw=True, raw_name="IMG_0042.CR2")
    root = ET.fromstring(data)
    assert root.tag == f"{{{xmp.X_NS}}}xmpmeta"
    rdf = root.find("rdf:RDF", NS)
    desc = rdf.find("rdf:Description", NS)
    assert desc.get(f"{{{xmp.RDF_NS}}}about") == ""
    assert desc.get(f"{{{xmp.CRS_NS}}}ProcessVersion") == "11.0"
    assert desc.get(f"{{{xmp.CRS_NS}}}HasSettings") == "True"
    assert desc.get(f"{{{xmp.CRS_NS}}}RawFileName") == "IMG_0042.CR2"
    assert xmp.CRS_NS == "http://ns.adobe.com/camera-raw-settings/1.0/"
    assert b'xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"' in data
    packet = xmp.build_xmp(SAMPLE, raw=False, packet=True)
    assert packet.startswith(b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert packet.endswith(b'<?xpacket end="w"?>')
    assert ET.fromstring(packet).tag == f"{{{xmp.X_NS}}}xmpmeta"


@needs_exiftool
def test_exiftool_reads_the_sidecar(tmp_path):
    p = tmp_path / "a.xmp"
    p.write_bytes(xmp.build_xmp(SAMPLE, raw=False))
    d = exiftool_json(p, "-XMP-crs:all")
    assert float(d["Exposure2012"]) == 0.25 and float(d["Contrast2012"]) == -10
    assert float(d["IncrementalTemperature"]) == 20 and float(d["HueAdjustmentBlue"]) == -8
    assert str(d["HasSettings"]).lower() == "true"
    assert "Warning" not in exiftool_json(p, "-validate", "-warning")


# ---------------------------------------------------------------------------- embedding


def _photos(tmp_path) -> dict[str, Path]:
    return {"jpeg": fx.make_jpeg(tmp_path / "p.jpg", fx.astronaut()),
            "tiff": fx.make_tiff(tmp_path / "p.tif", fx.to16(fx.coffee())),
            "tiff-be": fx.make_tiff(tmp_path / "be.tif", fx.coffee(), byteorder=">"),
            "bigtiff": fx.make_tiff(tmp_path / "big.tif", fx.coffee(), bigtiff=True),
            "dng": fx.make_dng(tmp_path / "p.dng", np.full((32, 32, 3), 0.18))}


def test_embedded_copies_are_read_back_and_originals_untouched(tmp_path):
    import tifffile

    from monet_cli.images import read_image

    for kind, photo in _photos(tmp_path).items():
        before = photo.read_bytes()
        r = xmp.export_xmp(photo, SAMPLE, embed=True)
        assert r.output == photo.with_name(f"{photo.stem}.monet-xmp{photo.suffix}") and r.embedded
        assert photo.read_bytes() == before, kind
        back = xmp.import_xmp(r.output)
        assert back.embedded and back.adjustments == SAMPLE and back.unsupported == [], kind
        assert back.plan.source.name == r.output.name
        if kind != "dng":  # pixels and every other byte of the image data unchanged
            assert np.array_equal(read_image(photo).pixels, read_image(r.output).pixels), kind
        if kind != "jpeg":
            with tifffile.TiffFile(r.output) as t:
                assert b"crs:Exposure2012" in bytes(t.pages[0].tags[700].value)
                assert np.array_equal(t.pages[0].asarray(), tifffile.imread(photo))
        assert (r.raw, "Temperature" in r.tags) == (kind == "dng", kind == "dng")


@needs_exiftool
def test_exiftool_finds_the_embedded_xmp(tmp_path):
    for kind, photo in _photos(tmp_path).items():
        out = xmp.export_xmp(photo, SAMPLE, embed=True).output
        d = exiftool_json(out, "-XMP-crs:all", "-XMP-monet:all", "-validate", "-warning", "-error")
        assert float(d.get("Exposure2012")) == 0.25 and float(d.get("SaturationAdjustmentOrange")) == 33, (kind, d)
        assert d["Exposure"] == 12.5 and d["PlanVersion"] == 1, (kind, d)  # monet's exact values
        # exiftool's validation finds nothing the original did not have (BigTIFF: "should be .btf")
        before = exiftool_json(photo, "-validate", "-warning", "-error")
        assert (d["Validate"], d.get("Warning")) == (before["Validate"], before.get("Warning")), kind
        assert "Error" not in d, (kind, d)


def _xmp_with(props: str, extra_ns: str = "") -> bytes:
    return (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{xmp.RDF_NS}">'
            f'<rdf:Description rdf:about="" xmlns:crs="{xmp.CRS_NS}" xmlns:dc="http://purl.org/dc/elements/1.1/" '
            f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" {extra_ns} {props}/></rdf:RDF></x:xmpmeta>').encode()


def test_embedding_keeps_the_files_other_metadata(tmp_path):
    from PIL import Image

    own = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{xmp.RDF_NS}">'
           f'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:crs="{xmp.CRS_NS}"'
           ' xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4" crs:Clarity2012="+30">'
           '<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour &amp; boats</rdf:li></rdf:Alt></dc:title>'
           "</rdf:Description></rdf:RDF></x:xmpmeta>").encode()
    tif = fx.make_tiff(tmp_path / "own.tif", fx.coffee(), extratags=[(700, "B", len(own), own, True)])
    jpg = tmp_path / "own.jpg"
    Image.fromarray(fx.astronaut()).save(jpg, quality=90, xmp=own)
    for photo in (tif, jpg):
        out = xmp.export_xmp(photo, SAMPLE, embed=True).output
        data, embedded = xmp.read_xmp_bytes(out)
        assert embedded and b"Harbour &amp; boats" in data and b'xmp:Rating="4"' in data
        s = xmp.parse_xmp(data)
        assert "Clarity2012" not in s.crs and s.crs["Exposure2012"] == "+0.25"  # settings replaced
        again = xmp.export_xmp(out, {"Exposure": -20}, embed=True, output=tmp_path / f"again{photo.suffix}")
        assert xmp.import_xmp(again.output).adjustments == {"Exposure": -20}
        assert len(re.findall(rb"crs:Exposure2012", xmp.read_xmp_bytes(again.output)[0])) == 1
        ET.fromstring(xmp.read_xmp_bytes(again.output)[0])


def test_embed_refuses_to_touch_the_original_and_unsupported_files(tmp_path):
    photo = fx.make_jpeg(tmp_path / "p.jpg", fx.astronaut())
    before = photo.read_bytes()
    with pytest.raises(OutputError, match="original"):
        xmp.export_xmp(photo, SAMPLE, embed=True, output=photo, overwrite=True)
    with pytest.raises(OutputError, match="original"):
        xmp.export_xmp(photo, SAMPLE, output=tmp_path / "." / "p.jpg", overwrite=True)
    assert photo.read_bytes() == before
    cr2 = tmp_path / "IMG_0001.CR2"
    cr2.write_bytes(b"II*\x00" + bytes(100))
    with pytest.raises(UsageError, match="--embed"):
        xmp.export_xmp(cr2, SAMPLE, embed=True)
    xmp.export_xmp(photo, SAMPLE, embed=True)
    with pytest.raises(OutputError, match="--force"):
        xmp.export_xmp(photo, SAMPLE, embed=True)
    assert photo.read_bytes() == before
    assert not list(tmp_path.glob("*.monet-tmp"))


# ---------------------------------------------------------------------------- Lightroom's XMP in


LIGHTROOM_SIDECAR = f"""<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="{xmp.CRS_NS}"
   xmp:CreatorTool="Adobe Photoshop Lightroom Classic 13.0 (Windows)"
   crs:Version="16.0" crs:ProcessVersion="15.4" crs:WhiteBalance="Custom" crs:Temperature="6100" crs:Tint="+14"
   crs:Exposure2012="+0.35" crs:Contrast2012="+12" crs:Highlights2012="-45" crs:Shadows2012="+30"
   crs:Whites2012="0" crs:Blacks2012="-8" crs:Texture="0" crs:Clarity2012="+20" crs:Dehaze="+5"
   crs:Vibrance="+10" crs:Saturation="-3" crs:ParametricShadows="0" crs:ParametricShadowSplit="25"
   crs:Sharpness="40" crs:SharpenRadius="+1.0" crs:SharpenDetail="25" crs:LuminanceSmoothing="0"
   crs:ColorNoiseReduction="25" crs:ColorNoiseReductionDetail="50"
   crs:HueAdjustmentRed="0" crs:HueAdjustmentOrange="-6" crs:SaturationAdjustmentBlue="-20"
   crs:LuminanceAdjustmentAqua="+15" crs:ConvertToGrayscale="False" crs:ToneCurveName2012="Linear"
   crs:CameraProfile="Adobe Standard" crs:HasSettings="True" crs:HasCrop="True" crs:CropTop="0.05"
   crs:CropLeft="0" crs:CropBottom="1" crs:CropRight="0.95" crs:CropAngle="0" crs:PerspectiveScale="100"
   crs:AlreadyApplied="False" crs:RawFileName="IMG_0042.CR2">
   <crs:ToneCurvePV2012>
    <rdf:Seq><rdf:li>0, 0</rdf:li><rdf:li>64, 56</rdf:li><rdf:li>255, 255</rdf:li></rdf:Seq>
   </crs:ToneCurvePV2012>
   <crs:ToneCurvePV2012Red>
    <rdf:Seq><rdf:li>0, 0</rdf:li><rdf:li>255, 255</rdf:li></rdf:Seq>
   </crs:ToneCurvePV2012Red>
   <crs:GradientBasedCorrections>
    <rdf:Seq><rdf:li rdf:parseType="Resource"><crs:Exposure2012>-0.5</crs:Exposure2012></rdf:li></rdf:Seq>
   </crs:GradientBasedCorrections>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def test_a_lightroom_sidecar_becomes_a_plan_and_lists_what_it_cannot_represent(tmp_path):
    raw = tmp_path / "IMG_0042.CR2"
    raw.write_bytes(b"not really a raw file")
    side = tmp_path / "IMG_0042.xmp"
    side.write_text(LIGHTROOM_SIDECAR)
    r = xmp.import_xmp(side, as_shot=xmp.AsShot(5200, 6, "test"))
    assert r.photo == raw and not r.embedded and r.plan.source.name == "IMG_0042.CR2"
    adj = r.adjustments
    assert adj["Exposure"] == pytest.approx(17.5) and adj["Contrast"] == 12 and adj["Highlights"] == -45
    assert adj["Shadows"] == 30 and adj["Blacks"] == -8 and adj["Saturation"] == -3 and "Whites" not in adj
    assert adj["HueAdjustmentOrange"] == -6 and adj["SaturationAdjustmentBlue"] == -20
    assert adj["LuminanceAdjustmentAqua"] == 15
    assert adj["Temperature"] == pytest.approx((1e6 / 5200 - 1e6 / 6100) / 0.75, abs=0.01)
    assert adj["Tint"] == pytest.approx((14 - 6) / 0.6, abs=0.01)
    assert r.plan.planner.backend == "xmp" and "Lightroom" in r.plan.planner.model
    listed = {u["tag"] for u in r.unsupported}
    assert listed == {"crs:Clarity2012", "crs:Dehaze", "crs:Vibrance", "crs:Sharpness", "crs:ColorNoiseReduction",
                      "crs:HasCrop", "crs:ToneCurvePV2012", "crs:GradientBasedCorrections"}
    # nothing else: an as-shot white balance without --as-shot-kelvin is assumed, and said so
    r2 = xmp.import_xmp(side)
    assert any("5500 K" in n for n in r2.notes)
    assert r2.adjustments["Temperature"] == pytest.approx((1e6 / 5500 - 1e6 / 6100) / 0.75, abs=0.01)


def test_property_elements_as_exiftool_writes_them():
    data = (f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{xmp.RDF_NS}">'
            f'<rdf:Description rdf:about="" xmlns:crs="{xmp.CRS_NS}">'
            "<crs:Exposure2012>-1.5</crs:Exposure2012><crs:IncrementalTint>+7</crs:IncrementalTint>"
            "<crs:Vibrance>25</crs:Vibrance></rdf:Description></rdf:RDF></x:xmpmeta>").encode()
    plan, unsupported, _, _ = xmp.settings_to_plan(xmp.parse_xmp(data))
    assert plan.adjustments == {"Exposure": -75, "Tint": 7}
    assert unsupported == [{"tag": "crs:Vibrance", "value": "25"}]


def test_as_shot_white_balance_exposure_clamp_and_old_process_versions():
    s = xmp.parse_xmp(_xmp_with('crs:WhiteBalance="As Shot" crs:Temperature="4850" crs:Tint="+3" '
                                'crs:Exposure2012="+3.10" crs:ProcessVersion="11.0"'))
    plan, _, notes, as_shot = xmp.settings_to_plan(s)
    assert plan.adjustments == {"Exposure": 100}
    assert as_shot.kelvin == 4850 and any("+3.10 EV" in n and "clamped" in n for n in notes)
    old = xmp.parse_xmp(_xmp_with('crs:ProcessVersion="5.7" crs:Exposure="+0.50" crs:Brightness="+50" '
                                  'crs:Contrast="+25" crs:FillLight="10" crs:Saturation="+5"'))
    plan, unsupported, notes, _ = xmp.settings_to_plan(old)
    assert plan.adjustments == {"Saturation": 5}
    assert {u["tag"] for u in unsupported} == {"crs:Exposure", "crs:FillLight"}
    assert any("Process Version 5.7" in n for n in notes)


def test_values_changed_in_lightroom_win_over_monets_record():
    data = xmp.build_xmp({"Contrast": 10.4, "Exposure": 7.3}, raw=False)
    assert b'crs:Contrast2012="+10"' in data
    edited = data.replace(b'crs:Contrast2012="+10"', b'crs:Contrast2012="+25"')
    plan, _, notes, _ = xmp.settings_to_plan(xmp.parse_xmp(edited))
    assert plan.adjustments == {"Contrast": 25, "Exposure": 7.3}
    assert any("Contrast" in n and "changed in Lightroom" in n for n in notes)


def test_darktable_history_is_listed_not_dropped(tmp_path):
    photo = fx.make_jpeg(tmp_path / "dt.jpg", fx.astronaut())
    (tmp_path / "dt.jpg.xmp").write_text(
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{xmp.RDF_NS}">'
        '<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" darktable:history_end="2">'
        '<darktable:history><rdf:Seq><rdf:li darktable:operation="exposure"/><rdf:li darktable:operation="colorin"/>'
        "</rdf:Seq></darktable:history></rdf:Description></rdf:RDF></x:xmpmeta>")
    r = xmp.import_xmp(photo)
    assert r.xmp.name == "dt.jpg.xmp" and r.adjustments == {}
    assert r.unsupported[0]["tag"] == "darktable:history" and r.unsupported[0]["value"] == "2 steps"


# ---------------------------------------------------------------------------- hostile input


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/">&lol3;</x:xmpmeta>"""
EXTERNAL = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description crs:Vibrance="&e;" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"/></rdf:RDF></x:xmpmeta>"""
PARAMETER = b"""<!DOCTYPE x [<!ENTITY % p SYSTEM "http://example.invalid/evil.dtd"> %p;]><x/>"""


@pytest.mark.parametrize("data,message", [
    (BILLION_LAUGHS, "DOCTYPE"),
    (EXTERNAL, "DOCTYPE"),
    (PARAMETER, "DOCTYPE"),
    (b'<!DOCTYPE x SYSTEM "http://example.invalid/x.dtd"><x/>', "DOCTYPE"),
    (("\ufeff" + BILLION_LAUGHS.decode()).encode("utf-16-le"), "DOCTYPE"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&undefined;</x:xmpmeta>', "not well-formed"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF', "not well-formed"),
    (b"<x>\xc3\x28</x>", "not valid UTF-8"),
    (b"<a>" * 100 + b"</a>" * 100, "nested deeper"),
    (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>', "no rdf:RDF"),
    (b"", "empty"),
])
def test_hostile_and_malformed_packets_are_refused(data, message):
    with pytest.raises(InputError, match=message):
        xmp.parse_xmp(data)


def test_huge_xmp_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.xmp"
    with open(big, "wb") as f:
        f.write(_xmp_with("")[:-1])
        f.truncate(xmp.MAX_XMP_BYTES + 1)
    with pytest.raises(InputError, match="larger than"):
        xmp.import_xmp(big)
    with pytest.raises(InputError, match="larger than"):
        xmp.parse_xmp(b" " * (xmp.MAX_XMP_BYTES + 1))
    # an embedded XMP tag that claims to be huge is refused without reading it
    tif = fx.make_tiff(tmp_path / "claims.tif", fx.coffee(), extratags=[(700, "B", 8, b"<x:xmp/>", True)])
    data = bytearray(tif.read_bytes())
    i = data.find(b"\xbc\x02\x01\x00")  # tag 700, type BYTE (little-endian)
    data[i + 4:i + 8] = (xmp.MAX_XMP_BYTES + 10).to_bytes(4, "little")
    tif.write_bytes(bytes(data))
    with pytest.raises(InputError, match="larger than"):
        xmp.import_xmp(tif)


# ---------------------------------------------------------------------------- CLI


def test_cli_raw_sidecar_round_trip(tmp_path, capsys):
    raw = tmp_path / "IMG_0042.CR2"
    raw.write_bytes(b"II*\x00" + bytes(64))  # by name a raw file; LibRaw cannot read it (as shot: assumed)
    original = raw.read_bytes()
    plan = Plan.from_adjustments(SAMPLE)
    (tmp_path / "IMG_0042.CR2.monet.json").write_text(plan.to_json())

    code, out, err = cli(capsys, "export-xmp", raw, "--json")
    assert code == 0, err
    res = json.loads(out)
    side = tmp_path / "IMG_0042.xmp"
    assert res["output"] == str(side) and res["raw"] and res["tags"]["crs:WhiteBalance"] == "Custom"
    assert "5500 K" in res["as_shot"]["source"] and any("5500 K" in n for n in res["notes"])
    assert side.is_file() and raw.read_bytes() == original

    code, out, err = cli(capsys, "export-xmp", raw)
    assert code == 1 and "Lightroom" in err and "--force" in err and err.count("\n") == 1
    assert cli(capsys, "export-xmp", raw, "--force", "-q")[0] == 0

    (tmp_path / "IMG_0042.CR2.monet.json").unlink()
    code, out, err = cli(capsys, "import-xmp", side)
    assert code == 0, err
    back = load_plan(sidecar_path(raw))
    assert back.adjustments == SAMPLE and back.planner.backend == "xmp"
    assert back.source.name == "IMG_0042.CR2" and back.source.size == len(original)
    code, out, err = cli(capsys, "import-xmp", side)
    assert code == 1 and "already exists" in err
    code, out, err = cli(capsys, "import-xmp", raw, "--stdout")  # the photo finds its sidecar
    assert code == 0 and Plan.from_dict(json.loads(out)).adjustments == SAMPLE
    assert raw.read_bytes() == original


def test_cli_embed_and_import_a_jpeg(tmp_path, capsys):
    photo = fx.make_jpeg(tmp_path / "p.jpg", fx.astronaut())
    original = photo.read_bytes()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(SAMPLE))
    code, out, err = cli(capsys, "export-xmp", photo, "--plan", plan_file, "--embed")
    assert code == 0 and "p.monet-xmp.jpg" in out, err
    copy = tmp_path / "p.monet-xmp.jpg"
    code, out, err = cli(capsys, "import-xmp", copy, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["embedded"] and d["adjustments"] == SAMPLE and d["unsupported"] == []
    assert d["plan_path"] == str(sidecar_path(copy)) and sidecar_path(copy).is_file()
    # the original is never the output, --force or not
    code, out, err = cli(capsys, "export-xmp", photo, "--plan", plan_file, "--embed", "-o", photo, "--force")
    assert code == 1 and "original" in err
    code, out, err = cli(capsys, "export-xmp", tmp_path / "IMG.CR2", "--plan", plan_file, "--embed")
    assert code == 1 and "no such photo" in err
    assert photo.read_bytes() == original
    code, out, err = cli(capsys, "import-xmp", photo)
    assert code == 1 and "no XMP found" in err and "Traceback" not in err


def test_cli_refuses_hostile_xmp_in_one_line(tmp_path, capsys):
    bad = tmp_path / "IMG_1.xmp"
    bad.write_bytes(BILLION_LAUGHS)
    code, out, err = cli(capsys, "import-xmp", bad)
    assert code == 1 and "DOCTYPE" in err and err.count("\n") == 1 and out == ""
    fx.make_jpeg(tmp_path / "IMG_2.jpg", fx.astronaut())  # the sidecar's photo, found by name
    good = tmp_path / "IMG_2.xmp"
    good.write_bytes(xmp.build_xmp({"Exposure": 5}, raw=False))
    code, out, err = cli(capsys, "import-xmp", bad, good, "-o", tmp_path / "x.json")
    assert code == 2
    code, out, err = cli(capsys, "import-xmp", bad, good, "--json")  # one bad file never stops the others
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 1 and "DOCTYPE" in lines[0]["error"] and lines[1]["adjustments"] == {"Exposure": 5}
    assert lines[1]["photo"] == str(tmp_path / "IMG_2.jpg") and Path(lines[1]["plan_path"]).is_file()


def test_which_photo_a_sidecar_belongs_to(tmp_path):
    """Adobe's IMG.xmp belongs to the raw of a RAW+JPEG pair; --photo overrides; none found: no source."""
    data = strip_monet(xmp.build_xmp({"Contrast": 20}, raw=False))
    side = tmp_path / "IMG_7.xmp"
    side.write_bytes(data)
    r = xmp.import_xmp(side)
    assert r.photo is None and r.plan.source is None and any("no source" in n for n in r.notes)
    with pytest.raises(UsageError, match="--photo"):
        xmp.save_imported_plan(r)
    jpg = fx.make_jpeg(tmp_path / "IMG_7.JPG", fx.astronaut())
    assert xmp.import_xmp(side).photo == jpg
    raw = tmp_path / "IMG_7.NEF"
    raw.write_bytes(b"raw")
    assert xmp.import_xmp(side).photo == raw
    assert xmp.import_xmp(side, photo=jpg).plan.source.name == "IMG_7.JPG"
    out = xmp.save_imported_plan(xmp.import_xmp(side, photo=jpg), tmp_path / "mine.json")
    assert load_plan(out).adjustments == {"Contrast": 20}


def test_output_names_are_checked(tmp_path):
    photo = fx.make_jpeg(tmp_path / "p.jpg", fx.astronaut())
    with pytest.raises(UsageError, match="format"):
        xmp.export_xmp(photo, SAMPLE, embed=True, output=tmp_path / "p.tif")
    with pytest.raises(UsageError, match=r"\.xmp"):
        xmp.export_xmp(photo, SAMPLE, output=tmp_path / "p.json")
    r = xmp.export_xmp(photo, SAMPLE, output=tmp_path / "p.jpg.xmp", as_shot=xmp.AsShot(5000, 0, "t"))
    assert any("raw files only" in n for n in r.notes) and any("--embed" in n for n in r.notes)
    assert xmp.import_xmp(photo).xmp == tmp_path / "p.jpg.xmp"  # darktable's name is found too


def test_help_lists_examples(capsys):
    for cmd in ("export-xmp", "import-xmp"):
        code, out, _ = cli(capsys, cmd, "--help")
        assert code == 0 and "Examples" in out
