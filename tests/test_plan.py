"""The plan schema: building, validation messages that name the field, versions, sidecars."""

import json

import pytest

from monet_cli.errors import PlanError
from monet_cli.plan import (SCHEMA_VERSION, Plan, Reasoning, load_plan, parse_plan_text, save_plan,
                            sidecar_path, source_of)


def full_plan_dict():
    p = Plan.from_adjustments({"Exposure": 15, "Contrast": -5, "Temperature": 12, "HueAdjustmentBlue": -8})
    p.stages["lighting"].reasoning.append(Reasoning("Exposure", "a little dark", "raise exposure slightly"))
    p.stages["hsl"].locked = True
    return p.to_dict()


def test_flat_monetgpt_dict_is_split_by_stage():
    p = Plan.from_adjustments({"Exposure": 15, "Saturation": -10, "LuminanceAdjustmentGreen": 20, "Tint": 0})
    assert p.stages["lighting"].adjustments == {"Exposure": 15}
    assert p.stages["color"].adjustments == {"Saturation": -10}
    assert p.stages["hsl"].adjustments == {"LuminanceAdjustmentGreen": 20}
    assert p.adjustments == {"Exposure": 15, "Saturation": -10, "LuminanceAdjustmentGreen": 20}


def test_round_trip_through_json():
    d = full_plan_dict()
    p = parse_plan_text(json.dumps(d))
    assert p.to_dict() == d
    assert p.stages["hsl"].locked is True
    assert p.stages["lighting"].reasoning[0].issue == "a little dark"


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d["stages"]["lighting"]["adjustments"].update(Exposure="high"), "stages.lighting.adjustments.Exposure"),
    (lambda d: d["stages"]["lighting"]["adjustments"].update(Saturation=10), "Saturation belongs to stage 'color'"),
    (lambda d: d["stages"]["color"]["adjustments"].update(Temperature=300), "stages.color.adjustments.Temperature"),
    (lambda d: d["stages"]["color"]["adjustments"].update(Warmth=3), "unknown operation 'Warmth'"),
    (lambda d: d["stages"].update(sharpen={}), "unknown stage"),
    (lambda d: d["stages"]["hsl"].update(locked="yes"), "stages.hsl.locked"),
    (lambda d: d["stages"]["hsl"].update(status="great"), "stages.hsl.status"),
    (lambda d: d["stages"]["lighting"]["reasoning"].append({"adjustment": 1}), "stages.lighting.reasoning[1]"),
    (lambda d: d.update(version="1"), "version"),
    (lambda d: d.update(schema="other"), "schema"),
    (lambda d: d.update(source={"name": "a"}), "source"),
])
def test_invalid_plans_name_the_field(mutate, field):
    d = full_plan_dict()
    mutate(d)
    with pytest.raises(PlanError) as e:
        Plan.from_dict(d)
    assert field in str(e.value)


def test_newer_schema_is_refused_with_advice():
    d = full_plan_dict()
    d["version"] = SCHEMA_VERSION + 1
    with pytest.raises(PlanError, match="newer monet"):
        Plan.from_dict(d)


def test_older_or_missing_fields_get_defaults():
    p = Plan.from_dict({"schema": "monet.plan", "version": 1, "stages": {"lighting": {"adjustments": {"Exposure": 5}}}})
    assert p.adjustments == {"Exposure": 5}
    assert p.stages["color"].status == "ok" and not p.stages["color"].locked


@pytest.mark.parametrize("text,msg", [
    ("{not json", "not valid JSON"),
    ('{"Exposure": NaN}', "not valid JSON"),
    ('{"Exposure": Infinity}', "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"Exposure": null}', "expected a number"),
])
def test_bad_plan_text(text, msg):
    with pytest.raises(PlanError, match=msg):
        parse_plan_text(text)


def test_sidecar_keeps_the_full_file_name(tmp_path):
    assert sidecar_path(tmp_path / "IMG_0042.CR2").name == "IMG_0042.CR2.monet.json"
    assert sidecar_path(tmp_path / "IMG_0042.JPG") != sidecar_path(tmp_path / "IMG_0042.CR2")
    assert sidecar_path(tmp_path / "a.tif", tmp_path / "side") == tmp_path / "side" / "a.tif.monet.json"


def test_save_and_load(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"abc")
    p = Plan.from_adjustments({"Exposure": 10})
    p.source = source_of(photo)
    path = save_plan(p, sidecar_path(photo))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.jpg", "a.jpg.monet.json"]
    q = load_plan(path)
    assert q.source.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert q.adjustments == {"Exposure": 10}


@pytest.mark.parametrize("setup,msg", [
    (lambda p: None, "no such plan file"),
    (lambda p: p.mkdir(), "is a directory"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not a text"),
    (lambda p: p.write_text(""), "not valid JSON"),
])
def test_load_plan_errors_name_the_file(tmp_path, setup, msg):
    p = tmp_path / "plan.json"
    setup(p)
    with pytest.raises(PlanError, match=msg) as e:
        load_plan(p)
    assert "plan.json" in str(e.value)
