"""Restore benchmark: can the ``auto`` planner undo seeded degradations of good photos?

For each colour photo bundled with scikit-image (astronaut, coffee, chelsea, rocket, the
left motorcycle of ``stereo_motorcycle``), each degradation kind of
:mod:`monet_cli.degrade` (alone and a few combined) and each seed:

1. the original 8-bit sRGB photo is decoded to working-space linear light;
2. it is degraded with the renderer and saved like an 8-bit sRGB file (clipping is real);
3. four candidates are made from the degraded photo only — the degraded photo itself,
   ``auto`` (plan on its proxy, render the plan at full size with ``render_linear``),
   ``autocontrast`` and ``grey_world`` (:mod:`monet_cli.degrade`);
4. each is compared with the original on sRGB-encoded 8-bit renditions
   (:func:`monet_cli.degrade.working_to_srgb8`): mean CIEDE2000 ΔE and PSNR
   (:mod:`monet_cli.metrics`; PSNR of identical images, +inf, counts as 100 dB).

The planner never sees the original. The "original" row plans the undegraded photo: its ΔE is
the harm ``auto`` does to a good photo. Planning time is wall time of ``make_proxy`` +
``plan_proxy`` per photo (the first call, which compiles the renderer, is excluded).

Usage::

    python benchmarks/restore.py [--seeds 2] [--photos astronaut,coffee] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from monet_cli import degrade as dg  # noqa: E402
from monet_cli.metrics import mean_delta_e2000, psnr  # noqa: E402
from monet_cli.planners.auto import AutoPlanner  # noqa: E402
from monet_cli.planners.base import make_proxy, plan_proxy  # noqa: E402
from monet_cli.render import render_linear  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
METHODS = ("degraded", "auto", "autocontrast", "grey_world")
PSNR_CAP = 100.0


def load_photo(name: str) -> np.ndarray:
    """An skimage photo as 8-bit sRGB ``(H, W, 3)``."""
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0][..., :3]
    return getattr(skimage.data, name)()[..., :3]


def score(ref8: np.ndarray, rgb: np.ndarray) -> tuple[float, float]:
    out8 = dg.working_to_srgb8(rgb)
    return mean_delta_e2000(ref8, out8), min(psnr(ref8, out8), PSNR_CAP)


def auto_restore(rgb: np.ndarray, planner) -> tuple[np.ndarray, dict, float]:
    t = time.perf_counter()
    plan = plan_proxy(make_proxy(rgb), planner)
    dt = time.perf_counter() - t
    adj = plan.adjustments
    return render_linear(rgb, adj), adj, dt


def run(photos, kinds, seeds: int, verbose: bool = False) -> dict:
    planner = AutoPlanner()
    render_linear(np.zeros((4, 4, 3), np.float32), {"Exposure": 1})  # compile outside the timings
    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}
    times: list[float] = []
    cases = []
    for name in photos:
        ref8 = load_photo(name)
        x0 = dg.srgb8_to_working(ref8)
        restored, adj, dt = auto_restore(x0, planner)
        times.append(dt)
        rows.setdefault("original", {}).setdefault("auto", []).append(score(ref8, restored))
        rows["original"].setdefault("degraded", []).append(score(ref8, x0))
        cases.append({"photo": name, "kind": "original", "degradation": {}, "plan": adj})
        for kind in kinds:
            for seed in range(seeds):
                deg, dadj = dg.degrade(x0, kind, seed)
                deg = dg.save_like_8bit(deg)
                restored, adj, dt = auto_restore(deg, planner)
                times.append(dt)
                cands = {"degraded": deg, "auto": restored, "autocontrast": dg.autocontrast(deg),
                         "grey_world": dg.grey_world(deg)}
                case = {"photo": name, "kind": kind, "seed": seed, "degradation": dadj, "plan": adj}
                for method, img in cands.items():
                    s = score(ref8, img)
                    rows.setdefault(kind, {}).setdefault(method, []).append(s)
                    case[method] = {"delta_e": round(s[0], 3), "psnr": round(s[1], 2)}
                cases.append(case)
                if verbose:
                    print(f"{name:10s} {kind:14s} {seed} {dadj} -> {adj}  ΔE {case['degraded']['delta_e']:.2f}"
                          f" -> {case['auto']['delta_e']:.2f}", file=sys.stderr)
    summary = {}
    for kind, by_method in rows.items():
        summary[kind] = {m: {"delta_e": float(np.mean([s[0] for s in v])), "psnr": float(np.mean([s[1] for s in v])),
                             "n": len(v)} for m, v in by_method.items()}
    degraded_kinds = [k for k in rows if k != "original"]
    summary["all degraded"] = {
        m: {"delta_e": float(np.mean([s[0] for k in degraded_kinds for s in rows[k][m]])),
            "psnr": float(np.mean([s[1] for k in degraded_kinds for s in rows[k][m]])),
            "n": sum(len(rows[k][m]) for k in degraded_kinds)}
        for m in METHODS}
    return {"photos": list(photos), "kinds": list(kinds), "seeds": seeds, "summary": summary,
            "plan_seconds": {"mean": float(np.mean(times)), "max": float(np.max(times)), "n": len(times)},
            "cases": cases,
            "notes": "metrics on sRGB-encoded 8-bit renditions vs the original 8-bit photo; PSNR capped at 100 dB"}


def print_table(result: dict) -> None:
    s = result["summary"]
    head = f"{'degradation':16s}" + "".join(f"{m:>22s}" for m in METHODS)
    print("mean ΔE2000 / PSNR dB vs the original (sRGB 8-bit renditions); lower ΔE, higher PSNR is better")
    print(head)
    print(f"{'':16s}" + "".join(f"{'ΔE':>12s}{'PSNR':>10s}" for _ in METHODS))
    order = [k for k in s if k not in ("original", "all degraded")] + ["all degraded", "original"]
    for kind in order:
        line = f"{kind:16s}"
        for m in METHODS:
            v = s[kind].get(m)
            line += f"{v['delta_e']:12.2f}{v['psnr']:10.2f}" if v else f"{'—':>12s}{'—':>10s}"
        print(line)
    t = result["plan_seconds"]
    print(f"\nplanning (make_proxy + 3 stages): mean {1000 * t['mean']:.0f} ms, max {1000 * t['max']:.0f} ms "
          f"over {t['n']} plans")
    print("'original' row: degraded = the untouched photo (0), auto = what auto does to a good photo (harm).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=2, help="seeds per degradation kind (default 2)")
    ap.add_argument("--photos", default=",".join(PHOTOS), help="comma-separated skimage photos")
    ap.add_argument("--kinds", default=",".join(dg.KINDS + dg.COMBINED), help="comma-separated degradations")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON instead of a table")
    ap.add_argument("--verbose", action="store_true", help="print each case to stderr")
    args = ap.parse_args(argv)
    result = run(args.photos.split(","), args.kinds.split(","), args.seeds, args.verbose)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
