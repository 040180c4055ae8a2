"""Puzzles A, B, C from expert photos (monet_cli.puzzles): sampling config, determinism,
every kind's record and answer, invisible draws rejected, resume after an interrupt, stats,
and the CLI. Real photos (scikit-image) at ~100 px proxies keep it fast."""

from __future__ import annotations

import json
from pathlib import Path

import fixtures as fx
import numpy as np
import pytest
from PIL import Image

from monet_cli import puzzles as pz
from monet_cli.catalog import catalog
from monet_cli.degrade import srgb8_to_working, working_to_srgb8
from monet_cli.errors import OutputError, UsageError
from monet_cli.metrics import mean_delta_e2000
from monet_cli.render import render_linear

SMALL = {"images.long_side": 96, "images.check_long_side": 48, "images.facts_long_side": 96}


def small_config(**more) -> dict:
    return pz.load_config(None, **{**SMALL, **more})


def make_experts(folder: Path, names=("astronaut", "coffee", "chelsea")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.fromarray(fx.photo(n, step=4)).save(folder / f"{n}.png")
    return folder


def png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def experts(tmp_path_factory) -> Path:
    return make_experts(tmp_path_factory.mktemp("experts"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, experts) -> Path:
    """24 puzzles of every kind (C with a raised no-change share, so some are there)."""
    out = tmp_path_factory.mktemp("ds") / "puzzles"
    cfg = small_config(**{"c.no_change": 0.25})
    s = pz.generate(experts, out, count=24, seed=3, config=cfg)
    assert s.total_made + s.skipped == 24 and not s.interrupted
    from monet_cli.synth import synthesize

    synthesize(out)
    return out


# ----------------------------------------------------------------------------- config


def test_default_sampling_is_the_papers():
    cfg = pz.load_config()
    assert cfg["stages"] == {"lighting": 0.30, "color": 0.25, "hsl": 0.45}
    assert cfg["c"]["ops"] == {"2": 0.50, "3": 0.35, "4": 0.15}
    assert cfg["sigma"] == {"default": 25, "Exposure": 15, "Temperature": 15, "Tint": 15} and cfg["clip"] == 100
    assert cfg["b"]["base"] == [35, 75] and cfg["b"]["stronger"] == [10, 25] and cfg["b"]["opposite"] == [15, 45]
    assert cfg["images"]["long_side"] == 512


def test_config_merges_and_rejects_bad_settings(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("stages: {hsl: 0}\nsigma: {Contrast: 10}\nimages: {long_side: 256}\n")
    cfg = pz.load_config(f)
    assert cfg["stages"] == {"lighting": 0.30, "color": 0.25, "hsl": 0} and cfg["sigma"]["Contrast"] == 10
    assert cfg["images"]["long_side"] == 256 and cfg["images"]["check_long_side"] == 128
    for bad in ("nope: 1\n", "stages: {dark: 1}\n", "sigma: {Blur: 3}\n", "b: {base: [80, 20]}\n",
                "kinds: {a: 0, b: 0, c: 0}\n", "images: {long_side: 8}\n"):
        f.write_text(bad)
        with pytest.raises(UsageError):
            pz.load_config(f)


def test_normal_draws_have_the_configured_sigma():
    cfg = pz.load_config()
    rng = np.random.default_rng(0)
    exp = np.array([pz._draw_normal(rng, "Exposure", cfg) for _ in range(4000)])
    con = np.array([pz._draw_normal(rng, "Contrast", cfg) for _ in range(4000)])
    assert exp.dtype.kind == "i" and np.all(np.abs(exp) >= 3) and np.all(np.abs(con) <= 100)
    assert 14 < exp.std() < 18 and 23 < con.std() < 28  # σ 15 / 25, a little wider: |v| < 3 redrawn


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_dataset(tmp_path, experts):
    cfg = small_config()
    pz.generate(experts, tmp_path / "one", count=9, seed=11, config=cfg)
    pz.generate(experts, tmp_path / "two", count=9, seed=11, config=cfg)
    pz.generate(experts, tmp_path / "other", count=9, seed=12, config=cfg)
    one = (tmp_path / "one" / pz.MANIFEST_FILE).read_bytes()
    assert one == (tmp_path / "two" / pz.MANIFEST_FILE).read_bytes()
    assert one != (tmp_path / "other" / pz.MANIFEST_FILE).read_bytes()
    for f in (tmp_path / "one" / "images").rglob("*.png"):
        assert f.read_bytes() == (tmp_path / "two" / f.relative_to(tmp_path / "one")).read_bytes()


def test_per_sample_seeds_do_not_depend_on_order():
    a = pz.sample_rng(5, "x/a.jpg", 3, 1).integers(0, 1 << 30, 4)
    pz.sample_rng(5, "x/b.jpg", 0, 1).integers(0, 1 << 30, 4)
    assert np.array_equal(a, pz.sample_rng(5, "x/a.jpg", 3, 1).integers(0, 1 << 30, 4))
    assert not np.array_equal(a, pz.sample_rng(5, "x/a.jpg", 4, 1).integers(0, 1 << 30, 4))


# ----------------------------------------------------------------------------- records


def test_every_kind_is_there_and_records_are_valid(dataset):
    records = pz.read_records(dataset)
    chats = [json.loads(line) for line in (dataset / pz.TRAIN_FILE).read_text().splitlines()]
    assert len(chats) == len(records) and {r["kind"] for r in records} == {"a", "b", "c"}
    assert any(r["truth"].get("no_change") for r in records)
    assert len({r["id"] for r in records}) == len(records)
    cat = catalog()
    for r, chat in zip(records, chats):
        n_images = {"a": 2, "b": 4, "c": 1}[r["kind"]]
        assert len(r["images"]) == n_images and chat["images"] == r["images"]
        for rel in r["images"]:
            im = Image.open(dataset / rel)
            assert im.mode == "RGB" and max(im.size) == 96
        roles = [m["role"] for m in chat["messages"]]
        assert roles[0] == "system" and roles[1:] == ["user", "assistant"] * ((len(roles) - 1) // 2)
        assert sum(m["content"].count("<image>") for m in chat["messages"]) == n_images
        assert all("<image>" not in m["content"] for m in chat["messages"] if m["role"] != "user")
        for op in pz.answer_values(r):
            assert op in cat.ops


def _last_json(chat) -> dict:
    from monet_cli.planners.protocol import extract_json

    return extract_json(chat["messages"][-1]["content"])


def test_puzzle_a_answer_is_the_applied_op(dataset):
    for r, chat in _kind(dataset, "a"):
        t = r["truth"]
        assert _last_json(chat) == {t["op"]: t["value"]}
        assert catalog().stage_of(t["op"]) == t["stage"] and 8 <= abs(t["value"]) <= 90
        before, after = png(dataset / r["images"][0]), png(dataset / r["images"][1])
        redone = working_to_srgb8(render_linear(srgb8_to_working(before), {t["op"]: t["value"]}))
        assert mean_delta_e2000(after, redone) < 0.6  # re-editing the saved 8-bit expert: rounding only
        assert mean_delta_e2000(before, after) >= 1.0


def test_puzzle_b_ranking_best_and_restoring_value(dataset):
    cfg = pz.read_info(dataset)["config"]
    for r, chat in _kind(dataset, "b"):
        t = r["truth"]
        expert = png(dataset / r["expert"])
        des = [mean_delta_e2000(expert, png(dataset / p)) for p in r["images"]]
        assert r["images"][t["best"] - 1] == r["expert"] and t["values"][t["best"] - 1] == 0
        assert sorted(range(1, 5), key=lambda n: des[n - 1]) == t["ranking"]
        nonzero = [v for v in t["values"] if v]
        pos, neg = [v for v in nonzero if v > 0], [v for v in nonzero if v < 0]
        same, (opposite,) = (pos, neg) if len(pos) == 2 else (neg, pos)
        base, stronger = sorted(same, key=abs)
        assert 35 <= abs(base) <= 75 and 10 <= abs(stronger) - abs(base) <= 25 and 15 <= abs(opposite) <= 45
        assert chat["messages"][2]["content"].rstrip().endswith(f"Image {t['best']}.")
        assert _last_json(chat) == t["answer"]
        x = png(dataset / r["images"][t["x"] - 1])
        back = working_to_srgb8(render_linear(srgb8_to_working(x), t["answer"]))
        limit = max(cfg["max_restore_delta_e"], cfg["max_restore_share"] * t["delta_e"][t["x"] - 1])
        assert t["restore_delta_e"] <= limit
        assert mean_delta_e2000(expert, back) <= limit + 0.3


def test_puzzle_c_restores_the_expert_and_asks_like_the_planner(dataset):
    from monet_cli.planners.protocol import analysis_prompt, load_prompts, read_values, says_no_change

    cfg = pz.read_info(dataset)["config"]
    prompts = load_prompts(cfg["planner_prompts"])
    cat = catalog()
    n_degraded = 0
    for r, chat in _kind(dataset, "c"):
        t = r["truth"]
        m = chat["messages"]
        assert m[0]["content"] == prompts.system
        assert m[1]["content"] == "<image>" + analysis_prompt(t["stage"], prompts=prompts, style="balanced")
        if t["no_change"]:
            assert len(m) == 3 and says_no_change(m[2]["content"]) and t["answer"] == {}
            if "later" in t:  # degraded in a later stage only: this stage still needs nothing
                assert cat.stages[t["later"]["stage"]] and t["later"]["stage"] != t["stage"]
            else:
                assert r["images"] == [r["expert"]]
            continue
        n_degraded += 1
        assert read_values(t["stage"], m[4]["content"]) == t["answer"] == t["plan"][t["stage"]]
        assert set(t["answer"]) <= set(t["perturbation"]) and 2 <= len(t["perturbation"]) <= 4
        assert all(cat.stage_of(op) == t["stage"] for op in t["perturbation"])
        puzzle, expert = png(dataset / r["images"][0]), png(dataset / r["expert"])
        back = working_to_srgb8(render_linear(srgb8_to_working(puzzle), t["answer"]))
        minus = {k: -v for k, v in t["perturbation"].items()}
        negated = working_to_srgb8(render_linear(srgb8_to_working(puzzle), minus))
        # re-applying the answer gets back to the expert image: within the config's tolerance
        # (checked at the small check size when generated) plus a margin for full size
        limit = max(cfg["max_restore_delta_e"], cfg["max_restore_share"] * t["delta_e"])
        assert t["restore_delta_e"] <= limit
        assert mean_delta_e2000(expert, back) <= limit + 0.3
        assert mean_delta_e2000(expert, back) <= mean_delta_e2000(expert, negated) + 0.1
    assert n_degraded >= 3


def test_negation_is_not_the_inverse_of_saturation_but_the_solved_answer_is():
    """Saturation scales chroma by 1 + v/100: −40 is undone by +66.7, not +40."""
    cfg = small_config()
    photo = pz.prepare_photo(srgb8_to_working(fx.astronaut(step=4)), "astro", cfg)
    puzzle8 = working_to_srgb8(render_linear(photo.linear, {"Saturation": -40}))
    r = pz.solve_restore(puzzle8, photo, {"Saturation": -40}, cfg)
    assert 62 <= r["answer"]["Saturation"] <= 71
    assert r["restore_delta_e"] < 0.5 < r["negated_delta_e"]
    # Exposure is a gain: its negation is exact
    puzzle8 = working_to_srgb8(render_linear(photo.linear, {"Exposure": -30}))
    assert pz.solve_restore(puzzle8, photo, {"Exposure": -30}, cfg)["answer"] == {"Exposure": 30}


def test_a_clipped_over_exposure_is_a_puzzle_whose_answer_darkens():
    """+Exposure clips in the 8-bit save: the restoration is partial, yet "darken" is the
    answer. Such draws pass within max_restore_share of the damage; share 0 rejects them,
    which once left the data with far more "brighten" than "darken" answers."""
    cfg = small_config()
    photo = pz.prepare_photo(srgb8_to_working(fx.astronaut(step=4)), "astro", cfg)
    over = {"Exposure": 70}
    puzzle8 = working_to_srgb8(render_linear(photo.linear, over))
    r = pz.solve_restore(puzzle8, photo, over, cfg)
    damage = pz._visible(photo, over)
    assert r["answer"] == {"Exposure": -70}
    assert cfg["max_restore_delta_e"] < r["restore_delta_e"] <= 0.5 * damage  # partly lost, mostly undone
    assert pz.restorable(r["restore_delta_e"], damage, cfg)
    assert not pz.restorable(r["restore_delta_e"], damage, {**cfg, "max_restore_share": 0})
    assert pz.restorable(1.0, 100.0, {**cfg, "max_restore_share": 0})  # the absolute bound still holds

    # C draws of one lighting op at ±69 (a σ so small that every draw falls back to the minimum
    # magnitude, with a random sign): the over-exposures pass with the share, not without it
    only = {**cfg, "stages": {"lighting": 1, "color": 0, "hsl": 0}, "c": {**cfg["c"], "ops": {"1": 1}, "no_change": 0},
            "sigma": {"default": 0.01}, "min_magnitude": 69, "clip": 70}

    def darkening(conf) -> int:
        drafts = [pz.make_c(photo, pz.sample_rng(0, "astro", i, 1), conf) for i in range(60)]
        return sum(1 for d in drafts if d and d.truth["perturbation"] == {"Exposure": 69}
                   and d.truth["answer"] == {"Exposure": -69})

    assert darkening(only) >= 1 and darkening({**only, "max_restore_share": 0}) == 0
    for bad in (-0.1, 1.0, True, "half"):
        with pytest.raises(UsageError, match="max_restore_share"):
            small_config(max_restore_share=bad)


def _kind(dataset, kind):
    chats = [json.loads(line) for line in (dataset / pz.TRAIN_FILE).read_text().splitlines()]
    return [(r, c) for r, c in zip(pz.read_records(dataset), chats) if r["kind"] == kind]


# ----------------------------------------------------------------------------- visibility


def test_invisible_draws_are_rejected_and_bands_come_from_colours_present():
    cfg = small_config(**{"stages": {"lighting": 0, "color": 1, "hsl": 1}})
    _, x = np.mgrid[0:64, 0:96] / 96.0
    grey = np.repeat((0.02 + 0.5 * x)[..., None], 3, axis=2).astype(np.float32)
    photo = pz.prepare_photo(grey, "grey", cfg)
    assert photo.bands == {}  # no colour: no HSL band to draw from
    drafts = [pz.make_a(photo, pz.sample_rng(0, "grey", i, 1), cfg) for i in range(12)]
    ops = {d.truth["op"] for d in drafts if d}
    assert ops and ops <= {"Temperature", "Tint"}  # Saturation of greys is invisible
    assert sum(d.rejections.get("invisible", 0) for d in drafts if d) > 0

    blue = grey.copy()
    blue[:, 48:] = np.array([0.05, 0.15, 0.6], np.float32)  # a blue half: only blue-ish bands exist
    photo = pz.prepare_photo(blue, "blue", {**cfg, "stages": {"lighting": 0, "color": 0, "hsl": 1}})
    assert set(photo.bands) and set(photo.bands) <= {"Blue", "Aqua", "Purple"}
    for i in range(6):
        d = pz.make_c(photo, pz.sample_rng(0, "blue", i, 1), {**cfg, "stages": {"lighting": 0, "color": 0, "hsl": 1}})
        if d and not d.truth["no_change"]:
            assert {catalog().ops[o].band for o in d.truth["perturbation"]} <= set(photo.bands)
            assert all(v >= 0.5 for v in d.truth["op_delta_e"].values()) and d.truth["delta_e"] >= 1.0


def test_a_photo_without_any_visible_draw_is_skipped_not_looped(tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(folder / "grey.png")
    cfg = small_config(**{"stages": {"lighting": 0, "color": 0, "hsl": 1}, "visibility.max_tries": 3})
    s = pz.generate(folder, tmp_path / "out", kinds=["a"], count=2, seed=0, config=cfg)
    assert s.skipped == 2 and s.total_made == 0
    assert len(pz.read_jsonl(tmp_path / "out" / pz.SKIPPED_FILE)) == 2


# ----------------------------------------------------------------------------- resume


def test_resume_after_interrupt_equals_an_uninterrupted_run(tmp_path, experts, monkeypatch):
    cfg = small_config()
    ref = tmp_path / "ref"
    pz.generate(experts, ref, count=10, seed=5, config=cfg)

    out = tmp_path / "out"

    def stop_after(k):
        def progress(done, total):
            if done == k:
                raise KeyboardInterrupt

        return progress

    s = pz.generate(experts, out, count=10, seed=5, config=cfg, progress=stop_after(4))
    assert s.interrupted and s.total_made == 4
    # a second interruption in the middle of a puzzle, between two of its image writes
    real, calls = pz._write_png, {"n": 0}

    def flaky(path, u8, level):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real(path, u8, level)

    monkeypatch.setattr(pz, "_write_png", flaky)
    s = pz.generate(experts, out, count=10, seed=5, config=cfg)
    assert s.interrupted and s.existing == 4
    monkeypatch.setattr(pz, "_write_png", real)
    s = pz.generate(experts, out, count=10, seed=5, config=cfg)
    assert not s.interrupted and s.resumed
    got = (out / pz.MANIFEST_FILE).read_text().splitlines()
    want = (ref / pz.MANIFEST_FILE).read_text().splitlines()
    assert sorted(got) == sorted(want) and len(set(got)) == len(got)  # nothing lost, nothing twice
    assert not list(out.rglob("*.monet-tmp"))
    for f in (ref / "images").rglob("*.png"):
        assert f.read_bytes() == (out / f.relative_to(ref)).read_bytes()
    again = pz.generate(experts, out, count=10, seed=5, config=cfg)
    assert again.total_made == 0 and again.existing == 10


def test_a_torn_last_line_is_cut_and_redone(tmp_path, experts):
    cfg = small_config()
    out = tmp_path / "out"
    pz.generate(experts, out, count=3, seed=2, config=cfg)
    manifest = out / pz.MANIFEST_FILE
    lines = manifest.read_bytes().splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])  # killed mid-write
    assert len(pz.read_records(out)) == 2
    s = pz.generate(experts, out, count=3, seed=2, config=cfg)
    assert s.total_made == 1 and manifest.read_bytes() == b"".join(lines)


def test_count_extends_and_other_settings_are_refused(tmp_path, experts):
    cfg = small_config()
    out = tmp_path / "out"
    pz.generate(experts, out, count=3, seed=2, config=cfg)
    s = pz.generate(experts, out, count=5, seed=2, config=cfg)
    assert s.existing == 3 and s.total_made + s.skipped == 2
    with pytest.raises(OutputError, match="different seed"):
        pz.generate(experts, out, count=5, seed=3, config=cfg)
    with pytest.raises(OutputError, match="sampling config"):
        pz.generate(experts, out, count=5, seed=2, config=small_config(**{"b.base": [40, 70]}))
    s = pz.generate(experts, out, count=2, seed=3, config=cfg, force=True)
    assert not s.resumed and len(pz.read_records(out)) == s.total_made
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not a monet puzzle dataset"):
        pz.generate(experts, other, count=2, seed=2, config=cfg, force=True)
    assert (other / "mine.txt").read_text() == "keep me"


def test_dataset_inside_the_expert_folder_is_not_read_as_photos(tmp_path):
    experts = make_experts(tmp_path / "experts", ("astronaut",))
    cfg = small_config()
    pz.generate(experts, experts / "puzzles", count=2, seed=0, config=cfg, recursive=True)
    s = pz.generate(experts, experts / "puzzles", count=2, seed=0, config=cfg, recursive=True)
    assert s.photos == 1 and s.existing == 2


# ----------------------------------------------------------------------------- stats


def test_stats_count_and_plot(dataset, tmp_path):
    s = pz.dataset_stats(dataset)
    records = pz.read_records(dataset)
    assert s["records"] == len(records) == sum(s["kinds"].values())
    assert sum(sum(v.values()) for v in s["stages"].values()) == len(records)
    n_values = sum(len(pz.answer_values(r)) for r in records)
    assert sum(o["n"] for o in s["ops"].values()) == n_values
    for op, o in s["ops"].items():  # the sign balance counts every answer of the op
        vals = [v for r in records for k, v in pz.answer_values(r).items() if k == op]
        assert (o["down"], o["up"]) == (sum(v < 0 for v in vals), sum(v > 0 for v in vals))
        assert o["down"] + o["up"] == o["n"]  # answers are never 0
    assert sum(sum(v.values()) for v in s["ranges"].values()) == n_values
    assert s["restore_delta_e"]["mean"] <= s["negated_delta_e"]["mean"]
    path = pz.plot_values(dataset, tmp_path / "values.png")
    im = Image.open(path)
    colours = np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)
    assert im.format == "PNG" and im.size[0] > 600 and len(colours) > 3


# ----------------------------------------------------------------------------- CLI


def test_cli_generate_resume_stats_and_synthesize(tmp_path, experts):
    from test_cli import run

    assert "Examples" in run("puzzles", "generate", "--help", check=0).stdout
    assert "Examples" in run("puzzles", "stats", "--help", check=0).stdout
    assert "Examples" in run("reason", "synthesize", "--help", check=0).stdout
    out = tmp_path / "ds"
    p = run("puzzles", "generate", experts, "--out", out, "--count", 4, "--long-side", 64, "--seed", 1, "--json",
            check=0)
    d = json.loads(p.stdout)
    assert d["made_total"] + d["skipped"] == 4 and d["train"]["records"] == d["made_total"]
    assert json.loads((out / pz.LLAMAFACTORY_FILE).read_text())["monet_puzzles"]["formatting"] == "sharegpt"
    p = run("puzzles", "generate", experts, "--out", out, "--count", 4, "--long-side", 64, "--seed", 2, check=1)
    assert "different seed" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    s = json.loads(run("puzzles", "stats", out, "--json", check=0).stdout)
    assert s["records"] == d["made_total"] and Path(s["plot"]).is_file()
    r = json.loads(run("reason", "synthesize", out, "--json", check=0).stdout)
    assert r["written"] == d["made_total"] and r["backend"] == "template"
    p = run("puzzles", "generate", tmp_path / "nowhere", "--out", tmp_path / "x", check=2)
    assert "not a folder" in p.stderr


# ----------------------------------------------------------------------------- variants (images.variants)


def test_variants_are_seeded_crops_that_serve_as_expert_photos(tmp_path, experts):
    cfg = small_config(**{"images.variants": 3, "images.crop": [0.5, 0.8]})
    s = pz.generate(experts, tmp_path / "v", count=18, seed=1, config=cfg, kinds=("a",))
    assert s.total_made + s.skipped == 18
    folders = sorted(p.name for p in (tmp_path / "v" / "images").iterdir())
    assert len(folders) == 9  # 3 photos x (itself + 2 crops)
    records = pz.read_jsonl(tmp_path / "v" / pz.MANIFEST_FILE)
    assert {r["photo"].split("#")[0] for r in records} == {"astronaut.png", "coffee.png", "chelsea.png"}
    assert any(r["photo"].endswith("#2") for r in records)
    # a crop is smaller than the photo in the same proportion and differs from it
    full = png(tmp_path / "v" / "images" / pz.slug_for("coffee.png") / pz.EXPERT_NAME)
    crop = png(tmp_path / "v" / "images" / pz.slug_for("coffee.png#1") / pz.EXPERT_NAME)
    assert max(full.shape[:2]) == max(crop.shape[:2]) == 96  # every expert image at images.long_side
    ratio_full, ratio_crop = full.shape[1] / full.shape[0], crop.shape[1] / crop.shape[0]
    assert abs(ratio_full - ratio_crop) < 0.1
    assert not np.array_equal(full, crop)
    # deterministic: the same seed gives the same crops; another seed other crops
    a = pz.variant_pixels(np.zeros((100, 150, 3), np.float32) + np.arange(150, dtype=np.float32)[None, :, None],
                          "coffee.png", 1, 1, cfg)
    b = pz.variant_pixels(np.zeros((100, 150, 3), np.float32) + np.arange(150, dtype=np.float32)[None, :, None],
                          "coffee.png", 1, 1, cfg)
    c = pz.variant_pixels(np.zeros((100, 150, 3), np.float32) + np.arange(150, dtype=np.float32)[None, :, None],
                          "coffee.png", 1, 2, cfg)
    assert np.array_equal(a, b) and not (a.shape == c.shape and np.array_equal(a, c))
    assert 50 <= a.shape[0] <= 80 and 75 <= a.shape[1] <= 120


def test_variants_setting_is_checked():
    with pytest.raises(UsageError, match="images.variants"):
        small_config(**{"images.variants": 0})
    with pytest.raises(UsageError, match="images.crop"):
        small_config(**{"images.crop": [0.9, 0.5]})


def test_the_mini_sampling_config_asks_with_the_mini_prompts(tmp_path, experts):
    cfg = pz.load_config("mini", **SMALL)
    assert cfg["planner_prompts"] == "mini" and cfg["images"]["variants"] > 1
    out = tmp_path / "m"
    pz.generate(experts, out, count=8, seed=0, config=cfg, kinds=("c",))
    from monet_cli.planners.protocol import analysis_prompt, load_prompts
    from monet_cli.synth import synthesize

    synthesize(out)
    recs = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    prompts = load_prompts("mini")
    assert recs and all(r["messages"][0]["content"] == prompts.system for r in recs)
    stages = {s: analysis_prompt(s, prompts=prompts) for s in ("lighting", "color", "hsl")}
    assert all(r["messages"][1]["content"][len("<image>"):] in stages.values() for r in recs)
    # the reasoning opens with what is measured on the puzzle image, then the usual answer
    from monet_cli.perceive import describe
    from monet_cli.planners.protocol import parse_reasoning, says_no_change

    manifest = {r["images"][0]: r for r in pz.read_jsonl(out / pz.MANIFEST_FILE)}
    for r in recs:
        truth = manifest[r["images"][0]]
        analysis = r["messages"][2]["content"]
        assert analysis.startswith("Measured: " + describe(truth["facts"]["puzzle"]) + "\n\n")
        if truth["truth"]["no_change"]:
            assert says_no_change(analysis, prompts)
        else:
            assert [t.adjustment for t in parse_reasoning(analysis)] and not says_no_change(analysis, prompts)
    # one or two clear edits per degraded stage (models/puzzles/mini.yaml), never a faint one
    degraded = [r["truth"]["perturbation"] for r in pz.read_jsonl(out / pz.MANIFEST_FILE)
                if not r["truth"]["no_change"]]
    assert degraded and all(1 <= len(p) <= 2 for p in degraded)
    assert all(abs(v) >= cfg["min_magnitude"] == 10 for p in degraded for v in p.values())


def test_no_change_share_per_stage(tmp_path, experts):
    cfg = small_config(**{"c.no_change": {"lighting": 1.0, "color": 0.0, "hsl": 0.0},
                          "stages": {"lighting": 0.5, "color": 0.5, "hsl": 0.0}})
    pz.generate(experts, tmp_path / "nc", count=12, seed=2, config=cfg, kinds=("c",))
    records = pz.read_jsonl(tmp_path / "nc" / pz.MANIFEST_FILE)
    by_stage = {s: [r["truth"]["no_change"] for r in records if r["truth"]["stage"] == s] for s in ("lighting", "color")}
    assert by_stage["lighting"] and all(by_stage["lighting"])  # every lighting puzzle needs nothing
    assert by_stage["color"] and not any(by_stage["color"])  # every colour puzzle needs a change
    with pytest.raises(UsageError, match="c.no_change.light"):
        small_config(**{"c.no_change": {"light": 0.5}})
    with pytest.raises(UsageError, match="c.no_change.hsl"):
        small_config(**{"c.no_change": {"hsl": 1.5}})


def test_measured_first_is_off_by_default_and_must_be_a_boolean():
    assert pz.load_config(None)["c"]["measured_first"] is False
    assert pz.load_config("mini")["c"]["measured_first"] is True
    with pytest.raises(UsageError, match="c.measured_first"):
        small_config(**{"c.measured_first": "yes"})


def test_op_weights_make_puzzle_c_draw_an_op_more_often_or_never():
    photo = pz.prepare_photo(srgb8_to_working(fx.photo("coffee", step=4)), "coffee", small_config())
    lighting = {"stages": {"lighting": 1, "color": 0, "hsl": 0}, "c.no_change": 0.0, "c.ops": {"1": 1, "2": 0,
                                                                                                "3": 0, "4": 0}}

    def drawn(**weights) -> list[str]:
        cfg = small_config(**lighting, **{"c.op_weights": weights})
        drafts = [pz.make_c(photo, pz.sample_rng(3, "coffee", i, 1), cfg) for i in range(30)]
        return [op for d in drafts if d for op in d.truth["perturbation"]]

    plain, heavy, none = drawn(), drawn(Exposure=20), drawn(Exposure=0)
    assert plain and heavy and none
    share = {k: v.count("Exposure") / len(v) for k, v in (("plain", plain), ("heavy", heavy))}
    # uniform, Exposure is drawn more than 1/6 of the time (the other ops' faint draws are often
    # invisible and drawn again); 20 times the weight makes it nearly every draw
    assert share["heavy"] > max(0.85, share["plain"]), share
    assert "Exposure" not in none
    assert pz.load_config("mini")["c"]["op_weights"] == {"Exposure": 3, "Temperature": 3}
    assert pz.load_config(None)["c"]["op_weights"] == {}  # the paper: uniform within a stage
    with pytest.raises(UsageError, match="c.op_weights.Brightness: unknown operation"):
        small_config(**{"c.op_weights": {"Brightness": 2}})
    with pytest.raises(UsageError, match="c.op_weights.Exposure must be a weight"):
        small_config(**{"c.op_weights": {"Exposure": -1}})
    zero = small_config(**lighting, **{"c.op_weights": {o: 0 for o in catalog().stages["lighting"].ops}})
    with pytest.raises(UsageError, match="weight 0 to every lighting operation"):
        pz.make_c(photo, pz.sample_rng(3, "coffee", 0, 1), zero)
