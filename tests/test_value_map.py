"""Value maps (monet_cli.value_map): the shipped monetgpt-7b map is valid and complete, tables
are checked when a preset is read, the map is applied only where a preset has one (or where
--value-map asks), the model's values and the rendered ones are both recorded in the plan,
survive its JSON, `monet show`, `monet edit-stage` (a photographer's own value is never
remapped) and `monet export-xmp --values`; the fitting helpers recover a known map."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_openai_backend import Server, chat_reply  # the scripted OpenAI-compatible server

from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import MonetError, PlanError, UsageError
from monet_cli.models import _preset_from, presets
from monet_cli.plan import Plan, StagePlan, parse_plan_text
from monet_cli.value_map import (ValueMap, best_value, isotonic, monotone_points, parse_value_map,
                                 resolve_value_map)

HALF = {"ops": {"Exposure": {"points": [[-100, -50], [0, 0], [100, 50]], "rule": "half"},
                "HueAdjustmentAqua": {"points": [[-100, 0], [0, 0], [100, 0]]}}}


# ----------------------------------------------------------------------------- the shipped map


def test_monetgpt_preset_ships_a_complete_monotone_map_and_the_others_none():
    vm = presets()["monetgpt-7b"].value_map
    assert isinstance(vm, ValueMap) and vm.ident.startswith("monetgpt-7b@")
    assert {m.op for m in vm.ops} == set(catalog().ops)  # every one of the 33 ops has a row
    for m in vm.ops:
        ys = [m(x) for x in np.linspace(-100, 100, 401)]
        d = np.diff(ys)
        assert (d >= -1e-9).all() or (d <= 1e-9).all(), m.op  # monotone between the points too
        assert m(0) == 0.0 and vm.map_value(m.op, 0) == 0.0, m.op
        assert m.rule, m.op  # each row says which published rule it reproduces
        for target, pts in m.adds:  # what a row adds to other ops of its stage: the same rules
            added = [m.added(x)[target] for x in np.linspace(-100, 100, 401)]
            d = np.diff(added)
            assert (d >= -1e-9).all() or (d <= 1e-9).all(), (m.op, target)
            assert m.added(0)[target] == 0.0 and catalog().ops[target].stage == catalog().ops[m.op].stage
    assert vm.map_values({}) == {} and all(vm.map_values({op: 0}) == {} for op in catalog().ops)
    # the published stage 3 drops these hue shifts: the map renders them as nothing
    for band in ("Yellow", "Green", "Aqua", "Blue"):
        assert vm.map_value(f"HueAdjustment{band}", 60) == 0.0
    # published Exposure is applied to gamma-encoded values: stronger than monet's linear scale,
    # so the map raises small positive values; it never flips a sign
    assert 0 < vm.map_value("Exposure", 30) and vm.map_value("Exposure", -60) < 0
    # negative Contrast is divided by three there: the map damps it, positive values much less
    assert abs(vm.map_value("Contrast", -60)) < 0.6 * 60 < vm.map_value("Contrast", 60)
    for name, p in presets().items():
        if name != "monetgpt-7b":
            assert p.value_map is None, name


@pytest.mark.parametrize("row, message", [
    ({"NoSuchOp": {"points": [[0, 0], [1, 1]]}}, "unknown operation"),
    ({"Exposure": {"points": [[0, 0]]}}, "at least two points"),
    ({"Exposure": {"points": [[-10, -5], [0, 0], [10, 20], [20, 10]]}}, "monotone"),
    ({"Exposure": {"points": [[-10, -5], [10, 5]]}}, "[0, 0]"),
    ({"Exposure": {"points": [[0, 0], [0, 5]]}}, "strictly increasing"),
    ({"Exposure": {"points": [[0, 0], [50, 5], [20, 2]]}}, "strictly increasing"),
    ({"Exposure": {"points": [[0, 0], [100, 150]]}}, "outside"),
    ({"Exposure": {"points": [[0, 0], [50, True]]}}, "finite number"),
    ({"Exposure": {"points": [[0, 0], [50, "x"]]}}, "finite number"),
    ({"Exposure": {"points": [[0, 0], [50]]}}, "[model, monet]"),
    ({"Exposure": [[0, 0], [50, 5]]}, "points"),
])
def test_bad_tables_are_refused_when_the_preset_is_read(tmp_path, row, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_value_map({"ops": row}, "x")
    raw = {"name": "x", "architecture": "qwen2-vl", "hub_id": "a/b", "value_map": {"ops": row}}
    with pytest.raises(MonetError, match="bad model preset"):
        _preset_from(raw, tmp_path / "x.yaml")
    with pytest.raises(ValueError, match="value_map"):
        parse_value_map({"ops": {}}, "x")


def test_mapping_values_and_stages():
    vm = parse_value_map(HALF, "half")
    assert vm.map_value("Exposure", 33) == 16.5 and vm.map_value("Exposure", -100) == -50
    assert vm.map_value("Contrast", 40) == 40  # no row: unchanged
    assert vm.map_values({"Exposure": 1, "Contrast": -7, "HueAdjustmentAqua": 30}) == {"Exposure": 0.5, "Contrast": -7}
    sp = vm.apply(StagePlan(adjustments={"Exposure": 40, "Contrast": 10}))
    assert sp.adjustments == {"Exposure": 20, "Contrast": 10} and sp.model_adjustments == {"Exposure": 40, "Contrast": 10}
    assert vm.apply(sp) is sp  # already mapped: never twice
    gone = vm.apply(StagePlan(adjustments={"HueAdjustmentAqua": 30}))
    assert gone.status == "no_change" and gone.adjustments == {} and gone.model_adjustments == {"HueAdjustmentAqua": 30}
    assert "HueAdjustmentAqua +30" in gone.reasoning[-1].issue
    for untouched in (StagePlan(status="failed", error="x"), StagePlan(status="no_change")):
        assert vm.apply(untouched) is untouched


def test_a_row_may_add_to_other_ops_of_its_stage():
    vm = parse_value_map({"ops": {
        "Blacks": {"points": [[-100, -100], [0, 0], [100, 0]],
                   "adds": {"Contrast": [[-100, 0], [0, 0], [100, 40]], "Exposure": [[0, 0], [100, 10]]}},
        "Contrast": {"points": [[-100, -50], [0, 0], [100, 100]]}}}, "coupled")
    assert vm.map_values({"Blacks": 50}) == {"Contrast": 20, "Exposure": 5}  # its own table gives 0
    assert vm.map_values({"Blacks": 50, "Contrast": 30}) == {"Contrast": 50, "Exposure": 5}  # summed
    assert vm.map_values({"Blacks": 100, "Contrast": 90}) == {"Contrast": 100, "Exposure": 10}  # clamped
    assert vm.map_values({"Blacks": -50}) == {"Blacks": -50}
    sp = vm.apply(StagePlan(adjustments={"Blacks": 50}))
    assert sp.adjustments == {"Contrast": 20, "Exposure": 5} and sp.model_adjustments == {"Blacks": 50}
    plain = parse_value_map({"ops": {"Blacks": {"points": [[-100, -100], [0, 0], [100, 0]]}}}, "coupled")
    assert plain.ident != vm.ident  # the adds are part of what the map is
    for adds, message in (({"Temperature": [[0, 0], [100, 5]]}, "belongs to stage 'color'"),
                          ({"Blacks": [[0, 0], [100, 5]]}, "adds to itself"),
                          ({"Nope": [[0, 0], [100, 5]]}, "unknown operation"),
                          ({"Contrast": [[0, 0], [50, 9], [100, 5]]}, "monotone"),
                          ({"Contrast": [[10, 5], [100, 5]]}, r"\[0, 0\]"),
                          ([1, 2], "adds: expected an object")):
        with pytest.raises(ValueError, match=message):
            parse_value_map({"ops": {"Blacks": {"points": [[0, 0], [100, 5]], "adds": adds}}}, "x")


def test_resolve_value_map():
    own = presets()["monetgpt-7b"]
    assert resolve_value_map(None, own) is own.value_map
    assert resolve_value_map(None, None) is None and resolve_value_map("none", own) is None
    assert resolve_value_map("monetgpt-7b", None) is own.value_map
    assert resolve_value_map(own.value_map.ident, None) is own.value_map  # as a plan records it
    with pytest.raises(UsageError, match="has no value map"):
        resolve_value_map("qwen2.5-vl-7b", None)
    with pytest.raises(UsageError, match="not a model preset"):
        resolve_value_map("nope", None)


# ----------------------------------------------------------------------------- the plan


def test_plan_json_keeps_both_values_and_checks_them():
    plan = Plan()
    plan.stages["lighting"] = StagePlan(adjustments={"Exposure": 20.5}, model_adjustments={"Exposure": 40})
    plan.stages["color"] = StagePlan(adjustments={"Tint": 3})  # the photographer's own: no model value
    plan.planner.value_map = "monetgpt-7b@0123456789ab"
    back = parse_plan_text(plan.to_json())
    assert back.stages["lighting"].model_adjustments == {"Exposure": 40}
    assert back.stages["color"].model_adjustments is None and back.planner.value_map == "monetgpt-7b@0123456789ab"
    assert back.adjustments == {"Exposure": 20.5, "Tint": 3} and back.model_adjustments == {"Exposure": 40, "Tint": 3}
    assert "model_adjustments" not in json.loads(Plan().to_json())["stages"]["lighting"]
    assert "value_map" not in json.loads(Plan().to_json())["planner"]
    d = json.loads(plan.to_json())
    d["stages"]["lighting"]["model_adjustments"] = {"Tint": 4}
    with pytest.raises(PlanError, match="model_adjustments: Tint belongs to stage 'color'"):
        Plan.from_dict(d)
    d["stages"]["lighting"]["model_adjustments"] = {"Exposure": 400}
    with pytest.raises(PlanError, match="outside"):
        Plan.from_dict(d)


# ----------------------------------------------------------------------------- the planners


ANSWERS = {
    "lighting": ("**Adjustment:** Exposure\n**Issue:** Dark.\n**Solution:** Brighten.",
                 '```json\n{"Exposure": 40, "Contrast": -60}\n```'),
    "color": ("**Adjustment:** Temperature\n**Issue:** Cool.\n**Solution:** Warm it.",
              '```json\n{"Temperature": -30, "Saturation": 20}\n```'),
    "hsl": ("**Adjustment:** Aqua hue\n**Issue:** Off.\n**Solution:** Shift.",
            '```json\n{"HueAdjustmentAqua": 30, "LuminanceAdjustmentRed": 10}\n```'),
}


def _answer(body: dict) -> dict:
    first_user = body["messages"][1]["content"][1]["text"]
    stage = "lighting" if "[Exposure," in first_user else "color" if "[Temperature," in first_user else "hsl"
    return chat_reply(ANSWERS[stage][0 if len(body["messages"]) == 2 else 1])


@pytest.fixture
def server():
    s = Server(default=_answer)
    yield s
    s.close()


def _plan(server, **kw):
    from monet_cli.planners.base import get_planner, plan_proxy

    planner = get_planner("openai", endpoint=server.url, backoff=0.01, **kw)
    return plan_proxy(np.full((40, 60, 3), 0.12, np.float32), planner)


def test_the_map_is_applied_only_for_presets_that_have_one(server):
    vm = presets()["monetgpt-7b"].value_map
    said = {s: json.loads(ANSWERS[s][1].strip("`json\n")) for s in STAGES}
    mapped = _plan(server, model="monetgpt-7b")
    assert mapped.planner.value_map == vm.ident
    for s in STAGES:
        sp = mapped.stages[s]
        assert sp.model_adjustments == said[s], s
        assert sp.adjustments == vm.map_values(said[s]), s
    assert "HueAdjustmentAqua" not in mapped.stages["hsl"].adjustments  # dropped by the published stage 3
    assert mapped.stages["lighting"].adjustments != said["lighting"]
    by_hub_id = _plan(server, model="niladridutt/monetGPT")  # a server that serves it under its hub id
    assert by_hub_id.planner.value_map == vm.ident
    for kw in ({"model": "qwen2.5-vl-7b"}, {"model": "monetgpt-7b", "value_map": "none"}):
        raw = _plan(server, **kw)
        assert raw.planner.value_map is None, kw
        for s in STAGES:
            assert raw.stages[s].adjustments == said[s] and raw.stages[s].model_adjustments is None, (kw, s)
    asked = _plan(server, model="my-finetune", value_map="monetgpt-7b")  # a model of known weights
    assert asked.stages["lighting"].adjustments == mapped.stages["lighting"].adjustments
    with pytest.raises(UsageError, match="has no value map"):
        _plan(server, model="monetgpt-7b", value_map="qwen2.5-vl-7b")
    from monet_cli.planners.base import get_planner

    with pytest.raises(UsageError, match="--value-map"):
        get_planner("auto", value_map="none")


def test_edit_stage_never_remaps_the_photographers_values(server, tmp_path, monkeypatch):
    from PIL import Image

    from monet_cli.planners.base import get_planner
    from monet_cli.sidecars import edit_stage, plan_to_sidecar, read_sidecar

    monkeypatch.setenv("MONET_OPENAI_ENDPOINT", server.url)
    vm = presets()["monetgpt-7b"].value_map
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(photo)
    first = plan_to_sidecar(photo, get_planner("openai", model="monetgpt-7b", backoff=0.01)).plan
    assert first.stages["lighting"].adjustments == vm.map_values({"Exposure": 40, "Contrast": -60})
    edit_stage(photo, "lighting", set_values={"Exposure": 12.0})
    plan = read_sidecar(photo)[0]
    light = plan.stages["lighting"]
    assert light.adjustments["Exposure"] == 12.0  # as typed, not through the map
    assert light.adjustments["Contrast"] == first.stages["lighting"].adjustments["Contrast"]  # kept as rendered
    assert light.model_adjustments == {"Contrast": -60}  # the model said nothing behind Exposure 12
    color = plan.stages["color"]  # re-planned, through the map as the plan was made
    assert color.model_adjustments == {"Temperature": -30, "Saturation": 20}
    assert color.adjustments == vm.map_values(color.model_adjustments)
    assert plan.planner.value_map == vm.ident and len(plan.history) == 1
    edit_stage(photo, "lighting", unset=["Contrast"], replan=False)
    assert read_sidecar(photo)[0].stages["lighting"].model_adjustments is None

    raw_photo = tmp_path / "raw.png"  # planned without the map: re-planned without it
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(raw_photo)
    plan_to_sidecar(raw_photo, get_planner("openai", model="monetgpt-7b", backoff=0.01, value_map="none"))
    edit_stage(raw_photo, "lighting", set_values={"Exposure": 12.0})
    again = read_sidecar(raw_photo)[0]
    assert again.stages["color"].adjustments == {"Temperature": -30, "Saturation": 20}
    assert again.stages["color"].model_adjustments is None and again.planner.value_map is None


def run(main, *args) -> int:
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code or 0
    return 0


def test_show_and_export_xmp_give_either_value(server, tmp_path, capsys):
    from PIL import Image

    from monet_cli.cli import main
    from monet_cli.planners.base import get_planner
    from monet_cli.sidecars import plan_to_sidecar
    from monet_cli.xmp import export_xmp, import_xmp

    vm = presets()["monetgpt-7b"].value_map
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(photo)
    out = plan_to_sidecar(photo, get_planner("openai", model="monetgpt-7b", endpoint=server.url, backoff=0.01))
    assert run(main, "show", photo) == 0
    shown = capsys.readouterr().out
    rendered = vm.map_value("Exposure", 40)
    assert f"{rendered:+g}" in shown and "(model +40)" in shown and "value map renders no change" in shown
    assert vm.ident in shown

    r = export_xmp(photo, out.plan, output=tmp_path / "r.xmp")
    m = export_xmp(photo, out.plan, output=tmp_path / "m.xmp", values="model")
    assert any("--values model" in n for n in r.notes)
    back_r = import_xmp(tmp_path / "r.xmp", photo=photo).adjustments
    back_m = import_xmp(tmp_path / "m.xmp", photo=photo).adjustments
    assert back_r == out.plan.adjustments and back_m == out.plan.model_adjustments
    assert back_m["Exposure"] == 40 and back_r["Exposure"] == rendered
    with pytest.raises(UsageError):
        export_xmp(photo, out.plan, output=tmp_path / "x.xmp", values="both")
    assert run(main, "export-xmp", photo, "--values", "model", "-o", tmp_path / "cli.xmp", "--json") == 0
    tags = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["tags"]
    assert tags["crs:Exposure2012"] == m.tags["Exposure2012"] != r.tags["Exposure2012"]


# ----------------------------------------------------------------------------- fitting


def test_isotonic_and_monotone_points():
    assert isotonic([1, 3, 2, 4]).tolist() == [1, 2.5, 2.5, 4]
    assert isotonic([4, 2, 3, 1], increasing=False).tolist() == [4, 2.5, 2.5, 1]
    pts = monotone_points([-20, -10, 10, 20], [-9, 3, 6, 11])  # a noisy fit; (0, 0) is added and held
    xs, ys = zip(*pts)
    assert xs == (-20, -10, 0, 10, 20) and ys[2] == 0 and all(b >= a for a, b in zip(ys, ys[1:]))
    down = monotone_points([-10, 0, 10], [8, 0, -7])  # an op the reference renders the other way round
    assert [p[1] for p in down] == [8, 0, -7]


def test_fitting_recovers_a_known_map():
    """The reference is monet's own Exposure at 0.6 × the value plus 5: the fit finds it."""
    from monet_cli.metrics import delta_e2000, srgb_rendition, srgb_to_lab
    from monet_cli.render import render_linear

    rng = np.random.default_rng(3)
    img = (rng.random((24, 32, 3)) ** 2.2 * 0.8).astype(np.float32)

    def lab(m):
        return srgb_to_lab(srgb_rendition(render_linear(img, {"Exposure": m}) if m else img, bits=None))

    grid = [-60, -30, 30, 60]
    best = []
    for v in grid:
        target = lab(0.6 * v + 5)
        best.append(best_value(lambda m: float(np.mean(delta_e2000(target, lab(m))))))
    assert np.allclose(best, [0.6 * v + 5 for v in grid], atol=0.5)
    table = dict((a, b) for a, b in monotone_points(grid, best))
    assert table[0] == 0 and abs(table[60] - 41) <= 0.5


def test_apply_renders_a_published_flat_plan_through_the_map(tmp_path, capsys):
    from PIL import Image

    from monet_cli.cli import main

    vm = presets()["monetgpt-7b"].value_map
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(photo)
    flat = tmp_path / "their_output.json"  # what the published MonetGPT code writes
    flat.write_text(json.dumps({"Exposure": 15, "Contrast": 20, "HueAdjustmentBlue": 30}))
    assert run(main, "apply", photo, flat, "-o", tmp_path / "mapped.png", "--value-map", "monetgpt-7b", "--json") == 0
    mapped = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert mapped["adjustments"] == vm.map_values({"Exposure": 15, "Contrast": 20, "HueAdjustmentBlue": 30})
    assert "HueAdjustmentBlue" not in mapped["adjustments"]
    assert run(main, "apply", photo, flat, "-o", tmp_path / "as-said.png", "--json") == 0
    said = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert said["adjustments"] == {"Exposure": 15, "Contrast": 20, "HueAdjustmentBlue": 30}
    a = np.asarray(Image.open(tmp_path / "mapped.png"), float)
    b = np.asarray(Image.open(tmp_path / "as-said.png"), float)
    assert a.mean() > b.mean() + 2  # published Exposure +15 is brighter than monet's +15
    assert run(main, "apply", photo, "--value-map", "monetgpt-7b", "-o", tmp_path / "x.png") == 2
    assert "applies to a plan file" in capsys.readouterr().err
