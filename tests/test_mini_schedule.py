"""benchmarks/mini.py: training and scoring share the cores; a model is scored as soon as it is
trained. ``monet`` is replaced by small processes that write what the real commands leave."""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "mini.py"

# a stand-in for `python -m monet_cli ...`: logs its start and end, sleeps, leaves the files
FAKE = r"""
import json, sys, time
from pathlib import Path
log, name, seconds, kind, out, code = sys.argv[1:7]
with open(log, "a") as f:
    f.write(f"start {name} {time.time()}\n")
time.sleep(float(seconds))
out = Path(out)
out.mkdir(parents=True, exist_ok=True)
if kind == "train":
    (out / "model.safetensors").write_bytes(b"")
    (out / "metrics.json").write_text(json.dumps({"steps": 1}))
else:
    (out / "bench.json").write_text(json.dumps({"cases": []}))
with open(log, "a") as f:
    f.write(f"end {name} {time.time()}\n")
sys.exit(int(code))
"""


@pytest.fixture
def mini(monkeypatch):
    spec = importlib.util.spec_from_file_location("mini_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "POLL", 0.02)
    monkeypatch.setattr(mod, "log", lambda msg: None)
    return mod


def fake_monet(mini, tmp_path, monkeypatch, seconds: dict[str, float], fail: str = ""):
    """Replaces ``mini.monet``; returns the events file (``start NAME T`` / ``end NAME T``)."""
    events = tmp_path / "events.txt"
    script = tmp_path / "fake.py"
    script.write_text(FAKE)

    def monet(*args, threads=None, **kw):
        args = [str(a) for a in args]
        out = args[args.index("--out") + 1]
        name = ("train-" if args[0] == "train" else "") + Path(out).name
        return mini.subprocess.Popen([sys.executable, str(script), str(events), name, str(seconds.get(name, 0.2)),
                                      args[0], out, "1" if name == fail else "0"])

    monkeypatch.setattr(mini, "monet", monet)
    return events


def timeline(events: Path) -> dict[str, tuple[float, float]]:
    t: dict[str, list] = {}
    for line in events.read_text().splitlines():
        what, name, at = line.split()
        t.setdefault(name, [None, None])[0 if what == "start" else 1] = float(at)
    return {k: tuple(v) for k, v in t.items()}


def test_a_model_is_scored_while_the_other_still_trains(mini, tmp_path, monkeypatch):
    events = fake_monet(mini, tmp_path, monkeypatch, {"train-run-puzzles": 2.0, "train-run-regression": 0.3})
    minutes = {"puzzles": 60.0, "regression": 30.0}
    trained, reports = mini.train_and_score(tmp_path, tmp_path / "init", tmp_path / "corpus",
                                            {"puzzles": [], "regression": []}, minutes, 0, 0, False, 8, jobs=2)
    assert set(trained) == {"puzzles", "regression"}
    assert set(reports) == {"auto", *(f"mini-{m}{s}" for m in ("puzzles", "regression")
                                      for s in ("", "-medoid", "-greedy"))}
    t = timeline(events)
    puzzles_done = t["train-run-puzzles"][1]
    # the core regression's training frees scores auto and regression before the puzzle model is done
    assert t["bench-auto"][0] < puzzles_done and t["bench-mini-regression"][0] < puzzles_done
    assert all(t[f"bench-mini-puzzles{s}"][0] >= puzzles_done for s in ("", "-medoid", "-greedy"))
    # never more than two processes at once
    edges = sorted([(a, 1) for a, _ in t.values()] + [(b, -1) for _, b in t.values()], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, d in edges:
        running += d
        peak = max(peak, running)
    assert peak == 2


def test_finished_steps_are_skipped_and_jobs_limits_the_scoring(mini, tmp_path, monkeypatch):
    for name in ("puzzles", "regression"):
        (tmp_path / f"run-{name}").mkdir()
        (tmp_path / f"run-{name}" / "model.safetensors").write_bytes(b"")
        (tmp_path / f"run-{name}" / "metrics.json").write_text(json.dumps({"steps": 7}))
    (tmp_path / "bench-auto").mkdir()
    (tmp_path / "bench-auto" / "bench.json").write_text(json.dumps({"cases": []}))
    events = fake_monet(mini, tmp_path, monkeypatch, {})
    trained, _ = mini.train_and_score(tmp_path, tmp_path / "init", tmp_path / "corpus",
                                      {"puzzles": [], "regression": []}, {"puzzles": 30.0, "regression": 30.0},
                                      0, 0, False, 8, jobs=1)
    assert trained["puzzles"] == {"steps": 7}
    t = timeline(events)
    assert "bench-auto" not in t and not any(k.startswith("train-") for k in t) and len(t) == 6
    spans = sorted(t.values())
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # one at a time


def test_a_failed_bench_stops_the_training_still_running(mini, tmp_path, monkeypatch):
    fake_monet(mini, tmp_path, monkeypatch, {"train-run-puzzles": 30.0, "train-run-regression": 0.1},
               fail="bench-auto")
    started = time.monotonic()
    with pytest.raises(SystemExit, match="bench auto failed"):
        mini.train_and_score(tmp_path, tmp_path / "init", tmp_path / "corpus", {"puzzles": [], "regression": []},
                             {"puzzles": 60.0, "regression": 30.0}, 0, 0, False, 8)
    assert time.monotonic() - started < 10  # the 30 s training was stopped, not waited for
    assert not (tmp_path / "run-puzzles" / "metrics.json").exists()
