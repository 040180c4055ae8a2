"""The restore benchmark (``monet bench restore``): can a planner undo known damage to good photos?

Each photo is taken as the expert's version (the reference). For each degradation kind of
:mod:`monet_cli.degrade` (exposure, white balance, contrast, saturation, alone and in a few
combinations) and each seed:

1. the reference is the photo reduced to long side ``size`` (default
   :data:`monet_cli.evaluate.COMMON_SIDE` = 512; box filter in linear light) and stored as
   8-bit sRGB — everything below happens at that size;
2. it is degraded with the renderer (``degrade.degrade(kind, seed)``: seeded, documented
   values) and saved like an 8-bit sRGB file, so clipping is real (``save_like_8bit``);
3. four candidates are made from the degraded photo only: ``degraded`` (left alone),
   ``restored`` (the backend plans the degraded photo with :func:`plan_proxy` and the plan is
   rendered with ``render_linear``), and the one-click baselines ``autocontrast`` and
   ``grey_world`` (:mod:`monet_cli.degrade`);
4. each candidate's 8-bit sRGB rendition is scored against the reference with every metric
   of :mod:`monet_cli.evaluate` (PSNR capped at 100 dB, SSIM, ΔE2000, L1, histogram
   intersection; LPIPS when its weights are on disk).

The planner never sees the reference. The ``original`` kind plans the undegraded photo: what
the backend (and each baseline) does to a photo that needs nothing. Planning time is the
wall time of ``make_proxy`` + ``plan_proxy``; the renderer is compiled before timing.

Photos: any folder (``collect_photos``: TIFF, JPEG, PNG, RAW), or the colour photos bundled
with scikit-image (:data:`SKIMAGE_PHOTOS`: astronaut, coffee, chelsea, rocket and the left
view of ``stereo_motorcycle``), which :func:`export_skimage_photos` can also write to a
folder as PNG.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from monet_cli import degrade as dg
from monet_cli import evaluate as ev
from monet_cli.errors import InputError, MonetError, OutputError, UsageError

SKIMAGE_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
DEFAULT_KINDS: tuple[str, ...] = dg.KINDS + dg.COMBINED + dg.INDEPENDENT
METHODS: tuple[str, ...] = ("degraded", "restored", "autocontrast", "grey_world")
ORIGINAL = "original"
ALL = "all degraded"
KIND_LABELS = {
    "under": "under-exposed", "over": "over-exposed", "warm": "warm cast", "cool": "cool cast",
    "flat": "flat contrast", "harsh": "harsh contrast", "washed": "washed out", "oversaturated": "oversaturated",
    "under+cool": "under + cool", "over+warm": "over + warm", "flat+washed": "flat + washed",
    "x-exposure": "exposure gain (x)", "x-cast": "channel-gain cast (x)", "x-contrast": "power-curve contrast (x)",
    "x-saturation": "chroma scale (x)", "x-gamma": "gamma (x)", "x-mix": "2–3 of the (x) at once",
    ORIGINAL: "none (original)", ALL: "all degraded",
}


# ----------------------------------------------------------------------------- photos


def skimage_photo(name: str) -> np.ndarray:
    """A colour photo bundled with scikit-image, 8-bit sRGB ``(H, W, 3)``."""
    try:
        import skimage.data
    except ImportError:
        raise UsageError("the bundled photos need scikit-image (pip install scikit-image); "
                         "or give a folder of photos") from None
    if name not in SKIMAGE_PHOTOS:
        raise UsageError(f"unknown scikit-image photo {name!r}; photos are {', '.join(SKIMAGE_PHOTOS)}")
    if name == "motorcycle":
        return np.ascontiguousarray(skimage.data.stereo_motorcycle()[0][..., :3])
    return np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])


def export_skimage_photos(folder, *, names=SKIMAGE_PHOTOS, force: bool = False) -> list[Path]:
    """Write the bundled scikit-image photos to ``folder`` as 8-bit sRGB PNG (``astronaut.png``…)."""
    from monet_cli.colorspaces import SRGB
    from monet_cli.images import Image, write_image

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {folder}: {e.strerror or e}") from None
    return [write_image(folder / f"{n}.png", Image(skimage_photo(n), SRGB, "png"), overwrite=force) for n in names]


def reference(photo, size: int = ev.COMMON_SIDE) -> np.ndarray:
    """The 8-bit sRGB reference of ``photo`` (a path, an Image, or 8-bit sRGB codes) at long
    side ≤ ``size``: decoded to linear light, box-filtered, encoded like an 8-bit file."""
    from monet_cli.images import read_image
    from monet_cli.planners.base import make_proxy

    if isinstance(photo, np.ndarray):
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise ValueError("expected (H, W, 3) uint8 sRGB codes")
        if max(photo.shape[:2]) <= size:
            return photo
        return dg.working_to_srgb8(make_proxy(dg.srgb8_to_working(photo), size))
    image = read_image(photo, draft=True) if isinstance(photo, (str, Path)) else photo
    return dg.working_to_srgb8(make_proxy(image, size))


def load_references(photo_dir=None, *, size: int = ev.COMMON_SIDE,
                    names=None) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, str]]]:
    """``([(name, 8-bit reference)], [(path, why) that failed])`` from a folder, or the
    scikit-image photos (``names`` picks some) when ``photo_dir`` is None."""
    if photo_dir is None:
        return [(n, reference(skimage_photo(n), size)) for n in (names or SKIMAGE_PHOTOS)], []
    from monet_cli.batch import collect_photos

    photos, missing = collect_photos([photo_dir])
    refs, failed = [], [(str(p), w) for p, w in missing]
    for p in photos:
        try:
            refs.append((p.name, reference(p, size)))
        except MonetError as e:
            failed.append((str(p), str(e).replace(f"{p}: ", "", 1)))
    return refs, failed


# ----------------------------------------------------------------------------- running


@dataclass
class Case:
    photo: str
    kind: str
    seed: int | None
    degradation: dict
    plan: dict
    failed_stages: list[str]
    plan_seconds: float
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # method → capped metrics

    def to_dict(self) -> dict:
        return {"photo": self.photo, "kind": self.kind, "seed": self.seed, "degradation": self.degradation,
                "plan": self.plan, "failed_stages": self.failed_stages, "plan_seconds": round(self.plan_seconds, 4),
                "scores": {m: {k: round(v, 5) for k, v in s.items()} for m, s in self.scores.items()}}


def _restore(img: np.ndarray, planner, style: str) -> tuple[np.ndarray, dict, list[str], float]:
    from monet_cli.planners.base import make_proxy, plan_proxy
    from monet_cli.render import render_linear

    t = time.perf_counter()
    plan = plan_proxy(make_proxy(img), planner, style=style)
    dt = time.perf_counter() - t
    adj = plan.adjustments
    failed = [s for s, sp in plan.stages.items() if sp.status == "failed"]
    return render_linear(img, adj), adj, failed, dt


def run_case(name: str, ref8: np.ndarray, kind: str, seed: int | None, planner, *, style: str = "balanced",
             lpips=None, ref_cache: dict | None = None) -> Case:
    """One photo × degradation × seed (``kind`` :data:`ORIGINAL`: the undegraded photo).
    ``ref_cache``: see :func:`monet_cli.evaluate.image_metrics` (one dict per reference)."""
    x0 = dg.srgb8_to_working(ref8)
    if kind == ORIGINAL:
        deg, dadj = x0, {}
    else:
        deg, dadj = dg.degrade(x0, kind, seed or 0)
        deg = dg.save_like_8bit(deg)
    restored, adj, failed, dt = _restore(deg, planner, style)
    case = Case(name, kind, seed, dadj, adj, failed, dt)
    cands = {"degraded": deg, "restored": restored, "autocontrast": dg.autocontrast(deg),
             "grey_world": dg.grey_world(deg)}
    ref = ref8.astype(np.float64) / 255.0
    cache = ref_cache if ref_cache is not None else {}
    for method, img in cands.items():
        out = dg.working_to_srgb8(img).astype(np.float64) / 255.0
        case.scores[method] = ev.capped(ev.image_metrics(ref, out, lpips=lpips, ref_cache=cache))
    return case


@dataclass
class BenchReport:
    backend: str
    model: str | None
    style: str
    size: int
    photos: list[str]
    kinds: list[str]
    seeds: int
    cases: list[Case]
    failed_photos: list[tuple[str, str]]
    lpips: str
    decoding: dict | None = None  # model backends that sample: samples, consensus, sample_temperature

    def _group(self, kind: str) -> list[Case]:
        if kind == ALL:
            return [c for c in self.cases if c.kind != ORIGINAL]
        return [c for c in self.cases if c.kind == kind]

    @property
    def rows(self) -> list[str]:
        """Summary rows: each kind present, then ``all degraded`` and ``original``."""
        kinds = [k for k in self.kinds if self._group(k)]
        return kinds + ([ALL] if self._group(ALL) else []) + ([ORIGINAL] if self._group(ORIGINAL) else [])

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{row: {method: {metric: mean, …, "n": count}}}``."""
        out = {}
        for row in self.rows:
            group = self._group(row)
            out[row] = {}
            for m in METHODS:
                s = ev.summarise([c.scores[m] for c in group])
                out[row][m] = {k: v["mean"] for k, v in s.items()}
                out[row][m]["n"] = len(group)
        return out

    def changes(self, metric: str = "delta_e", tolerance: float = 0.1) -> dict[str, int]:
        """Over the degraded cases, how often ``restored`` beat ``degraded`` on ``metric`` by more
        than ``tolerance``, was worse by more than it, or neither."""
        sign = ev.METRICS[metric][1]
        better = worse = same = 0
        for c in self._group(ALL):
            d = sign * (c.scores["restored"][metric] - c.scores["degraded"][metric])
            if d > tolerance:
                better += 1
            elif d < -tolerance:
                worse += 1
            else:
                same += 1
        return {"better": better, "worse": worse, "same": same}

    def plan_seconds(self) -> dict[str, float]:
        t = np.array([c.plan_seconds for c in self.cases]) if self.cases else np.zeros(1)
        return {"mean": float(t.mean()), "max": float(t.max()), "n": len(self.cases)}

    @property
    def metric_names(self) -> list[str]:
        names = set().union(*(c.scores["restored"].keys() for c in self.cases)) if self.cases else set()
        return [m for m in ev.METRICS if m in names]

    def to_dict(self, *, cases: bool = True) -> dict:
        d = {"backend": self.backend, "model": self.model, "decoding": self.decoding, "style": self.style,
             "size": self.size, "photos": self.photos, "kinds": self.kinds, "seeds": self.seeds,
             "methods": {"degraded": "left alone", "restored": f"planned by {self.backend} and rendered",
                         "autocontrast": "1–99 % luminance stretch", "grey_world": "grey-world white balance"},
             "rendition": "8-bit sRGB at long side ≤ size; PSNR capped at 100 dB",
             "lpips": self.lpips, "summary": self.summary(), "delta_e_changes": self.changes(),
             "plan_seconds": self.plan_seconds(), "failed_photos": [{"path": p, "reason": w}
                                                                   for p, w in self.failed_photos]}
        if cases:
            d["cases"] = [c.to_dict() for c in self.cases]
        return d

    def csv_text(self) -> str:
        """One row per case and method: photo, kind, seed, method, degradation, plan, metrics."""
        metrics = self.metric_names
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["photo", "kind", "seed", "method", "degradation", "plan"] + metrics)

        def ops(d):
            return " ".join(f"{k}={v:g}" for k, v in d.items())

        for c in self.cases:
            for m in METHODS:
                s = c.scores[m]
                w.writerow([c.photo, c.kind, "" if c.seed is None else c.seed, m, ops(c.degradation),
                            ops(c.plan) if m == "restored" else "",
                            *("" if k not in s else f"{s[k]:.6g}" for k in metrics)])
        return buf.getvalue()

    def markdown(self) -> str:
        """The per-degradation table (mean ΔE2000 / PSNR per method; in bold the best ΔE of a
        fix when it beats leaving the photo alone), as in the README."""
        s = self.summary()
        head = ["degradation", "degraded ΔE / PSNR", self.backend, "autocontrast", "grey world"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = []
            best = min(s[row][m]["delta_e"] for m in METHODS if m != "degraded")
            for m in METHODS:
                v = s[row][m]
                txt = f"{v['delta_e']:.2f} / {v['psnr']:.2f}"
                bold = (m != "degraded" and row != ORIGINAL and v["delta_e"] == best
                        and best < s[row]["degraded"]["delta_e"])
                cells.append(f"**{txt}**" if bold else txt)
            label = KIND_LABELS.get(row, row)
            lines.append(f"| {('**' + label + '**') if row == ALL else label} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def run_restore(references: list[tuple[str, np.ndarray]], planner, *, kinds=DEFAULT_KINDS, seeds: int = 2,
                style: str = "balanced", lpips: bool = True, original: bool = True, size: int = ev.COMMON_SIDE,
                failed_photos=(), on_case: Callable[[Case], None] | None = None) -> BenchReport:
    """Run the benchmark (module docstring) on 8-bit sRGB ``references`` with ``planner``."""
    from monet_cli.planners.base import decoding_of
    from monet_cli.render import render_linear

    kinds = list(kinds)
    for k in kinds:
        try:
            dg.check_kind(k)
        except ValueError as e:
            raise UsageError(str(e)) from None
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if not references:
        raise InputError("no photos to benchmark")
    ok, why = ev.lpips_status()
    scorer = ev.LpipsScorer() if (lpips and ok) else None
    if not lpips:
        why = "LPIPS not computed: disabled (--no-lpips)"
    render_linear(np.zeros((4, 4, 3), np.float32), {"Exposure": 1})  # compile outside the timings
    cases = []
    for name, ref8 in references:
        cache: dict = {}
        todo = ([(ORIGINAL, None)] if original else []) + [(k, s) for k in kinds for s in range(seeds)]
        for kind, seed in todo:
            case = run_case(name, ref8, kind, seed, planner, style=style, lpips=scorer, ref_cache=cache)
            cases.append(case)
            if on_case is not None:
                on_case(case)
    return BenchReport(backend=planner.name, model=getattr(planner, "model", None), style=style, size=size,
                       photos=[n for n, _ in references], kinds=kinds, seeds=seeds, cases=cases,
                       failed_photos=list(failed_photos), lpips=why, decoding=decoding_of(planner))


def write_outputs(report: BenchReport, out_dir, *, force: bool = False) -> list[Path]:
    """Write ``bench.csv``, ``bench.json``, ``bench.md``, ``metrics.png`` (metric distributions of
    each method over the degraded cases) and ``plan_values.png`` (the restoring plans) into
    ``out_dir`` (created), atomically; existing files need ``force``."""
    from monet_cli import plots
    from monet_cli.images import atomic_write

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {out_dir}: {e.strerror or e}") from None
    names = ["bench.csv", "bench.json", "bench.md", "metrics.png", "plan_values.png"]
    if not force:
        exists = [n for n in names if (out_dir / n).exists()]
        if exists:
            raise OutputError("already exists; use --force to overwrite it", path=out_dir / exists[0])
    texts = {"bench.csv": report.csv_text(),
             "bench.json": json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n",
             "bench.md": report.markdown()}
    written = []
    for n, text in texts.items():
        atomic_write(out_dir / n, lambda t, text=text: t.write_text(text, encoding="utf-8"), overwrite=force)
        written.append(out_dir / n)
    degraded = [c for c in report.cases if c.kind != ORIGINAL]
    groups = {(report.backend if m == "restored" else m): [c.scores[m] for c in degraded] for m in METHODS}
    img = plots.metric_distributions(groups, report.metric_names,
                                     title=f"restore benchmark: {len(degraded)} degraded cases, "
                                           f"backend {report.backend}")
    written.append(plots.save_png(out_dir / "metrics.png", img, overwrite=force))
    img = plots.plan_value_distributions({report.backend: [c.plan for c in degraded]},
                                         title=f"values of the {len(degraded)} restoring plans ({report.backend})")
    written.append(plots.save_png(out_dir / "plan_values.png", img, overwrite=force))
    return written
