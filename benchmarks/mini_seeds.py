"""monet-mini over several seeds: one table from the run folders of ``benchmarks/mini.py``.

One run of ``mini.py`` is one draw: runs 9 and 10 (the same settings, ``--seed 0`` and
``--seed 1``) differed by up to 12 ΔE2000 on one planner. This script reads the run folders
of several seeds and reports, for each planner of the table:

* the mean ΔE2000 over the held-out degraded cases of each seed, their mean, standard
  deviation and range, and in how many seeds the planner beat identity;
* the paired difference to identity over every (seed, photo, degradation) case, with a 95 %
  bootstrap interval that resamples *photos* (cases of one photo are not independent) and
  seeds;
* the same paired difference between the puzzle- and the regression-trained model for each
  decoding (the paper's ablation): below zero, puzzles restore better;
* with ``--baseline RUN...`` (runs of another configuration with the same seeds), each
  model's paired difference to the same model in the baseline, seed by seed: below zero, the
  new settings restore better.

::

    python benchmarks/mini.py --seed 0 --out runs/mini-s0     # ... and --seed 1, --seed 2
    python benchmarks/mini_seeds.py runs/mini-s0 runs/mini-s1 runs/mini-s2 [--out seeds.md] [--json]
    python benchmarks/mini.py --seed 0 --puzzle-minutes 60 --out runs/mini60-s0   # ... seeds 1, 2
    python benchmarks/mini_seeds.py runs/mini60-s* --baseline runs/mini-s0 runs/mini-s1 runs/mini-s2

Each folder needs ``mini.json`` and its ``bench-*/bench.json`` (what mini.py writes), and all
must share the held-out cases and the training settings (budgets, puzzles, perception
records): one table, one configuration. Nothing is recomputed: this is arithmetic on the
stored per-case scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# mini.py scores each model decoded three ways into OUT/bench-mini-MODEL[SUFFIX]
DECODINGS = {"mean of samples": "", "medoid of samples": "-medoid", "greedy": "-greedy"}
# bench folder of each planner row of mini.py's table, in its order; identity is the
# benchmark's "degraded" column of any of them
PLANNERS = {"auto (analytic planner)": "auto",
            **{f"mini, {m} — {how}": f"mini-{m}{suffix}" for m in ("puzzles", "regression")
               for how, suffix in DECODINGS.items()}}
BOOTSTRAP = 10_000
# mini.py settings that must be the same in every run of one table (the seed is what varies)
SETTINGS = ("budget_minutes", "puzzle_minutes", "puzzles", "perception_per_photo")


def settings_of(meta: dict) -> dict:
    """The training settings of a run's ``mini.json``; runs from before ``--puzzle-minutes``
    trained the puzzle model for ``budget_minutes``."""
    got = {k: meta.get(k) for k in SETTINGS}
    if got["puzzle_minutes"] is None:
        got["puzzle_minutes"] = got["budget_minutes"]
    return got


def load_run(run: Path) -> dict:
    """{"seed": int, "cases": {bench: {(photo, kind): ΔE}}, "identity": {(photo, kind): ΔE}} of one
    run folder; SystemExit with one line when it is not a finished mini.py run."""
    facts = run / "mini.json"
    if not facts.is_file():
        raise SystemExit(f"error: {run}: no mini.json (not a finished benchmarks/mini.py run)")
    try:
        meta = json.loads(facts.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: {facts}: unreadable ({e})") from None
    if meta.get("quick"):
        raise SystemExit(f"error: {run}: a --quick smoke run, not comparable with full runs")
    cases, identity = {}, {}
    for bench in PLANNERS.values():
        path = run / f"bench-{bench}" / "bench.json"
        try:
            rep = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: {path}: unreadable ({e})") from None
        got = {}
        for c in rep["cases"]:
            if c["kind"] == "original":
                continue
            key = (c["photo"], c["kind"])
            got[key] = c["scores"]["restored"]["delta_e"]
            identity[key] = c["scores"]["degraded"]["delta_e"]
        cases[bench] = got
    return {"run": str(run), "seed": meta.get("seed", 0), "settings": settings_of(meta), "cases": cases,
            "identity": identity}


def paired(runs: list[dict], a, b, rng: np.random.Generator) -> dict:
    """Mean of a − b over every (seed, photo, kind) case, with a 95 % bootstrap interval over
    seeds and photos. ``a``/``b``: a bench name, or None for identity."""
    def score(r, name, key):
        return r["identity"][key] if name is None else r["cases"][name][key]

    photos = sorted({p for r in runs for p, _ in r["identity"]})
    # diff[s][p]: the differences of seed s on photo p (one per degradation)
    diff = [[np.array([score(r, a, k) - score(r, b, k) for k in sorted(r["identity"]) if k[0] == p]) for p in photos]
            for r in runs]
    mean = float(np.mean(np.concatenate([d for per in diff for d in per])))
    sums = np.array([[d.sum() for d in per] for per in diff])  # seeds x photos
    counts = np.array([[len(d) for d in per] for per in diff])
    s_idx = rng.integers(0, len(runs), size=(BOOTSTRAP, len(runs)))
    p_idx = rng.integers(0, len(photos), size=(BOOTSTRAP, len(photos)))
    tot = sums[s_idx[:, :, None], p_idx[:, None, :]].sum(axis=(1, 2))
    cnt = counts[s_idx[:, :, None], p_idx[:, None, :]].sum(axis=(1, 2))
    lo, hi = np.percentile(tot / cnt, [2.5, 97.5])
    return {"mean": mean, "ci95": [float(lo), float(hi)]}


def summarise(runs: list[dict]) -> dict:
    keys = [set(r["identity"]) for r in runs]
    if any(k != keys[0] for k in keys):
        raise SystemExit("error: the runs scored different held-out cases (photos or degradations); "
                         "compare runs of one corpus and one set of --kinds")
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: two runs have the same seed ({seeds}): each folder should be another seed")
    for r in runs[1:]:
        if r["settings"] != runs[0]["settings"]:
            diff = ", ".join(f"{k} {runs[0]['settings'][k]} vs {r['settings'][k]}" for k in SETTINGS
                             if r["settings"][k] != runs[0]["settings"][k])
            raise SystemExit(f"error: {r['run']} was run with other settings than {runs[0]['run']} ({diff}); "
                             "one table compares seeds of one configuration")
    rng = np.random.default_rng(0)
    ident = [float(np.mean(list(r["identity"].values()))) for r in runs]
    rows = [{"planner": "identity (left alone)", "per_seed": ident, "mean": float(np.mean(ident)),
             "sd": float(np.std(ident, ddof=1)) if len(runs) > 1 else 0.0, "beats_identity": None, "vs_identity": None}]
    for label, bench in PLANNERS.items():
        per = [float(np.mean(list(r["cases"][bench].values()))) for r in runs]
        rows.append({"planner": label, "per_seed": per, "mean": float(np.mean(per)),
                     "sd": float(np.std(per, ddof=1)) if len(runs) > 1 else 0.0,
                     "beats_identity": sum(p < i for p, i in zip(per, ident)),
                     "vs_identity": paired(runs, bench, None, rng)})
    ablation = [{"decoding": how, **paired(runs, f"mini-puzzles{suffix}", f"mini-regression{suffix}", rng)}
                for how, suffix in DECODINGS.items()]
    return {"runs": [r["run"] for r in runs], "seeds": seeds, "settings": runs[0]["settings"],
            "cases_per_seed": len(runs[0]["identity"]),
            "rows": rows, "puzzles_minus_regression": ablation}


def against(runs: list[dict], baseline: list[dict]) -> dict:
    """Each model row of ``runs`` minus the same row of ``baseline`` (another configuration,
    the same seeds), paired case by case within each seed, with the bootstrap of :func:`paired`."""
    by_seed = {b["seed"]: b for b in baseline}
    if len(by_seed) != len(baseline) or sorted(by_seed) != sorted(r["seed"] for r in runs):
        raise SystemExit(f"error: the baseline runs have seeds {sorted(b['seed'] for b in baseline)}, the runs "
                         f"{sorted(r['seed'] for r in runs)}: compare the same seeds, one folder each")
    merged = []
    for r in runs:
        b = by_seed[r["seed"]]
        if set(b["identity"]) != set(r["identity"]):
            raise SystemExit(f"error: {b['run']} and {r['run']} scored different held-out cases")
        merged.append({**r, "cases": {**r["cases"], **{f"baseline:{k}": v for k, v in b["cases"].items()}}})
    rng = np.random.default_rng(1)
    rows = [{"planner": label, **paired(merged, bench, f"baseline:{bench}", rng)}
            for label, bench in PLANNERS.items() if bench != "auto"]
    return {"baseline_runs": [b["run"] for b in baseline], "baseline_settings": baseline[0]["settings"],
            "rows": rows}


def markdown(s: dict) -> str:
    n = len(s["seeds"])
    seeds = " | ".join(f"seed {x}" for x in s["seeds"])
    lines = [f"| planner | {seeds} | mean ± sd | seeds below identity | paired Δ to identity [95 % CI] |",
             "|---|" + "---|" * n + "---|---|---|"]
    for r in s["rows"]:
        vals = " | ".join(f"{v:.2f}" for v in r["per_seed"])
        beats = "—" if r["beats_identity"] is None else f"{r['beats_identity']} of {n}"
        vs = "—" if r["vs_identity"] is None else _ci(r["vs_identity"])
        lines.append(f"| {r['planner']} | {vals} | {r['mean']:.2f} ± {r['sd']:.2f} | {beats} | {vs} |")
    lines += ["", "| puzzles − regression (paired, all cases) | Δ ΔE2000 [95 % CI] |", "|---|---|"]
    lines += [f"| {a['decoding']} | {_ci(a)} |" for a in s["puzzles_minus_regression"]]
    if s.get("against"):
        head = f"| planner | this − baseline ({_trained(s['against']['baseline_settings'])}; paired) [95 % CI] |"
        lines += ["", head, "|---|---|"]
        lines += [f"| {r['planner']} | {_ci(r)} |" for r in s["against"]["rows"]]
    trained = f" Training: {_trained(s['settings'])}." if s["settings"].get("budget_minutes") is not None else ""
    return (f"{n} seeds × {s['cases_per_seed']} held-out degraded cases, mean ΔE2000 (lower is better). "
            f"Intervals: bootstrap over seeds and photos.{trained}\n\n" + "\n".join(lines) + "\n")


def _trained(st: dict) -> str:
    if st.get("budget_minutes") is None:
        return "settings not recorded"
    return f"puzzle model {st['puzzle_minutes']:g} min, regression {st['budget_minutes']:g} min"


def _ci(d: dict) -> str:
    return f"{d['mean']:+.2f} [{d['ci95'][0]:+.2f}, {d['ci95'][1]:+.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="Run folders of benchmarks/mini.py, one per seed.")
    ap.add_argument("--baseline", type=Path, nargs="+", metavar="RUN",
                    help="Run folders of another configuration with the same seeds: adds each model's paired "
                         "difference to it.")
    ap.add_argument("--out", type=Path, help="Also write the table to this markdown file.")
    ap.add_argument("--json", action="store_true", help="Print the figures as JSON instead of the table.")
    a = ap.parse_args(argv)
    runs = [load_run(r) for r in a.runs]
    s = summarise(runs)
    if a.baseline:
        s["against"] = against(runs, [load_run(r) for r in a.baseline])
    md = markdown(s)
    if a.out:
        tmp = a.out.with_name(a.out.name + ".tmp")
        tmp.write_text(md, encoding="utf-8")
        tmp.replace(a.out)
    print(json.dumps(s, indent=1) if a.json else md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
