"""Evaluation of retouched photos against expert references: pairing, metrics, reports.

``monet eval PRED_DIR --target DIR [--target DIR …]`` and ``monet bench restore`` use this
module; everything here works from Python without the CLI.

Pairing by name
    A file's *key* is its name without the last suffix and without a trailing ``.monet``,
    compared case-insensitively: ``a0001.monet.jpg``, ``a0001.tif`` and ``A0001.JPG`` all have
    the key ``a0001``. Only the files directly inside each folder with a photo suffix (TIFF,
    JPEG, PNG, RAW) count; hidden files, sidecars, locks and previews do not. When a folder has
    several files with one key, a prediction folder prefers monet's output (``a.monet.jpg``
    over ``a.jpg``, as ``monet apply`` writes them beside the photos) and a target folder
    prefers the file that is *not* monet's output; any other clash is reported as ambiguous.
    A prediction with no target in some folder is scored against the targets it has and the
    gap is reported; one with no target at all is reported as missing and not scored.

Common size
    Both images of a pair are decoded to scene-linear light (colour-managed: every file's own
    colour space), box-filtered in linear light to the same size — long side
    ``min(size, long side of either image)``, :data:`COMMON_SIDE` = 512 by default — and
    rendered as a display shows them: linear sRGB, clipped to [0, 1], sRGB-encoded and
    quantised to 8 bits (:func:`monet_cli.metrics.srgb_rendition`). Every metric compares
    these two renditions. Images whose aspect ratios differ by more than 2 % are refused
    (crop or rotate first): a metric between different framings means nothing.

Metrics (reference = the target; all on the [0, 1] scale of the renditions)
    ``psnr``      10·log10(1 / MSE) in dB, higher is better; identical images give +inf,
                  which reports cap at :data:`PSNR_CAP` = 100 dB so that means stay finite.
    ``ssim``      mean SSIM (Wang et al. 2004; 11×11 Gaussian σ 1.5), higher is better, 1 max.
    ``delta_e``   mean CIEDE2000 ΔE (CIE 142-2001, D65 CIELAB), lower is better, 0 min.
    ``l1``        mean absolute difference of the encoded values, lower is better.
    ``histogram`` histogram intersection, higher is better, 100 max: the mean of
                  ``hist_luminance``, ``hist_contrast`` and ``hist_saturation`` below.
    ``lpips``     LPIPS (Zhang et al. 2018, AlexNet) when torch, lpips and both weight files
                  are already on disk (:func:`lpips_status`); never downloaded. Lower is better.

Histogram intersection (Swain & Ballard 1991) of a per-pixel quantity ``q`` over two images:
    ``HI = 100 · Σ_k min(p_k, r_k)`` where ``p`` and ``r`` are the normalised histograms
    (counts / pixel count, so each sums to 1) of ``q`` over :data:`HIST_BINS` = 64 equal bins
    spanning the quantity's range; values outside the range fall into the end bins. 100 means
    identical distributions, 0 disjoint ones. The three quantities, per pixel of the sRGB
    rendition:

    - luminance: CIE L* (0–100), from CIELAB with the D65 white;
    - contrast: local RMS contrast of L*, ``sqrt(G(L*²) − G(L*)²)`` with ``G`` a Gaussian of
      σ = 1 % of the long side (at least 1 px, truncated at 3σ, edges mirrored); range 0–32
      (L* units);
    - saturation: HSV saturation ``(max − min) / max`` of the encoded R, G, B (0 for black);
      range 0–1.

Several targets (e.g. the five experts of MIT-Adobe FiveK): for each prediction and metric,
*best-over-targets* takes the best value over its targets (the closest expert, per metric:
the paper's rule) and *mean-over-targets* their mean. With one target both are that value.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from monet_cli import metrics as mt
from monet_cli.errors import InputError, MonetError, OutputError, UsageError

COMMON_SIDE = 512
HIST_BINS = 64
CONTRAST_SIGMA = 0.01  # of the long side
CONTRAST_RANGE = (0.0, 32.0)
PSNR_CAP = 100.0
ASPECT_TOLERANCE = 0.02

# name: (label, +1 higher is better / -1 lower is better)
METRICS: dict[str, tuple[str, int]] = {
    "psnr": ("PSNR dB", +1),
    "ssim": ("SSIM", +1),
    "delta_e": ("ΔE2000", -1),
    "l1": ("L1", -1),
    "histogram": ("hist ∩", +1),
    "hist_luminance": ("hist ∩ luminance", +1),
    "hist_contrast": ("hist ∩ contrast", +1),
    "hist_saturation": ("hist ∩ saturation", +1),
    "lpips": ("LPIPS", -1),
}
RULES = ("best", "mean")


# ----------------------------------------------------------------------------- features


def lightness(srgb) -> np.ndarray:
    """CIE L* (0–100, D65) of sRGB-encoded values (``uint`` codes or floats in [0, 1])."""
    return mt.srgb_to_lab(srgb)[..., 0]


def _blur_axis(img: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """Correlate ``(H, W)`` ``img`` with symmetric ``k`` along ``axis``, edges mirrored
    (``d c b a | a b c d``; an image shorter than the kernel repeats its edge beyond that)."""
    r = k.size // 2
    a = img if axis == 0 else img.T
    n = a.shape[0]
    m = min(r, n)
    p = np.concatenate([a[:m][::-1], a, a[n - m:][::-1]])
    if m < r:
        p = np.concatenate([np.repeat(p[:1], r - m, axis=0), p, np.repeat(p[-1:], r - m, axis=0)])
    out = np.zeros_like(a, dtype=np.float64)
    for i, w in enumerate(k):
        out += w * p[i:i + n]
    return out if axis == 0 else out.T


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    r = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    return _blur_axis(_blur_axis(np.asarray(img, dtype=np.float64), k, 0), k, 1)


def local_contrast(L: np.ndarray, sigma_fraction: float = CONTRAST_SIGMA) -> np.ndarray:
    """Local RMS contrast of lightness ``L`` ``(H, W)``: ``sqrt(max(G(L²) − G(L)², 0))``.

    ``G`` is a Gaussian blur with σ = ``sigma_fraction`` × the long side in pixels (at least
    1 px), truncated at 3σ, edges mirrored. A flat image has contrast 0 everywhere.

    >>> float(local_contrast(np.full((8, 8), 50.0)).max())
    0.0
    """
    L = np.asarray(L, dtype=np.float64)
    sigma = max(1.0, sigma_fraction * max(L.shape[:2]))
    m = _gaussian_blur(L, sigma)
    v = _gaussian_blur(L * L, sigma) - m * m
    return np.sqrt(np.maximum(v, 0.0))


def hsv_saturation(srgb) -> np.ndarray:
    """HSV saturation ``(max − min) / max`` of sRGB-encoded R, G, B; 0 where max is 0.

    >>> float(hsv_saturation(np.array([[[0.5, 0.25, 0.5]]]))[0, 0])
    0.5
    """
    a = mt.as_unit_float(srgb)
    hi, lo = a.max(axis=-1), a.min(axis=-1)
    return np.where(hi > 0, (hi - lo) / np.where(hi > 0, hi, 1.0), 0.0)


HIST_RANGES: dict[str, tuple[float, float]] = {
    "luminance": (0.0, 100.0),
    "contrast": CONTRAST_RANGE,
    "saturation": (0.0, 1.0),
}


def histogram_counts(values, lo: float, hi: float, bins: int = HIST_BINS) -> np.ndarray:
    """Integer counts of ``values`` in ``bins`` equal bins over [lo, hi]; values outside fall
    into the end bins (the last bin includes ``hi``)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    idx = np.clip(np.floor((v - lo) / (hi - lo) * bins), 0, bins - 1).astype(np.intp)
    return np.bincount(idx, minlength=bins).astype(np.int64)


def intersection(counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """``100 · Σ min(a/Na, b/Nb)`` of two count histograms (exactly 100 for equal ones).

    Computed as ``Σ min(a·Nb, b·Na) / (Na·Nb)`` in integers, so equal histograms give 100.0
    without rounding.

    >>> intersection(np.array([2, 2, 0]), np.array([0, 2, 2]))
    50.0
    """
    a, b = np.asarray(counts_a, dtype=np.int64), np.asarray(counts_b, dtype=np.int64)
    na, nb = int(a.sum()), int(b.sum())
    if na == 0 or nb == 0:
        raise ValueError("empty histogram")
    return 100.0 * int(np.minimum(a * nb, b * na).sum()) / (na * nb)


def histograms(srgb, *, L: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The three count histograms (``luminance``, ``contrast``, ``saturation``) of an sRGB
    rendition ``(H, W, 3)`` (module docstring for the definitions); ``L``: its L* if known."""
    L = lightness(srgb) if L is None else L
    values = {"luminance": L, "contrast": local_contrast(L), "saturation": hsv_saturation(srgb)}
    return {k: histogram_counts(values[k], *HIST_RANGES[k]) for k in HIST_RANGES}


def histogram_scores(ref, out, *, ref_hist: dict | None = None, out_L: np.ndarray | None = None) -> dict[str, float]:
    """``hist_luminance``, ``hist_contrast``, ``hist_saturation`` and their mean ``histogram``."""
    ha = ref_hist if ref_hist is not None else histograms(ref)
    hb = histograms(out, L=out_L)
    d = {f"hist_{k}": intersection(ha[k], hb[k]) for k in HIST_RANGES}
    d["histogram"] = float(np.mean(list(d.values())))
    return d


# ----------------------------------------------------------------------------- LPIPS

LPIPS_BACKBONE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, as lpips loads them


def _torch_hub_dir() -> Path:
    """torch.hub's folder, found like ``torch.hub.get_dir()`` does, without importing torch."""
    home = os.environ.get("TORCH_HOME")
    if home is None:
        home = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub"


def lpips_status() -> tuple[bool, str]:
    """Whether LPIPS can be computed without downloading anything: ``(ok, one-line reason)``.

    Needs the ``torch``, ``torchvision`` and ``lpips`` packages, lpips's linear-layer weights
    (shipped in the package, ``weights/v0.1/alex.pth``) and torchvision's AlexNet weights in
    torch.hub's checkpoint folder. Nothing is imported here.
    """
    for pkg, hint in (("torch", "pip install torch"), ("torchvision", "pip install torchvision"),
                      ("lpips", "pip install lpips")):
        if find_spec(pkg) is None:
            return False, f"LPIPS not computed: {pkg} is not installed ({hint})"
    spec = find_spec("lpips")
    lin = Path(spec.origin).parent / "weights" / "v0.1" / "alex.pth"
    backbone = _torch_hub_dir() / "checkpoints" / LPIPS_BACKBONE
    for f in (lin, backbone):
        if not f.is_file():
            return False, f"LPIPS not computed: weights not on disk ({f}); monet never downloads them"
    return True, "LPIPS (AlexNet) available"


class LpipsScorer:
    """LPIPS distance of two sRGB renditions on the CPU (or CUDA when present)."""

    def __init__(self):
        ok, why = lpips_status()
        if not ok:
            raise MonetError(why)
        import lpips
        import torch

        self._torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = lpips.LPIPS(net="alex", verbose=False).to(self.device).eval()

    def __call__(self, ref, out) -> float:
        torch = self._torch

        def t(x):
            a = mt.as_unit_float(x).astype(np.float32) * 2.0 - 1.0
            return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None].to(self.device)

        with torch.no_grad():
            return float(self.model(t(ref), t(out)).item())


# ----------------------------------------------------------------------------- metrics


def image_metrics(ref, out, *, lpips: Callable | None = None, ref_cache: dict | None = None) -> dict[str, float]:
    """Every metric of rendition ``out`` against reference ``ref`` (same shape, sRGB-encoded).

    PSNR is the raw value here (+inf for identical images); ``lpips`` is included only when a
    scorer is given. ``ref_cache``: a dict kept by the caller for one reference — its CIELAB
    and histograms are stored there on first use and reused against later candidates.
    """
    ref, out = mt.as_unit_float(ref), mt.as_unit_float(out)
    if ref.shape != out.shape:
        raise ValueError(f"images differ in shape: {ref.shape} vs {out.shape}")
    cache = ref_cache if ref_cache is not None else {}
    if "lab" not in cache:
        cache["lab"] = mt.srgb_to_lab(ref)
        cache["hist"] = histograms(ref, L=cache["lab"][..., 0])
    lab_out = mt.srgb_to_lab(out)
    d = {"psnr": mt.psnr(ref, out), "ssim": mt.ssim(ref, out),
         "delta_e": float(np.mean(mt.delta_e2000(cache["lab"], lab_out))), "l1": mt.l1(ref, out)}
    d.update(histogram_scores(ref, out, ref_hist=cache["hist"], out_L=lab_out[..., 0]))
    if lpips is not None:
        d["lpips"] = lpips(ref, out)
    return d


def capped(d: dict[str, float]) -> dict[str, float]:
    """``d`` with PSNR capped at :data:`PSNR_CAP` (what reports show and average)."""
    out = dict(d)
    if "psnr" in out:
        out["psnr"] = min(out["psnr"], PSNR_CAP)
    return out


def combine(per_target: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Best-over-targets (per metric, the best value) and mean-over-targets of several results.

    >>> combine([{"psnr": 30.0, "delta_e": 2.0}, {"psnr": 20.0, "delta_e": 1.0}])["best"]
    {'psnr': 30.0, 'delta_e': 1.0}
    """
    if not per_target:
        raise ValueError("no targets")
    names = [m for m in per_target[0] if all(m in d for d in per_target)]
    best, mean = {}, {}
    for m in names:
        vals = [d[m] for d in per_target]
        sign = METRICS.get(m, ("", +1))[1]
        best[m] = max(vals) if sign > 0 else min(vals)
        mean[m] = float(np.mean(vals))
    return {"best": best, "mean": mean}


# ----------------------------------------------------------------------------- loading


def _resize_exact(a: np.ndarray, h: int, w: int) -> np.ndarray:
    from monet_cli.measure import area_integrate

    H, W = a.shape[:2]
    if H != h:
        a = area_integrate(a, np.arange(h + 1) * (H / h), axis=0)
    if W != w:
        a = area_integrate(a, np.arange(w + 1) * (W / w), axis=1)
    return a


def common_renditions(target, prediction, size: int = COMMON_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The two 8-bit sRGB renditions (float64 in [0, 1]) a pair is scored on, at a common size.

    ``target`` and ``prediction`` are :class:`~monet_cli.images.Image` objects or file paths.
    Both are box-filtered in linear light to long side ``min(size, either image's long side)``
    and, if rounding left them a pixel apart, to the smaller of the two shapes.
    """
    from monet_cli.images import read_image
    from monet_cli.planners.base import make_proxy

    if size < 16:
        raise UsageError(f"--size must be at least 16 pixels, got {size}")
    imgs = [read_image(x) if isinstance(x, (str, Path)) else x for x in (target, prediction)]
    (ht, wt), (hp, wp) = [(im.height, im.width) for im in imgs]
    if abs(math.log((wp / hp) / (wt / ht))) > ASPECT_TOLERANCE:
        raise InputError(f"aspect ratio {wp}×{hp} differs from the target's {wt}×{ht}; crop or rotate first",
                         path=getattr(imgs[1], "source", None))
    side = min(size, max(ht, wt), max(hp, wp))
    t, p = (make_proxy(im, side) for im in imgs)
    if t.shape != p.shape:
        h, w = min(t.shape[0], p.shape[0]), min(t.shape[1], p.shape[1])
        t, p = _resize_exact(t, h, w), _resize_exact(p, h, w)
    return mt.srgb_rendition(t, bits=8), mt.srgb_rendition(p, bits=8)


# ----------------------------------------------------------------------------- pairing


def _suffixes() -> frozenset:
    from monet_cli.batch import PHOTO_SUFFIXES
    from monet_cli.images import RAW_SUFFIXES

    return PHOTO_SUFFIXES | frozenset(RAW_SUFFIXES)


def pair_key(name: str) -> str:
    """The name a file is paired by: without the last suffix and a trailing ``.monet``, casefolded.

    >>> pair_key("a0001.monet.JPG"), pair_key("A0001.tif"), pair_key("IMG.2020.jpg")
    ('a0001', 'a0001', 'img.2020')
    """
    stem = Path(name).stem
    if stem.lower().endswith(".monet"):
        stem = stem[: -len(".monet")]
    return stem.casefold()


def _is_monet(path: Path) -> bool:
    return ".monet." in path.name


def list_images(folder, *, prefer_monet: bool) -> tuple[dict[str, Path], list[tuple[Path, str]]]:
    """``{key: file}`` of the photos directly in ``folder``, and ``[(file, why)]`` ambiguities.

    Skipped: hidden files, sidecars, locks, temporary files, previews (``.monet.preview.``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder" if folder.exists() else "no such folder", path=folder)
    sfx = _suffixes()
    groups: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if (not f.is_file() or f.name.startswith(".") or f.suffix.lower() not in sfx
                or ".monet.preview." in f.name):
            continue
        groups.setdefault(pair_key(f.name), []).append(f)
    found: dict[str, Path] = {}
    ambiguous: list[tuple[Path, str]] = []
    for key, files in groups.items():
        if len(files) == 1:
            found[key] = files[0]
            continue
        pick = [f for f in files if _is_monet(f) == prefer_monet]
        if len(pick) == 1:
            found[key] = pick[0]
        else:
            ambiguous.append((files[0], "ambiguous name: " + ", ".join(f.name for f in files)))
    return found, ambiguous


@dataclass
class Pair:
    key: str
    prediction: Path
    targets: list[Path | None]  # one per target folder, None where that folder lacks it


@dataclass
class Pairing:
    pairs: list[Pair]
    missing: list[tuple[Path, str]]  # predictions (or folders) that cannot be scored, with why
    gaps: list[tuple[Path, str]]  # predictions scored against fewer targets than given, with why
    unmatched_targets: dict[str, int]  # per target folder, how many of its files no prediction names


def pair_by_name(pred_dir, target_dirs: Iterable) -> Pairing:
    """Pair the photos of ``pred_dir`` with those of each target folder by :func:`pair_key`."""
    target_dirs = [Path(t) for t in target_dirs]
    if not target_dirs:
        raise UsageError("give at least one --target folder")
    preds, missing = list_images(pred_dir, prefer_monet=True)
    targets = []
    for d in target_dirs:
        found, amb = list_images(d, prefer_monet=False)
        targets.append(found)
        missing.extend(amb)
    if not preds and not missing:
        missing.append((Path(pred_dir), "no photos in this folder"))
    pairs, gaps = [], []
    for key in sorted(preds):
        ts = [t.get(key) for t in targets]
        if all(t is None for t in ts):
            missing.append((preds[key], "no target of this name in " + ", ".join(str(d) for d in target_dirs)))
            continue
        lacking = [str(d) for d, t in zip(target_dirs, ts) if t is None]
        if lacking:
            gaps.append((preds[key], "no target in " + ", ".join(lacking)))
        pairs.append(Pair(key, preds[key], ts))
    unmatched = {str(d): sum(1 for k in t if k not in preds) for d, t in zip(target_dirs, targets)}
    return Pairing(pairs, missing, gaps, unmatched)


# ----------------------------------------------------------------------------- evaluation


def target_labels(target_dirs) -> list[str]:
    """Short unique labels of the target folders (their names; ``name#2`` for repeats)."""
    labels, seen = [], {}
    for d in target_dirs:
        name = Path(d).resolve().name or str(d)
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


@dataclass
class ImageResult:
    key: str
    prediction: str
    targets: list[str | None]
    per_target: list[dict | None]  # capped metrics per target folder (None: absent or failed)
    best: dict = field(default_factory=dict)
    mean: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.best)

    def to_dict(self, labels: list[str]) -> dict:
        return {"name": self.key, "prediction": self.prediction,
                "targets": {lab: ({"path": t, "metrics": _rounded(m)} if t else None)
                            for lab, t, m in zip(labels, self.targets, self.per_target)},
                "best": _rounded(self.best), "mean": _rounded(self.mean), "errors": self.errors}


def _rounded(d: dict | None) -> dict | None:
    return None if d is None else {k: round(float(v), 6) for k, v in d.items()}


def summarise(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per metric: ``mean``, ``median``, ``std`` and ``n`` over a list of metric dicts."""
    out = {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows if m in r], dtype=np.float64)
        if vals.size:
            out[m] = {"mean": float(vals.mean()), "median": float(np.median(vals)), "std": float(vals.std()),
                      "n": int(vals.size)}
    return out


@dataclass
class EvalReport:
    pred_dir: str
    target_dirs: list[str]
    labels: list[str]
    size: int
    images: list[ImageResult]
    missing: list[tuple[str, str]]
    gaps: list[tuple[str, str]]
    unmatched_targets: dict[str, int]
    lpips: str  # one line: available, or why not
    plan_count: int = 0

    @property
    def scored(self) -> list[ImageResult]:
        return [r for r in self.images if r.ok]

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.images if not r.ok]

    @property
    def metric_names(self) -> list[str]:
        names = set()
        for r in self.scored:
            names |= set(r.best)
        return [m for m in METRICS if m in names]

    def summary(self) -> dict[str, dict]:
        return {rule: summarise([getattr(r, rule) for r in self.scored]) for rule in RULES}

    @property
    def exit_code(self) -> int:
        """0 when every prediction was scored against every target, else 1."""
        return 0 if self.scored and not (self.missing or self.gaps or self.failed) else 1

    def to_dict(self) -> dict:
        return {
            "pred_dir": self.pred_dir, "targets": dict(zip(self.labels, self.target_dirs)), "size": self.size,
            "rendition": "8-bit sRGB, long side min(size, image), box filter in linear light",
            "psnr_cap": PSNR_CAP, "lpips": self.lpips,
            "counts": {"scored": len(self.scored), "failed": len(self.failed), "missing": len(self.missing),
                       "partial": len(self.gaps)},
            "summary": self.summary(),
            "images": [r.to_dict(self.labels) for r in self.images],
            "missing": [{"path": p, "reason": w} for p, w in self.missing],
            "partial": [{"path": p, "reason": w} for p, w in self.gaps],
            "unmatched_targets": self.unmatched_targets,
        }

    def csv_text(self) -> str:
        """One row per prediction: name, files, best_* and mean_* (one target: plain metric
        names), then ``<target label>:<metric>`` per target; empty cells where not computed."""
        metrics = self.metric_names
        multi = len(self.labels) > 1
        head = ["name", "prediction", "n_targets"]
        head += [f"{r}_{m}" for r in RULES for m in metrics] if multi else list(metrics)
        if multi:
            head += [f"{lab}:{m}" for lab in self.labels for m in metrics]
        head.append("error")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(head)

        def cells(d, ms):
            return ["" if d is None or m not in d else f"{d[m]:.6g}" for m in ms]

        for r in self.images:
            row = [r.key, r.prediction, sum(m is not None for m in r.per_target)]
            row += (cells(r.best, metrics) + cells(r.mean, metrics)) if multi else cells(r.best, metrics)
            if multi:
                for m in r.per_target:
                    row += cells(m, metrics)
            row.append("; ".join(r.errors))
            w.writerow(row)
        return buf.getvalue()


def evaluate(pred_dir, target_dirs, *, size: int = COMMON_SIDE, lpips: bool = True,
             on_pair: Callable[[Pair], None] | None = None) -> EvalReport:
    """Pair ``pred_dir`` with ``target_dirs`` by name and score every pair (module docstring).

    ``lpips``: compute LPIPS when :func:`lpips_status` allows (never downloads). ``on_pair``
    is called after each prediction (for progress bars). A file that cannot be read or
    compared is recorded in that image's ``errors``, never raised.
    """
    target_dirs = [Path(t) for t in target_dirs]
    pairing = pair_by_name(pred_dir, target_dirs)
    ok, why = lpips_status()
    scorer = None
    if lpips and ok:
        scorer = LpipsScorer()
    elif not lpips:
        why = "LPIPS not computed: disabled (--no-lpips)"
    labels = target_labels(target_dirs)
    images = []
    for pair in pairing.pairs:
        images.append(_score_pair(pair, size, scorer))
        if on_pair is not None:
            on_pair(pair)
    return EvalReport(pred_dir=str(pred_dir), target_dirs=[str(d) for d in target_dirs], labels=labels,
                      size=size, images=images, missing=[(str(p), w) for p, w in pairing.missing],
                      gaps=[(str(p), w) for p, w in pairing.gaps], unmatched_targets=pairing.unmatched_targets,
                      lpips=why)


def _score_pair(pair: Pair, size: int, scorer) -> ImageResult:
    from monet_cli.images import read_image

    res = ImageResult(pair.key, str(pair.prediction), [str(t) if t else None for t in pair.targets],
                      [None] * len(pair.targets))
    try:
        pred = read_image(pair.prediction)
    except MonetError as e:
        res.errors.append(str(e))
        return res
    for i, t in enumerate(pair.targets):
        if t is None:
            continue
        try:
            ref, out = common_renditions(t, pred, size)
            res.per_target[i] = capped(image_metrics(ref, out, lpips=scorer))
        except MonetError as e:
            res.errors.append(str(e))
        except MemoryError:
            res.errors.append(f"{t}: out of memory")
    done = [m for m in res.per_target if m is not None]
    if done:
        c = combine(done)
        res.best, res.mean = c["best"], c["mean"]
    return res


# ----------------------------------------------------------------------------- plans


def load_plan_values(paths: Iterable) -> list[dict[str, float]]:
    """The adjustments of every plan found at ``paths`` (plan/sidecar JSON files, or folders
    searched for ``*.monet.json``); unreadable plans are skipped."""
    from monet_cli.plan import load_plan

    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files.extend(sorted(p.glob("*.monet.json")))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError("no such file or folder", path=p)
    out = []
    for f in files:
        try:
            out.append(load_plan(f).adjustments)
        except MonetError:
            continue
    return out


def write_outputs(report: EvalReport, out_dir, *, plans: list[dict] | None = None,
                  force: bool = False) -> list[Path]:
    """Write ``eval.csv``, ``eval.json``, ``metrics.png`` and, with ``plans``,
    ``plan_values.png`` into ``out_dir`` (created), atomically; existing files need ``force``."""
    from monet_cli import plots
    from monet_cli.images import atomic_write

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {out_dir}: {e.strerror or e}") from None
    names = ["eval.csv", "eval.json", "metrics.png"] + (["plan_values.png"] if plans else [])
    if not force:
        exists = [n for n in names if (out_dir / n).exists()]
        if exists:
            raise OutputError("already exists; use --force to overwrite it", path=out_dir / exists[0])
    written = []
    csv_text = report.csv_text()
    atomic_write(out_dir / "eval.csv", lambda t: t.write_text(csv_text, encoding="utf-8"), overwrite=force)
    d = report.to_dict()
    d["plans"] = len(plans or [])
    text = json.dumps(d, indent=2, ensure_ascii=False) + "\n"
    atomic_write(out_dir / "eval.json", lambda t: t.write_text(text, encoding="utf-8"), overwrite=force)
    written += [out_dir / "eval.csv", out_dir / "eval.json"]
    groups = {f"{rule} over targets": [getattr(r, rule) for r in report.scored] for rule in RULES}
    if len(report.labels) == 1:
        groups = {report.labels[0]: [r.best for r in report.scored]}
    img = plots.metric_distributions(groups, report.metric_names,
                                     title=f"{report.pred_dir} vs {', '.join(report.labels)}")
    written.append(plots.save_png(out_dir / "metrics.png", img, overwrite=force))
    if plans:
        img = plots.plan_value_distributions({"plans": plans}, title=f"plan values ({len(plans)} plans)")
        written.append(plots.save_png(out_dir / "plan_values.png", img, overwrite=force))
    return written
