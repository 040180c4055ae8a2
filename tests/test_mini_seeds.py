"""benchmarks/mini_seeds.py: the mini table over several seeds, from run folders' stored scores."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "mini_seeds.py"


@pytest.fixture(scope="module")
def ms():
    spec = importlib.util.spec_from_file_location("mini_seeds", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


PHOTOS = ("a.png", "b.png", "c.png", "d.png")
KINDS = ("under", "warm")


def fake_run(root: Path, ms, seed: int, shift: dict[str, float], quick: bool = False, photos=PHOTOS,
             **settings) -> Path:
    """A finished mini.py folder: identity ΔE 10 + photo index; each planner = identity + its shift
    (+ the seed, so seeds differ)."""
    run = root / f"s{seed}"
    run.mkdir()
    (run / "mini.json").write_text(json.dumps({"seed": seed, "quick": quick, "rows": [], **settings}))
    for bench in ms.PLANNERS.values():
        cases = [{"photo": photos[0], "kind": "original", "scores": {"degraded": {"delta_e": 0.0},
                                                             "restored": {"delta_e": 1.0}}}]
        for i, p in enumerate(photos):
            for k in KINDS:
                ident = 10.0 + i
                cases.append({"photo": p, "kind": k, "scores": {"degraded": {"delta_e": ident},
                                                                "restored": {"delta_e": ident + shift.get(bench, 0.0)
                                                                             + seed}}})
        (run / f"bench-{bench}").mkdir()
        (run / f"bench-{bench}" / "bench.json").write_text(json.dumps({"cases": cases}))
    return run


def test_per_seed_means_spread_and_paired_differences(ms, tmp_path):
    shift = {"mini-puzzles-medoid": -2.0, "mini-regression-medoid": -1.0, "auto": 0.5}
    runs = [ms.load_run(fake_run(tmp_path, ms, s, shift)) for s in (0, 1, 2)]
    s = ms.summarise(runs)
    rows = {r["planner"]: r for r in s["rows"]}
    ident = np.mean([10 + i for i in range(len(PHOTOS))])
    assert rows["identity (left alone)"]["per_seed"] == [ident] * 3
    med = rows["mini, puzzles — medoid of samples"]
    assert med["per_seed"] == pytest.approx([ident - 2, ident - 1, ident])  # shift −2, plus the seed
    assert med["mean"] == pytest.approx(ident - 1) and med["sd"] == pytest.approx(1.0)
    assert med["beats_identity"] == 2  # seed 2 only ties
    vs = med["vs_identity"]
    assert vs["mean"] == pytest.approx(-1.0) and vs["ci95"][0] <= -1.0 <= vs["ci95"][1]
    assert vs["ci95"][0] >= -2.0 and vs["ci95"][1] <= 0.0  # resampling seeds: within the seeds' range
    abl = {a["decoding"]: a for a in s["puzzles_minus_regression"]}
    assert abl["medoid of samples"]["mean"] == pytest.approx(-1.0)
    assert abl["medoid of samples"]["ci95"] == pytest.approx([-1.0, -1.0])  # the same gap in every case
    assert abl["greedy"]["mean"] == pytest.approx(0.0)
    md = ms.markdown(s)
    assert "| mini, puzzles — medoid of samples |" in md and "2 of 3" in md and "seed 2" in md


def test_the_command_writes_the_table_and_json(ms, tmp_path, capsys):
    runs = [fake_run(tmp_path, ms, s, {"mini-puzzles": 1.0}) for s in (0, 1)]
    out = tmp_path / "seeds.md"
    assert ms.main([*map(str, runs), "--out", str(out)]) == 0
    assert out.read_text() == capsys.readouterr().out.rstrip("\n") + "\n"
    assert ms.main([*map(str, runs), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["seeds"] == [0, 1] and d["cases_per_seed"] == len(PHOTOS) * len(KINDS)


def test_runs_that_cannot_be_compared_are_refused(ms, tmp_path):
    a = fake_run(tmp_path, ms, 0, {})
    with pytest.raises(SystemExit, match="no mini.json"):
        ms.load_run(tmp_path / "missing")
    same = tmp_path / "same"
    same.mkdir()
    b = fake_run(same, ms, 0, {})
    with pytest.raises(SystemExit, match="same seed"):
        ms.summarise([ms.load_run(a), ms.load_run(b)])
    other = tmp_path / "other"
    other.mkdir()
    c = fake_run(other, ms, 1, {}, photos=PHOTOS[:3])
    with pytest.raises(SystemExit, match="different held-out cases"):
        ms.summarise([ms.load_run(a), ms.load_run(c)])
    q = tmp_path / "q"
    q.mkdir()
    with pytest.raises(SystemExit, match="--quick"):
        ms.load_run(fake_run(q, ms, 3, {}, quick=True))
    (a / "bench-auto" / "bench.json").write_text("{not json")
    with pytest.raises(SystemExit, match="unreadable"):
        ms.load_run(a)


def test_runs_of_other_training_settings_are_refused(ms, tmp_path):
    """Seeds are compared within one configuration: a run whose puzzle model trained longer is
    another row of the README, not another seed of this one."""
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    old = ms.load_run(fake_run(tmp_path / "x", ms, 0, {}, budget_minutes=30.0))  # before --puzzle-minutes
    same = ms.load_run(fake_run(tmp_path / "x", ms, 1, {}, budget_minutes=30.0, puzzle_minutes=30.0))
    longer = ms.load_run(fake_run(tmp_path / "y", ms, 2, {}, budget_minutes=30.0, puzzle_minutes=60.0))
    assert old["settings"] == same["settings"]
    s = ms.summarise([old, same])
    assert "puzzle model 30 min, regression 30 min" in ms.markdown(s)
    with pytest.raises(SystemExit, match="puzzle_minutes 30.0 vs 60.0"):
        ms.summarise([old, longer])


def test_a_configuration_is_compared_with_a_baseline_seed_by_seed(ms, tmp_path, capsys):
    """--baseline: each model row minus the same row of another configuration, paired within
    each seed; seeds must match."""
    (tmp_path / "new").mkdir()
    (tmp_path / "old").mkdir()
    new = [fake_run(tmp_path / "new", ms, s, {"mini-puzzles-medoid": -1.5}, budget_minutes=30.0, puzzle_minutes=60.0)
           for s in (0, 1)]
    old = [fake_run(tmp_path / "old", ms, s, {"mini-puzzles-medoid": 0.5}, budget_minutes=30.0) for s in (0, 1)]
    assert ms.main([*map(str, new), "--baseline", *map(str, old), "--json"]) == 0
    rows = {r["planner"]: r for r in json.loads(capsys.readouterr().out)["against"]["rows"]}
    assert rows["mini, puzzles — medoid of samples"]["mean"] == pytest.approx(-2.0)
    assert rows["mini, puzzles — medoid of samples"]["ci95"] == pytest.approx([-2.0, -2.0])
    assert rows["mini, regression — greedy"]["mean"] == pytest.approx(0.0)
    assert "auto (analytic planner)" not in rows
    assert ms.main([*map(str, new), "--baseline", *map(str, old)]) == 0
    md = capsys.readouterr().out
    assert "this − baseline (puzzle model 30 min, regression 30 min; paired)" in md
    assert "Training: puzzle model 60 min, regression 30 min." in md
    with pytest.raises(SystemExit, match="same seeds"):
        ms.main([*map(str, new), "--baseline", str(old[0])])
