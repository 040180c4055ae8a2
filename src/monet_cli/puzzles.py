"""Training puzzles from expert photos: the paper's puzzles A, B and C (DESIGN.md, "Training").

An expert photo is taken as the optimum. Its planning proxy (working-space linear light,
long side ``images.long_side``, 512 by default) is edited with monet's own renderer, so what
was done is known exactly; every puzzle image is saved as an 8-bit sRGB PNG, as a vision
model sees it.

* **A** — Image 1 the expert photo, Image 2 the same with one op at a sampled value:
  "which op, which value" (the value is exact: it is what was applied).
* **B** — the expert photo and three versions of one op (a base strength, a stronger one,
  one on the other side of the optimum) in a random order: rank them (by CIEDE2000 distance
  to the expert, which is the optimum), name the best, then "what value turns Image X into
  the best one".
* **C** — the expert photo degraded within one stage (2–4 of its ops): the stage's plan that
  restores it, asked with exactly the planner's staged two-turn protocol
  (:mod:`monet_cli.planners.protocol`). A share of C puzzles ask about a stage that needs no
  change (the expert photo, or one degraded only in a later stage).

Answers that undo an edit (C, and B's second question) are *solved*, not assumed: the
negated perturbation is the exact inverse only for Exposure (a gain); Saturation
``s = 1 + v/100`` is undone by ``v' = −v/(1 + v/100)``, not ``−v``, and the tone curves and
white balance compose non-linearly. :func:`solve_restore` finds the values of the puzzle's
ops that bring the *saved* puzzle image back to the expert image (Levenberg–Marquardt on
sRGB-encoded pixels, started at the negated perturbation), rounds them to integers, and
keeps them if they restore better than the negation. A draw is rejected when its best
restoration stays above ``max_restore_delta_e`` *and* above a share ``max_restore_share`` of
the damage (the degraded image's ΔE): clipping by the 8-bit save makes over-exposure and
over-saturation only partly recoverable, and rejecting every such draw would leave the data
with few "darken" and "desaturate" answers (:func:`restorable`).

Sampling follows ``models/puzzles/default.yaml`` (documented there); draws whose change is
invisible (mean ΔE2000 below a threshold, e.g. an HSL op on a colour the photo lacks) are
rejected and drawn again, and HSL bands are drawn only among colours present in the photo.

Determinism and resume: every puzzle ``(photo, index)`` draws from its own generator seeded
with ``(seed, hash of the photo's path in the expert folder, index)``, so a dataset does not
depend on the order of work or on interruptions. A dataset folder holds::

    train.jsonl              the chat records for training (written by monet_cli.synth)
    dataset_info.json        LLaMA-Factory's description of train.jsonl (sharegpt, messages + images)
    images/<photo>/          expert.png and the puzzle images (PNG, sRGB, 8-bit)
    dataset.json             the run's settings (seed, kinds, sampling config, photos): resume checks them
    meta/puzzles.jsonl       one record per puzzle: id, kind, images, ground truth, measured facts
    meta/skipped.jsonl       puzzle indices for which no visible draw was found
    meta/reasoning/*.jsonl   texts written by model backends (monet_cli.synth), one line per puzzle

The only ``*.jsonl`` at the top is ``train.jsonl``, so a trainer given the folder reads
just the training records.

Each record line is appended and fsync'd only after its images are written (atomically), so
an interrupted run leaves whole records; a rerun skips the ids it finds and never writes
one twice.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import InputError, MonetError, OutputError, UsageError

SCHEMA = "monet.puzzles"
SCHEMA_VERSION = 1
KINDS: tuple[str, ...] = ("a", "b", "c")
INFO_FILE = "dataset.json"
META_DIR = "meta"  # everything but the training file: a trainer given the folder reads only train.jsonl
MANIFEST_FILE = "meta/puzzles.jsonl"
SKIPPED_FILE = "meta/skipped.jsonl"
REASONING_DIR = "meta/reasoning"
TRAIN_FILE = "train.jsonl"
LLAMAFACTORY_FILE = "dataset_info.json"
IMAGES_DIR = "images"
EXPERT_NAME = "expert.png"
LOCK_FILE = ".monet-puzzles.lock"
BAND_STATS_SIDE = 128
_OURS = (INFO_FILE, META_DIR, TRAIN_FILE, LLAMAFACTORY_FILE, IMAGES_DIR, LOCK_FILE, "stats.png")


# ============================================================================ config


def _puzzles_dir() -> Path:
    from monet_cli.resources import data_dir

    return data_dir("models") / "puzzles"


def _resolve_data_file(spec: str | os.PathLike, what: str) -> Path:
    """A name (``default`` → ``models/puzzles/default.yaml``) or a path to a YAML file."""
    s = str(spec)
    p = Path(s).expanduser()
    if p.suffix.lower() in (".yaml", ".yml") or os.sep in s or "/" in s:
        if not p.is_file():
            raise UsageError(f"{what} {s!r} not found")
        return p
    p = _puzzles_dir() / f"{s}.yaml"
    if not p.is_file():
        raise UsageError(f"unknown {what} {s!r} (no {p.name} in {p.parent})")
    return p


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise MonetError(f"cannot read YAML: {e}", path=path) from None
    if not isinstance(raw, dict):
        raise MonetError("expected a YAML mapping", path=path)
    return raw


_FREE = ("sigma", "kinds", "stages", "c.ops", "c.op_weights")  # sections keyed by names, checked by _validate


def _merge(base: dict, over: dict, where: str = "") -> dict:
    """``over`` merged into a copy of ``base``, section by section; a key unknown to ``base``
    is an error (outside the sections keyed by names: sigma, kinds, stages, c.ops, c.op_weights)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        here = f"{where}.{k}" if where else str(k)
        if k not in out and where not in _FREE:
            raise UsageError(f"unknown sampling setting {here}")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, here)
        else:
            out[k] = v
    return out


def _str_op_counts(cfg: dict) -> dict:
    """``c.ops`` keyed by strings ("2"), as JSON has them, whether YAML said 2 or "2"."""
    c = cfg.get("c")
    if isinstance(c, dict) and isinstance(c.get("ops"), dict):
        cfg = copy.deepcopy(cfg)
        cfg["c"]["ops"] = {str(k): v for k, v in c["ops"].items()}
    return cfg


def _check_range(cfg: dict, key: str, lo: float = 0, hi: float = 100) -> None:
    section, name = key.split(".")
    r = cfg[section][name]
    if not (isinstance(r, (list, tuple)) and len(r) == 2 and all(isinstance(x, (int, float)) for x in r)
            and lo <= r[0] <= r[1] <= hi):
        raise UsageError(f"sampling setting {key} must be [low, high] with {lo} <= low <= high <= {hi}, got {r!r}")


def _check_weights(d, key: str, allowed) -> None:
    if not isinstance(d, dict) or not d:
        raise UsageError(f"sampling setting {key} must be a mapping of weights")
    for k, w in d.items():
        if str(k) not in allowed:
            raise UsageError(f"sampling setting {key}: unknown entry {k!r} (expected {', '.join(map(str, allowed))})")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or not math.isfinite(w):
            raise UsageError(f"sampling setting {key}.{k} must be a weight >= 0, got {w!r}")
    if sum(d.values()) <= 0:
        raise UsageError(f"sampling setting {key}: the weights sum to 0")


def load_config(spec: str | os.PathLike | dict | None = None, **overrides) -> dict:
    """The sampling config: ``models/puzzles/default.yaml`` with ``spec`` merged over it.

    ``spec`` is a name in ``models/puzzles/``, a YAML file, a dict (a whole config, as
    :func:`load_config` returns, or some keys), or None (the default).
    ``overrides`` are dotted keys (``{"images.long_side": 256}``) applied last. The result is
    validated (unknown keys, weights, ranges) and is plain data (JSON-serialisable).
    """
    base = _str_op_counts(_read_yaml(_resolve_data_file("default", "sampling config")))
    if spec is None or (isinstance(spec, str) and spec == "default"):
        cfg = base
    else:
        over = spec if isinstance(spec, dict) else _read_yaml(_resolve_data_file(spec, "sampling config"))
        cfg = _merge(base, _str_op_counts(over), "")
    for key, value in overrides.items():
        if value is None:
            continue
        *path, last = key.replace("__", ".").split(".")
        node = cfg
        for p in path:
            node = node[p]
        if last not in node:
            raise UsageError(f"unknown sampling setting {key}")
        node[last] = value
    _validate(cfg)
    return json.loads(json.dumps(cfg))  # plain data, int keys of c.ops as strings


def _validate(cfg: dict) -> None:
    ops = catalog().ops
    im = cfg["images"]
    for k in ("long_side", "check_long_side", "facts_long_side"):
        if isinstance(im[k], bool) or not isinstance(im[k], int) or not 16 <= im[k] <= 4096:
            raise UsageError(f"sampling setting images.{k} must be an integer in 16..4096, got {im[k]!r}")
    if not isinstance(im["png_compress_level"], int) or not 0 <= im["png_compress_level"] <= 9:
        raise UsageError("sampling setting images.png_compress_level must be 0..9")
    if isinstance(im["variants"], bool) or not isinstance(im["variants"], int) or not 1 <= im["variants"] <= 1000:
        raise UsageError(f"sampling setting images.variants must be an integer in 1..1000, got {im['variants']!r}")
    _check_range(cfg, "images.crop", 0.05, 1.0)
    _check_weights(cfg["kinds"], "kinds", KINDS)
    _check_weights(cfg["stages"], "stages", STAGES)
    for k, s in cfg["sigma"].items():
        if k != "default" and k not in ops:
            raise UsageError(f"sampling setting sigma.{k}: unknown operation")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or s <= 0:
            raise UsageError(f"sampling setting sigma.{k} must be > 0")
    if not 1 <= cfg["clip"] <= 100 or not 0 <= cfg["min_magnitude"] < cfg["clip"]:
        raise UsageError("sampling settings need 0 <= min_magnitude < clip <= 100")
    _check_range(cfg, "a.magnitude", 1)
    _check_range(cfg, "b.base", 1)
    _check_range(cfg, "b.stronger", 1)
    _check_range(cfg, "b.opposite", 1)
    _check_weights(cfg["c"]["ops"], "c.ops", ("1", "2", "3", "4", "5", "6"))
    nc = cfg["c"]["no_change"]
    if isinstance(nc, dict):  # per stage
        bad = [k for k in nc if k not in STAGES]
        if bad:
            raise UsageError(f"sampling setting c.no_change.{bad[0]}: unknown stage; stages are {', '.join(STAGES)}")
        shares = [(f"c.no_change.{k}", v) for k, v in nc.items()]
    else:
        shares = [("c.no_change", nc)]
    for k, v in [*shares, ("c.no_change_degraded_later", cfg["c"]["no_change_degraded_later"])]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise UsageError(f"sampling setting {k} must be a probability in 0..1")
    ow = cfg["c"]["op_weights"]
    if not isinstance(ow, dict):
        raise UsageError("sampling setting c.op_weights must be a mapping of operation names to weights")
    for k, w in ow.items():
        if k not in ops:
            raise UsageError(f"sampling setting c.op_weights.{k}: unknown operation")
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf:
            raise UsageError(f"sampling setting c.op_weights.{k} must be a weight >= 0, got {w!r}")
    if not isinstance(cfg["c"]["measured_first"], bool):
        raise UsageError("sampling setting c.measured_first must be true or false")
    for k in ("planner_prompts", "puzzle_text"):
        if not isinstance(cfg[k], str) or not cfg[k]:
            raise UsageError(f"sampling setting {k} must be a name")
    if not 0 < cfg["max_restore_delta_e"] <= 100:
        raise UsageError("sampling setting max_restore_delta_e must be in (0, 100]")
    share = cfg["max_restore_share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
        raise UsageError(f"sampling setting max_restore_share must be in [0, 1), got {share!r}")
    v = cfg["visibility"]
    if not isinstance(v["max_tries"], int) or v["max_tries"] < 1:
        raise UsageError("sampling setting visibility.max_tries must be a positive integer")


def config_digest(cfg: dict) -> str:
    """A short hash of a config (canonical JSON), to tell configs apart."""
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


@lru_cache(maxsize=8)
def _load_text_cached(path: str, mtime: float) -> dict:
    return _read_yaml(Path(path))


def load_text(name: str = "prompts") -> dict:
    """The puzzle questions and reasoning phrases (``models/puzzles/prompts.yaml``)."""
    p = _resolve_data_file(name, "puzzle prompt file")
    return _load_text_cached(str(p), p.stat().st_mtime)


# ============================================================================ sampling


def _key_int(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


def sample_rng(seed: int, photo_key: str, index: int, stream: int) -> np.random.Generator:
    """The generator of one puzzle: seeded with ``(seed, photo, index, stream)`` only."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFFFFFFFFFF, _key_int(photo_key), int(index), int(stream)])


def _pick(rng: np.random.Generator, weights: dict, allowed=None):
    items = [(k, float(w)) for k, w in weights.items() if (allowed is None or k in allowed) and w > 0]
    if not items:
        return None
    total = sum(w for _, w in items)
    return items[int(rng.choice(len(items), p=[w / total for _, w in items]))][0]


def pick_kind(rng: np.random.Generator, cfg: dict, kinds) -> str:
    k = _pick(rng, cfg["kinds"], set(kinds))
    if k is None:
        raise UsageError(f"the sampling config gives weight 0 to every kind asked for ({', '.join(kinds)})")
    return k


def present_bands(facts: dict, cfg: dict) -> dict[str, float]:
    """HSL bands present in a photo, with their share of its chroma (the draw weights)."""
    hb = cfg["hsl_bands"]
    return {b: s["share"] for b, s in facts.get("bands", {}).items()
            if s["share"] / 100.0 >= hb["min_share"] and s["chroma"] >= hb["min_chroma"]}


def stage_ops(stage: str, bands: dict[str, float]) -> dict[str, float]:
    """The ops a puzzle may use in ``stage``, with draw weights (HSL: only present bands,
    weighted by their share of the photo's chroma)."""
    cat = catalog()
    if stage != "hsl":
        return {op: 1.0 for op in cat.stages[stage].ops}
    return {op: bands[cat.ops[op].band] for op in cat.stages["hsl"].ops if cat.ops[op].band in bands}


def _draw_normal(rng: np.random.Generator, op: str, cfg: dict) -> int:
    sigma = float(cfg["sigma"].get(op, cfg["sigma"]["default"]))
    clip = float(cfg["clip"])
    for _ in range(100):
        v = int(round(float(np.clip(rng.normal(0.0, sigma), -clip, clip))))
        if abs(v) >= max(cfg["min_magnitude"], 1):
            return v
    return int(math.copysign(max(cfg["min_magnitude"], 1), rng.normal()))


def _uniform_int(rng: np.random.Generator, r) -> int:
    return int(rng.integers(int(r[0]), int(r[1]) + 1))


def _choose_ops(rng: np.random.Generator, weights: dict[str, float], k: int) -> list[str]:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    idx = rng.choice(len(names), size=min(k, len(names)), replace=False, p=p / p.sum())
    cat_order = list(catalog().ops)
    return sorted((names[i] for i in idx), key=cat_order.index)


# ============================================================================ images and facts


def _srgb8(rgb: np.ndarray) -> np.ndarray:
    from monet_cli.degrade import working_to_srgb8

    return working_to_srgb8(rgb)


def _decode8(u8: np.ndarray) -> np.ndarray:
    from monet_cli.degrade import srgb8_to_working

    return srgb8_to_working(u8)


def _shrink(rgb: np.ndarray, long_side: int) -> np.ndarray:
    from monet_cli.measure import area_downscale

    return np.ascontiguousarray(area_downscale(np.asarray(rgb, dtype=np.float32), long_side), dtype=np.float32)


def _render(rgb: np.ndarray, adjustments: dict) -> np.ndarray:
    from monet_cli.render import render_linear

    return render_linear(rgb, adjustments)


def delta_e(a8: np.ndarray, b8: np.ndarray) -> float:
    """Mean CIEDE2000 of two 8-bit sRGB images."""
    from monet_cli.metrics import mean_delta_e2000

    return float(mean_delta_e2000(a8, b8))


def _pct(x: float) -> float:
    return round(100.0 * float(x), 2)


def band_stats(rgb: np.ndarray) -> dict[str, dict[str, float]]:
    """Per HSL band: chroma-weighted mean CIELAB lightness L* and hue (degrees of the
    catalogue's hue scale) of working-space linear ``rgb``, with the renderer's band weights."""
    from monet_cli import operations as ops
    from monet_cli.measure import lab

    px = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    lab_px = lab(px)
    C = np.hypot(lab_px[:, 1], lab_px[:, 2])
    deg = ops.named_hue(ops.hexagonal_hue(px))
    w = ops.band_weights(deg) * C[:, None]
    rad = np.radians(deg)
    sums = w.sum(axis=0)
    moments = w.T @ np.stack([np.sin(rad), np.cos(rad), lab_px[:, 0]], axis=1)  # one pass for all bands
    out = {}
    for i, b in enumerate(catalog().bands):
        if sums[i] <= 1e-9:
            continue
        hue = math.degrees(math.atan2(moments[i, 0], moments[i, 1])) % 360.0
        out[b.name] = {"lightness": round(float(moments[i, 2] / sums[i]), 1), "hue": int(round(hue)) % 360}
    return out


def image_stats(rgb: np.ndarray) -> dict:
    """Measured statistics of a working-space linear image for the reasoning text.

    L* values (0–100) of luminance percentiles, clipped fractions in %, tonal spread in %,
    mean chroma C*ab, Hasler–Süsstrunk colourfulness, the neutral's CCT (K, rounded to 10) and
    Duv, and per HSL band present (≥ 1 % of the chroma) its share %, mean chroma, L* and hue.
    """
    from monet_cli.measure import lstar, measure

    m = measure(rgb)

    def L(y):
        return round(float(lstar(max(float(y), 0.0))), 1)

    bands = band_stats(_shrink(rgb, BAND_STATS_SIDE))  # means over a band: a small copy is enough
    out_bands = {}
    for name in (b.name for b in catalog().bands):
        share = m.band_share.get(name, 0.0)
        if share >= 0.01 and name in bands:
            out_bands[name] = {"share": _pct(share), "chroma": round(m.band_chroma[name], 1), **bands[name]}
    n = m.neutral
    return {
        "median_l": L(m.p50), "p1_l": L(m.p1), "p5_l": L(m.p5), "p95_l": L(m.p95), "p99_l": L(m.p99),
        "black_l": L(m.black_point),
        "clip_white": _pct(m.clipped_white), "clip_highlights": _pct(m.clipped_highlights),
        "clip_black": _pct(m.clipped_black), "spread": round(100.0 * m.spread, 1),
        "chroma": round(m.chroma, 1), "colourfulness": round(m.colourfulness, 1), "gamut_edge": _pct(m.gamut_edge),
        "cct": int(round(n.cct / 10.0) * 10), "duv": round(n.duv, 4), "neutral_confidence": round(n.confidence, 2),
        "bands": out_bands,
    }


@dataclass
class Photo:
    """One expert photo, ready for puzzles: its proxy and what is measured on it once."""

    key: str  # path inside the expert folder (POSIX), the seed's photo part
    slug: str  # folder name under images/
    linear: np.ndarray  # proxy, working-space linear float32, long side images.long_side
    small: np.ndarray  # the same at images.check_long_side (visibility and solving)
    expert8: np.ndarray  # sRGB 8-bit of the proxy: the saved expert image
    small8: np.ndarray  # sRGB 8-bit of ``small``
    facts: dict  # image_stats of the saved expert image
    bands: dict[str, float]  # HSL bands present, with their share


def slug_for(key: str) -> str:
    """A file-system-safe, unique folder name for a photo key (``a/IMG 1.CR2`` → ``a-IMG-1-3f9c2e``)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", str(Path(key).with_suffix(""))).strip("-")[:48] or "photo"
    return f"{stem}-{hashlib.sha1(key.encode('utf-8')).hexdigest()[:6]}"


def prepare_photo(source, key: str, cfg: dict) -> Photo:
    """Decode ``source`` (a path, an :class:`~monet_cli.images.Image` or a working-space linear
    array) into a :class:`Photo`: proxy, small copy, 8-bit renditions, facts, bands."""
    from monet_cli.planners.base import make_proxy

    im = cfg["images"]
    if isinstance(source, (str, os.PathLike)):
        from monet_cli.images import read_image

        source = read_image(source, draft=True)
    linear = make_proxy(source, im["long_side"])
    expert8 = _srgb8(linear)
    small = _shrink(linear, im["check_long_side"])
    facts = image_stats(_shrink(_decode8(expert8), im["facts_long_side"]))
    return Photo(key=key, slug=slug_for(key), linear=linear, small=small, expert8=expert8, small8=_srgb8(small),
                 facts=facts, bands=present_bands(facts, cfg))


VARIANT_MARK = "#"  # a variant's key: "<photo key>#<n>" (n ≥ 1; the photo itself is variant 0)


def variant_pixels(base: np.ndarray, key: str, variant: int, seed: int, cfg: dict) -> np.ndarray:
    """Variant ``variant`` (≥ 1) of a photo for ``images.variants``: a seeded crop of
    ``base`` (working-space linear) whose sides are a fraction ``images.crop`` (uniform) of
    the photo's, at a random place, mirrored left-right half of the time. Deterministic in
    ``(seed, key, variant)``."""
    lo, hi = cfg["images"]["crop"]
    rng = sample_rng(seed, key, variant, 2)
    H, W = base.shape[:2]
    f = float(rng.uniform(lo, hi))
    h, w = max(16, min(H, int(round(H * f)))), max(16, min(W, int(round(W * f))))
    y, x = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
    out = base[y:y + h, x:x + w]
    if rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def _facts_of(u8: np.ndarray, cfg: dict) -> dict:
    return image_stats(_shrink(_decode8(u8), cfg["images"]["facts_long_side"]))


# ============================================================================ restoring


def _residual_fn(src: np.ndarray, target: np.ndarray, names: list[str]):
    from monet_cli.metrics import srgb_rendition
    from monet_cli.operations import render_reference

    def res(x):
        out = render_reference(src, {n: float(v) for n, v in zip(names, x) if v != 0})
        return (srgb_rendition(out, bits=None) - target).ravel()

    return res


RIDGE_RMS = 0.002  # sRGB-encoded RMS error that a 20-unit departure from the start point costs


def solve_values(src: np.ndarray, target_linear: np.ndarray, names: list[str], x0, *,
                 max_iter: int = 15, sample: int = 2048, ridge: float = RIDGE_RMS) -> dict[str, float]:
    """Values of ops ``names`` that turn ``src`` into ``target_linear`` (both working-space
    linear ``(h, w, 3)`` of the same size): least squares on their sRGB renditions
    (clipped, encoded, as a display shows them), by Levenberg–Marquardt from ``x0``.

    A weak ridge term keeps the answer near ``x0`` where the data cannot tell values apart
    (ops whose effects overlap, like Highlights and Whites on a clipped sky): a departure of
    20 units costs as much as an RMS error of ``ridge`` (0.002 ≈ half an 8-bit code).
    Works on an evenly spread sample of ``sample`` pixels with the reference formulas of
    :mod:`monet_cli.operations` (the renderer agrees with them to 1e-6). Values stay in
    [-100, 100]; returns floats (the caller rounds).
    """
    from monet_cli.metrics import srgb_rendition

    src = np.asarray(src, dtype=np.float64).reshape(-1, 3)
    tgt = np.asarray(target_linear, dtype=np.float64).reshape(-1, 3)
    if src.shape[0] > sample:
        idx = np.linspace(0, src.shape[0] - 1, sample).astype(np.intp)
        src, tgt = src[idx], tgt[idx]
    target = srgb_rendition(tgt, bits=None)
    fit = _residual_fn(src, target, names)
    start = np.clip(np.asarray(x0, dtype=np.float64), -100.0, 100.0)
    k = ridge * math.sqrt(target.size) / 20.0

    def res(x):
        return np.concatenate([fit(x), k * (x - start)])

    x = start.copy()
    r = res(x)
    cost = float(r @ r)
    lam = 1e-3
    for _ in range(max_iter):
        J = np.empty((r.size, x.size))
        for i in range(x.size):
            h = 0.5 if x[i] <= 99.5 else -0.5
            xh = x.copy()
            xh[i] += h
            J[:, i] = (res(xh) - r) / h
        g = J.T @ r
        H = J.T @ J
        improved = False
        for _ in range(6):
            step = np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), -g)
            xn = np.clip(x + step, -100.0, 100.0)
            rn = res(xn)
            cn = float(rn @ rn)
            if cn < cost:
                x, r, cost, improved = xn, rn, cn, True
                lam = max(lam / 4.0, 1e-7)
                break
            lam *= 8.0
        if not improved or np.max(np.abs(step)) < 0.05:
            break
    return {n: float(v) for n, v in zip(names, x)}


def restorable(restore_de: float, damage_de: float, cfg: dict) -> bool:
    """Whether a restoration that leaves ``restore_de`` of a degradation that did
    ``damage_de`` (both mean ΔE2000 at check size) makes a puzzle: within
    ``max_restore_delta_e``, or within a share ``max_restore_share`` of the damage (a clipped
    over-exposure cannot be fully undone, but darkening it is still the right answer)."""
    return restore_de <= max(float(cfg["max_restore_delta_e"]), float(cfg["max_restore_share"]) * damage_de)


def _restore_de(puzzle_small: np.ndarray, target8: np.ndarray, values: dict) -> float:
    return delta_e(target8, _srgb8(_render(puzzle_small, {k: v for k, v in values.items() if v})))


def solve_restore(puzzle8: np.ndarray, photo: Photo, perturbation: dict[str, int], cfg: dict) -> dict:
    """The integer values of ``perturbation``'s ops that restore ``photo``'s expert image from
    the saved puzzle image ``puzzle8`` (module docstring), with how well they and the plain
    negation do: ``{"answer", "restore_delta_e", "negated_delta_e"}`` (ΔE at check size)."""
    names = list(perturbation)
    small = _shrink(_decode8(puzzle8), cfg["images"]["check_long_side"])
    negated = {n: -int(v) for n, v in perturbation.items()}
    neg_de = _restore_de(small, photo.small8, negated)
    if set(names) == {"Exposure"}:  # a gain: the negation is exact (up to the 8-bit save)
        return {"answer": negated, "restore_delta_e": round(neg_de, 3), "negated_delta_e": round(neg_de, 3)}
    solved = solve_values(small, photo.small, names, [negated[n] for n in names])
    answer = {n: int(round(v)) for n, v in solved.items()}
    answer = {n: v for n, v in answer.items() if v}
    de = _restore_de(small, photo.small8, answer)
    if de > neg_de:
        answer, de = negated, neg_de
    return {"answer": answer, "restore_delta_e": round(de, 3), "negated_delta_e": round(neg_de, 3)}


# ============================================================================ the three kinds


@dataclass
class Draft:
    """A puzzle before it is written: its new images (None stands for the expert image) and record."""

    kind: str
    images: list  # uint8 arrays, or None for the expert image
    truth: dict
    facts: dict
    draws: int
    rejections: dict = field(default_factory=dict)


def _reject(rej: dict, why: str) -> None:
    rej[why] = rej.get(why, 0) + 1


def _stages_available(photo: Photo, cfg: dict) -> list[str]:
    """Stages with a weight and an op the photo can show (HSL needs a colour band)."""
    return [s for s in STAGES if cfg["stages"].get(s, 0) > 0 and stage_ops(s, photo.bands)]


def _visible(photo: Photo, adjustments: dict) -> float:
    return delta_e(photo.small8, _srgb8(_render(photo.small, adjustments)))


def _one_op(photo: Photo, rng: np.random.Generator, cfg: dict, stages) -> tuple[str, str]:
    """A stage (by the configured weights) and one of its ops the photo can show (A and B)."""
    stage = _pick(rng, cfg["stages"], stages)
    return stage, _choose_ops(rng, stage_ops(stage, photo.bands), 1)[0]


def make_a(photo: Photo, rng: np.random.Generator, cfg: dict) -> Draft | None:
    """Puzzle A: one op at a value uniform in magnitude (``a.magnitude``), random sign."""
    vis, rej = cfg["visibility"], {}
    stages = _stages_available(photo, cfg)
    if not stages:
        return None
    for attempt in range(1, vis["max_tries"] + 1):
        stage, op = _one_op(photo, rng, cfg, stages)
        value = int(rng.choice([-1, 1])) * _uniform_int(rng, cfg["a"]["magnitude"])
        de = _visible(photo, {op: value})
        if de < vis["min_delta_e"]:
            _reject(rej, "invisible")
            continue
        after8 = _srgb8(_render(photo.linear, {op: value}))
        return Draft("a", [None, after8], {"stage": stage, "op": op, "value": value, "delta_e": round(de, 3)},
                     {"before": photo.facts, "after": _facts_of(after8, cfg)}, attempt, rej)
    return None


def make_b(photo: Photo, rng: np.random.Generator, cfg: dict) -> Draft | None:
    """Puzzle B: the expert image and three strengths of one op, shuffled; rank, best, restore."""
    vis, b, rej = cfg["visibility"], cfg["b"], {}
    stages = _stages_available(photo, cfg)
    if not stages:
        return None
    for attempt in range(1, vis["max_tries"] + 1):
        stage, op = _one_op(photo, rng, cfg, stages)
        side = int(rng.choice([-1, 1]))
        base = _uniform_int(rng, b["base"])
        stronger = min(base + _uniform_int(rng, b["stronger"]), 100)
        opposite = _uniform_int(rng, b["opposite"])
        values = [0, side * base, side * stronger, -side * opposite]
        smalls = [photo.small8] + [_srgb8(_render(photo.small, {op: v})) for v in values[1:]]
        des = [0.0] + [delta_e(photo.small8, s) for s in smalls[1:]]
        if min(des[1:]) < vis["min_delta_e"]:
            _reject(rej, "invisible")
            continue
        close = min(delta_e(smalls[i], smalls[j]) for i in range(1, 4) for j in range(i + 1, 4))
        if close < b["min_delta_e_between"]:
            _reject(rej, "versions_alike")
            continue
        order = [int(i) for i in rng.permutation(4)]  # shown position → version
        shown_values = [values[i] for i in order]
        shown_de = [round(des[i], 3) for i in order]
        ranking = [p + 1 for p in sorted(range(4), key=lambda p: (shown_de[p], abs(shown_values[p])))]
        best = ranking[0]
        images = [None if order[p] == 0 else _srgb8(_render(photo.linear, {op: values[order[p]]})) for p in range(4)]
        restore = x = None
        for cand in rng.permutation([n for n in range(1, 5) if n != best]):  # Image X: one that can be restored
            r = solve_restore(images[int(cand) - 1], photo, {op: shown_values[int(cand) - 1]}, cfg)
            if op in r["answer"] and restorable(r["restore_delta_e"], shown_de[int(cand) - 1], cfg):
                restore, x = r, int(cand)
                break
        if restore is None:
            _reject(rej, "unrecoverable")
            continue
        truth = {"stage": stage, "op": op, "values": shown_values, "delta_e": shown_de, "ranking": ranking,
                 "best": best, "x": x, "answer": restore["answer"], "restore_delta_e": restore["restore_delta_e"],
                 "negated_delta_e": restore["negated_delta_e"]}
        facts = {"images": [photo.facts if im is None else _facts_of(im, cfg) for im in images]}
        return Draft("b", images, truth, facts, attempt, rej)
    return None


def _degrade_stage(photo: Photo, rng: np.random.Generator, cfg: dict, stage: str, rej: dict):
    """Draw 2–4 ops of ``stage`` with normal values; None if a draw is not visible."""
    scale = cfg["c"]["op_weights"]
    weights = {n: w * float(scale.get(n, 1.0)) for n, w in stage_ops(stage, photo.bands).items()}
    weights = {n: w for n, w in weights.items() if w > 0}
    if not weights:
        raise UsageError(f"sampling setting c.op_weights gives weight 0 to every {stage} operation")
    k = int(_pick(rng, {str(n): w for n, w in cfg["c"]["ops"].items()}))
    names = _choose_ops(rng, weights, k)
    pert = {n: _draw_normal(rng, n, cfg) for n in names}
    vis = cfg["visibility"]
    per_op = {}
    for n, v in pert.items():
        per_op[n] = round(_visible(photo, {n: v}), 3)
        if per_op[n] < vis["min_delta_e_op"]:
            _reject(rej, "invisible_op")
            return None
    total = _visible(photo, pert)
    if total < vis["min_delta_e"]:
        _reject(rej, "invisible")
        return None
    return pert, per_op, round(total, 3)


def make_c(photo: Photo, rng: np.random.Generator, cfg: dict) -> Draft | None:
    """Puzzle C: one stage degraded (or, a share ``c.no_change`` of the time, a stage that
    needs nothing); the answer is that stage's restoring plan."""
    vis, c, rej = cfg["visibility"], cfg["c"], {}
    stages = _stages_available(photo, cfg)
    if not stages:
        return None
    fixed = None  # c.no_change per stage: the stage is drawn first, then whether it needs nothing
    if isinstance(c["no_change"], dict):
        fixed = _pick(rng, cfg["stages"], stages)
        no_change = bool(rng.random() < float(c["no_change"].get(fixed, 0.0)))
    else:
        no_change = bool(rng.random() < c["no_change"])
    for attempt in range(1, vis["max_tries"] + 1):
        plan = {s: {} for s in STAGES}
        if no_change:
            stage = fixed or _pick(rng, cfg["stages"], stages)
            later = [s for s in stages if STAGES.index(s) > STAGES.index(stage)]
            truth = {"stage": stage, "no_change": True, "answer": {}, "plan": plan}
            if later and rng.random() < c["no_change_degraded_later"]:
                other = _pick(rng, cfg["stages"], later)
                drawn = _degrade_stage(photo, rng, cfg, other, rej)
                if drawn is None:
                    continue
                pert, _, total = drawn
                puzzle8 = _srgb8(_render(photo.linear, pert))
                truth.update(later={"stage": other, "perturbation": pert, "delta_e": total})
                return Draft("c", [puzzle8], truth, {"puzzle": _facts_of(puzzle8, cfg), "expert": photo.facts},
                             attempt, rej)
            return Draft("c", [None], truth, {"puzzle": photo.facts, "expert": photo.facts}, attempt, rej)
        stage = fixed or _pick(rng, cfg["stages"], stages)
        drawn = _degrade_stage(photo, rng, cfg, stage, rej)
        if drawn is None:
            continue
        pert, per_op, total = drawn
        puzzle8 = _srgb8(_render(photo.linear, pert))
        restore = solve_restore(puzzle8, photo, pert, cfg)
        if not restore["answer"] or not restorable(restore["restore_delta_e"], total, cfg):
            _reject(rej, "unrecoverable")
            continue
        plan[stage] = restore["answer"]
        truth = {"stage": stage, "no_change": False, "perturbation": pert, "answer": restore["answer"], "plan": plan,
                 "delta_e": total, "op_delta_e": per_op, "restore_delta_e": restore["restore_delta_e"],
                 "negated_delta_e": restore["negated_delta_e"]}
        return Draft("c", [puzzle8], truth, {"puzzle": _facts_of(puzzle8, cfg), "expert": photo.facts}, attempt, rej)
    return None


MAKERS: dict[str, Callable[[Photo, np.random.Generator, dict], Draft | None]] = {"a": make_a, "b": make_b, "c": make_c}


# ============================================================================ chat format


def _legend() -> str:
    from monet_cli.planners.protocol import legend_text

    return legend_text()


def _planner_prompts(cfg: dict):
    from monet_cli.planners.protocol import load_prompts

    return load_prompts(cfg["planner_prompts"])


def user_turns(record: dict, cfg: dict) -> list[str]:
    """The user messages of a puzzle, in order, with one ``<image>`` per image of the record.

    C asks exactly the planner's questions (``analysis_prompt``, then ``values_prompt``) with
    the image first in the first user turn, as the planner sends it; A and B label each image
    ("Image 1: <image>") and ask the questions of ``models/puzzles/prompts.yaml``.
    """
    from monet_cli.planners.protocol import analysis_prompt, values_prompt

    t = record["truth"]
    if record["kind"] == "c":
        ps = _planner_prompts(cfg)
        turns = ["<image>" + analysis_prompt(t["stage"], prompts=ps, style="balanced")]
        if not t.get("no_change"):
            turns.append(values_prompt(t["stage"], prompts=ps, style="balanced"))
        return turns
    q = load_text(cfg["puzzle_text"])["questions"]
    labels = "\n".join(q["image_label"].format(n=i + 1) for i in range(len(record["images"])))
    cat = catalog()
    if record["kind"] == "a":
        return [labels + "\n" + q["a"].format(op_names=", ".join(cat.ops), legend=_legend()).strip()]
    op = t["op"]
    meaning = cat.ops[op].meaning.rstrip(".")
    meaning = meaning[:1].lower() + meaning[1:]
    return [labels + "\n" + q["b_rank"].format(n=len(record["images"]), op=op, meaning=meaning).strip(),
            q["b_value"].format(op=op, x=t["x"], best=t["best"], legend=_legend()).strip()]


def chat_record(record: dict, assistant: list[str], cfg: dict) -> dict:
    """A training record: ``{"messages": [system, user, assistant, …], "images": [...]}``
    (ShareGPT-style, as LLaMA-Factory reads it; image paths relative to the dataset)."""
    users = user_turns(record, cfg)
    if len(assistant) != len(users):
        raise ValueError(f"{record['id']}: {len(users)} user turns but {len(assistant)} answers")
    messages = [{"role": "system", "content": _planner_prompts(cfg).system}]
    for u, a in zip(users, assistant):
        messages += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    n_placeholders = sum(m["content"].count("<image>") for m in messages)
    if n_placeholders != len(record["images"]):
        raise ValueError(f"{record['id']}: {n_placeholders} <image> placeholders for {len(record['images'])} images")
    return {"messages": messages, "images": list(record["images"])}


def llamafactory_info(train_file: str = TRAIN_FILE, name: str = "monet_puzzles") -> dict:
    """LLaMA-Factory's ``dataset_info.json`` entry for a train file of this module."""
    return {name: {"file_name": train_file, "formatting": "sharegpt",
                   "columns": {"messages": "messages", "images": "images"},
                   "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                            "assistant_tag": "assistant", "system_tag": "system"}}}


# ============================================================================ files


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a torn last line (no newline: the writer was killed) is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]  # torn
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            raise MonetError(f"line {n} is not valid JSON", path=path) from None
    return out


class JsonlAppender:
    """Append JSON lines durably: each line is written whole, flushed and fsync'd. A torn last
    line left by a killed writer is cut off when the file is opened."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.is_file():
            with open(self.path, "rb+") as f:
                data = f.read()
                if data and not data.endswith(b"\n"):
                    f.truncate(data.rfind(b"\n") + 1)
        self.f = open(self.path, "a", encoding="utf-8")

    def write(self, obj: dict) -> None:
        self.f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def write_json_atomic(path: Path, obj, *, indent: int | None = 2) -> None:
    from monet_cli.images import atomic_write

    text = json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=True)


def write_jsonl_atomic(path: Path, rows) -> int:
    from monet_cli.images import atomic_write

    n = 0

    def write(tmp):
        nonlocal n
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write, overwrite=True)
    return n


def _write_png(path: Path, u8: np.ndarray, level: int) -> None:
    from PIL import Image as PILImage

    from monet_cli.images import atomic_write

    atomic_write(path, lambda tmp: PILImage.fromarray(u8, "RGB").save(tmp, format="PNG", compress_level=level),
                 overwrite=True)


class _Lock:
    """An exclusive lock on a dataset folder (two runs writing at once would duplicate work)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self.f = open(self.path, "a+")
        try:
            import fcntl

            fcntl.flock(self.f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            self.f.close()
            raise UsageError(f"{folder}: another monet is writing this dataset; wait for it or stop it") from None

    def release(self) -> None:
        try:
            self.f.close()
        except OSError:
            pass


def read_info(dataset) -> dict:
    """The ``dataset.json`` of a puzzle dataset (an error naming the folder if it is not one)."""
    path = Path(dataset) / INFO_FILE
    if not path.is_file():
        raise InputError(f"not a monet puzzle dataset (no {INFO_FILE})", path=dataset)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable {INFO_FILE}: {e}", path=dataset) from None
    if info.get("schema") != SCHEMA:
        raise InputError(f"{INFO_FILE} is not a {SCHEMA} description", path=dataset)
    return info


def read_records(dataset) -> list[dict]:
    """The puzzle records of a dataset (``puzzles.jsonl``), in the order they were made."""
    return read_jsonl(Path(dataset) / MANIFEST_FILE)


# ============================================================================ generate


@dataclass
class GenerateSummary:
    dataset: str
    planned: int = 0  # puzzles for --count
    existing: int = 0  # found already done (resume)
    made: dict = field(default_factory=lambda: {k: 0 for k in KINDS})
    skipped: int = 0  # indices without a visible draw
    rejections: dict = field(default_factory=dict)
    failed_photos: list = field(default_factory=list)  # [(key, message)]
    photos: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    resumed: bool = False

    @property
    def total_made(self) -> int:
        return sum(self.made.values())

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "photos": self.photos, "planned": self.planned, "existing": self.existing,
                "made": dict(self.made), "made_total": self.total_made, "skipped": self.skipped,
                "rejections": dict(sorted(self.rejections.items())), "resumed": self.resumed,
                "failed_photos": [{"photo": k, "error": m} for k, m in self.failed_photos],
                "interrupted": self.interrupted, "seconds": round(self.seconds, 3),
                "puzzles_per_second": round(self.total_made / self.seconds, 3) if self.seconds > 0 else None}


def collect_expert_photos(expert_dir, *, recursive: bool = False, exclude=None) -> list[tuple[str, Path]]:
    """``(key, path)`` of the photos in ``expert_dir`` (stable order); ``exclude`` is a folder
    whose files never count (the dataset itself, when it lies inside the expert folder)."""
    from monet_cli.batch import collect_photos

    root = Path(expert_dir)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder of expert photos")
    photos, _missing = collect_photos([root], recursive=recursive)
    ex = Path(exclude).resolve() if exclude is not None else None
    out = []
    for p in photos:
        rp = p.resolve()
        if ex is not None and (rp == ex or ex in rp.parents):
            continue
        out.append((rp.relative_to(root.resolve()).as_posix(), p))
    if not out:
        raise UsageError(f"{root}: no photos (TIFF, JPEG, PNG or RAW)" + ("" if recursive else "; use --recursive?"))
    return out


def puzzle_id(kind: str, slug: str, index: int) -> str:
    return f"{kind}-{slug}-{index:05d}"


def _allocation(n_photos: int, count: int) -> list[int]:
    return [count // n_photos + (1 if i < count % n_photos else 0) for i in range(n_photos)]


def remove_files(out: Path, names) -> None:
    """Delete the files and folders ``names`` of a dataset folder ``out`` (for --force); the
    folder's other contents stay."""
    import shutil

    for name in names:
        p = out / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _prepare_out(out: Path, info: dict, force: bool) -> bool:
    """Create or check the dataset folder; returns whether an existing dataset is resumed."""
    if out.exists() and not out.is_dir():
        raise OutputError("exists and is not a folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        if not (out / INFO_FILE).is_file():
            raise OutputError("is not empty and is not a monet puzzle dataset; give a new or empty folder", path=out)
        old = read_info(out)
        keys = ("seed", "kinds", "config", "expert_dir", "photos")
        diff = [k for k in keys if old.get(k) != info.get(k)]
        if not diff:
            return True
        if not force:
            what = ", ".join("sampling config" if k == "config" else "photos in the expert folder" if k == "photos"
                             else k.replace("_", " ") for k in diff)
            raise OutputError(f"holds a dataset made with a different {what}; resume with the same settings, "
                              "use another --out, or --force to start it again", path=out)
        remove_files(out, _OURS)
        return False
    out.mkdir(parents=True, exist_ok=True)
    return False


def generate(expert_dir, out, *, kinds=KINDS, count: int = 100, seed: int = 0, config=None,
             recursive: bool = False, force: bool = False,
             progress: Callable[[int, int], None] | None = None) -> GenerateSummary:
    """Make ``count`` puzzles of ``kinds`` from the photos in ``expert_dir`` into folder ``out``.

    Puzzles are spread evenly over the photos (photo ``i`` gets indices ``0 … n_i − 1``), each
    photo decoded once. An existing dataset made with the same seed, kinds, sampling config and
    photos is resumed (done ids are skipped; a larger ``count`` extends it); a different one is
    refused unless ``force``, which starts it again. ``progress(done, total)`` is called after
    every puzzle. Ctrl-C (KeyboardInterrupt) stops after the puzzle in hand is either whole or
    absent; the summary says ``interrupted``. Does not write ``train.jsonl`` (see
    :func:`monet_cli.synth.synthesize`).
    """
    t0 = time.perf_counter()
    kinds = tuple(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise UsageError(f"unknown puzzle kind {bad[0]!r}; kinds are a, b, c" if bad else "no puzzle kind given")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise UsageError(f"--count must be a positive integer, got {count!r}")
    cfg = load_config(config)  # a dict (even a whole config) is merged over the defaults and checked
    out = Path(out)
    photos = collect_expert_photos(expert_dir, recursive=recursive, exclude=out)
    from monet_cli import __version__

    info = {"schema": SCHEMA, "version": SCHEMA_VERSION, "seed": int(seed), "kinds": list(kinds),
            "expert_dir": str(Path(expert_dir).resolve()),
            "photos": [{"path": k, "bytes": p.stat().st_size} for k, p in photos],
            "config": cfg, "config_digest": config_digest(cfg), "count": int(count), "monet": __version__}
    summary = GenerateSummary(dataset=str(out), photos=len(photos))
    resumed = _prepare_out(out, info, force)
    lock = _Lock(out)
    try:
        if resumed:
            old = read_info(out)
            info["count"] = max(int(count), int(old.get("count", 0)))
            for k in ("reasoning", "created"):
                if k in old:
                    info[k] = old[k]
        else:
            info["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        write_json_atomic(out / INFO_FILE, info)
        write_json_atomic(out / LLAMAFACTORY_FILE, llamafactory_info())
        (out / META_DIR).mkdir(exist_ok=True)
        summary.resumed = resumed
        done = {r["id"] for r in read_jsonl(out / MANIFEST_FILE)} | {r["id"] for r in read_jsonl(out / SKIPPED_FILE)}

        n_var = int(cfg["images"]["variants"])
        # (key, path, variant): every photo, then its crops (images.variants), each an expert image
        units = [(k + (f"{VARIANT_MARK}{v}" if v else ""), p, v, k) for k, p in photos for v in range(n_var)]
        plan: list[tuple[int, list[tuple[int, str, str]]]] = []  # unit → [(index, kind, id)]
        for i, n in enumerate(_allocation(len(units), count)):
            key = units[i][0]
            slug = slug_for(key)
            todo = []
            for index in range(n):
                kind = pick_kind(sample_rng(seed, key, index, 0), cfg, kinds)
                pid = puzzle_id(kind, slug, index)
                summary.planned += 1
                if pid in done:
                    summary.existing += 1
                else:
                    todo.append((index, kind, pid))
            if todo:
                plan.append((i, todo))
        total = sum(len(t) for _, t in plan)
        if progress:
            progress(0, total)
        manifest, skipped = JsonlAppender(out / MANIFEST_FILE), JsonlAppender(out / SKIPPED_FILE)
        finished = 0
        try:
            from monet_cli.images import read_image
            from monet_cli.planners.base import make_proxy

            # the photo in hand, decoded once for all its variants: [path, image, proxy to crop from]
            held: list = [None, None, None]
            for i, todo in plan:
                key, path, variant, photo_key = units[i]
                try:
                    if held[0] != path:
                        held = [path, read_image(path, draft=True), None]
                    if variant == 0:
                        photo = prepare_photo(held[1], key, cfg)
                    else:
                        if held[2] is None:
                            held[2] = make_proxy(held[1], 2 * cfg["images"]["long_side"])
                        photo = prepare_photo(variant_pixels(held[2], photo_key, variant, seed, cfg), key, cfg)
                except MonetError as e:
                    if not any(k == photo_key for k, _ in summary.failed_photos):  # once per photo, not per variant
                        summary.failed_photos.append((photo_key, str(e).replace(f"{path}: ", "", 1)))
                    finished += len(todo)
                    if progress:
                        progress(finished, total)
                    continue
                folder = out / IMAGES_DIR / photo.slug
                folder.mkdir(parents=True, exist_ok=True)
                expert_rel = f"{IMAGES_DIR}/{photo.slug}/{EXPERT_NAME}"
                if not (out / expert_rel).is_file():
                    _write_png(out / expert_rel, photo.expert8, cfg["images"]["png_compress_level"])
                for index, kind, pid in todo:
                    rng = sample_rng(seed, key, index, 1)
                    draft = MAKERS[kind](photo, rng, cfg)
                    if draft is None:
                        summary.skipped += 1
                        _reject(summary.rejections, "no_visible_draw")
                        skipped.write({"id": pid, "kind": kind, "photo": key, "index": index,
                                       "reason": f"no visible draw in {cfg['visibility']['max_tries']} tries"})
                    else:
                        rels = []
                        for j, im in enumerate(draft.images):
                            if im is None:
                                rels.append(expert_rel)
                                continue
                            rel = f"{IMAGES_DIR}/{photo.slug}/{kind}{index:05d}-{j + 1}.png"
                            _write_png(out / rel, im, cfg["images"]["png_compress_level"])
                            rels.append(rel)
                        record = {"id": pid, "kind": kind, "photo": key, "index": index, "images": rels,
                                  "expert": expert_rel, "truth": draft.truth, "facts": draft.facts,
                                  "draws": draft.draws, "rejections": draft.rejections}
                        manifest.write(record)
                        summary.made[kind] += 1
                        for why, n in draft.rejections.items():
                            summary.rejections[why] = summary.rejections.get(why, 0) + n
                    finished += 1
                    if progress:
                        progress(finished, total)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            manifest.close()
            skipped.close()
    finally:
        lock.release()
    summary.seconds = time.perf_counter() - t0
    return summary


# ============================================================================ stats


def _value_bucket(v: float) -> str:
    from monet_cli.reasoning import intensity_word

    return f"{'+' if v > 0 else '-'}{intensity_word(v)}"


def answer_values(record: dict) -> dict[str, float]:
    """The values a model must answer for a record: A the applied value, B the restoring
    value, C the stage's plan (empty for no-change)."""
    t = record["truth"]
    if record["kind"] == "a":
        return {t["op"]: t["value"]}
    return dict(t.get("answer") or {})


def dataset_stats(dataset) -> dict:
    """Counts per kind, stage and op, value ranges (sign and intensity word) per kind,
    rejections, skipped indices, restoration quality of C, and the reasoning caches."""
    info = read_info(dataset)
    records = read_records(dataset)
    skipped = read_jsonl(Path(dataset) / SKIPPED_FILE)
    cat = catalog()
    kinds = {k: 0 for k in KINDS}
    stages = {s: {k: 0 for k in KINDS} for s in STAGES}
    ops: dict[str, dict] = {}
    ranges: dict[str, dict[str, int]] = {k: {} for k in KINDS}
    rejections: dict[str, int] = {}
    no_change = 0
    restore, negated = [], []
    for r in records:
        k, t = r["kind"], r["truth"]
        kinds[k] += 1
        stages[t["stage"]][k] += 1
        if k == "c" and t.get("no_change"):
            no_change += 1
        if "restore_delta_e" in t:
            restore.append(t["restore_delta_e"])
            negated.append(t["negated_delta_e"])
        for op, v in answer_values(r).items():
            o = ops.setdefault(op, {"stage": cat.stage_of(op), "count": {kk: 0 for kk in KINDS}, "values": []})
            o["count"][k] += 1
            o["values"].append(v)
            b = _value_bucket(v)
            ranges[k][b] = ranges[k].get(b, 0) + 1
        for why, n in (r.get("rejections") or {}).items():
            rejections[why] = rejections.get(why, 0) + n
    order = list(cat.ops)
    ops_out = {}
    for op in sorted(ops, key=order.index):
        vals = np.array(ops[op]["values"], dtype=float)
        ops_out[op] = {"stage": ops[op]["stage"], "count": ops[op]["count"], "n": int(vals.size),
                       "min": float(vals.min()), "max": float(vals.max()), "mean": round(float(vals.mean()), 2),
                       "mean_abs": round(float(np.abs(vals).mean()), 2),
                       # the sign balance: a model learns the side it sees more often
                       "up": int((vals > 0).sum()), "down": int((vals < 0).sum())}
    reasoning = {}
    rdir = Path(dataset) / REASONING_DIR
    if rdir.is_dir():
        for f in sorted(rdir.glob("*.jsonl")):
            rows = read_jsonl(f)
            reasoning[f.stem] = {"done": len(rows), "ok": sum(x.get("status") == "ok" for x in rows),
                                 "rejected": sum(x.get("status") == "rejected" for x in rows),
                                 "regenerations": sum(max(int(x.get("tries", 1)) - 1, 0) for x in rows)}

    def summary(xs):
        return {"n": len(xs), "mean": round(float(np.mean(xs)), 3), "max": round(float(np.max(xs)), 3)} if xs else None

    return {"dataset": str(dataset), "records": len(records), "kinds": kinds, "stages": stages,
            "no_change": no_change, "ops": ops_out, "ranges": ranges, "skipped": len(skipped),
            "rejections": dict(sorted(rejections.items())), "restore_delta_e": summary(restore),
            "negated_delta_e": summary(negated), "seed": info.get("seed"), "count": info.get("count"),
            "reasoning": reasoning, "train": info.get("reasoning")}


KIND_COLOURS = {"a": (66, 133, 244), "b": (244, 160, 0), "c": (15, 157, 88)}


def plot_values(dataset, path, *, columns: int = 6, bins: int = 20) -> Path:
    """A PNG of the answer-value distributions: one histogram per op (−100…100, ``bins`` bins),
    bars stacked by puzzle kind. Drawn with Pillow (no plotting library needed)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    records = read_records(dataset)
    cat = catalog()
    per_op: dict[str, dict[str, list]] = {}
    for r in records:
        for op, v in answer_values(r).items():
            per_op.setdefault(op, {k: [] for k in KINDS})[r["kind"]].append(v)
    names = [op for op in cat.ops if op in per_op]
    font = ImageFont.load_default()
    pw, ph, pad, top = 230, 150, 10, 44
    rows = max(1, -(-len(names) // columns))
    W, H = columns * pw + 2 * pad, top + rows * ph + pad
    im = PILImage.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(im)
    d.text((pad, 8), f"monet puzzles: answer values per op ({len(records)} puzzles)", fill="black", font=font)
    x = pad
    for k in KINDS:
        d.rectangle([x + 300, 10, x + 310, 20], fill=KIND_COLOURS[k])
        d.text((x + 314, 8), f"puzzle {k.upper()}", fill="black", font=font)
        x += 90
    if not names:
        d.text((pad, top + 10), "no puzzles yet", fill="black", font=font)
    edges = np.linspace(-100, 100, bins + 1)
    for n, op in enumerate(names):
        cx, cy = pad + (n % columns) * pw, top + (n // columns) * ph
        x0, x1, y0, y1 = cx + 8, cx + pw - 8, cy + 18, cy + ph - 22
        counts = {k: np.histogram(np.clip(per_op[op][k], -100, 100), bins=edges)[0] for k in KINDS}
        total = sum(counts.values())
        peak = max(int(total.max()), 1)
        label = op if len(op) <= 30 else op.replace("Adjustment", "")
        d.text((x0, cy + 3), f"{label}  n={int(total.sum())}", fill="black", font=font)
        d.rectangle([x0, y0, x1, y1], outline=(200, 200, 200))
        zero = x0 + (x1 - x0) / 2
        d.line([zero, y0, zero, y1], fill=(220, 220, 220))
        bw = (x1 - x0) / bins
        for i in range(bins):
            base = y1
            for k in KINDS:
                c = int(counts[k][i])
                if not c:
                    continue
                h = (y1 - y0 - 2) * c / peak
                d.rectangle([x0 + i * bw + 1, base - h, x0 + (i + 1) * bw - 1, base], fill=KIND_COLOURS[k])
                base -= h
        d.text((x0, y1 + 3), "-100", fill=(90, 90, 90), font=font)
        d.text((zero - 3, y1 + 3), "0", fill=(90, 90, 90), font=font)
        d.text((x1 - 22, y1 + 3), "+100", fill=(90, 90, 90), font=font)
    path = Path(path)
    from monet_cli.images import atomic_write

    atomic_write(path, lambda tmp: im.save(tmp, format="PNG"), overwrite=True)
    return path
