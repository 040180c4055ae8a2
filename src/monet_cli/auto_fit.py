"""Fitting ``auto`` v2 (:mod:`monet_cli.planners.learned`): puzzle-C samples, measured gains, the ensemble.

A *sample* is the paper's puzzle C, made small: a good photo (a random crop of it, maybe
mirrored, long side 512) is degraded by :func:`random_degradation` — monet's own ops, or
independent math from :mod:`monet_cli.degrade` (linear gains, channel gains, power curves,
gamma, chroma scaling), one to three at once, or nothing — and saved like an 8-bit file. For
each stage the planner's candidate plans (:func:`monet_cli.planners.learned.candidates`) are
rendered and scored against the undegraded photo: the answer is each candidate's *gain*,
mean ΔE2000 of the degraded photo minus that of the candidate (8-bit sRGB renditions at long
side :data:`GAIN_SIDE`). The colour stage is measured on the photo rendered with the best
lighting candidate, as the planner will see it.

:func:`fit_stage` fits one stage's ensemble: ``K`` one-hidden-layer perceptrons (tanh), each
on a bootstrap of the *photos* (all crops of a photo go in or out together), full-batch Adam
on the Huber loss with weight decay; then the per-output calibration of the predicted error
from the out-of-bag predictions (each sample predicted by the members that never saw its
photo). numpy only; seconds for a few thousand samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from monet_cli import degrade as dg
from monet_cli.measure import area_downscale
from monet_cli.planners.learned import CANDIDATES, LearnedModel, StageModel, candidates, feature_names, features

# the ops monet-op degradations draw from, per stage
STAGE_OPS: dict[str, tuple[str, ...]] = {
    "lighting": ("Exposure", "Contrast", "Highlights", "Shadows", "Blacks"),
    "color": ("Temperature", "Tint", "Saturation"),
}
GAIN_SIDE = 128
SAMPLE_SIDE = 512
OUT_SCALE = 5.0  # network outputs are ΔE2000 gains / 5
# σ of the normal draws of monet-op degradations (the paper's puzzle C: 15 or 25, here wider)
MONET_SIGMA = {"Exposure": 40.0, "Contrast": 45.0, "Highlights": 35.0, "Shadows": 35.0, "Blacks": 25.0,
               "Temperature": 30.0, "Tint": 18.0, "Saturation": 35.0}


# ----------------------------------------------------------------------------- degradations


def random_degradation(rng: np.random.Generator) -> tuple[str, dict]:
    """A random training degradation: ``(label, spec)``; :func:`apply_degradation` applies it.

    12 % nothing; otherwise one to three parts (60 / 30 / 10 %), each either monet ops of one
    stage (1–2 ops, normal values) or an independent kind whose magnitude is uniform from
    harmless to strong, either sign: |EV| 0.1–1.4, |ln R/B| 0.03–0.35 (tint ±0.08), |ln γ|
    0.05–0.55 for contrast and 0.05–0.35 for gamma, |ln chroma| 0.05–0.8.
    """
    if rng.random() < 0.12:
        return "none", {"parts": []}
    n = int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))
    parts, labels = [], []
    kinds = ["monet-lighting", "monet-color", "x-exposure", "x-cast", "x-contrast", "x-saturation", "x-gamma"]
    for k in rng.choice(len(kinds), size=n, replace=False):
        kind = kinds[int(k)]
        if kind.startswith("monet-"):
            stage = kind.split("-")[1]
            ops = list(STAGE_OPS[stage])
            chosen = rng.choice(len(ops), size=int(rng.integers(1, 3)), replace=False)
            adj = {ops[i]: float(np.clip(round(rng.normal(0, MONET_SIGMA[ops[i]])), -100, 100)) for i in chosen}
            parts.append(("monet", adj))
        else:
            sign = 1.0 if rng.random() < 0.5 else -1.0
            if kind == "x-exposure":
                p = {"ev": sign * float(rng.uniform(0.1, 1.4))}
            elif kind == "x-cast":
                p = {"cast": sign * float(rng.uniform(0.03, 0.35)), "tint": float(rng.uniform(-0.08, 0.08))}
            elif kind == "x-contrast":
                p = {"gamma": float(math.exp(sign * rng.uniform(0.05, 0.55)))}
            elif kind == "x-saturation":
                p = {"chroma": float(math.exp(sign * rng.uniform(0.05, 0.8)))}
            else:
                p = {"gamma": float(math.exp(sign * rng.uniform(0.05, 0.35)))}
            parts.append((kind, p))
        labels.append(kind)
    # light before colour, as a camera and an editor would
    order = {"x-exposure": 0, "x-gamma": 1, "x-contrast": 2, "monet": 3, "x-cast": 4, "x-saturation": 5}
    parts.sort(key=lambda kp: order[kp[0]])
    return "+".join(sorted(labels)), {"parts": parts}


def apply_degradation(rgb: np.ndarray, spec: dict) -> np.ndarray:
    """Apply a :func:`random_degradation` spec to working linear ``rgb``, then save it like an
    8-bit sRGB file (clipping and quantisation are part of the damage)."""
    from monet_cli.render import render_linear

    out = np.asarray(rgb, dtype=np.float32)
    for kind, p in spec["parts"]:
        out = render_linear(out, p) if kind == "monet" else dg.apply_independent(out, p, kind)
    return dg.save_like_8bit(out)


# ----------------------------------------------------------------------------- gains


def gains(deg: np.ndarray, ref8: np.ndarray, plans: dict[str, dict]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each plan's ΔE2000 gain on ``deg`` (working linear) against the 8-bit sRGB reference
    ``ref8`` of the same size, and the rendered plans."""
    from monet_cli.metrics import mean_delta_e2000
    from monet_cli.render import render_linear

    base = mean_delta_e2000(ref8, dg.working_to_srgb8(deg))
    out, renders = [], {}
    for name, adj in plans.items():
        img = render_linear(deg, adj)
        renders[name] = img
        out.append(base - mean_delta_e2000(ref8, dg.working_to_srgb8(img)))
    return np.array(out), renders


@dataclass
class Sample:
    """One puzzle: the features each stage sees and its candidates' measured gains (ΔE2000)."""

    photo: str
    label: str
    x_lighting: np.ndarray
    x_color: np.ndarray
    y_lighting: np.ndarray
    y_color: np.ndarray


def make_sample(photo: str, ref: np.ndarray, rng: np.random.Generator, *, crop: bool = True) -> Sample:
    """A puzzle from working-linear ``ref`` (long side ≥ :data:`SAMPLE_SIDE`): crop, degrade,
    measure, and score every candidate of both stages."""
    from monet_cli.planners.base import make_proxy
    from monet_cli.render import render_linear

    h, w = ref.shape[:2]
    if crop:
        fh, fw = rng.uniform(0.6, 1.0, size=2)
        ch, cw = max(16, int(h * fh)), max(16, int(w * fw))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        ref = ref[y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            ref = ref[:, ::-1]
    ref = dg.save_like_8bit(make_proxy(np.ascontiguousarray(ref), SAMPLE_SIDE))
    label, spec = random_degradation(rng)
    deg = apply_degradation(ref, spec)
    ref_small = dg.working_to_srgb8(area_downscale(ref, GAIN_SIDE))
    small = area_downscale(deg, GAIN_SIDE).astype(np.float32)

    x_l, m, analysed, rules = features(deg)
    plans_l = candidates("lighting", m, analysed, rules)
    g_l, _ = gains(small, ref_small, plans_l)
    best = CANDIDATES["lighting"][int(np.argmax(g_l))] if g_l.max() > 0 else None
    lit = render_linear(deg, plans_l[best]) if best else deg
    x_c, m_c, analysed_c, rules_c = features(lit)
    plans_c = candidates("color", m_c, analysed_c, rules_c)
    g_c, _ = gains(area_downscale(lit, GAIN_SIDE).astype(np.float32), ref_small, plans_c)
    return Sample(photo, label, x_l, x_c, g_l, g_c)


# ----------------------------------------------------------------------------- ensemble


def _huber_grad(r: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(r, -delta, delta)


def _train_member(z: np.ndarray, y: np.ndarray, rng: np.random.Generator, hidden: int, steps: int,
                  lr: float, decay: float, delta: float):
    n, F = z.shape
    O = y.shape[1]
    params = [rng.normal(0, 1.0 / math.sqrt(F), (F, hidden)), np.zeros(hidden),
              rng.normal(0, 0.1 / math.sqrt(hidden), (hidden, O)), np.zeros(O)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2 = 0.9, 0.999
    for t in range(1, steps + 1):
        W1, c1, W2, c2 = params
        h = np.tanh(z @ W1 + c1)
        out = h @ W2 + c2
        g_out = _huber_grad(out - y, delta) / n
        gW2 = h.T @ g_out + decay * W2
        gc2 = g_out.sum(0)
        g_h = (g_out @ W2.T) * (1.0 - h * h)
        gW1 = z.T @ g_h + decay * W1
        gc1 = g_h.sum(0)
        a = lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / steps)))  # cosine to 10 %
        for i, g in enumerate((gW1, gc1, gW2, gc2)):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] = params[i] - a * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + 1e-8)
    return params


def fit_stage(X: np.ndarray, Y: np.ndarray, groups, outputs, *, members: int = 5, hidden: int = 16,
              steps: int = 400, lr: float = 0.01, decay: float = 0.1, seed: int = 0) -> StageModel:
    """Fit one stage's ensemble (module docstring) on features ``X`` (N, F), targets ``Y`` (N, O)
    named ``outputs``.

    ``groups``: the photo of each row; bootstraps and out-of-bag calibration go by photo.
    Deterministic for a ``seed``. The calibration is ``sqrt(mean(oob error²) / mean(σ²))`` per
    output (1 where no row is out of bag).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    names = np.unique(groups)
    mean = X.mean(0)
    scale = X.std(0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z = (X - mean) / scale
    y = Y / OUT_SCALE
    rng = np.random.default_rng(seed)
    Ws, inbag = [], []
    for k in range(members):
        pick = rng.choice(names, size=names.size, replace=True) if members > 1 else names
        counts = {g: int(np.sum(pick == g)) for g in names}
        w = np.array([counts[g] for g in groups])
        rows = np.repeat(np.arange(len(groups)), w)
        Ws.append(_train_member(z[rows], y[rows], np.random.default_rng([seed, k]), hidden, steps, lr, decay, 0.5))
        inbag.append(w > 0)
    W1, b1, W2, b2 = (np.stack([p[i] for p in Ws]) for i in range(4))
    model = StageModel(outputs=tuple(outputs), mean=mean, scale=scale, W1=W1, b1=b1, W2=W2, b2=b2,
                       out_scale=OUT_SCALE, calibration=np.ones(len(outputs)))
    pred = model.members(X)  # (K, N, O)
    inbag = np.stack(inbag)  # (K, N)
    oob = ~inbag
    has = oob.any(0)
    calibration = np.ones(len(outputs))
    if has.sum() >= 10 and members > 1:
        mu_oob = (pred * oob[..., None]).sum(0)[has] / oob.sum(0)[has][:, None]
        err2 = ((mu_oob - Y[has]) ** 2).mean(0)
        sig2 = (pred.std(0)[has] ** 2).mean(0)
        calibration = np.sqrt(err2 / np.maximum(sig2, 1e-9))
    return StageModel(outputs=tuple(outputs), mean=mean, scale=scale, W1=W1, b1=b1, W2=W2, b2=b2,
                      out_scale=OUT_SCALE, calibration=calibration)


def fit_model(samples: list[Sample], *, seed: int = 0, meta: dict | None = None, **kw) -> LearnedModel:
    """Both stages' ensembles from puzzle samples (:func:`fit_stage` options in ``kw``)."""
    groups = [s.photo for s in samples]
    stages = {
        "lighting": fit_stage(np.stack([s.x_lighting for s in samples]), np.stack([s.y_lighting for s in samples]),
                              groups, CANDIDATES["lighting"], seed=seed, **kw),
        "color": fit_stage(np.stack([s.x_color for s in samples]), np.stack([s.y_color for s in samples]),
                           groups, CANDIDATES["color"], seed=seed + 1, **kw),
    }
    info = {"name": "auto-v2", "photos": len(set(groups)), "samples": len(samples)}
    info.update(meta or {})
    return LearnedModel(stages=stages, features=feature_names(), meta=info)
