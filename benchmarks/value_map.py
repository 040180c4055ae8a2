#!/usr/bin/env python3
"""Fit the value map of the ``monetgpt-7b`` preset: published MonetGPT values → monet values.

    benchmarks/corpus.sh /tmp/corpus                                  # the free photo corpus (once)
    python benchmarks/value_map.py --corpus /tmp/corpus --out /tmp/vmap [--write]

For every one of the 33 operations and every model value v on a grid (−100…100, step 10,
and ±5), the published pipeline's rendering of v (its value rules, then its operation:
``benchmarks/monetgpt_ops.py``) is computed on the corpus's training photos, and the monet
value m of the same operation that minimises the mean CIEDE2000 to it is searched
(:func:`monet_cli.value_map.best_value`: a grid, then golden section). The best values are
made a valid table (monotone, 0 ↦ 0: :func:`monet_cli.value_map.monotone_points`).

Then, on the corpus's **held-out** photos (never used in the fit), per operation the mean
ΔE2000 between the published rendering and monet's, over the grid's non-zero values:
``mapped`` (monet at the map's value), ``unmapped`` (monet at the model's value unchanged,
what monet did before the map) and ``effect`` (the published rendering against the photo
untouched: how large the operation is). Printed as a table and written to OUT/value_map.md
and OUT/value_map.json; ``--write`` replaces the ``value_map:`` block of
``models/monetgpt-7b.yaml`` with the new table and these residuals.

Colour: the published pipeline works on sRGB-encoded values as they are; monet renders in
its linear working space from the same sRGB photo and is compared as an sRGB rendition.
Figures are a benchmark's, measured on this machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import monetgpt_ops as published  # noqa: E402

GRID = [-100, -90, -80, -70, -60, -50, -40, -30, -20, -10, -5, 0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
PRESET = ROOT / "models" / "monetgpt-7b.yaml"
# Where the published operation does more than monet's of the same name, the other operations
# of the stage that its value may also move: the published coupling of positive Blacks
# (Contrast +2b, Exposure +b/10); the midtone gamma of published Exposure and the L* change of
# Whites (a brightness change there); the b* and L* shift of published Tint (a Temperature
# change here) and the green-magenta side of its colour balance.
COUPLED = {"Blacks": ("Exposure", "Contrast"), "Exposure": ("Contrast",), "Whites": ("Exposure",),
           "Tint": ("Temperature",), "Temperature": ("Tint",)}
ROUNDS = 2  # coordinate-descent rounds of the joint search
KEEP_IF = 0.1  # ΔE2000 a coupling must gain on the training photos to be kept
MARKER = "# value_map: written by benchmarks/value_map.py"


def load_photos(folder: Path, size: int, limit: int | None) -> list[np.ndarray]:
    """sRGB-encoded float64 photos, long side ``size`` (box filter), ``limit`` spread evenly."""
    from PIL import Image

    paths = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    out = []
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size), Image.Resampling.BOX)
            out.append(np.asarray(im, dtype=np.float64) / 255.0)
    return out


class Scorer:
    """Mean ΔE2000 (each photo weighted equally) between a published rendering and monet's."""

    def __init__(self, photos: list[np.ndarray], sigma: float):
        from monet_cli import colorspaces as cs

        s2w = cs.SRGB.linear().matrix_to(cs.WORKING)
        self.photos = photos
        self.sigma = sigma
        self.linear = np.concatenate([(cs.SRGB_TRC.decode(p) @ s2w.T).reshape(-1, 3) for p in photos])
        self.linear = self.linear.astype(np.float32)[None]  # one row of every photo's pixels
        self.w = np.concatenate([np.full(p.shape[0] * p.shape[1], 1.0 / (p.shape[0] * p.shape[1] * len(photos)))
                                 for p in photos])
        self.original = self._lab_of([p.reshape(-1, 3) for p in photos])
        self._targets: dict[tuple[str, int], np.ndarray] = {}

    @staticmethod
    def _lab_of(parts):
        from monet_cli.metrics import srgb_to_lab

        return srgb_to_lab(np.concatenate(parts))

    def target(self, op: str, v: int) -> np.ndarray:
        """The published rendering of ``v`` (Lab), computed once per (op, value)."""
        key = (op, int(v))
        if key not in self._targets:
            self._targets[key] = self._lab_of([published.render_op(p, op, v, sigma=self.sigma).reshape(-1, 3)
                                               for p in self.photos])
        return self._targets[key]

    def monet(self, values: dict) -> np.ndarray:
        from monet_cli.metrics import srgb_rendition, srgb_to_lab
        from monet_cli.render import render_linear

        values = {k: float(v) for k, v in values.items() if v}
        if not values:
            return self.original
        return srgb_to_lab(srgb_rendition(render_linear(self.linear, values), bits=None))[0]

    def error(self, target: np.ndarray, lab: np.ndarray) -> float:
        from monet_cli.metrics import delta_e2000

        return float(np.sum(self.w * delta_e2000(target, lab)))


def _errors(scorer: Scorer, op: str, values_of) -> list[float]:
    """Mean ΔE2000 to the published rendering at every non-zero grid value, monet rendering
    ``values_of(v)`` (a dict of monet values)."""
    out = []
    for v in GRID:
        if v == 0:
            continue
        out.append(scorer.error(scorer.target(op, v), scorer.monet(values_of(v))))
    return out


def fit_op(args) -> dict:
    """One operation's row: its own table, and where :data:`COUPLED` lists other operations
    of its stage, the tables it adds to them (searched jointly, by coordinate descent) —
    kept only if they lower the training photos' error by more than :data:`KEEP_IF` ΔE."""
    op, train, heldout, sigma = args
    from monet_cli.value_map import OpMap, best_value, monotone_points

    t = time.perf_counter()
    fit = Scorer(train, sigma)
    dims = [op] + [d for d in COUPLED.get(op, ())]
    single, joint = [], {d: [] for d in dims}
    for v in GRID:
        if v == 0 or published.damp(op, v) == 0:
            single.append(0.0)
            for d in dims:
                joint[d].append(0.0)
            continue
        target = fit.target(op, v)
        own = best_value(lambda m: fit.error(target, fit.monet({op: m})))
        single.append(own)
        vals = {d: 0.0 for d in dims}
        vals[op] = own
        for _ in range(ROUNDS if len(dims) > 1 else 0):
            for d in dims:
                vals[d] = best_value(lambda m, d=d: fit.error(target, fit.monet({**vals, d: m})))
        for d in dims:
            joint[d].append(vals[d])
    plain = OpMap(op=op, points=tuple(tuple(p) for p in monotone_points(GRID, single)))
    row, train_err = plain, {"single": float(np.mean(_errors(fit, op, lambda v: plain_values(plain, v))))}
    if len(dims) > 1:
        coupled = OpMap(op=op, points=tuple(tuple(p) for p in monotone_points(GRID, joint[op])),
                        adds=tuple((d, tuple(tuple(p) for p in monotone_points(GRID, joint[d]))) for d in dims[1:]))
        train_err["coupled"] = float(np.mean(_errors(fit, op, lambda v: plain_values(coupled, v))))
        if train_err["coupled"] < train_err["single"] - KEEP_IF:
            row = coupled
    test = Scorer(heldout, sigma)
    mapped = _errors(test, op, lambda v: plain_values(row, v))
    unmapped = _errors(test, op, lambda v: {op: v})
    effect = _errors(test, op, lambda v: {})
    single_test = mapped if row is plain else _errors(test, op, lambda v: plain_values(plain, v))
    return {"op": op, "best": single, "joint": joint, "points": [list(p) for p in row.points],
            "adds": {d: [list(p) for p in pts] for d, pts in row.adds}, "rule": published.RULES[op],
            "train": train_err,
            "residual": {"mapped": float(np.mean(mapped)), "unmapped": float(np.mean(unmapped)),
                         "effect": float(np.mean(effect)), "single": float(np.mean(single_test))},
            "per_value": {"mapped": mapped, "unmapped": unmapped, "effect": effect},
            "seconds": time.perf_counter() - t}


def plain_values(row, v) -> dict:
    """The monet values ``row`` gives the model's value ``v`` (own table plus its adds)."""
    out = {row.op: round(row(v), 1)}
    for d, add in row.added(v).items():
        out[d] = round(add, 1)
    return out


def yaml_block(rows: list[dict], source: str) -> str:
    """The ``value_map:`` block, one row per op with its rule and held-out residuals."""
    lines = [MARKER + " (do not edit below by hand; rerun it)", "value_map:", f"  source: >-\n    {source}", "  ops:"]
    for r in rows:
        res = r["residual"]
        pts = ", ".join(f"[{a:g}, {b:g}]" for a, b in r["points"])
        lines += [f"    {r['op']}:",
                  f"      rule: {json.dumps(r['rule'], ensure_ascii=False)}",
                  f"      residual: {{mapped: {res['mapped']:.2f}, unmapped: {res['unmapped']:.2f}, "
                  f"effect: {res['effect']:.2f}}}  # held-out mean ΔE2000",
                  f"      points: [{pts}]"]
        if r.get("adds"):
            lines.append("      adds:")
            for d, tpts in r["adds"].items():
                lines.append(f"        {d}: [{', '.join(f'[{a:g}, {b:g}]' for a, b in tpts)}]")
    return "\n".join(lines) + "\n"


def write_preset(block: str, path: Path = PRESET) -> None:
    text = path.read_text(encoding="utf-8")
    head = text.split(MARKER, 1)[0].rstrip("\n") + "\n\n"
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(head + block, encoding="utf-8")
    import yaml

    from monet_cli.value_map import parse_value_map

    parse_value_map(yaml.safe_load(tmp.read_text(encoding="utf-8"))["value_map"], "monetgpt-7b")  # valid, or raise
    tmp.replace(path)


def table(rows: list[dict]) -> str:
    out = ["| op | held-out ΔE2000 with the map | without (values as said) | the op's own size | "
           "map at −100 / −50 / +50 / +100 |", "|---|---|---|---|---|"]
    for r in rows:
        res = r["residual"]
        pts = dict((a, b) for a, b in r["points"])
        ends = " / ".join(f"{pts[v]:+g}" for v in (-100, -50, 50, 100))
        for d, tpts in (r.get("adds") or {}).items():
            t = dict((a, b) for a, b in tpts)
            ends += f"; adds {d} " + " / ".join(f"{t[v]:+g}" for v in (-100, -50, 50, 100))
        alone = f" (one op: {res['single']:.2f})" if r.get("adds") else ""
        out.append(f"| {r['op']} | {res['mapped']:.2f}{alone} | {res['unmapped']:.2f} | {res['effect']:.2f} | {ends} |")
    m = np.mean([r["residual"]["mapped"] for r in rows])
    u = np.mean([r["residual"]["unmapped"] for r in rows])
    e = np.mean([r["residual"]["effect"] for r in rows])
    out.append(f"| **mean of the {len(rows)} ops** | **{m:.2f}** | **{u:.2f}** | {e:.2f} | |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="a benchmarks/corpus.sh folder (train/, heldout/)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/value-map"))
    ap.add_argument("--size", type=int, default=96, help="long side of the photos, pixels (default 96)")
    ap.add_argument("--photos", type=int, default=24, help="training photos used for the fit (default 24)")
    ap.add_argument("--ops", default="", help="comma-separated ops (default: all 33)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--write", action="store_true", help=f"write the table into {PRESET.relative_to(ROOT)}")
    ap.add_argument("--reuse", action="store_true", help="reuse OUT/value_map.json of an earlier run with the same "
                                                         "settings instead of fitting again (e.g. to --write it)")
    a = ap.parse_args(argv)
    from monet_cli.catalog import catalog

    ops = [o for o in a.ops.split(",") if o] or list(catalog().ops)
    train = load_photos(a.corpus / "train", a.size, a.photos)
    heldout = load_photos(a.corpus / "heldout", a.size, None)
    if not train or not heldout:
        raise SystemExit(f"{a.corpus}: expected photos in train/ and heldout/ (benchmarks/corpus.sh)")
    sigma = 5.0 * a.size / 1024  # the published mask blur (5 px) at a ~1024 px photo, scaled to ours
    print(f"fitting {len(ops)} ops on {len(train)} photos, scoring on {len(heldout)} held-out photos, "
          f"{a.size} px, {a.jobs} jobs", file=sys.stderr)
    t = time.perf_counter()
    rows = []
    settings = {"grid": GRID, "size": a.size, "train": len(train), "heldout": len(heldout),
                "coupled": {k: list(v) for k, v in COUPLED.items()}, "rounds": ROUNDS}
    earlier = a.out / "value_map.json"
    if a.reuse and earlier.exists():
        old = json.loads(earlier.read_text())
        if {k: old.get(k) for k in settings} != settings or [r["op"] for r in old["rows"]] != ops:
            raise SystemExit(f"{earlier}: made with other settings or ops; run without --reuse")
        rows = old["rows"]
        print(f"reusing {earlier}", file=sys.stderr)
    with ProcessPoolExecutor(max_workers=a.jobs) as ex:
        for r in ex.map(fit_op, [(op, train, heldout, sigma) for op in ops] if not rows else []):
            rows.append(r)
            print(f"  {r['op']:<28} mapped {r['residual']['mapped']:.2f}  unmapped {r['residual']['unmapped']:.2f}"
                  f"  ({r['seconds']:.0f} s)", file=sys.stderr)
    md = table(rows)
    print(md)
    print(f"\n{time.perf_counter() - t:.0f} s", file=sys.stderr)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "value_map.md").write_text(md + "\n", encoding="utf-8")
    (a.out / "value_map.json").write_text(json.dumps({**settings, "rows": rows}, indent=1))
    if a.write:
        if len(ops) != len(catalog().ops):
            raise SystemExit("--write needs every op (leave out --ops)")
        source = (f"benchmarks/value_map.py on {_dt.date.today().isoformat()}: the published operations and value "
                  f"rules re-implemented in numpy (benchmarks/monetgpt_ops.py), each model value's nearest monet "
                  f"value in mean CIEDE2000 over {len(train)} photos of benchmarks/corpus.sh at {a.size} px, made "
                  f"monotone; residuals on its {len(heldout)} held-out photos.")
        write_preset(yaml_block(rows, source))
        print(f"wrote the value map into {PRESET}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
