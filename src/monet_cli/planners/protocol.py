"""The staged two-turn conversation of the model backends (``qwen``, ``openai``), and strict,
robust parsing of what a model answers.

Per stage (DESIGN.md, "Facts about the published MonetGPT"), a fresh conversation:

1. system prompt; user: the photo + the *analysis* prompt (the stage, its ops and their
   meanings from the catalogue, the style paragraph, the user's instructions) → the model
   writes ``Adjustment: / Issue: / Solution:`` blocks, parsed into reasoning triplets. If it
   says no further adjustments are needed, the stage is ``no_change`` and turn 2 is skipped.
2. user: the *values* prompt with the intensity legend → one sentence and a fenced
   ```` ```json ```` dict of the changed ops.
3. only if turn 2 cannot be used: one *repair* turn saying why; if that fails too, the stage
   is ``failed`` with the reason in ``error`` and every model text in ``raw``.

Parsing keeps only the stage's ops (other stages' ops and unknown names are dropped), maps
harmless spelling variants to catalogue names (``hue adjustment red``, ``RedHue``), clamps
values into range, and rejects strings, booleans, NaN and infinities. Prompts are data
(``models/prompts/<set>.yaml``). A backend supplies only ``chat(messages) -> str``; the image
goes with the first user message (as the published weights were trained).

:func:`run_stages` holds several independent conversations about one photo turn by turn, for a
backend that answers a batch at once (``chat_many``); :func:`consensus` makes one plan of their
sampled answers: the mean plan, or (:func:`medoid`) the sampled plan whose rendered result is
nearest to all the others'.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from monet_cli.catalog import catalog
from monet_cli.errors import MonetError, UsageError
from monet_cli.plan import Reasoning, StagePlan

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
Chat = Callable[[list], str]
ChatMany = Callable[[list], list]  # conversations → one answer each
RAW_LIMIT = 20_000  # characters of model text kept in a failed stage's ``raw``


class AnswerError(ValueError):
    """A model answer that cannot be used (the message says why, for the repair turn)."""


# ----------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptSet:
    """One ``models/prompts/<name>.yaml`` (see the file for the placeholders)."""

    name: str
    system: str
    analysis: str
    values: str
    repair: str
    instructions: str
    styles: dict
    stage_titles: dict
    no_change: tuple  # compiled regular expressions


@lru_cache(maxsize=None)
def load_prompts(name: str = "monetgpt") -> PromptSet:
    import yaml

    from monet_cli.resources import data_dir

    path = data_dir("models") / "prompts" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise UsageError(f"unknown prompt set {name!r}; prompt sets are {', '.join(known)}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        return PromptSet(
            name=name, system=raw["system"].strip(), analysis=raw["analysis"], values=raw["values"],
            repair=raw["repair"], instructions=raw["instructions"], styles=dict(raw["styles"]),
            stage_titles=dict(raw.get("stage_titles") or {}),
            no_change=tuple(re.compile(p, re.IGNORECASE) for p in raw.get("no_change", ())),
        )
    except (KeyError, TypeError, AttributeError, re.error) as e:
        raise MonetError(f"bad prompt set ({e})", path=path) from None


def legend_text() -> str:
    """The intensity legend, one ``low-high: Word`` line per step (from :mod:`monet_cli.reasoning`)."""
    from monet_cli.reasoning import INTENSITY_LEGEND

    lines, low = [], 1
    for high, word in INTENSITY_LEGEND:
        lines.append(f"{low}-{high}: {word.title()}")
        low = high + 1
    return "\n".join(lines)


def _fields(stage: str, prompts: PromptSet, style: str, instructions: str | None) -> dict:
    cat = catalog()
    st = cat.stages[stage]
    if style not in prompts.styles:
        raise UsageError(f"unknown style {style!r}; styles are {', '.join(prompts.styles)}")
    text = (instructions or "").strip()
    return {
        "stage_title": prompts.stage_titles.get(stage, st.title),
        "stage_description": st.description,
        "op_names": ", ".join(st.ops),
        "op_list": "\n".join(f"- {n}: {cat.ops[n].meaning}" for n in st.ops),
        "legend": legend_text(),
        "style": " ".join(str(prompts.styles[style]).split()),
        "instructions": prompts.instructions.format(text=text) if text else "",
    }


def _tidy(text: str) -> str:
    """Drop the blank paragraphs an empty placeholder leaves."""
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def analysis_prompt(stage: str, *, prompts: PromptSet, style: str = "balanced",
                    instructions: str | None = None) -> str:
    return _tidy(prompts.analysis.format(**_fields(stage, prompts, style, instructions)))


def values_prompt(stage: str, *, prompts: PromptSet, style: str = "balanced",
                  instructions: str | None = None) -> str:
    return _tidy(prompts.values.format(**_fields(stage, prompts, style, instructions)))


def repair_prompt(stage: str, error: str, *, prompts: PromptSet) -> str:
    f = _fields(stage, prompts, next(iter(prompts.styles)), None)
    return _tidy(prompts.repair.format(error=error, **f))


# ----------------------------------------------------------------------------- parsing

_LABEL = re.compile(
    r"^[ \t>#*_\-]*(?:\d+[.)][ \t]*)?[*_]*[ \t]*(adjustment|issue|solution)s?[ \t]*[*_]*[ \t]*:[ \t]*[*_]*",
    re.IGNORECASE | re.MULTILINE,
)


def _clean(text: str) -> str:
    text = re.sub(r"\*\*|__", "", text)
    return " ".join(text.split()).strip(" -*_")


def parse_reasoning(text: str) -> list[Reasoning]:
    """``Adjustment: / Issue: / Solution:`` blocks → triplets (markdown bold, numbering and
    bullets tolerated). Each ``Adjustment`` starts a triplet; a block without one is skipped."""
    marks = list(_LABEL.finditer(text or ""))
    out: list[Reasoning] = []
    current: dict | None = None
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        label, body = m.group(1).lower(), _clean(text[m.end():end])
        if label == "adjustment":
            if current:
                out.append(Reasoning(current["adjustment"], current["issue"], current["solution"]))
            current = {"adjustment": body, "issue": "", "solution": ""}
        elif current is not None and not current[label]:
            current[label] = body
    if current:
        out.append(Reasoning(current["adjustment"], current["issue"], current["solution"]))
    return [r for r in out if r.adjustment]


def says_no_change(text: str, prompts: PromptSet | None = None) -> bool:
    """Does an analysis say the stage needs nothing?

    The published weights' marker (``**no further adjustments are needed**``, bold) always
    counts. The looser phrasings of the prompt set count only when the text proposes no
    adjustment of its own — "Adjustment: none needed for the blacks" next to real changes
    must not cancel the stage.
    """
    low = (text or "").lower()
    if "**no further adjustments are needed**" in low or "**no further adjustment is needed**" in low:
        return True
    patterns = (prompts or load_prompts()).no_change
    if not any(p.search(low) for p in patterns):
        return False
    triplets = parse_reasoning(text)
    return all(any(p.search(r.adjustment.lower()) for p in patterns) or
               re.match(r"^(none|no adjustment|n/a)\b", r.adjustment.lower()) for r in triplets)


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)```", re.DOTALL)


def _objects(text: str) -> list[str]:
    """Every top-level balanced ``{...}`` in ``text``, braces inside strings ignored."""
    out, depth, start, in_str, esc = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"' and depth > 0:
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    return out


def _loads(candidate: str):
    """JSON with the slips models make repaired: ``+15``, trailing commas, ``//`` comments.
    NaN and Infinity parse (to be rejected per entry, with a reason)."""
    s = candidate.strip()
    s = re.sub(r"(?m)(?<![:\"'\w])//[^\n]*$", "", s)
    s = re.sub(r"([:\[,]\s*)\+(?=\s*[\d.])", r"\1", s)
    s = re.sub(r",(\s*[}\]])", r"\1", s)
    return json.loads(s, parse_constant=lambda c: float(c.replace("Infinity", "inf")))


def extract_json(text: str) -> dict:
    """The answer's JSON object: the last fenced block that parses to an object, else the last
    bare ``{...}`` that does. Raises :class:`AnswerError` saying what was wrong."""
    text = text or ""
    candidates: list[str] = []
    for block in _FENCE.findall(text):
        objs = _objects(block)
        candidates.extend(objs if objs else [block])
    if not candidates:
        candidates = _objects(text)
    if not candidates:
        raise AnswerError("it contains no JSON object")
    last_error = None
    for c in reversed(candidates):
        try:
            value = _loads(c)
        except ValueError as e:
            last_error = f"its JSON is not valid ({e})"
            continue
        if isinstance(value, dict):
            return value
        last_error = f"its JSON is a {type(value).__name__}, not an object of operation: value"
    raise AnswerError(last_error)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


@lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """Normalised spellings → catalogue names: the names themselves, ``Hue Adjustment Red``,
    ``RedHue``/``Red Saturation``/``Red Luminance``, ``HueRed``, XMP tags, ``Temp``."""
    cat = catalog()
    out = {}
    for name, op in cat.ops.items():
        out[_key(name)] = name
        out[_key(op.xmp.split(":")[-1])] = name
        if op.band:
            word = {"HueAdjustment": "hue", "SaturationAdjustment": "saturation",
                    "LuminanceAdjustment": "luminance"}[op.kind]
            out[_key(op.band + word)] = name
            out[_key(word + op.band)] = name
    out["temp"] = "Temperature"
    out["whitebalancetemperature"] = "Temperature"
    out["whitebalancetint"] = "Tint"
    return out


def canonical_op(name: str) -> str | None:
    """The catalogue name ``name`` stands for, or None."""
    return _aliases().get(_key(name))


def _flatten(d: dict) -> dict:
    """Accept ``{"adjustments": {...}}`` or ``{"lighting": {...}}`` wrappers (one level)."""
    if d and all(isinstance(v, dict) for v in d.values()):
        merged: dict = {}
        for v in d.values():
            merged.update(v)
        return merged
    return d


def parse_values(stage: str, obj: dict) -> tuple[dict[str, float], list[str]]:
    """A parsed JSON object → ``({op: value}, problems)`` for ``stage``.

    Keeps only the stage's ops; clamps into each op's range; drops zeros (the identity).
    ``problems`` names every entry left out and why (other stage, unknown, not a number).
    """
    cat = catalog()
    stage_ops = set(cat.stages[stage].ops)
    values: dict[str, float] = {}
    problems: list[str] = []
    for raw_name, value in _flatten(obj).items():
        name = canonical_op(raw_name)
        if name is None:
            problems.append(f"{raw_name!r} is not an operation")
            continue
        if name not in stage_ops:
            problems.append(f"{name} belongs to the {cat.stage_of(name)} stage, not {stage}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{name}: {value!r} is not a number")
            continue
        v = float(value)
        if not math.isfinite(v):
            problems.append(f"{name}: {value!r} is not a finite number")
            continue
        op = cat.ops[name]
        v = min(max(v, op.min), op.max)
        if v != 0.0:
            values[name] = int(v) if v.is_integer() else round(v, 3)
    return values, problems


def read_values(stage: str, text: str) -> dict[str, float]:
    """A values answer → ``{op: value}``; raises :class:`AnswerError` when nothing usable is in it.

    An empty object ``{}`` is a valid "nothing to change". An object whose every entry had to
    be dropped is an error (the model tried to change something and failed).
    """
    obj = extract_json(text)
    values, problems = parse_values(stage, obj)
    if not values and problems:
        raise AnswerError("no usable value: " + "; ".join(problems[:6]))
    return values


# ----------------------------------------------------------------------------- the stage


def _raw(turns: list[tuple[str, str]]) -> str:
    text = "\n\n".join(f"--- {label} ---\n{body}" for label, body in turns)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "\n[… truncated]"


def _error_text(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg and not isinstance(e, AnswerError) else (msg or type(e).__name__)


def _no_change_reason(text: str) -> Reasoning:
    """One triplet for a stage the model leaves alone: its own words, shortened."""
    words = _clean(re.sub(r"```.*?```", "", text or "", flags=re.DOTALL))
    if len(words) > 400:
        words = words[:400].rsplit(" ", 1)[0] + " …"
    return Reasoning("No adjustment", words or "The model found nothing to correct in this stage.",
                     "No further adjustments are needed.")


def run_stage(chat: Chat, stage: str, *, prompts: PromptSet | str = "monetgpt", style: str = "balanced",
              instructions: str | None = None) -> StagePlan:
    """Plan ``stage`` through ``chat`` (module docstring). Never raises for the model's fault:
    an unusable answer, after one repair turn, or a failing ``chat`` gives a ``failed`` StagePlan
    with ``error`` and ``raw``. ``chat(messages)`` sees the whole conversation each time; the
    backend attaches the photo to the first user message."""
    return run_stages(lambda conversations: [chat(m) for m in conversations], stage, 1, prompts=prompts,
                      style=style, instructions=instructions)[0]


def run_stages(chat_many: ChatMany, stage: str, n: int, *, prompts: PromptSet | str = "monetgpt",
               style: str = "balanced", instructions: str | None = None) -> list[StagePlan]:
    """``n`` independent conversations of :func:`run_stage` about the same photo, turn by turn:
    ``chat_many(conversations)`` answers a list of conversations at once (a backend batches
    them; sampled answers differ). Same rules as :func:`run_stage`; a failing ``chat_many``
    fails the conversations it was asked to answer."""
    if isinstance(prompts, str):
        prompts = load_prompts(prompts)
    start: list[Message] = [
        {"role": "system", "content": prompts.system},
        {"role": "user", "content": analysis_prompt(stage, prompts=prompts, style=style, instructions=instructions)},
    ]
    plans: list[StagePlan | None] = [None] * n
    convs = [list(start) for _ in range(n)]
    turns: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    reasoning: list[list[Reasoning]] = [[] for _ in range(n)]
    first_error: list[AnswerError | None] = [None] * n

    def ask(todo: list[int], label: str) -> list[tuple[int, str]]:
        try:
            answers = list(chat_many([convs[i] for i in todo]))
            if len(answers) != len(todo):
                raise RuntimeError(f"the backend gave {len(answers)} answers to {len(todo)} conversations")
        except Exception as e:  # the backend failed (network, CUDA, …): record, do not raise
            for i in todo:
                plans[i] = StagePlan(status="failed", reasoning=reasoning[i], raw=_raw(turns[i]) if turns[i] else None,
                                     error=_error_text(e))
            return []
        out = []
        for i, a in zip(todo, answers):
            turns[i].append((label, str(a)))
            out.append((i, str(a)))
        return out

    values_todo = []
    for i, analysis in ask(list(range(n)), "analysis"):
        reasoning[i] = parse_reasoning(analysis)
        if says_no_change(analysis, prompts):
            plans[i] = StagePlan(status="no_change", reasoning=reasoning[i] or [_no_change_reason(analysis)])
            continue
        convs[i] = convs[i] + [{"role": "assistant", "content": analysis},
                               {"role": "user", "content": values_prompt(stage, prompts=prompts, style=style,
                                                                         instructions=instructions)}]
        values_todo.append(i)

    def finish(i: int, values: dict[str, float]) -> None:
        if not values:
            plans[i] = StagePlan(status="no_change", reasoning=reasoning[i] or [_no_change_reason(turns[i][-1][1])])
        else:
            plans[i] = StagePlan(status="ok", adjustments=values, reasoning=reasoning[i])

    repair_todo = []
    for i, answer in ask(values_todo, "values"):
        try:
            finish(i, read_values(stage, answer))
        except AnswerError as first:
            if "no json object" in str(first).lower() and says_no_change(answer, prompts):
                plans[i] = StagePlan(status="no_change", reasoning=reasoning[i] or [_no_change_reason(answer)])
                continue
            first_error[i] = first
            convs[i] = convs[i] + [{"role": "assistant", "content": answer},
                                   {"role": "user", "content": repair_prompt(stage, str(first), prompts=prompts)}]
            repair_todo.append(i)
    for i, repaired in ask(repair_todo, "repair"):
        try:
            finish(i, read_values(stage, repaired))
        except AnswerError as second:
            plans[i] = StagePlan(status="failed", reasoning=reasoning[i], raw=_raw(turns[i]),
                                 error=f"the model's answer could not be used: {first_error[i]}; "
                                       f"after a repair turn: {second}")
    return [p if p is not None else StagePlan(status="failed", error="no answer") for p in plans]


def consensus(plans: list[StagePlan]) -> StagePlan:
    """One plan from several sampled plans of a stage: each operation's *mean* value over the
    plans that did not fail, an operation a plan leaves out (or a no-change plan) counting as 0,
    rounded to whole steps (halves away from zero); below one step it is dropped. Where the model is unsure whether a
    stage needs anything, or which way to go, its samples disagree and the mean shrinks towards
    leaving the photo alone; where it is sure, they agree. The mean is the plan that minimises
    the expected squared error of the values under the model's own distribution; greedy
    decoding, digit by digit, is not calibrated that way (it favours the most frequent first
    digit). The reasoning is that of the sampled plan nearest to the mean. All failed: the
    first failure."""
    ok = [p for p in plans if p.status != "failed"]
    if not ok:
        return plans[0] if plans else StagePlan(status="failed", error="no plans to combine")
    ops = sorted({k for p in ok for k in p.adjustments})
    mean = {k: sum(float(p.adjustments.get(k, 0.0)) for p in ok) / len(ok) for k in ops}
    values = {}
    for k, v in mean.items():
        r = math.copysign(math.floor(abs(v) + 0.5), v)  # halves away from zero
        if r != 0:
            values[k] = int(r)
    nearest = min(ok, key=lambda p: sum((float(p.adjustments.get(k, 0.0)) - values.get(k, 0)) ** 2 for k in ops))
    if values:
        return StagePlan(status="ok", adjustments=values, reasoning=list(nearest.reasoning))
    if nearest.status == "no_change":
        return StagePlan(status="no_change", reasoning=list(nearest.reasoning) or [_no_change_reason("")])
    return StagePlan(status="no_change", reasoning=[_no_change_reason(
        f"The {len(ok)} sampled plans disagree; their mean changes nothing.")])


MEDOID_LONG_SIDE = 96  # the proxy's size for comparing the sampled plans' results


def medoid(plans: list[StagePlan], proxy: np.ndarray, *, long_side: int = MEDOID_LONG_SIDE) -> StagePlan:
    """The sampled plan of a stage whose result is nearest to the others' results: each plan
    that did not fail is rendered on ``proxy`` (working-space linear RGB, shrunk to
    ``long_side``), and the one with the least summed mean CIEDE2000 to the rest is returned
    as it was sampled (values and reasoning together). This is minimum-Bayes-risk decoding
    with the benchmark's own loss: under the model's distribution it is the sampled plan with
    the least expected colour error. Unlike the mean it does not dilute a plan the samples
    agree on in effect but not in wording (Exposure +30 in some, Shadows +40 in others), and
    where they disagree (a cast one way, or the other, or none) the no-change result, which
    lies between them, is the one returned. Ties go to the plan with fewer, then smaller,
    changes. All failed: the first failure."""
    from monet_cli.measure import area_downscale
    from monet_cli.metrics import delta_e2000, srgb_rendition, srgb_to_lab
    from monet_cli.render import render_linear

    ok = [p for p in plans if p.status != "failed"]
    if not ok:
        return plans[0] if plans else StagePlan(status="failed", error="no plans to combine")
    small = np.asarray(proxy, dtype=np.float32)[..., :3]
    if max(small.shape[:2]) > long_side:
        small = area_downscale(small, long_side).astype(np.float32)
    labs = [srgb_to_lab(srgb_rendition(render_linear(small, p.adjustments) if p.adjustments else small, bits=None))
            for p in ok]
    n = len(ok)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            d[i, j] = d[j, i] = float(np.mean(delta_e2000(labs[i], labs[j])))
    risk = d.sum(axis=1)
    best = min(range(n), key=lambda i: (round(float(risk[i]), 6), len(ok[i].adjustments),
                                        sum(abs(float(v)) for v in ok[i].adjustments.values()), i))
    return ok[best]


# ----------------------------------------------------------------------------- the photo


def proxy_to_srgb8(proxy: np.ndarray) -> np.ndarray:
    """A planning proxy (working-space linear float32) → sRGB-encoded uint8 ``(h, w, 3)``, what
    a vision model expects to see. Out-of-gamut and over-white values are clipped here only."""
    from monet_cli.degrade import working_to_srgb8

    return np.ascontiguousarray(working_to_srgb8(np.asarray(proxy)[..., :3]))


def proxy_to_pil(proxy: np.ndarray, *, long_side: int | None = None):
    """The proxy as a PIL RGB image, optionally shrunk to ``long_side``."""
    from PIL import Image as PILImage

    im = PILImage.fromarray(proxy_to_srgb8(proxy), "RGB")
    if long_side and max(im.size) > long_side:
        im.thumbnail((long_side, long_side), PILImage.Resampling.LANCZOS)
    return im
