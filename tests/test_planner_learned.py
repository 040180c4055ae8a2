"""auto v2 (planners.learned, auto_fit): the shipped weights, the fit, the measured gains, the
gain-vs-risk choice, the reasoning, and the independent degradations it is scored on."""

from __future__ import annotations

import numpy as np
import pytest

from monet_cli import auto_fit as af
from monet_cli import degrade as dg
from monet_cli.catalog import STAGES
from monet_cli.planners import get_planner, make_proxy, plan_proxy
from monet_cli.planners.learned import (
    CANDIDATES,
    LearnedModel,
    LearnedPlanner,
    StageModel,
    WeightsError,
    candidates,
    choose,
    feature_names,
    features,
    load_model,
    weights_path,
)
from monet_cli.render import render_linear

skimage_data = pytest.importorskip("skimage.data")


def _photo(name: str, side: int = 256) -> np.ndarray:
    return make_proxy(dg.srgb8_to_working(getattr(skimage_data, name)()[..., :3]), side)


# ----------------------------------------------------------------------------- shipped weights


def test_shipped_model_loads_from_package_data_and_is_small():
    path = weights_path()
    assert path.is_file() and path.stat().st_size <= 2 * 1024 * 1024
    model = load_model(path)
    assert model.features == feature_names()
    assert set(model.stages) == {"lighting", "color"}
    assert all(model.stages[st].outputs == CANDIDATES[st] for st in model.stages)
    assert model.meta["photos"] >= 20 and model.meta["samples"] >= 500
    assert np.all(model.stages["lighting"].calibration > 0)


def test_default_backend_is_the_learned_planner_and_rules_stay_available():
    auto, rules = get_planner("auto"), get_planner("rules")
    assert isinstance(auto, LearnedPlanner) and auto.name == "auto" and auto.model == "auto-v2+caution-medium"
    assert rules.name == "rules"
    with pytest.raises(Exception, match="the rules backend takes no option --model"):
        get_planner("rules", model="x")


def test_plans_are_deterministic_and_grounded():
    proxy = _photo("coffee")
    a = plan_proxy(proxy, get_planner("auto")).to_dict()
    b = plan_proxy(proxy, LearnedPlanner()).to_dict()
    a.pop("created"), b.pop("created")
    assert a == b
    assert a["planner"]["backend"] == "auto" and a["planner"]["model"] == "auto-v2+caution-medium"
    for stage in STAGES:
        assert a["stages"][stage]["status"] in ("ok", "no_change") and a["stages"][stage]["reasoning"]
    text = " ".join(r["issue"] for r in a["stages"]["lighting"]["reasoning"])
    assert "median luminance" in text  # the words say what was measured


def test_a_badly_underexposed_photo_is_brightened_and_good_photos_are_left_alone():
    from monet_cli.metrics import mean_delta_e2000

    x = _photo("astronaut")
    under = dg.save_like_8bit(x * 2.0**-2.0)
    plan = plan_proxy(under, get_planner("auto"))
    assert plan.adjustments.get("Exposure", 0) >= 40
    ref8 = dg.working_to_srgb8(x)
    before = mean_delta_e2000(ref8, dg.working_to_srgb8(under))
    after = mean_delta_e2000(ref8, dg.working_to_srgb8(render_linear(under, plan.adjustments)))
    assert after < 0.5 * before
    for name in ("astronaut", "coffee", "chelsea"):
        assert plan_proxy(_photo(name), get_planner("auto")).adjustments == {}


def test_hsl_changes_come_only_from_styles_and_instructions():
    t = np.linspace(0.05, 0.6, 96, dtype=np.float32)[None, :, None]
    x = np.repeat(t * np.array([1.0, 0.9, 0.8], np.float32), 64, axis=0)
    x[:32] = t * np.array([1.2, 0.02, 0.02], np.float32)  # half the image: reds pinned to the gamut edge
    assert get_planner("rules").plan_stage("hsl", x).adjustments  # the analytic rule tones a band down
    sp = get_planner("auto").plan_stage("hsl", x)
    assert sp.status == "no_change" and "left to a style" in sp.reasoning[0].issue
    sky = _photo("astronaut")
    sp = get_planner("auto").plan_stage("hsl", sky, instructions="more vivid reds")
    assert sp.adjustments == {"SaturationAdjustmentRed": 20}


def test_styles_and_instructions_still_apply():
    proxy = _photo("chelsea")
    plain = plan_proxy(proxy, get_planner("auto")).adjustments
    vivid = plan_proxy(proxy, get_planner("auto"), style="vibrant", instructions="much warmer").adjustments
    assert vivid.get("Contrast", 0) - plain.get("Contrast", 0) == pytest.approx(15, abs=1)
    assert vivid.get("Temperature", 0) - plain.get("Temperature", 0) == pytest.approx(30, abs=1)


def test_plan_time_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from monet_cli.planners import get_planner, plan_proxy;"
            "plan_proxy(np.full((64, 96, 3), 0.05, np.float32), get_planner('auto'));"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- weights files


def _tiny_model(gains_members, calibration=1.0) -> LearnedModel:
    """A model whose members predict constant lighting gains (ΔE, one row per member, in the
    order of CANDIDATES["lighting"]) whatever the photo, and no colour gain."""
    F = len(feature_names())
    K = len(gains_members)

    def stage(outputs, g):
        O = len(outputs)
        return StageModel(outputs=outputs, mean=np.zeros(F), scale=np.ones(F), W1=np.zeros((K, F, 4)),
                          b1=np.zeros((K, 4)), W2=np.zeros((K, 4, O)), b2=np.asarray(g, dtype=float) / 5.0,
                          out_scale=5.0, calibration=np.full(O, calibration))

    return LearnedModel(stages={"lighting": stage(CANDIDATES["lighting"], gains_members),
                                "color": stage(CANDIDATES["color"], [[0.0] * 4] * K)},
                        features=feature_names(), meta={"name": "tiny", "photos": 1})


def test_save_and_load_round_trip(tmp_path):
    m = _tiny_model([[0, 0, 1.0, 0, 0], [0, 0, 3.0, 0, 0]])
    path = m.save(tmp_path / "w.npz")
    back = load_model(path)
    assert back.meta == m.meta and back.stages["lighting"].outputs == CANDIDATES["lighting"]
    p = back.stages["lighting"].predict(np.zeros(len(feature_names())))
    assert p.mu == pytest.approx([0, 0, 2.0, 0, 0]) and p.s == pytest.approx([0, 0, 1.0, 0, 0]) and p.choice == "grey"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "shape", "missing", "features", "nan", "outputs"])
def test_corrupt_weights_are_refused_with_one_line(tmp_path, damage):
    path = _tiny_model([[0, 0, 1.0, 0, 0], [0, 0, 3.0, 0, 0]]).save(tmp_path / "w.npz")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
        if damage == "shape":
            d["lighting.W1"] = d["lighting.W1"][:, :3]
        elif damage == "missing":
            del d["color.b2"]
        elif damage == "features":
            d["features"] = d["features"][::-1]
        elif damage == "outputs":
            d["color.outputs"] = d["color.outputs"][::-1]
        else:
            d["lighting.b2"] = d["lighting.b2"] * np.nan
        np.savez(path, **d)
    with pytest.raises(WeightsError) as e:
        LearnedPlanner(weights=path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    with pytest.raises(WeightsError, match="missing"):
        load_model(tmp_path / "nothing.npz")


# ----------------------------------------------------------------------------- first, do no harm


def test_choose_takes_the_best_gain_net_of_its_risk_or_nothing():
    names = ("a", "b", "c")
    assert choose(names, [1.0, 2.0, 0.5], [0.1, 1.5, 0.0]) == "a"  # 0.9 beats 0.5 and 0.5
    assert choose(names, [1.0, 2.0, 0.5], [1.0, 2.5, 0.45]) is None  # nothing nets 0.1 ΔE
    assert choose(names, [-1.0, -0.2, 0.0], [0.0, 0.0, 0.0]) is None  # every candidate hurts


def _two_member_model() -> StageModel:
    """A stage model whose two members predict fixed gains (1.0 and 3.0 for 'a', -1 for 'b'):
    mean 2.0 with spread 1.0 for 'a'."""
    F = len(feature_names())
    W1 = np.zeros((2, F, 1))
    b1 = np.zeros((2, 1))
    W2 = np.zeros((2, 1, 2))
    b2 = np.array([[1.0, -1.0], [3.0, -1.0]])
    return StageModel(outputs=("a", "b"), mean=np.zeros(F), scale=np.ones(F), W1=W1, b1=b1, W2=W2, b2=b2,
                      out_scale=1.0, calibration=np.array([2.5, 1.0]))


def test_caution_decides_how_much_of_the_predicted_error_counts():
    sm = _two_member_model()
    x = np.zeros(len(feature_names()))
    high = sm.predict(x)  # 2.0 - 2.5 < 0.1: hold back
    assert high.mu[0] == pytest.approx(2.0) and high.s[0] == pytest.approx(2.5) and high.choice is None
    assert sm.predict(x, risk=0.5).choice == "a"  # 2.0 - 1.25 > 0.1
    assert sm.predict(x, risk=0.25).choice == "a"


def test_caution_option_is_checked_recorded_and_kept_by_a_replan(tmp_path):
    from monet_cli.errors import UsageError
    from monet_cli.planners.learned import caution_of

    assert get_planner("auto", caution="medium").model == "auto-v2+caution-medium"
    assert get_planner("auto").model == "auto-v2+caution-medium"  # the default
    assert get_planner("auto", caution="high").model == "auto-v2+caution-high"
    assert caution_of("auto-v2+caution-low") == "low"
    assert caution_of("auto-v2") == "high"  # planned before --caution existed
    assert caution_of("something-else") is None
    with pytest.raises(UsageError, match="expected one of high, medium, low"):
        get_planner("auto", caution="reckless")
    with pytest.raises(UsageError, match="--caution is an option of the auto backend"):
        get_planner("rules", caution="low")
    # a dark photo: with low caution the lighting stage acts where high caution may hold back,
    # and the plan's reasoning names the caution it was planned with
    proxy = _photo("coffee", 256) * np.float32(2.0**-1.2)
    low = plan_proxy(proxy, get_planner("auto", caution="low"))
    assert low.planner.model == "auto-v2+caution-low"
    text = " ".join(r.solution + r.issue for r in low.stages["lighting"].reasoning)
    assert "caution low" in text
    # the colour stage keeps full caution whatever --caution says (module constant CAUTION_STAGES)
    from monet_cli.planners.learned import risk_of

    assert risk_of("low", "lighting") == 0.25 and risk_of("medium", "lighting") == 0.5
    assert risk_of("low", "color") == 1.0
    assert "caution" not in " ".join(r.solution + r.issue for r in low.stages["color"].reasoning)


def test_candidates_are_the_documented_plans():
    x = _photo("coffee", 128) * np.float32(2.0**-1.5)  # dark: the grey candidate brightens
    _, m, small, rules = features(x)
    light = candidates("lighting", m, small, rules)
    assert tuple(light) == CANDIDATES["lighting"]
    ev = 50 * np.log2(0.18 / m.p50)
    assert light["grey"]["Exposure"] == pytest.approx(min(ev, 100), abs=0.5) and light["grey"]["Exposure"] > 40
    assert light["grey/2"]["Exposure"] == pytest.approx(round(min(ev, 100) / 2), abs=1)
    assert all(abs(v - light["rules"][op] / 2) <= 0.5 for op, v in light["rules/2"].items())
    dark_flat = render_linear(_photo("chelsea", 128), {"Exposure": -60, "Contrast": -50})
    _, m, small, rules = features(dark_flat)
    light = candidates("lighting", m, small, rules)
    assert set(light["rules"]) > {"Exposure"} and light["rules"]["Exposure"] > 0  # more than exposure
    assert light["rules-exposure"] == {"Exposure": light["rules"]["Exposure"]}  # the exposure alone
    warm = render_linear(_photo("astronaut", 128), {"Temperature": 60})
    _, m, small, rules = features(warm)
    color = candidates("color", m, small, rules)
    assert tuple(color) == CANDIDATES["color"]
    assert color["grey-world/2"]["Temperature"] < 0 and color["grey-edge/2"]["Temperature"] < 0


def test_held_back_stages_are_explained():
    proxy = _photo("coffee", 96) * np.float32(0.4)
    sure = LearnedPlanner(learned=_tiny_model([[0, 0, 2.0, 0, 0], [0, 0, 2.0, 0, 0]]), caution="high")  # grey: +2, certain
    unsure = LearnedPlanner(learned=_tiny_model([[-2, -2, 3.0, -2, -2], [-2, -2, -1.0, -2, -2]]), caution="high")  # +1 ± 2
    want = candidates("lighting", *features(proxy)[1:])["grey"]
    sp = sure.plan_stage("lighting", proxy)
    assert sp.adjustments == want and sp.adjustments["Exposure"] > 0
    issue = sp.reasoning[0].issue
    assert "The best net of its risk is the exposure that brings the median to middle grey" in issue
    assert "+2.00 ± 0.00" in issue and "median luminance" in issue
    sp = unsure.plan_stage("lighting", proxy)
    assert sp.status == "no_change" and not sp.adjustments
    assert len(sp.reasoning) == 1 and sp.reasoning[0].solution.startswith("Hold back")
    assert "+1.00 ± 2.00" in sp.reasoning[0].solution and "median luminance" in sp.reasoning[0].issue
    # at low caution a quarter of the error counts: +1 - 0.5 > 0.1, so the same prediction acts
    bolder = LearnedPlanner(learned=_tiny_model([[-2, -2, 3.0, -2, -2], [-2, -2, -1.0, -2, -2]]), caution="low")
    sp = bolder.plan_stage("lighting", proxy)
    assert sp.adjustments == want
    assert "The best net of 0.25 × its risk (caution low) is the exposure" in sp.reasoning[0].issue


# ----------------------------------------------------------------------------- fitting


def test_fit_recovers_known_gains_on_a_synthetic_set():
    """Photos under- or over-exposed by known gains: the fitted ensemble predicts the inverse."""
    rng = np.random.default_rng(0)
    base = [_photo(n, 128) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    X, Y, groups = [], [], []
    for i, x in enumerate(base):
        for _ in range(14):
            ev = rng.uniform(-1.0, 1.0)
            X.append(features(dg.save_like_8bit(x * 2.0**ev))[0])
            Y.append([-50.0 * ev])
            groups.append(i)
    model = af.fit_stage(np.array(X), np.array(Y), groups, ("Exposure",), members=3, steps=600, seed=1)
    errs = []
    for i, x in enumerate(base):
        for ev in (-0.8, 0.6):
            p = model.predict(features(dg.save_like_8bit(x * 2.0**ev))[0])
            errs.append(abs(p.mu[0] + 50.0 * ev))
    assert np.mean(errs) < 6.0 and max(errs) < 15.0
    assert model.calibration.shape == (1,) and model.calibration[0] > 0
    again = af.fit_stage(np.array(X), np.array(Y), groups, ("Exposure",), members=3, steps=600, seed=1)
    assert np.array_equal(again.W1, model.W1)  # deterministic


def test_gains_are_measured_against_the_reference():
    x = _photo("astronaut", 128)
    ref8 = dg.working_to_srgb8(x)
    deg = dg.save_like_8bit(render_linear(x, {"Exposure": -40}))
    g, renders = af.gains(deg, ref8, {"undo": {"Exposure": 40}, "none": {}, "worse": {"Exposure": -40}})
    assert g[0] > 3.0 and g[1] == pytest.approx(0.0, abs=1e-9) and g[2] < -3.0
    assert set(renders) == {"undo", "none", "worse"}


def test_make_sample_is_seeded():
    x = _photo("coffee", 192)
    a = af.make_sample("coffee", x, np.random.default_rng(3))
    b = af.make_sample("coffee", x, np.random.default_rng(3))
    assert a.label == b.label and np.array_equal(a.x_lighting, b.x_lighting) and np.array_equal(a.y_color, b.y_color)
    assert a.x_lighting.shape == (len(feature_names()),) and a.y_lighting.shape == (len(CANDIDATES["lighting"]),)


# ----------------------------------------------------------------------------- independent degradations


def test_independent_degradations_are_seeded_and_do_what_they_say():
    x = _photo("astronaut", 64)
    for kind in dg.INDEPENDENT:
        a, pa = dg.degrade(x, kind, 2)
        b, pb = dg.degrade(x, kind, 2)
        assert pa == pb and np.array_equal(a, b) and a.dtype == np.float32 and np.all(np.isfinite(a))
        assert not np.allclose(a, x)
    ev = dg.independent_parameters("x-exposure", 0)["ev"]
    out, _ = dg.independent(x, "x-exposure", 0)
    assert out == pytest.approx(x * 2.0**ev, rel=1e-4, abs=1e-6)
    grey = np.full((4, 4, 3), 0.18, np.float32)
    sat = dg.apply_independent(grey, {"chroma": 1.5}, "x-saturation")
    assert sat == pytest.approx(grey, abs=1e-5)  # greys have no chroma to scale
    lum = dg.apply_independent(grey, {"cast": 0.25, "tint": 0.05}, "x-cast") @ dg.cs.LUMA
    assert lum == pytest.approx(0.18, rel=1e-3)  # a cast keeps luminance
    mid = dg.apply_independent(grey, {"gamma": 1.6}, "x-contrast")
    assert mid == pytest.approx(grey, rel=1e-4)  # the power curve pivots on middle grey
    parts = {k.split(".")[0] for k in dg.independent_parameters("x-mix", 4)}
    assert 2 <= len(parts) <= 3
    with pytest.raises(ValueError, match="independent kinds are"):
        dg.check_kind("x-blur")
    dg.check_kind("under+cool")


def test_edit_stage_replans_later_stages_with_the_plans_caution(tmp_path, monkeypatch):
    from monet_cli import colorspaces as cs
    from monet_cli.images import Image, write_image
    from monet_cli.planners import base
    from monet_cli.sidecars import edit_stage, plan_to_sidecar

    photo = tmp_path / "dark.png"
    px = dg.working_to_srgb8(_photo("coffee", 256) * np.float32(0.5))
    write_image(photo, Image(pixels=px, colorspace=cs.SRGB, format="png"))
    plan_to_sidecar(photo, get_planner("auto", caution="low"))
    seen = []
    real = base.get_planner

    def spy(backend="auto", **options):
        seen.append((backend, options.get("caution")))
        return real(backend, **options)

    monkeypatch.setattr(base, "get_planner", spy)
    out = edit_stage(photo, "lighting", set_values={"Exposure": 12})
    assert seen == [("auto", "low")]
    assert out.plan.planner.model == "auto-v2+caution-low"


def test_the_cv_benchmark_counts_a_crashed_stage_as_a_failure_not_a_score(monkeypatch):
    import sys
    from pathlib import Path

    from monet_cli.planners import learned

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    sys.modules.pop("auto_fit", None)
    import auto_fit as bench

    model = learned.load_model(learned.weights_path())
    ok = bench.score_photo(("coffee", "skimage:coffee", model, [], 1))
    assert [r["kind"] for r in ok] == ["original"] and ok[0]["failed"] == {}
    monkeypatch.setattr(learned, "_DESCRIBE", {})  # the reasoning of every candidate raises KeyError
    rows = bench.score_photo(("coffee", "skimage:coffee", model, [], 1))
    failed = rows[0]["failed"]
    assert set(failed) == {"learned", "learned_medium", "learned_low"}  # not the rules planner
    assert all("KeyError" in e for f in failed.values() for e in f.values())
