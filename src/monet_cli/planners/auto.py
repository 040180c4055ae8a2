"""``rules``: the analytic embedded planner (``auto`` until v2) — no weights, CPU, tens of ms a stage.

``auto`` is now the learned planner (:mod:`monet_cli.planners.learned`): in the
cross-validated restore table of ``benchmarks/auto_fit.py`` (README) these rules gain more on
mis-exposed photos but make most other classes and the undegraded originals worse, which v2
does not. This one stays available as ``--backend rules``; v2 reuses its instruction parser,
its white-balance solver, its corrections (as candidates) and its reasoning writer.

Per stage it measures the proxy (rendered with the earlier stages, see
:mod:`monet_cli.measure`), solves for the values that undo what is *unambiguously* wrong by
inverting the renderer's scales (:mod:`monet_cli.operations`), adds the style's and the
user's requests, and writes reasoning triplets grounded in the measurements.

Blind correction easily hurts (DESIGN.md): good photos' median luminance spans several EV,
sunsets are meant to be warm and low-key shots dark. So each rule fires only on evidence
that does not depend on taste, scales its correction by how sure it is, and prefers a
small right move to a large wrong one:

lighting
    *Under-exposure* — the midtones are under middle grey **and** the brightest tones are
    well under white: raise Exposure by the smaller of the two gaps (``min(median gap,
    headroom)``), so a low-key photo whose highlights already reach white is left alone.
    *Over-exposure* — the midtones are above grey **and** highlights are clipped (or the
    histogram is pressed against white): lower Exposure towards grey, in proportion to the
    evidence. *Recoverable highlights* (data above white, from RAW/HDR) — pull Whites down
    until it fits. *Lifted blacks* — nothing in the image reaches black and the darkest 5 %
    are bunched just above the floor (a pedestal, not a soft photo): crush Blacks part of the
    way back. *Flat* — the tones fill under 60 % of the black…white range: a little
    Contrast.
color
    *Cast* — two independent white estimates (grey-edge, white patch) agree that the
    scene's white is off D65: neutralise it, solving Temperature/Tint exactly for the
    estimated white, scaled by the estimates' agreement and by how plausible a cast of that
    size and direction is (casts beyond ~30 mired or ~0.005 Duv are more likely the scene's
    own colour: a sunset, a forest, a tungsten-lit room). Dead zones ignore tiny casts.
    *Over-saturation* — colours pinned to the sRGB gamut edge: lower Saturation.
    *Washed out* — colourfulness under Hasler & Süsstrunk's "moderately colourful" but not a
    deliberate monochrome: raise Saturation half-way (in log) to it.
hsl
    Only a single band that holds most pinned colours is toned down; otherwise nothing but
    the style's and the user's requests.

Styles add fixed offsets: ``vibrant`` Contrast +15, Saturation +15, bluer skies;
``retro`` Contrast −10, Blacks +25 (lifted, matte blacks), Temperature +15, Saturation −20,
muted blues and greens; ``balanced`` nothing. Instructions: simple words ("warmer",
"cooler", "brighter", "darker", "more contrast", "less saturated", "more vibrant", "lift the
shadows", "black and white", "more vivid blues", …; "much"/"slightly" double/halve, a
preceding "not"/"don't" cancels) add offsets too; see :func:`parse_instructions`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli import operations as ops
from monet_cli.catalog import catalog
from monet_cli.measure import (
    Measurements,
    area_downscale,
    colourfulness,
    colourfulness_word,
    lstar,
    lstar_inverse,
    measure,
)
from monet_cli.plan import Reasoning, StagePlan
from monet_cli.reasoning import amount_phrase, signed

GREY = cs.MIDDLE_GREY

# --- evidence thresholds and strengths (each rule's docstring says why) -----------------
EV_DEAD_ZONE = 0.12  # EV: exposure errors smaller than this are left alone
CLIP_EVIDENCE = (0.01, 0.05)  # blown-highlight fraction: no evidence … full evidence of over-exposure
PRESS_WEIGHT = 0.6  # over-exposure evidence from a histogram pressed against white, unclipped
BLACK_LIFT_LSTAR = 5.0  # L* of the 0.5th percentile above which blacks count as lifted
BLACK_TARGET_LSTAR = 2.0
FLAT_SPREAD = 0.60  # below this share of black…white the histogram is flat
WB_DEAD_ZONE = (8.0, 15.0)  # Temperature, Tint values below which a cast is left alone
WB_PLAUSIBLE = (40.0, 25.0)  # Temperature, Tint values of the largest plausible cast
WB_STRENGTH = 0.9
GAMUT_EDGE_EVIDENCE = (0.01, 0.10)  # pinned fraction: no evidence … full evidence of over-saturation
OVERSAT_MAX = -30.0
WASHED_OUT_M = 30.0  # Hasler–Süsstrunk colourfulness under which colours look washed out
MONOCHROME_M = 8.0  # … and under which the photo is deliberately (near) monochrome

STYLE_OFFSETS: dict[str, dict[str, float]] = {
    "balanced": {},
    "vibrant": {"Contrast": 15, "Saturation": 15},
    "retro": {"Contrast": -10, "Blacks": 25, "Temperature": 15, "Saturation": -20},
}
STYLE_HSL: dict[str, dict[str, float]] = {  # applied only to bands present in the photo
    "balanced": {},
    "vibrant": {"SaturationAdjustmentBlue": 10, "SaturationAdjustmentAqua": 10},
    "retro": {"SaturationAdjustmentBlue": -15, "SaturationAdjustmentGreen": -15, "HueAdjustmentGreen": -10},
}
STYLE_WORDS = {"vibrant": "the vibrant style", "retro": "the retro style"}


def _smoothstep(t: float) -> float:
    t = min(max(t, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft(v: float, dead: float) -> float:
    """Soft threshold: 0 inside ``±dead``, shrunk by ``dead`` outside."""
    return math.copysign(max(abs(v) - dead, 0.0), v)


# ----------------------------------------------------------------------------- instructions


@dataclass(frozen=True)
class Request:
    """One thing the user asked for: an offset on an op, and the words that asked."""

    op: str
    amount: float
    phrase: str


_BANDS = "red|orange|yellow|green|aqua|blue|purple|magenta"
# (pattern, op, amount). Longer, more specific phrases first: a matched span is consumed.
_PHRASES: tuple[tuple[str, str, float], ...] = (
    (r"(?:bluer|deeper|more vivid|more saturated|richer) sk(?:y|ies)", "SaturationAdjustmentBlue", 20),
    (r"(?:greener|lusher|more vivid|more saturated) (?:foliage|grass|trees|leaves|greenery)", "SaturationAdjustmentGreen", 20),
    (rf"more (?:vivid |saturated |intense )?(?:{_BANDS})s\b|more (?:vivid|saturated|intense) (?:{_BANDS})\b", "+band", 20),
    ((rf"less (?:vivid |saturated |intense )?(?:{_BANDS})s\b|less (?:vivid|saturated|intense) (?:{_BANDS})\b|"
      rf"(?:mute|tone down) the (?:{_BANDS})s?\b"), "-band", -20),
    (r"(?:lift|open(?: up)?|brighten|raise) (?:the )?shadows?|brighter shadows|more shadow detail", "Shadows", 25),
    (r"(?:deeper|darker|richer) shadows|(?:deepen|darken) (?:the )?shadows", "Shadows", -20),
    (r"(?:recover|tame|tone down|reduce|pull back|darken) (?:the )?highlights|darker highlights|less blown", "Highlights", -30),
    (r"(?:brighter|boost(?:ed)?) highlights|(?:boost|brighten) (?:the )?highlights", "Highlights", 20),
    (r"(?:lift(?:ed)?|raise[d]?|fade[d]?|matte) (?:the )?blacks|\bfaded\b|\bmatte\b", "Blacks", 20),
    (r"(?:deeper|darker|richer|crush(?:ed)?) (?:the )?blacks|crush the blacks", "Blacks", -20),
    (r"black (?:and|&) white|\bb&w\b|\bb/w\b|monochrome|gr[ae]yscale", "Saturation", -100),
    (r"(?:more|increase|boost|add|higher) (?:the )?contrast|punchier|punchy|more punch|contrastier", "Contrast", 20),
    (r"(?:less|reduce|decrease|lower) (?:the )?contrast|\bsofter\b|\bflatter\b", "Contrast", -20),
    ((r"(?:more|increase|boost|add) (?:the )?(?:saturation|saturated|vibrant|vibrance|colou?rful|colou?rs?)|"
      r"more vivid|\bvivid\b|richer colou?rs?|colou?rs? pop"), "Saturation", 20),
    ((r"(?:less|reduce|decrease|lower) (?:the )?(?:saturation|saturated|vibrant|vibrance|colou?rful)|"
      r"\bmuted\b|\bdesaturated?\b|\bsubdued\b"), "Saturation", -20),
    (r"more magenta|\bpinker\b|less green(?:ish)? tint|remove the green", "Tint", 10),
    (r"less magenta|greener tint|more green tint|remove the magenta", "Tint", -10),
    (r"\bwarmer\b|warm (?:it )?up|more warmth|\bwarm\b", "Temperature", 15),
    (r"\bcooler\b|\bcolder\b|cool (?:it )?down|less warm|\bcool\b", "Temperature", -15),
    (r"\bbrighter\b|\blighter\b|\bbrighten(?: it)?(?: up)?\b|more exposure|increase (?:the )?exposure|too dark", "Exposure", 15),
    (r"\bdarker\b|\bdarken(?: it)?\b|less exposure|decrease (?:the )?exposure|too bright", "Exposure", -15),
)
_STRONG = re.compile(r"\b(?:much|a lot|lots|way|very|really|significantly|considerably|far)\s+(?:more\s+)?$")
_WEAK = re.compile(r"\b(?:slightly|a bit|a little|a touch|subtly|somewhat|a tad|marginally|just)\s+(?:more\s+)?$")
_NEGATED = re.compile(r"\b(?:not|no|don't|do not|never|without|isn't|nothing)\s+(?:\w+\s+){0,2}$")


def parse_instructions(text: str | None) -> list[Request]:
    """The simple requests in free text, as op offsets (values added to the planned ones).

    Matches phrases like "warmer" (Temperature +15), "cooler" (−15), "brighter" (Exposure +15,
    0.3 EV), "darker" (−15), "more contrast" (Contrast +20), "less contrast" (−20), "more
    vibrant"/"more saturated" (Saturation +20), "less saturated"/"muted" (−20), "black and
    white" (Saturation −100), "lift the shadows" (Shadows +25), "recover highlights"
    (Highlights −30), "faded"/"lifted blacks" (Blacks +20), "deeper blacks" (−20), "more
    magenta" (Tint +10), "more vivid blues" (SaturationAdjustmentBlue +20), "bluer sky", …
    "much"/"a lot"/"very" before a phrase doubles it, "slightly"/"a bit" halves it; "not" or
    "don't" up to two words before it cancels it. Unrecognised words are ignored.

    >>> [(r.op, r.amount) for r in parse_instructions("Much warmer, and slightly brighter")]
    [('Temperature', 30.0), ('Exposure', 7.5)]
    """
    if not text:
        return []
    s = " ".join(text.lower().replace("’", "'").split())
    taken = [False] * len(s)
    found: list[tuple[int, Request]] = []
    for pattern, op, amount in _PHRASES:
        for m in re.finditer(pattern, s):
            if any(taken[m.start():m.end()]):
                continue
            for i in range(m.start(), m.end()):
                taken[i] = True
            before = s[max(0, m.start() - 40):m.start()]
            if _NEGATED.search(before):
                continue
            mod = _STRONG.search(before) or _WEAK.search(before)
            k = 1.0 if mod is None else 2.0 if _STRONG.search(before) else 0.5
            phrase = (mod.group(0) if mod else "") + m.group(0)
            name = op
            if op in ("+band", "-band"):
                band = re.search(_BANDS, m.group(0)).group(0).capitalize()
                name = f"SaturationAdjustment{band}"
            found.append((m.start(), Request(name, float(amount) * k, phrase.strip())))
    return [r for _, r in sorted(found, key=lambda t: t[0])]


# ----------------------------------------------------------------------------- white balance


def _uv(rgb) -> np.ndarray:
    X, Y, Z = cs.WORKING.to_xyz @ np.asarray(rgb, dtype=np.float64)
    d = X + 15.0 * Y + 3.0 * Z
    return np.array([4.0 * X / d, 6.0 * Y / d])


_UV_D65 = _uv(np.ones(3))


def solve_white_balance(neutral_rgb) -> tuple[float, float]:
    """The (Temperature, Tint) values that render working RGB ``neutral_rgb`` as neutral D65.

    Solves ``uv(white_balance_matrix(T, t) · n) = uv(D65)`` by Gauss–Newton with numerical
    derivatives (the renderer's own matrix, so the answer is exact for its scale, not the
    ``−value`` approximation). May exceed ±100 for an extreme white; the caller clamps.

    >>> T, t = solve_white_balance(ops.white_balance_matrix(35, 0) @ np.ones(3))
    >>> round(T), round(t)
    (-36, -1)
    """
    n = np.asarray(neutral_rgb, dtype=np.float64)
    p = np.zeros(2)
    for _ in range(10):
        f = _uv(ops.white_balance_matrix(*p) @ n) - _UV_D65
        J = np.empty((2, 2))
        for k in range(2):
            dp = np.zeros(2)
            dp[k] = 1.0
            J[:, k] = _uv(ops.white_balance_matrix(*(p + dp)) @ n) - _UV_D65 - f
        step = np.linalg.solve(J, f)
        p = np.clip(p - step, -200.0, 200.0)
        if np.max(np.abs(step)) < 1e-3:
            break
    if not np.all(np.isfinite(p)):
        return 0.0, 0.0
    return float(p[0]), float(p[1])


# ----------------------------------------------------------------------------- proposals


@dataclass
class _Proposal:
    """Contributions to one op: the analytic correction, the style's and the user's offsets."""

    op: str
    parts: list[tuple[float, str, str]] = field(default_factory=list)  # (amount, issue, goal)

    def add(self, amount: float, issue: str, goal: str) -> None:
        self.parts.append((float(amount), issue, goal))

    @property
    def value(self) -> int:
        o = catalog().ops[self.op]
        return round(min(max(sum(a for a, _, _ in self.parts), o.min), o.max))


def _unit(op: str, v: int) -> str:
    """The value in the renderer's physical units, for the solution text."""
    if op == "Exposure":
        return f"{v / 50:+.2f} EV"
    if op == "Temperature":
        return f"{abs(v) * ops.TEMPERATURE_MIRED / 100:.0f} mired {'warmer' if v > 0 else 'cooler'}"
    if op == "Tint":
        return f"{'towards magenta' if v > 0 else 'towards green'}, {abs(v) * ops.TINT_DUV / 100:.4f} Duv"
    if op == "Saturation":
        return f"chroma ×{1 + v / 100:.2f}"
    if op == "Contrast":
        return f"slope ×{ops.CONTRAST_SLOPE ** (v / 100):.2f} at middle grey"
    if op == "Whites":
        return f"{v * ops.WHITES_EV / 100:+.2f} EV at white"
    if op == "Blacks":
        return f"{abs(v) * ops.BLACKS_LEVEL / 100:.4f} {'lift' if v > 0 else 'crush'} at black"
    if op == "Shadows":
        return f"{v * ops.SHADOWS_EV / 100:+.2f} EV three stops under grey"
    if op == "Highlights":
        return f"{v * ops.HIGHLIGHTS_EV / 100:+.2f} EV in the bright tones"
    return ""


def _finish(proposals: dict[str, _Proposal], none_issue: str, none_solution: str) -> StagePlan:
    adjustments: dict[str, float] = {}
    reasoning: list[Reasoning] = []
    for op, p in proposals.items():
        v = p.value
        if v == 0:
            continue
        adjustments[op] = v
        issue = " ".join(i for _, i, _ in p.parts if i)
        goals = [g for _, _, g in p.parts if g]
        unit = _unit(op, v)
        verb = "Increase" if v > 0 else "Decrease"
        solution = f"{verb} {op} by {amount_phrase(v)} ({signed(v)}" + (f", {unit})" if unit else ")")
        if goals:
            solution += " " + "; ".join(goals)
        reasoning.append(Reasoning(op, issue, solution + "."))
    if not adjustments:
        return StagePlan(status="no_change", reasoning=[Reasoning("None", none_issue, none_solution)])
    return StagePlan(adjustments=adjustments, reasoning=reasoning, status="ok")


def _add_style_and_requests(proposals: dict[str, _Proposal], stage_ops, style: str, requests: list[Request],
                            style_offsets: dict[str, float]) -> None:
    for op, amount in style_offsets.items():
        if op in stage_ops:
            proposals.setdefault(op, _Proposal(op)).add(amount, f"The {style} style asks for this.",
                                                       f"for {STYLE_WORDS[style]}")
    for r in requests:
        if r.op in stage_ops:
            proposals.setdefault(r.op, _Proposal(r.op)).add(r.amount, f"You asked for “{r.phrase}”.",
                                                           "as requested")


# ----------------------------------------------------------------------------- lighting


def _lighting(m: Measurements, proposals: dict[str, _Proposal]) -> str:
    """Analytic lighting corrections into ``proposals``; returns a sentence for no_change."""
    D, H = m.median_ev, m.headroom_ev
    med_word = f"The median luminance is {m.p50:.3f}"
    med_rel = (f"about {abs(D):.1f} EV {'under' if D > 0 else 'over'} middle grey"
               if abs(D) >= 0.05 else "at middle grey")
    ev = 0.0
    issue = ""
    if D > 0 and H > 0:
        up = min(D, H)
        if up >= EV_DEAD_ZONE:
            ev = up
            limit = "as far as the highlights allow" if H < D else "to bring the midtones to middle grey"
            issue = (f"{med_word}, {med_rel}, and the brightest tones reach only {m.white_point:.2f}, "
                     f"{H:.1f} EV under white: the photo is under-exposed.")
            goal = f"{limit}, without clipping"
    elif D < 0:
        clip = _smoothstep((m.clipped_highlights - CLIP_EVIDENCE[0]) / (CLIP_EVIDENCE[1] - CLIP_EVIDENCE[0]))
        press = PRESS_WEIGHT * _smoothstep((0.25 - H) / 0.25)
        down = max(clip * -D, press * max(0.0, -D - 0.3))
        if down >= EV_DEAD_ZONE:
            ev = -down
            evidence = (f"{100 * m.clipped_highlights:.1f}% of the pixels are blown highlights, clipped at white"
                        if clip * -D >= press * max(0.0, -D - 0.3)
                        else f"the brightest tones are pressed against white ({m.white_point:.2f})")
            issue = f"{med_word}, {med_rel}, and {evidence}: the photo is over-exposed."
            goal = "to bring the midtones back towards middle grey" + (
                "; clipped areas stay clipped" if m.clipped_highlights > 0.01 else "")
    if ev:
        proposals.setdefault("Exposure", _Proposal("Exposure")).add(ev * 50.0, issue, goal)

    gain = 2.0**ev
    # highlights beyond white that are real data (RAW / HDR), after the exposure change
    wp = m.white_point * gain
    if wp > 1.05 and m.clipped_white < 0.5:
        v = max(-100.0, 100.0 * math.log2(0.95 / wp) / ops.WHITES_EV)
        if v <= -5:
            proposals.setdefault("Whites", _Proposal("Whites")).add(
                v, f"The brightest tones reach {wp:.2f}, {math.log2(wp):.1f} EV beyond white, with detail there.",
                "to bring them back under white")

    # lifted black point: a pedestal (darkest tones bunched above black), not a soft photo
    Lb = float(lstar(m.black_point * gain))
    L5 = float(lstar(m.p5 * gain))
    bunched = _smoothstep((12.0 - (L5 - Lb)) / 8.0)
    if Lb > BLACK_LIFT_LSTAR and bunched > 0:
        Yb = m.black_point * gain
        Yt = float(lstar_inverse(BLACK_TARGET_LSTAR))
        Yt = Yb * (Yt / Yb) ** (0.7 * bunched)  # part of the way, in log, by confidence
        if Yb < ops.BLACKS_RANGE:
            beta = (Yt - Yb) / (1.0 - Yb / ops.BLACKS_RANGE) ** 2
            v = max(-60.0, 100.0 * beta / ops.BLACKS_LEVEL)
            if v <= -5:
                proposals.setdefault("Blacks", _Proposal("Blacks")).add(
                    v, f"Nothing reaches black: the darkest tones sit at L* {Lb:.0f} and the darkest 5% are "
                       f"bunched just above them (L* {Lb:.0f}–{L5:.0f}), a lifted, hazy black.",
                    "to set the black point closer to black")

    # flat histogram
    if m.spread < FLAT_SPREAD:
        want = FLAT_SPREAD
        # contrast changes L* spread roughly in proportion to its slope: solve on the percentiles
        lo, hi = m.p1 * gain, m.p99 * gain
        best = 0.0
        for v in range(0, 101, 5):
            s = float(lstar(ops.contrast_curve(np.array([hi]), v)[0]) - lstar(ops.contrast_curve(np.array([lo]), v)[0]))
            best = v
            if s / 100.0 >= want:
                break
        v = 0.6 * best
        if v >= 5:
            proposals.setdefault("Contrast", _Proposal("Contrast")).add(
                v, f"The tones fill only {100 * m.spread:.0f}% of the range from black to white (1st to 99th "
                   f"percentile, L* {lstar(m.p1):.0f}–{lstar(m.p99):.0f}): the photo is flat.",
                "to spread the tones")

    note = (f"{med_word}, {med_rel} (0.18); the brightest tones reach {m.white_point:.2f}, the tones fill "
            f"{100 * m.spread:.0f}% of the range from black to white, {100 * m.clipped_white:.1f}% of the pixels "
            f"are clipped at white and {100 * m.clipped_black:.1f}% crushed to black.")
    if D > 0.5:
        note += (" The photo is dark but its highlights already reach white: taken as low-key on purpose, "
                 "not pulled towards an average.")
    elif D < -0.5:
        note += (" The photo is bright but its highlights are not blown: taken as high-key on purpose, "
                 "not pulled towards an average.")
    return note


# ----------------------------------------------------------------------------- colour


def _color(m: Measurements, proxy: np.ndarray, proposals: dict[str, _Proposal]) -> str:
    n = m.neutral
    T, t = solve_white_balance(n.rgb)
    d = math.hypot(T / WB_PLAUSIBLE[0], t / WB_PLAUSIBLE[1])
    plausible = 1.0 if d <= 1.0 else math.exp(-(((d - 1.0) / 0.5) ** 2))
    conf = n.confidence * plausible
    cast = "warm" if T < 0 else "cool"
    desc = (f"The grey-edge estimate of the scene's white is {n.cct:.0f} K (Duv {n.duv:+.4f}; D65 is 6504 K, "
            f"+0.0032)")
    agree = (f"the bright-surface estimate agrees within Δuv {n.spread:.4f}" if n.confidence >= 0.5
             else f"the bright-surface estimate disagrees (Δuv {n.spread:.4f})")
    vT = WB_STRENGTH * conf * _soft(T, WB_DEAD_ZONE[0])
    vt = WB_STRENGTH * conf * _soft(t, WB_DEAD_ZONE[1])
    if abs(vT) >= 1:
        proposals.setdefault("Temperature", _Proposal("Temperature")).add(
            vT, f"{desc} and {agree}: a {cast} cast on content that should be neutral "
                f"(a full correction would be {T:+.0f}; confidence {conf:.2f}).",
            "to neutralise the cast" if conf > 0.8 else "to reduce the cast, partly since the evidence is not certain")
    if abs(vt) >= 1:
        tint = "magenta" if t < 0 else "green"
        proposals.setdefault("Tint", _Proposal("Tint")).add(
            vt, f"The estimated white lies {'below' if n.duv < 0 else 'above'} the daylight locus: a {tint} "
                f"tint (a full correction would be {t:+.0f}; confidence {conf:.2f}).",
            f"to remove the {tint} tint")
    if abs(vT) < 1 and abs(vt) < 1:
        if plausible < 0.5 and n.confidence >= 0.5:
            wb_note = (f"{desc}; so far from neutral it is more likely the scene's own colour (a sunset, a "
                       f"forest, lamplight) than a white-balance error.")
        elif n.confidence < 0.5:
            wb_note = f"{desc}, but {agree}: the colour is the content's, not a cast."
        else:
            wb_note = f"{desc}, close enough to neutral."
    else:
        wb_note = ""

    # saturation: pinned colours (over-saturated) or washed out
    M = m.colourfulness
    g = m.gamut_edge
    over = _smoothstep((g - GAMUT_EDGE_EVIDENCE[0]) / (GAMUT_EDGE_EVIDENCE[1] - GAMUT_EDGE_EVIDENCE[0]))
    sat_note = f"Colourfulness is {M:.0f} ({colourfulness_word(M)}) and {100 * g:.1f}% of the pixels sit on the gamut edge."
    if over > 0:
        v = OVERSAT_MAX * over
        if v <= -3:
            proposals.setdefault("Saturation", _Proposal("Saturation")).add(
                v, f"{100 * g:.1f}% of the pixels are pinned to the edge of the sRGB gamut (a channel at 0 or "
                   f"full scale): the colours are over-saturated and lose their gradations.",
                "to bring the colours back inside the gamut")
    elif MONOCHROME_M < M < WASHED_OUT_M:
        target = math.sqrt(M * WASHED_OUT_M)
        small = area_downscale(proxy, 192)
        s = target / M
        for _ in range(2):  # colourfulness is close to proportional to chroma; refine once
            got = colourfulness(small @ ops.saturation_matrix(100.0 * (s - 1.0)).T)
            s *= target / max(got, 1e-6)
        v = min(40.0, 100.0 * (s - 1.0))
        if v >= 3:
            proposals.setdefault("Saturation", _Proposal("Saturation")).add(
                v, f"Colourfulness is {M:.0f} ({colourfulness_word(M)} on Hasler & Süsstrunk's scale): the "
                   f"colours look washed out.", f"half-way towards {WASHED_OUT_M:.0f} (moderately colourful)")
    return " ".join(x for x in (wb_note, sat_note) if x)


# ----------------------------------------------------------------------------- HSL


def _hsl(m: Measurements, proposals: dict[str, _Proposal]) -> str:
    edges = m.band_gamut_edge
    total = sum(edges.values())
    if total > 0.02:
        band, frac = max(edges.items(), key=lambda kv: kv[1])
        if frac / total > 0.6:
            v = -min(30.0, 200.0 * frac)
            proposals.setdefault(f"SaturationAdjustment{band}", _Proposal(f"SaturationAdjustment{band}")).add(
                v, f"{100 * frac:.1f}% of the image is {band.lower()} pinned to the gamut edge, "
                   f"{100 * frac / total:.0f}% of all pinned colours.", f"to give the {band.lower()}s back their gradations")
    top = sorted(m.band_share.items(), key=lambda kv: -kv[1])[:2]
    return (f"No single colour band stands out: the colour is mostly {top[0][0].lower()} "
            f"({100 * top[0][1]:.0f}% of the chroma) and {top[1][0].lower()} ({100 * top[1][1]:.0f}%), "
            f"and {100 * total:.1f}% of the pixels sit on the gamut edge.")


# ----------------------------------------------------------------------------- planner


class AutoPlanner:
    """The ``rules`` backend (module docstring). Deterministic; no state between calls."""

    name = "rules"
    model: str | None = None
    adapter: str | None = None

    def plan_stage(self, stage: str, proxy: np.ndarray, *, style: str = "balanced",
                   instructions: str | None = None, previous: dict[str, StagePlan] | None = None) -> StagePlan:
        stage_ops = set(catalog().stages[stage].ops)
        m = measure(proxy, neutral=(stage == "color"))
        requests = parse_instructions(instructions)
        proposals: dict[str, _Proposal] = {}
        if stage == "lighting":
            note = _lighting(m, proposals)
            style_offsets = STYLE_OFFSETS[style]
        elif stage == "color":
            note = _color(m, proxy, proposals)
            style_offsets = STYLE_OFFSETS[style]
        elif stage == "hsl":
            note = _hsl(m, proposals)
            style_offsets = {op: v for op, v in STYLE_HSL[style].items()
                             if m.band_share.get(catalog().ops[op].band, 0.0) > 0.02}
        else:
            raise ValueError(f"unknown stage {stage!r}")
        _add_style_and_requests(proposals, stage_ops, style, requests, style_offsets)
        title = catalog().stages[stage].title
        return _finish(proposals, note, f"No {title if title.isupper() else title.lower()} adjustment is needed.")
