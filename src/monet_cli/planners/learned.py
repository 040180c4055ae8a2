"""``auto`` v2: the embedded planner that learned from puzzles when to correct — numpy only, CPU.

Per stage (lighting, then colour on the proxy after the lighting stage) it measures the proxy
into a fixed feature vector (:func:`features`: L* percentiles, clipping, colourfulness, chroma
by HSL band, the grey-edge and bright-surface white estimates of :mod:`monet_cli.measure`, and
the values the analytic planner would set), builds a few *candidate plans*
(:func:`candidates`: the analytic planner's correction, half of it, the exposure that brings
the median to middle grey or half of it, the analytic exposure alone; for colour the analytic correction or half of it, half
of a grey-edge or of a grey-world white balance), and a small ensemble of perceptrons
(:class:`StageModel`) predicts, for each candidate, how much closer to the expert's photo it
brings this one (ΔE2000 gained). The ensemble was fitted by ``benchmarks/auto_fit.py`` on the
paper's puzzle C made small: free photographs degraded by monet's own ops and by independent
math (linear and channel gains, power curves, gamma, chroma scaling), or not at all, with the
gain of each candidate measured against the undegraded photo (:mod:`monet_cli.auto_fit`).

"First, do no harm": each predicted gain comes with a predicted error ``s`` — the spread of
the ensemble members, times a factor calibrated on the photos each member never saw
(out-of-bag). The candidate with the best ``gain − r·s`` is kept only when that is above
:data:`MIN_GAIN`; otherwise the stage makes no change, and the reasoning says that it held
back and why. ``r`` is the ``--caution`` (:data:`CAUTION`, :func:`risk_of`): 0.5 in the
lighting stage by default, 1 at ``high``, 0.25 at ``low``; always 1 in the colour stage. So
the planner learns *when* a correction helps, which is where the hand-set rules failed on
photos they were not tuned on (a high-key photo read as over-exposed, a warm scene
neutralised).

The HSL stage makes no correction of its own: the analytic rule (tone down a single band
pinned to the gamut edge) made photos worse more often than better in the cross-validation, so
per-colour changes come only from a style or instructions, which add the same offsets as the
analytic planner. The weights are package data (``models/auto/auto-v2.npz``, its card
``models/auto/README.md``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli.catalog import catalog
from monet_cli.errors import InputError, UsageError
from monet_cli.measure import Measurements, area_downscale, lstar, measure
from monet_cli.plan import Reasoning, StagePlan

FEATURE_SIDE = 256  # long side the features are measured at (training and planning alike)
WEIGHTS_NAME = "auto-v2.npz"
MODEL_STAGES = ("lighting", "color")
# the candidate plans each stage's model scores (see candidates())
CANDIDATES: dict[str, tuple[str, ...]] = {
    "lighting": ("rules", "rules/2", "grey", "grey/2", "rules-exposure"),
    "color": ("rules", "rules/2", "grey-edge/2", "grey-world/2"),
}
MIN_GAIN = 0.1  # ΔE2000: a candidate must be predicted to gain more than this, net of its risk
# how much of a candidate's predicted error counts against its predicted gain (``--caution``):
# high counts all of it, and holds back unless a gain is likely; medium (the default) and low
# count half and a quarter in the lighting stage, and correct more often at the price of more
# photos made a little worse (the cross-validated table in the README reports all three, and
# why medium is the default). The colour stage always counts all of it: on held-out puzzles its
# gains are too unpredictable for any less caution to gain on average (-0.04 ΔE at a quarter,
# 0.00 at a half; benchmarks/auto_fit.py's puzzles).
CAUTION: dict[str, float] = {"high": 1.0, "medium": 0.5, "low": 0.25}
DEFAULT_CAUTION = "medium"
CAUTION_STAGES = ("lighting",)  # the stages --caution applies to


def risk_of(caution: str, stage: str) -> float:
    """The share of the predicted error counted against the gain in ``stage`` at ``caution``."""
    return CAUTION[caution] if stage in CAUTION_STAGES else 1.0


_F32 = np.float32


class WeightsError(InputError):
    """The learned planner's weights file is missing, unreadable or inconsistent."""


def caution_of(model: str | None) -> str | None:
    """The caution a plan's recorded ``auto`` model name carries (``auto-v2+caution-low``); a
    bare ``auto-v2`` was planned before ``--caution`` existed, at what is now ``high``; None
    for any other name."""
    if model and "+caution-" in model:
        key = model.rsplit("+caution-", 1)[1]
        return key if key in CAUTION else None
    return "high" if model == "auto-v2" else None


# ----------------------------------------------------------------------------- features


def _band_names() -> list[str]:
    return [b.name for b in catalog().bands]


@lru_cache(maxsize=1)
def feature_names() -> tuple[str, ...]:
    """The names of :func:`features`' entries, in order (stored with the weights and checked)."""
    base = ["L1", "L5", "L10", "L25", "L50", "L75", "L90", "L95", "L99", "Lblack", "log2_white", "log2_key",
            "clip_white", "clip_highlights", "clip_black", "spread", "chroma", "chroma90", "mean_a", "mean_b",
            "colourfulness", "gamut_edge", "edge_T", "edge_t", "bright_T", "bright_t", "white_spread",
            "white_confidence", "usable"]
    bands = _band_names()
    rules = [f"rules_{op}" for op in RULES_OPS]
    return tuple(base + [f"share_{b}" for b in bands] + [f"chroma_{b}" for b in bands] + rules)


# the analytic planner's values enter as features: the model learns when to trust them
RULES_OPS = ("Exposure", "Contrast", "Whites", "Blacks", "Temperature", "Tint", "Saturation")


def rules_values(m: Measurements, proxy: np.ndarray) -> dict[str, dict[str, float]]:
    """What the analytic planner (:mod:`monet_cli.planners.auto`) would set, per stage
    (``"lighting"``, ``"color"``), from measurements ``m`` of ``proxy`` (no style, no
    instructions). Both features and candidates use it, computed once."""
    from monet_cli.planners import auto as rules

    lighting: dict = {}
    color: dict = {}
    rules._lighting(m, lighting)
    rules._color(m, proxy, color)
    return {stage: {op: float(p.value) for op, p in props.items()}
            for stage, props in (("lighting", lighting), ("color", color))}


def features(proxy: np.ndarray) -> tuple[np.ndarray, Measurements, np.ndarray, dict]:
    """The feature vector (float64, :func:`feature_names`), the measurements, the analysed
    copy of a proxy and the analytic planner's values (:func:`rules_values`): what
    :func:`candidates` is built from.

    ``proxy``: working-space linear ``(H, W, 3)``. It is box-filtered to long side
    :data:`FEATURE_SIDE` first, so the features of a 24 MP file, its 1280 px proxy and the
    512 px training images agree. Lightness values are L*/100; white estimates are the
    (Temperature, Tint) that would neutralise them, /100; fractions enter as square roots (a
    1 % clip matters, the difference between 40 % and 41 % does not).
    """
    from monet_cli.metrics import xyz_to_lab
    from monet_cli.planners.auto import solve_white_balance

    small = area_downscale(np.asarray(proxy, dtype=_F32), FEATURE_SIDE).astype(_F32, copy=False)
    small = np.where(np.isfinite(small), small, _F32(0.0))
    m = measure(small, neutral=True)
    Y = np.maximum(small @ cs.LUMA.astype(_F32), _F32(0.0))
    L10, L25, L75, L90 = lstar(np.percentile(Y, [10, 25, 75, 90])) / 100.0
    lab = xyz_to_lab(small.reshape(-1, 3) @ cs.WORKING.to_xyz.T.astype(_F32))
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    n = m.neutral
    eT, et = solve_white_balance(n.rgb)
    bT, bt = solve_white_balance(n.rgb_bright)
    L = lambda y: float(lstar(y)) / 100.0  # noqa: E731
    bands = _band_names()
    v = [L(m.p1), L(m.p5), L10, L25, L(m.p50), L75, L90, L(m.p95), L(m.p99), L(m.black_point),
         math.log2(max(m.white_point, 1e-4)), math.log2(max(m.key, 1e-4)),
         math.sqrt(m.clipped_white), math.sqrt(m.clipped_highlights), math.sqrt(m.clipped_black), m.spread,
         m.chroma / 50.0, float(np.percentile(chroma, 90)) / 50.0, float(lab[:, 1].mean()) / 20.0,
         float(lab[:, 2].mean()) / 20.0, m.colourfulness / 50.0, math.sqrt(m.gamut_edge),
         np.clip(eT, -200, 200) / 100.0, np.clip(et, -200, 200) / 100.0,
         np.clip(bT, -200, 200) / 100.0, np.clip(bt, -200, 200) / 100.0,
         min(n.spread * 100.0, 5.0), n.confidence, n.usable]
    v += [m.band_share[b] for b in bands] + [m.band_chroma[b] / 50.0 for b in bands]
    rules = rules_values(m, small)
    r = {**rules["lighting"], **rules["color"]}
    v += [r.get(op, 0.0) / 50.0 for op in RULES_OPS]
    return np.asarray(v, dtype=np.float64), m, small, rules


def _clamped(adj: dict[str, float]) -> dict[str, float]:
    return {op: float(round(min(max(v, -100.0), 100.0))) for op, v in adj.items() if round(v) != 0}


def candidates(stage: str, m: Measurements, small: np.ndarray, rules: dict) -> dict[str, dict[str, float]]:
    """The candidate plans of ``stage`` (names of :data:`CANDIDATES`), from measurements ``m``
    of the analysed image ``small`` and the analytic values ``rules`` (all three from
    :func:`features`).

    lighting: ``rules`` — the analytic planner's lighting values; ``rules/2`` — half of them;
    ``grey`` — the Exposure that brings the median luminance to middle grey (0.18; 50 per EV);
    ``grey/2`` — half of it; ``rules-exposure`` — the analytic Exposure alone (it raised the
    cross-validated gain of every caution: README, "How well auto restores photos"). colour: ``rules``, ``rules/2`` likewise; ``grey-edge/2`` — half
    of the (Temperature, Tint) that neutralise the grey-edge white; ``grey-world/2`` — half of
    those that neutralise the mean colour. Values clamped to ±100 and rounded.
    """
    from monet_cli.planners.auto import solve_white_balance

    if stage not in MODEL_STAGES:
        raise ValueError(f"stage {stage!r} has no candidates")
    r = rules[stage]
    out = {"rules": r, "rules/2": {k: v / 2 for k, v in r.items()}}
    if stage == "lighting":
        ev = 50.0 * math.log2(cs.MIDDLE_GREY / max(m.p50, 1e-4))
        out.update({"grey": {"Exposure": ev}, "grey/2": {"Exposure": ev / 2},
                    "rules-exposure": {"Exposure": r.get("Exposure", 0.0)}})
    else:
        eT, et = solve_white_balance(m.neutral.rgb)
        mean = small.reshape(-1, 3).mean(axis=0, dtype=np.float64)
        wT, wt = solve_white_balance(mean / max(float(mean @ cs.LUMA), 1e-6))
        out.update({"grey-edge/2": {"Temperature": eT / 2, "Tint": et / 2},
                    "grey-world/2": {"Temperature": wT / 2, "Tint": wt / 2}})
    return {name: _clamped(out[name]) for name in CANDIDATES[stage]}


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Prediction:
    """One stage's prediction: per candidate the ensemble's mean predicted gain ``mu`` (ΔE2000),
    its calibrated predicted error ``s``, and the candidate chosen (None: hold back)."""

    outputs: tuple[str, ...]
    mu: np.ndarray
    s: np.ndarray
    choice: str | None


def choose(outputs, mu, s, min_gain: float = MIN_GAIN) -> str | None:
    """The candidate whose predicted gain beats its predicted risk by most, if by more than
    ``min_gain``: ``argmax(μ − s)`` when that is ``> min_gain``, else None (no change)."""
    net = np.asarray(mu, dtype=np.float64) - np.asarray(s, dtype=np.float64)
    k = int(np.argmax(net))
    return outputs[k] if net[k] > min_gain else None


@dataclass(frozen=True)
class StageModel:
    """An ensemble of one-hidden-layer perceptrons for one stage.

    ``y_k = tanh(z W1_k + b1_k) W2_k + b2_k`` with ``z = (x − mean) / scale``; outputs are
    ``out_scale · y`` (the gain of each candidate in ``outputs``). ``W1``: (K, F, H), ``b1``:
    (K, H), ``W2``: (K, H, O), ``b2``: (K, O). ``calibration``: per output, predicted error =
    ``calibration · std_k(outputs)`` (out-of-bag).
    """

    outputs: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    W1: np.ndarray
    b1: np.ndarray
    W2: np.ndarray
    b2: np.ndarray
    out_scale: float
    calibration: np.ndarray

    def members(self, x: np.ndarray) -> np.ndarray:
        """Each member's outputs for feature rows ``x`` (N, F) → (K, N, O)."""
        z = (np.atleast_2d(x) - self.mean) / self.scale
        h = np.tanh(np.einsum("nf,kfh->knh", z, self.W1) + self.b1[:, None, :])
        return self.out_scale * (np.einsum("knh,kho->kno", h, self.W2) + self.b2[:, None, :])

    def predict(self, x: np.ndarray, risk: float = 1.0) -> Prediction:
        """The stage's prediction for one feature vector; ``risk``: the share of each predicted
        error counted against its gain when choosing (:data:`CAUTION`)."""
        y = self.members(x)[:, 0, :]
        mu = y.mean(axis=0)
        s = self.calibration * y.std(axis=0)
        return Prediction(self.outputs, mu, s, choose(self.outputs, mu, risk * s))


@dataclass(frozen=True)
class LearnedModel:
    """The fitted planner: one :class:`StageModel` per stage of :data:`MODEL_STAGES`, the
    feature names it was fitted on and the fit's metadata (data, scores; the model card)."""

    stages: dict[str, StageModel]
    features: tuple[str, ...]
    meta: dict

    def save(self, path) -> Path:
        """Write the model as an ``.npz`` (no pickles), atomically."""
        from monet_cli.images import atomic_write

        arrays = {"features": np.array(self.features), "meta": np.array(json.dumps(self.meta))}
        for stage, sm in self.stages.items():
            arrays[f"{stage}.outputs"] = np.array(sm.outputs)
            for k in ("mean", "scale", "W1", "b1", "W2", "b2", "calibration"):
                arrays[f"{stage}.{k}"] = np.asarray(getattr(sm, k), dtype=np.float32)
            arrays[f"{stage}.out_scale"] = np.array(sm.out_scale)

        def write(tmp: Path):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)

        return atomic_write(Path(path), write, overwrite=True)


def load_model(path) -> LearnedModel:
    """Read and check a model written by :meth:`LearnedModel.save`; one-line WeightsError if not."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise WeightsError(f"{path}: the learned planner's weights are missing") from None
    except Exception as e:  # noqa: BLE001 - zip, npy and value errors all mean the same to a user
        raise WeightsError(f"{path}: not a readable weights file ({type(e).__name__}: {e})") from None
    try:
        names = tuple(str(s) for s in data["features"])
        if names != feature_names():
            raise ValueError("it was fitted on other features than this version of monet measures")
        meta = json.loads(str(data["meta"]))
        stages = {}
        F = len(names)
        for stage in MODEL_STAGES:
            outputs = tuple(str(s) for s in data[f"{stage}.outputs"])
            if outputs != CANDIDATES[stage]:
                raise ValueError(f"{stage}: it scores candidates {', '.join(outputs)}, this monet builds "
                                 f"{', '.join(CANDIDATES[stage])}")
            arr = {k: data[f"{stage}.{k}"].astype(np.float64)
                   for k in ("mean", "scale", "W1", "b1", "W2", "b2", "calibration")}
            K, F1, H = arr["W1"].shape
            O = len(outputs)
            want = {"mean": (F,), "scale": (F,), "W1": (K, F, H), "b1": (K, H), "W2": (K, H, O), "b2": (K, O),
                    "calibration": (O,)}
            for k, shape in want.items():
                if arr[k].shape != shape:
                    raise ValueError(f"{stage}.{k} has shape {arr[k].shape}, expected {shape}")
            if not all(np.all(np.isfinite(a)) for a in arr.values()) or np.any(arr["scale"] <= 0):
                raise ValueError(f"{stage}: non-finite weights or a non-positive feature scale")
            stages[stage] = StageModel(outputs=outputs, out_scale=float(data[f"{stage}.out_scale"]), **arr)
    except KeyError as e:
        raise WeightsError(f"{path}: incomplete weights file (no {e.args[0]!r})") from None
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{path}: inconsistent weights file: {e}") from None
    return LearnedModel(stages=stages, features=names, meta=meta)


def weights_path() -> Path:
    """The shipped weights: ``models/auto/auto-v2.npz`` of the package data."""
    from monet_cli.resources import data_dir

    return data_dir("models") / "auto" / WEIGHTS_NAME


@lru_cache(maxsize=4)
def _cached_model(path: str) -> LearnedModel:
    return load_model(path)


# ----------------------------------------------------------------------------- reasoning


def _lighting_facts(m: Measurements) -> str:
    return (f"The median luminance is {m.p50:.3f} (L* {float(lstar(m.p50)):.0f}; middle grey is 0.18, L* 50), "
            f"the tones fill {100 * m.spread:.0f}% of the range from black to white, the brightest tones reach "
            f"{m.white_point:.2f}, {100 * m.clipped_white:.1f}% of the pixels are clipped at white and "
            f"{100 * m.clipped_black:.1f}% crushed to black.")


def _color_facts(m: Measurements) -> str:
    from monet_cli.measure import colourfulness_word

    n = m.neutral
    return (f"The grey-edge estimate of the scene's white is {n.cct:.0f} K (Duv {n.duv:+.4f}; D65 is 6504 K), "
            f"the bright-surface estimate is {n.spread:.4f} Δuv from it, colourfulness is "
            f"{m.colourfulness:.0f} ({colourfulness_word(m.colourfulness)}) and {100 * m.gamut_edge:.1f}% of "
            f"the pixels sit on the gamut edge.")


_WHY = {
    "Exposure": ("the photo looks {dir}-exposed", "darker", "brighter"),
    "Contrast": ("the tones look {dir}", "harsh", "flat"),
    "Highlights": ("the bright tones look {dir}", "too dark", "too bright"),
    "Shadows": ("the shadows look {dir}", "too bright", "too dark"),
    "Blacks": ("the black point looks {dir}", "crushed", "lifted"),
    "Whites": ("the white point looks {dir}", "beyond white", "short of white"),
    "Temperature": ("the white balance looks {dir}", "too warm", "too cool"),
    "Tint": ("the white balance leans {dir}", "towards magenta", "towards green"),
    "Saturation": ("the colours look {dir}", "over-saturated", "washed out"),
}


def _why(op: str, v: float) -> str:
    text, neg, pos = _WHY[op]
    if op == "Exposure":
        return text.format(dir="over" if v < 0 else "under")
    return text.format(dir=neg if v < 0 else pos)


_DESCRIBE = {
    "rules": "the analytic correction",
    "rules/2": "half of the analytic correction",
    "grey": "the exposure that brings the median to middle grey",
    "grey/2": "half of the exposure that brings the median to middle grey",
    "rules-exposure": "the analytic exposure alone",
    "grey-edge/2": "half of the grey-edge white balance",
    "grey-world/2": "half of the grey-world white balance",
}


def _candidates_text(pred: Prediction, plans: dict[str, dict]) -> str:
    parts = []
    for name, mu, s in zip(pred.outputs, pred.mu, pred.s):
        vals = ", ".join(f"{op} {v:+.0f}" for op, v in plans[name].items()) or "no change"
        parts.append(f"{_DESCRIBE[name]} ({vals}): {mu:+.2f} ± {s:.2f}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- planner


class LearnedPlanner:
    """The ``auto`` backend, v2 (module docstring). Deterministic; the model is loaded once."""

    name = "auto"
    adapter: str | None = None

    def __init__(self, weights=None, *, learned: LearnedModel | None = None, caution: str = DEFAULT_CAUTION):
        """``weights``: a weights file (default: the shipped one); ``learned``: a model in memory
        (the cross-validation of ``benchmarks/auto_fit.py``); ``caution``: a key of
        :data:`CAUTION`."""
        key = (caution or DEFAULT_CAUTION).strip().lower()
        if key not in CAUTION:
            raise UsageError(f"--caution {caution!r}: expected one of {', '.join(CAUTION)}")
        self.caution = key
        if learned is None:
            learned = _cached_model(str(Path(weights) if weights is not None else weights_path()))
        self.learned = learned
        # recorded in the plan, so that a re-plan of later stages (edit-stage) keeps the caution
        self.model = f"{learned.meta.get('name', 'auto-v2')}+caution-{key}"

    def predict(self, stage: str, proxy: np.ndarray) -> tuple[Prediction, dict[str, dict], Measurements]:
        """The model's prediction for ``stage`` on a proxy, the candidate plans it scored, and
        the measurements it saw."""
        x, m, small, rules = features(proxy)
        return (self.learned.stages[stage].predict(x, risk_of(self.caution, stage)),
                candidates(stage, m, small, rules), m)

    def plan_stage(self, stage: str, proxy: np.ndarray, *, style: str = "balanced",
                   instructions: str | None = None, previous: dict[str, StagePlan] | None = None) -> StagePlan:
        from monet_cli.planners import auto as rules

        stage_ops = set(catalog().stages[stage].ops)
        requests = rules.parse_instructions(instructions)
        proposals: dict[str, rules._Proposal] = {}
        held: list[Reasoning] = []
        if stage in MODEL_STAGES:
            pred, plans, m = self.predict(stage, proxy)
            facts = _lighting_facts(m) if stage == "lighting" else _color_facts(m)
            n_photos = self.learned.meta.get("photos", "its")
            scored = (f"Predicted ΔE2000 gains towards the photo as it should look (the model fitted on "
                      f"{n_photos} photos' restoration puzzles): {_candidates_text(pred, plans)}.")
            risk = risk_of(self.caution, stage)
            net = "net of its risk" if risk == 1.0 else f"net of {risk:g} × its risk (caution {self.caution})"
            if pred.choice is not None:
                chosen = plans[pred.choice]
                for op, v in chosen.items():
                    proposals.setdefault(op, rules._Proposal(op)).add(
                        v, f"{facts} {scored} The best {net} is {_DESCRIBE[pred.choice]}.",
                        f"because {_why(op, v)}")
                note = ""
            else:
                best = int(np.argmax(pred.mu - risk * pred.s))
                held.append(Reasoning(
                    "None", f"{facts} {scored}",
                    f"Hold back: no candidate is predicted to gain more than {MIN_GAIN:.1f} ΔE {net} "
                    f"(the best, {_DESCRIBE[pred.outputs[best]]}, {pred.mu[best]:+.2f} ± {pred.s[best]:.2f}), so "
                    f"the photo is left as it is rather than risk making it worse."))
                note = f"{facts} No change is predicted to help with confidence."
            style_offsets = rules.STYLE_OFFSETS[style]
        elif stage == "hsl":
            m = measure(area_downscale(np.asarray(proxy, dtype=_F32), FEATURE_SIDE), neutral=False)
            top = sorted(m.band_share.items(), key=lambda kv: -kv[1])[:2]
            note = (f"The colour is mostly {top[0][0].lower()} ({100 * top[0][1]:.0f}% of the chroma) and "
                    f"{top[1][0].lower()} ({100 * top[1][1]:.0f}%). Per-colour changes are left to a style or "
                    f"your instructions: in cross-validation the analytic rule for this stage (tone down a "
                    f"band pinned to the gamut edge) made photos worse more often than better.")
            style_offsets = {op: v for op, v in rules.STYLE_HSL[style].items()
                             if m.band_share.get(catalog().ops[op].band, 0.0) > 0.02}
        else:
            raise ValueError(f"unknown stage {stage!r}")
        rules._add_style_and_requests(proposals, stage_ops, style, requests, style_offsets)
        title = catalog().stages[stage].title
        sp = rules._finish(proposals, note, f"No {title if title.isupper() else title.lower()} adjustment is needed.")
        if held:  # the held-back triplet replaces the generic "no adjustment" one
            sp.reasoning = held if sp.status == "no_change" else sp.reasoning + held
        return sp
