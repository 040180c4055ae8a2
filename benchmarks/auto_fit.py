#!/usr/bin/env python3
"""Fit ``auto`` v2 from puzzles, cross-validate it by photo, and (with --write-weights) ship it.

    benchmarks/corpus.sh /tmp/corpus                      # the free photo corpus (once)
    python benchmarks/auto_fit.py --corpus /tmp/corpus --out /tmp/autofit --write-weights

1. Puzzles: ``--samples`` per photo (:func:`monet_cli.auto_fit.make_sample`: a random crop,
   a random degradation — monet ops or independent math —, each candidate's gain), in
   ``--jobs`` processes, cached in OUT/samples.npz (same photos and settings: reused).
2. Leave-photos-out cross-validation, ``--folds`` folds: each fold's ensemble is fitted on
   the puzzles of the other folds' photos only (no crop of a test photo in training), then
   every test photo is reduced to 512 px and degraded with every kind of ``monet bench
   restore`` (monet's own ops and the independent ``x-`` kinds) × ``--seeds``, plus the
   undegraded original. Each case is scored with mean ΔE2000 of the 8-bit sRGB renditions
   against the photo, for: identity (left alone), ``rules`` (the analytic planner),
   ``learned`` (the fold's ensemble at each ``--caution``: high, the default, medium, low),
   autocontrast and grey world.
3. One table per class (mean ΔE, and how many cases each method made worse than identity by
   more than 2 ΔE), printed and written to OUT/cv.md and OUT/cv.json with every case.
4. ``--write-weights``: the ensemble fitted on every photo's puzzles is written to
   ``models/auto/auto-v2.npz`` with the cross-validated summary in its metadata.

Figures are a benchmark's, measured on this machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

# one thread per process: --jobs processes already fill the cores, and numba's or BLAS's own
# threads on top of them made the puzzles 3-4x slower here
for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("identity", "rules", "learned", "learned_medium", "learned_low", "autocontrast", "grey_world")
HEADERS = {"identity": "identity", "rules": "rules", "learned": "auto, caution high",
           "learned_medium": "auto, medium (default)", "learned_low": "auto, low", "autocontrast": "autocontrast",
           "grey_world": "grey world"}


def photo_paths(corpus: Path | None) -> list[tuple[str, str]]:
    """``[(name, path or 'skimage:NAME')]``: every photo of a corpus.sh folder, or scikit-image's."""
    if corpus is None:
        from monet_cli.bench import SKIMAGE_PHOTOS

        return [(n, f"skimage:{n}") for n in SKIMAGE_PHOTOS]
    out = []
    for split in ("train", "heldout"):
        for p in sorted((corpus / split).glob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"):
                out.append((p.name, str(p)))
    return out


def load_ref(src: str, size: int) -> np.ndarray:
    from monet_cli import bench
    from monet_cli import degrade as dg

    photo = bench.skimage_photo(src.split(":", 1)[1]) if src.startswith("skimage:") else src
    return dg.srgb8_to_working(bench.reference(photo, size))


def _samples_for(args) -> list:
    from monet_cli.auto_fit import make_sample

    k, name, src, n, seed = args
    ref = load_ref(src, 1024)
    rng = np.random.default_rng([seed, k])
    return [make_sample(name, ref, rng) for _ in range(n)]


def make_samples(photos, n: int, seed: int, jobs: int, cache: Path) -> list:
    from monet_cli.auto_fit import Sample
    from monet_cli.planners.learned import CANDIDATES, feature_names

    # the cache is valid only for the same photos, settings, features and candidates
    key = json.dumps({"photos": [p for p, _ in photos], "n": n, "seed": seed, "features": feature_names(),
                      "candidates": CANDIDATES})
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            print(f"puzzles: {len(z['photo'])} reused from {cache}", file=sys.stderr)
            return [Sample(str(z["photo"][i]), str(z["label"][i]), z["xl"][i], z["xc"][i], z["yl"][i], z["yc"][i])
                    for i in range(len(z["photo"]))]
    t = time.perf_counter()
    todo = [(k, name, src, n, seed) for k, (name, src) in enumerate(photos)]
    samples = []
    with ProcessPoolExecutor(jobs) as ex:
        for i, part in enumerate(ex.map(_samples_for, todo)):
            samples += part
            print(f"\rpuzzles: {i + 1}/{len(todo)} photos, {time.perf_counter() - t:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    np.savez_compressed(cache, key=np.array(key), photo=np.array([s.photo for s in samples]),
                        label=np.array([s.label for s in samples]), xl=np.stack([s.x_lighting for s in samples]),
                        xc=np.stack([s.x_color for s in samples]), yl=np.stack([s.y_lighting for s in samples]),
                        yc=np.stack([s.y_color for s in samples]))
    return samples


def score_photo(args) -> list[dict]:
    """Every case of one test photo, for every method (module docstring, step 2)."""
    from monet_cli import degrade as dg
    from monet_cli.metrics import mean_delta_e2000
    from monet_cli.planners.auto import AutoPlanner
    from monet_cli.planners.base import make_proxy, plan_proxy
    from monet_cli.planners.learned import LearnedPlanner
    from monet_cli.render import render_linear

    name, src, model, kinds, seeds = args
    ref8 = dg.working_to_srgb8(load_ref(src, 512))
    x0 = dg.srgb8_to_working(ref8)
    planners = {"rules": AutoPlanner(), "learned": LearnedPlanner(learned=model, caution="high"),
                "learned_medium": LearnedPlanner(learned=model, caution="medium"),
                "learned_low": LearnedPlanner(learned=model, caution="low")}
    rows = []
    for kind, seed in [("original", None)] + [(k, s) for k in kinds for s in range(seeds)]:
        deg = x0 if kind == "original" else dg.save_like_8bit(dg.degrade(x0, kind, seed)[0])
        cands = {"identity": deg, "autocontrast": dg.autocontrast(deg), "grey_world": dg.grey_world(deg)}
        plans, secs, failures = {}, {}, {}
        for m, planner in planners.items():
            t = time.perf_counter()
            plan = plan_proxy(make_proxy(deg), planner)
            secs[m] = time.perf_counter() - t
            plans[m] = plan.adjustments
            failed = {st: sp.error for st, sp in plan.stages.items() if sp.status == "failed"}
            if failed:  # a crashed stage scores as "no change": it must not pass for a cautious one
                failures[m] = failed
            cands[m] = render_linear(deg, plan.adjustments)
        de = {m: mean_delta_e2000(ref8, dg.working_to_srgb8(img)) for m, img in cands.items()}
        rows.append({"photo": name, "kind": kind, "seed": seed, "delta_e": de, "plans": plans, "seconds": secs,
                     "failed": failures})
    return rows


def cross_validate(photos, samples, folds: int, seeds: int, jobs: int, seed: int) -> list[dict]:
    from monet_cli.auto_fit import fit_model
    from monet_cli.bench import DEFAULT_KINDS

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    fold_of = {photos[i][0]: f % folds for f, i in enumerate(order)}
    jobs_args = []
    for f in range(folds):
        train = [s for s in samples if fold_of[s.photo] != f]
        model = fit_model(train, seed=seed)
        test = [(n, src) for n, src in photos if fold_of[n] == f]
        print(f"fold {f + 1}/{folds}: fitted on {len(train)} puzzles of {len({s.photo for s in train})} photos; "
              f"testing {len(test)} photos", file=sys.stderr)
        jobs_args += [(n, src, model, list(DEFAULT_KINDS), seeds) for n, src in test]
    rows = []
    t = time.perf_counter()
    with ProcessPoolExecutor(jobs) as ex:
        for i, part in enumerate(ex.map(score_photo, jobs_args)):
            for r in part:
                r["fold"] = fold_of[r["photo"]]
            rows += part
            print(f"\rscored {i + 1}/{len(jobs_args)} photos, {time.perf_counter() - t:.0f} s", end="", file=sys.stderr)
    print(file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> dict:
    from monet_cli.bench import DEFAULT_KINDS, KIND_LABELS

    classes = [k for k in DEFAULT_KINDS if any(r["kind"] == k for r in rows)]
    out = {}
    groups = {k: [r for r in rows if r["kind"] == k] for k in classes}
    groups["all degraded"] = [r for r in rows if r["kind"] != "original"]
    groups["original"] = [r for r in rows if r["kind"] == "original"]
    for k, g in groups.items():
        if not g:
            continue
        out[k] = {"label": KIND_LABELS.get(k, k), "n": len(g)}
        for m in METHODS:
            d = np.array([r["delta_e"][m] for r in g])
            harm = d - np.array([r["delta_e"]["identity"] for r in g])
            out[k][m] = {"mean": float(d.mean()), "worse_by_2": int(np.sum(harm > 2.0)), "worst": float(harm.max())}
    secs = np.array([r["seconds"]["learned"] for r in rows])
    out["_plan_seconds"] = {"learned_mean": float(secs.mean()), "learned_max": float(secs.max()),
                            "rules_mean": float(np.mean([r["seconds"]["rules"] for r in rows]))}
    return out


def markdown(summary: dict) -> str:
    head = "| class | n | " + " | ".join(HEADERS[m] for m in METHODS) + " |"
    lines = [head, "|---|---|" + "---|" * len(METHODS)]
    for k, s in summary.items():
        if k.startswith("_"):
            continue
        best = min(s[m]["mean"] for m in METHODS[1:])
        cells = []
        for m in METHODS:
            txt = f"{s[m]['mean']:.2f}"
            if m != "identity" and s[m]["worse_by_2"]:
                txt += f" ({s[m]['worse_by_2']}↓)"
            if m != "identity" and s[m]["mean"] == best and best < s["identity"]["mean"]:
                txt = f"**{txt}**"
            cells.append(txt)
        label = f"**{s['label']}**" if k == "all degraded" else s["label"]
        lines.append(f"| {label} | {s['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plan_times(photos, n: int = 8) -> dict:
    """Seconds per photo after decoding (make_proxy to 1280 px + three stages), one process."""
    from monet_cli import bench
    from monet_cli.images import read_image
    from monet_cli.planners.base import get_planner, make_proxy, plan_proxy

    out = {}
    for backend in ("auto", "rules"):
        planner = get_planner(backend)
        times = []
        for _, src in photos[:n]:
            if src.startswith("skimage:"):
                from monet_cli import degrade as dg

                image = dg.srgb8_to_working(bench.skimage_photo(src.split(":", 1)[1]))
            else:
                image = read_image(src, draft=True)
            plan_proxy(make_proxy(image), planner)  # warm: kernels loaded, model read
            t = time.perf_counter()
            plan_proxy(make_proxy(image), planner)
            times.append(time.perf_counter() - t)
        out[backend] = {"mean": float(np.mean(times)), "max": float(np.max(times)), "n": len(times)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="a folder made by benchmarks/corpus.sh (default: scikit-image's photos)")
    ap.add_argument("--out", type=Path, default=Path("autofit-out"), help="where samples.npz, cv.md, cv.json go")
    ap.add_argument("--samples", type=int, default=40, help="puzzles per photo (default 40)")
    ap.add_argument("--folds", type=int, default=6, help="cross-validation folds, by photo (default 6)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds per degradation kind in the evaluation (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation")
    ap.add_argument("--write-weights", action="store_true", help="fit on every photo and write models/auto/auto-v2.npz")
    a = ap.parse_args(argv)

    from monet_cli.auto_fit import fit_model

    a.out.mkdir(parents=True, exist_ok=True)
    photos = photo_paths(a.corpus)
    print(f"{len(photos)} photos", file=sys.stderr)
    samples = make_samples(photos, a.samples, a.seed, a.jobs, a.out / "samples.npz")
    summary = None
    if not a.no_cv:
        rows = cross_validate(photos, samples, a.folds, a.seeds, a.jobs, a.seed)
        summary = summarise(rows)
        md = markdown(summary)
        (a.out / "cv.md").write_text(md, encoding="utf-8")
        (a.out / "cv.json").write_text(json.dumps({"summary": summary, "cases": rows}, indent=1) + "\n",
                                       encoding="utf-8")
        print(md)
        failed = [(r["photo"], r["kind"], m, f) for r in rows for m, f in r.get("failed", {}).items()]
        if failed:
            photo, kind, m, f = failed[0]
            print(f"error: {len(failed)} of {len(rows)} cases have a planner stage that failed, so those columns "
                  f"are not scores (first: {m} on {photo}, {kind}: {f})", file=sys.stderr)
            return 1
        ps = summary["_plan_seconds"]
        print(f"plan time (proxy + three stages, 512 px input): learned {ps['learned_mean']:.3f} s mean, "
              f"{ps['learned_max']:.3f} s max; rules {ps['rules_mean']:.3f} s mean")
    if a.write_weights:
        meta = {"corpus": str(a.corpus) if a.corpus else "scikit-image", "samples_per_photo": a.samples,
                "seed": a.seed}
        if summary is not None:
            meta["cv"] = {k: {m: round(v[m]["mean"], 3) for m in METHODS} for k, v in summary.items()
                          if not k.startswith("_")}
        model = fit_model(samples, seed=a.seed, meta=meta)
        path = model.save(ROOT / "models" / "auto" / "auto-v2.npz")
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB; {model.meta['photos']} photos, "
              f"{model.meta['samples']} puzzles)")
        pt = plan_times(photos)
        print("plan time after decoding (1280 px proxy, three stages): "
              + "; ".join(f"{b} {v['mean']:.3f} s mean, {v['max']:.3f} s max" for b, v in pt.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
