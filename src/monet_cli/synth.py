"""Grounded reasoning for puzzle records (:mod:`monet_cli.puzzles`), and the training file.

Every puzzle record carries its ground truth (which ops, which values) and statistics
measured on its images (:func:`monet_cli.puzzles.image_stats`). From them this module writes
the assistant's side of the puzzle's conversation:

* **template** (the default; offline, deterministic) — a photographer's notes assembled from
  the phrase bank of ``models/puzzles/prompts.yaml``: per op and direction several ways to
  say the adjustment, the issue (quoting the measured statistics of the image the model
  sees) and the solution (quoting the expert image's statistics as the target). The choice
  among phrasings is seeded by the record's id, so a dataset reads varied, yet the same
  dataset always gets the same text. Directions follow the sign of the answer, intensity
  words the legend of :mod:`monet_cli.reasoning`.
* **qwen**, **openai**, or any ``generate(prompt) -> str`` callable — a language model
  rewrites the template's draft, given the facts. Its text is checked by
  :func:`check_grounding`; a text that fails is regenerated (the prompt then says what was
  wrong) up to ``max_tries`` times, then rejected. Regenerations and rejections are counted.

The grounding check reads *claims*: an op named together with a change verb ("raise",
"recover", "warm", "toward magenta" …), an intensity word or a signed number in its own
clause. Every claimed op must be in the ground truth, with the right direction and the
legend's intensity word; every op of the ground truth must be claimed (puzzles A and C); a
no-change answer claims nothing and says "no further adjustments are needed". Issue lines of
puzzle C are descriptions, not claims, and are not read; phrases like "too warm" or "looks
dull" and negated clauses ("without touching the shadows") are not claims either. Names of
adjustments monet does not have (Vibrance, Clarity, Dehaze …) count as invented.

Only the reasoning prose comes from a backend: answers (JSON values, the ranking of B) are
always written from the ground truth.
"""

from __future__ import annotations

import inspect
import json
import random
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from monet_cli.catalog import catalog
from monet_cli.errors import MonetError, UsageError
from monet_cli.reasoning import intensity_word, signed

BACKENDS: tuple[str, ...] = ("template", "qwen", "openai")
ON_REJECT: tuple[str, ...] = ("template", "drop")
MAX_DOWN = 3  # records in a row on which a backend only raised errors: it is down, stop
NO_CHANGE_MARK = "**No further adjustments are needed**"


# ============================================================================ facts → fields


def _num(v, nd: int = 0) -> str:
    v = float(v)
    if nd == 0:
        return str(int(round(v)))
    return f"{v:.{nd}f}"


def _stat_fields(stats: dict, prefix: str = "") -> dict[str, str]:
    """Placeholders of one image's statistics, formatted for prose (module docstring of
    ``models/puzzles/prompts.yaml``)."""
    from monet_cli.measure import colourfulness_word

    f = {}
    for k in ("median_l", "p1_l", "p5_l", "p95_l", "p99_l", "black_l", "spread", "chroma", "colourfulness", "cct"):
        f[k] = _num(stats[k])
    for k in ("clip_white", "clip_highlights", "clip_black", "gamut_edge"):
        f[k] = _num(stats[k], 1)
    f["duv"] = f"{stats['duv']:+.4f}"
    f["colourfulness_word"] = colourfulness_word(stats["colourfulness"])
    return {prefix + k: v for k, v in f.items()}


def _image_fields(stats: dict, prefix: str = "", band: str | None = None) -> tuple[dict[str, str], dict[str, float]]:
    """``(fields, raw)`` of one image: formatted placeholders for prose and the numbers for
    phrase conditions, all with ``prefix``. With ``band``: its chroma, share, L* and hue; a
    band the image lacks has chroma and share 0 and no L* or hue (phrases quoting them must
    say ``when: band_hue >= 0`` or similar, which is then false)."""
    fields = _stat_fields(stats)
    raw = {k: float(v) for k, v in stats.items() if isinstance(v, (int, float))}
    if band is not None:
        b = stats.get("bands", {}).get(band)
        if b:
            fields.update(band_chroma=_num(b["chroma"]), band_lightness=_num(b["lightness"]),
                          band_hue=_num(b["hue"]), band_share=_num(b["share"]))
            raw.update(band_chroma=float(b["chroma"]), band_lightness=float(b["lightness"]),
                       band_hue=float(b["hue"]), band_share=float(b["share"]))
        else:
            fields.update(band_chroma="0", band_share="0", band_lightness="?", band_hue="?")
            raw.update(band_chroma=0.0, band_share=0.0)
    return {prefix + k: v for k, v in fields.items()}, {prefix + k: v for k, v in raw.items()}


def _hue_shift(raw: dict[str, float], a: str = "", b: str = "t_") -> dict[str, float]:
    """``band_hue_shift``: hue of image ``a`` minus image ``b`` on the shorter way round (+ =
    toward the next band), when both have the band."""
    if f"{a}band_hue" in raw and f"{b}band_hue" in raw:
        return {"band_hue_shift": (raw[f"{a}band_hue"] - raw[f"{b}band_hue"] + 180.0) % 360.0 - 180.0}
    return {}


@lru_cache(maxsize=1)
def _band_order() -> list[str]:
    """Bands by hue centre: a positive hue value turns a band toward the next one."""
    bands = sorted(catalog().bands, key=lambda b: b.centre % 360.0)
    return [b.name for b in bands]


def neighbours(band: str) -> tuple[str, str]:
    """``(previous, next)`` band names in hue order (Red → Orange → … → Magenta → Red)."""
    order = _band_order()
    i = order.index(band)
    return order[i - 1], order[(i + 1) % len(order)]


def _plural(band: str) -> str:
    return band.lower() + "s"


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _op_entry(text: dict, op: str) -> tuple[dict, dict[str, str]]:
    """The phrase entry of ``op`` and its band placeholders (HSL ops share one entry per kind)."""
    o = catalog().ops[op]
    if o.band is None:
        return text["template"]["ops"][op], {}
    prev, nxt = neighbours(o.band)
    band = {"band": o.band.lower(), "bands": _plural(o.band), "Band": o.band, "Bands": _cap(_plural(o.band)),
            "next_band": nxt.lower(), "prev_band": prev.lower()}
    return text["template"]["hsl"][o.kind], band


_WHEN = re.compile(r"^\s*(\w+)\s*(<=|>=|<|>|==|!=)\s*(-?\d+(?:\.\d+)?|\w+)\s*$")


def _holds(cond: str | None, raw: dict[str, float]) -> bool:
    """Does ``cond`` ("clip_white >= 0.3 and cct > t_cct") hold for the statistics ``raw``?"""
    if not cond:
        return True
    for part in cond.split(" and "):
        m = _WHEN.match(part)
        if not m:
            raise ValueError(f"bad phrase condition {cond!r}")
        rhs, op = m.group(3), m.group(2)
        if m.group(1) not in raw or not (re.fullmatch(r"-?\d+(?:\.\d+)?", rhs) or rhs in raw):
            return False  # a statistic this image does not have (e.g. a band it lacks)
        a = raw[m.group(1)]
        b = float(rhs) if re.fullmatch(r"-?\d+(?:\.\d+)?", rhs) else raw[rhs]
        if not {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b, "==": a == b, "!=": a != b}[op]:
            return False
    return True


class _Phrases:
    """Picks and fills phrases with a generator seeded by the record id."""

    def __init__(self, record_id: str):
        self.rng = random.Random(f"monet-reasoning:{record_id}")

    def one(self, options, fields: dict, raw: dict | None = None) -> str:
        usable = []
        for o in options:
            if isinstance(o, dict):
                if _holds(o.get("when"), raw or {}):
                    usable.append(o["text"])
            else:
                usable.append(o)
        if not usable:
            raise ValueError("no phrase applies")
        return self._fill(self.rng.choice(usable), fields)

    def _fill(self, s: str, fields: dict) -> str:
        # twice: a chosen op name may itself contain {band}
        out = s.format_map(_Fields(fields))
        out = out.format_map(_Fields(fields)) if "{" in out else out
        return re.sub(r"\b([Aa]) (?=extremely\b)", r"\1n ", out)  # "an extremely intense"


class _Fields(dict):
    def __missing__(self, key):
        raise KeyError(f"unknown placeholder {{{key}}}")


def _direction_fields(ph: _Phrases, entry: dict, value: float, base: dict) -> dict:
    d = entry["up" if value > 0 else "down"]
    fields = dict(base)
    name = ph._fill(ph.rng.choice(entry["names"]), base)
    verb = ph._fill(ph.rng.choice(d["verb"]), base)
    fields.update(op=name, Op=_cap(name), word=intensity_word(value), verb=verb, Verb=_cap(verb),
                  past=ph._fill(ph.rng.choice(d["past"]), base), noun=ph._fill(ph.rng.choice(d["noun"]), base))
    return fields


# ============================================================================ template


def _text(cfg: dict) -> dict:
    from monet_cli.puzzles import load_text

    return load_text(cfg["puzzle_text"])


def _ordered(values: dict) -> dict:
    order = list(catalog().ops)
    return {k: values[k] for k in sorted(values, key=order.index)}


def _json_block(values: dict) -> str:
    return "```json\n" + json.dumps(_ordered(values), indent=2) + "\n```"


def _band_list(stats: dict) -> str:
    bands = sorted(stats.get("bands", {}).items(), key=lambda kv: -kv[1]["share"])
    names = [_plural(b) for b, s in bands if s["share"] >= 5.0][:3]
    if not names:
        return "the few colours present"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def template_prose(record: dict, cfg: dict) -> str:
    """The reasoning prose of a record, written from its facts (module docstring): C the
    Adjustment / Issue / Solution blocks (or the no-change note), A the comparison ending in
    the op, B the judgement of each image."""
    text = _text(cfg)
    fr = text["template"]["frames"]
    ph = _Phrases(record["id"])
    t, facts, kind = record["truth"], record["facts"], record["kind"]
    if kind == "c":
        seen, target = facts["puzzle"], facts["expert"]
        lead = ""
        if cfg["c"].get("measured_first"):
            from monet_cli.perceive import describe

            lead = "Measured: " + describe(seen) + "\n\n"
        if t.get("no_change"):
            f, raw = _image_fields(seen)
            return lead + ph.one(fr["no_change"][t["stage"]], {**f, "band_list": _band_list(seen)}, raw)
        blocks = []
        for op, v in _ordered(t["answer"]).items():
            entry, band = _op_entry(text, op)
            name = catalog().ops[op].band
            f1, r1 = _image_fields(seen, "", name)
            f2, r2 = _image_fields(target, "t_", name)
            raw = {**r1, **r2, **_hue_shift({**r1, **r2})}
            f = _direction_fields(ph, entry, v, {**f1, **f2, **band})
            d = "up" if v > 0 else "down"
            adjustment = ph.one(entry.get(f"frames_{d}") or fr["adjustment"], f)
            issue = ph.one(entry[f"issue_{d}"], f, raw)
            solution = ph.one(entry[f"solution_{d}"], f, raw)
            blocks.append(f"Adjustment: {adjustment}\nIssue: {issue}\nSolution: {solution}")
        return lead + "\n\n".join(blocks)
    if kind == "a":
        op, v = t["op"], t["value"]
        entry, band = _op_entry(text, op)
        name = catalog().ops[op].band
        f1, r1 = _image_fields(facts["before"], "b_", name)
        f2, r2 = _image_fields(facts["after"], "a_", name)
        f = _direction_fields(ph, entry, v, {**f1, **f2, **band})
        d = "up" if v > 0 else "down"
        return ph.one(entry[f"effect_{d}"], f, {**r1, **r2}) + " " + ph.one(fr["a_conclusion"], f)
    # b
    op = t["op"]
    entry, band = _op_entry(text, op)
    sentences = []
    for n in t["ranking"]:
        f, raw = _image_fields(facts["images"][n - 1], "", catalog().ops[op].band)
        f.update(band, n=str(n))
        f["measure"] = ph.one(entry["measure"] if isinstance(entry["measure"], list) else [entry["measure"]], f, raw)
        f["aspect"] = ph._fill(entry["aspect"], f)
        v = t["values"][n - 1]
        if n == t["best"]:
            sentences.append(ph.one(fr["b_best"], f))
        else:
            f["judgement"] = ph._fill(ph.rng.choice(entry["more" if v > 0 else "less"]), f)
            sentences.append(ph.one(fr["b_worse"], f))
    return " ".join(sentences)


def assemble(record: dict, prose: str, cfg: dict) -> list[str]:
    """The assistant turns of a record around its reasoning ``prose``: the answers themselves
    (JSON values, B's ranking) always come from the ground truth."""
    fr = _text(cfg)["template"]["frames"]
    ph = _Phrases(record["id"] + ":answer")
    t, kind = record["truth"], record["kind"]
    if kind == "c":
        if t.get("no_change"):
            return [prose]
        return [prose, ph.one(fr["c_values"], {}) + "\n" + _json_block(t["answer"])]
    if kind == "a":
        return [prose + "\n" + _json_block({t["op"]: t["value"]})]
    ranking = ", ".join(f"Image {n}" for n in t["ranking"])
    order = ph.one(fr["b_order"], {"ranking": ranking, "best": str(t["best"])})
    (op, v), = t["answer"].items()
    entry, band = _op_entry(_text(cfg), op)
    f = _direction_fields(ph, entry, v, {**band, "x": str(t["x"]), "best": str(t["best"])})
    return [prose + "\n\n" + order, ph.one(fr["b_value"], f) + "\n" + _json_block(t["answer"])]


def template_turns(record: dict, cfg: dict) -> list[str]:
    """The assistant turns of ``record`` written by the template backend."""
    return assemble(record, template_prose(record, cfg), cfg)


# ============================================================================ grounding check

_BAND_RE = "(?P<band>red|orange|yellow|green|aqua|blue|purple|magenta)"
_KIND_RE = "(?P<kind>hue|saturation|luminance)"
_HSL_PATTERNS = (
    re.compile(rf"\b{_KIND_RE}\s*adjustment\s*{_BAND_RE}\b", re.I),
    re.compile(rf"\b{_KIND_RE}\s+(?:adjustments?\s+)?(?:of|for|in|on)\s+(?:the\s+)?{_BAND_RE}(?:e?s)?\b", re.I),
    re.compile(rf"\b{_BAND_RE}(?:e?s)?(?:'s|s'|')?\s+{_KIND_RE}\b", re.I),
)
_GLOBAL = re.compile(r"\b(exposure|contrast|highlights|shadows|whites|blacks|temperature|tint|saturation)\b", re.I)
_FOREIGN = re.compile(r"\b(vibrance|clarity|dehaze|sharpen(?:ing)?|sharpness|vignett\w*|noise\s+reduction|"
                      r"tone\s+curve|split\s+toning|colou?r\s+grading)\b", re.I)
_KIND_PREFIX = {"hue": "HueAdjustment", "saturation": "SaturationAdjustment", "luminance": "LuminanceAdjustment"}

_UP = r"rais\w*|increas\w*|boost\w*|lift\w*|brighten\w*|add|adds|adding|added|strengthen\w*|intensif\w*|" \
      r"enrich\w*|open\w*|heighten\w*|amplif\w*"
_DOWN = r"lower\w*|reduc\w*|decreas\w*|cut|cuts|cutting|pull\w*|darken\w*|recover\w*|tame|tames|taming|tamed|" \
        r"soften\w*|deepen\w*|mute|mutes|muting|muted|desaturat\w*|drop\w*|dim|dims|dimmed|dimming|" \
        r"compress\w*|calm\w*|weaken\w*|subdu\w*|less|down"
_TOWARD = r"toward(?:s)?\s+(?:the\s+)?"
_INTENSITY = re.compile(r"\b(extremely\s+intense(?:ly)?|very\s+significant(?:ly)?|very\s+slight(?:ly)?|"
                        r"significant(?:ly)?|noticeabl[ey]|moderate(?:ly)?|mild(?:ly)?|slight(?:ly)?)\b", re.I)
_NUMBER = re.compile(r"(?<![\w.])([+\-−])(\d{1,3})(?![\d.,]\d|\d)")
_NEGATION = re.compile(r"\b(no|not|never|without|don't|doesn't|do\s+not|avoid\w*|leave|leaves|leaving|keep|keeps|"
                       r"keeping|untouched|unchanged|instead\s+of|rather\s+than)\b", re.I)
_DESCRIPTIVE = re.compile(r"\btoo\s+[\w-]+|\b(?:looks?|looking|seems?|appears?|reads?|feels?)\s+"
                          r"(?:(?:too|rather|quite|very|so|overly|a\s+bit|\w+ly)\s+)*[\w-]+|"
                          r"\b(?:is|are)\s+(?:(?:a\s+bit|much|\w+ly)\s+)?\w+er\b", re.I)  # "is cooler"
_COORD = re.compile(r",|;|\band\b|\bor\b|&")
_SUBORD = re.compile(r"\b(?:so|while|but|which|because|as|with|where|whereas|to|then|since|that|until|"
                     r"before|after|than|if|when)\b", re.I)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass
class Claim:
    """An op named with a change: ``direction`` +1 / −1 / 0 (none said), ``word`` the intensity
    word said (or None), ``number`` a signed value said (or None)."""

    op: str
    text: str
    direction: int = 0
    word: str | None = None
    number: float | None = None
    foreign: bool = False


def _mentions(s: str) -> list[tuple[int, int, str, bool]]:
    """``(start, end, op, foreign)`` of every op named in sentence ``s``."""
    found: list[tuple[int, int, str, bool]] = []
    taken = []
    for pat in _HSL_PATTERNS:
        for m in pat.finditer(s):
            if any(a < m.end() and m.start() < b for a, b in taken):
                continue
            op = _KIND_PREFIX[m.group("kind").lower()] + m.group("band").capitalize()
            found.append((m.start(), m.end(), op, False))
            taken.append((m.start(), m.end()))
    for m in _GLOBAL.finditer(s):
        if not any(a < m.end() and m.start() < b for a, b in taken):
            found.append((m.start(), m.end(), m.group(1).capitalize(), False))
    for m in _FOREIGN.finditer(s):
        found.append((m.start(), m.end(), " ".join(m.group(1).split()).title(), True))
    return sorted(found)


def _direction_patterns(op: str) -> tuple[re.Pattern, re.Pattern]:
    up, down = [_UP], [_DOWN]
    if op == "Temperature":
        up.append(rf"warm\w*|{_TOWARD}(?:warm\w*|yellow\w*|amber|orange)")
        down.append(rf"cool\w*|{_TOWARD}(?:cool\w*|blue\w*)")
    elif op == "Tint":
        up.append(rf"{_TOWARD}(?:magenta|pink)")
        down.append(rf"{_TOWARD}green\w*")
    elif op.startswith("HueAdjustment"):
        prev, nxt = neighbours(catalog().ops[op].band)
        up.append(rf"{_TOWARD}{nxt.lower()}(?:e?s)?")
        down.append(rf"{_TOWARD}{prev.lower()}(?:e?s)?")
    return (re.compile(r"\b(?:" + "|".join(up) + r")\b", re.I), re.compile(r"\b(?:" + "|".join(down) + r")\b", re.I))


def _nearest_direction(op: str, s: str, lo: int, hi: int, start: int, end: int | None = None) -> tuple[int, int] | None:
    """(direction, distance) of the change word in ``s[lo:hi]`` closest to the mention
    ``s[start:end]`` (a point when ``end`` is None)."""
    end = start if end is None else end
    up, down = _direction_patterns(op)
    best = None
    for sign, pat in ((1, up), (-1, down)):
        for m in pat.finditer(s, lo, hi):
            dist = start - m.end() if m.end() <= start else max(m.start() - end, 0)
            if best is None or dist < best[1]:
                best = (sign, dist)
    return best


def _boundaries(s: str) -> list[tuple[int, int, str]]:
    out = [(m.start(), m.end(), "coord") for m in _COORD.finditer(s)]
    out += [(m.start(), m.end(), "subord") for m in _SUBORD.finditer(s)]
    return sorted(out)


def _blank(s: str, pattern: re.Pattern) -> str:
    return pattern.sub(lambda m: " " * len(m.group(0)), s)


def find_claims(text: str) -> list[Claim]:
    """The op claims in ``text`` (module docstring): for each op mention, its own clause is
    the text up to the neighbouring mentions, cut at the first clause boundary between them;
    without a neighbour it runs to the nearest subordinate boundary or the sentence's end."""
    claims: list[Claim] = []
    for sentence in _SENTENCE.split(text or ""):
        s = _blank(sentence, _DESCRIPTIVE)
        ms = _mentions(s)
        if not ms:
            continue
        bounds = _boundaries(s)
        for i, (start, end, op, foreign) in enumerate(ms):
            # left edge
            if i > 0:
                gap = [b for b in bounds if b[0] >= ms[i - 1][1] and b[1] <= start]
                lo, left_kind = (gap[0][1], gap[0][2]) if gap else (ms[i - 1][1], "shared")
            else:
                sub = [b for b in bounds if b[1] <= start and b[2] == "subord"]
                lo, left_kind = (sub[-1][1], "subord") if sub else (0, "start")
            if i + 1 < len(ms):
                gap = [b for b in bounds if b[0] >= end and b[1] <= ms[i + 1][0]]
                hi = gap[0][0] if gap else ms[i + 1][0]
            else:
                sub = [b for b in bounds if b[0] >= end and b[2] == "subord"]
                hi = sub[0][0] if sub else len(s)
            own = s[lo:hi]
            if _NEGATION.search(own):
                continue
            c = Claim(op=op, text=sentence[lo:hi].strip(), foreign=foreign)
            if not foreign:
                d = _nearest_direction(op, s, lo, hi, start, end)
                if d is None and left_kind in ("coord", "shared"):
                    # a verb shared by a list: "lower the highlights and (the) whites slightly"
                    sub = [b for b in bounds if b[1] <= lo and b[2] == "subord"]
                    d = _nearest_direction(op, s, sub[-1][1] if sub else 0, lo, lo)
                c.direction = d[0] if d else 0
            words = [_norm_word(m.group(1)) for m in _INTENSITY.finditer(own)]
            c.word = words[0] if len(set(words)) == 1 else ("|".join(sorted(set(words))) if words else None)
            num = _NUMBER.search(own)
            if num:
                c.number = float(num.group(2)) * (-1 if num.group(1) in "-−" else 1)
            own_has_change = bool(_nearest_direction(op, s, lo, hi, start, end)) if not foreign else \
                bool(re.search(rf"\b(?:{_UP}|{_DOWN})\b", own, re.I))
            if own_has_change or c.word or c.number is not None or (c.direction and left_kind == "coord"):
                claims.append(c)
    return claims


def _norm_word(w: str) -> str:
    w = " ".join(w.lower().split())
    w = re.sub(r"ly$", "", w)
    return {"noticeabl": "noticeable", "noticeably": "noticeable", "extremely intense": "extremely intense"}.get(w, w)


def _expected(record: dict) -> dict[str, float]:
    t = record["truth"]
    if record["kind"] == "a":
        return {t["op"]: t["value"]}
    if record["kind"] == "b":
        return {t["op"]: 0.0}  # B's prose compares versions on both sides: only the op is checked
    return dict(t.get("answer") or {})


def check_grounding(record: dict, text: str) -> list[str]:
    """What is wrong with ``text`` as the reasoning of ``record`` (empty: it is grounded).

    Catches invented ops (named with a change but not in the ground truth, or not monet
    ops at all), wrong directions, wrong intensity words, signed numbers of the wrong sign
    or size, missing ops (A, C), a missing or misplaced no-change statement (C), and code
    blocks (the answers are added from the ground truth, not taken from the text).
    """
    from monet_cli.planners.protocol import parse_reasoning, says_no_change

    problems: list[str] = []
    kind, t = record["kind"], record["truth"]
    if not text or not text.strip():
        return ["the text is empty"]
    if "```" in text:
        problems.append("it contains a code block; write prose only")
    scan = text
    if kind == "c":
        if t.get("no_change"):
            if not says_no_change(text) or NO_CHANGE_MARK.lower() not in text.lower():
                problems.append(f"it does not say \"{NO_CHANGE_MARK}\"")
        else:
            triplets = parse_reasoning(text)
            if not triplets:
                problems.append("it has no Adjustment / Issue / Solution blocks")
            elif says_no_change(text):
                problems.append("it says no adjustment is needed, but this stage needs one")
            scan = "\n".join(f"{r.adjustment}\n{r.solution}" for r in triplets)  # issues describe, not claim
    expected = _expected(record)
    claimed = set()
    for c in find_claims(scan):
        if c.foreign:
            problems.append(f"it names {c.op}, which is not a monet operation")
            continue
        if c.op not in expected:
            problems.append(f"it names {c.op}, which this edit does not use" if expected
                            else f"it proposes {c.op}, but no adjustment is needed")
            continue
        claimed.add(c.op)
        if kind == "b":
            continue
        v = expected[c.op]
        want = 1 if v > 0 else -1
        if c.direction and c.direction != want:
            problems.append(f"it says {c.op} goes {'up' if c.direction > 0 else 'down'}, but it goes "
                            f"{'up' if want > 0 else 'down'} ({signed(v)})")
        word = intensity_word(v)
        if c.word and c.word != word:
            problems.append(f"it calls the {c.op} change '{c.word}', but {signed(v)} is '{word}'")
        if c.number is not None and (c.number * v <= 0 or intensity_word(c.number) != word):
            problems.append(f"it gives {c.op} as {signed(c.number)}, but the value is {signed(v)}")
    if kind in ("a", "c"):
        for op in expected:
            if op not in claimed:
                problems.append(f"it does not name {op} with its change ({signed(expected[op])}, "
                                f"{intensity_word(expected[op])})")
    return list(dict.fromkeys(problems))


# ============================================================================ LLM prompts


def _facts_line(stats: dict, bands=()) -> str:
    f = _stat_fields(stats)
    parts = [f"median L* {f['median_l']}", f"1st/5th/95th/99th percentiles L* {f['p1_l']}/{f['p5_l']}/"
             f"{f['p95_l']}/{f['p99_l']}", f"darkest tones L* {f['black_l']}", f"clipped white {f['clip_white']}%",
             f"blown highlights {f['clip_highlights']}%", f"crushed black {f['clip_black']}%",
             f"tonal spread {f['spread']}%", f"mean chroma {f['chroma']}",
             f"colourfulness {f['colourfulness']} ({f['colourfulness_word']})",
             f"neutrals near {f['cct']} K, Duv {f['duv']}"]
    for b in bands:
        s = stats.get("bands", {}).get(b)
        if s:
            parts.append(f"{_plural(b)}: chroma {_num(s['chroma'])}, L* {_num(s['lightness'])}, hue {_num(s['hue'])}°")
    return "; ".join(parts)


def _truth_line(values: dict) -> str:
    out = []
    for op, v in _ordered(values).items():
        o = catalog().ops[op]
        name = f"{o.band.lower()} {o.kind.replace('Adjustment', '').lower()} ({op})" if o.band else op
        out.append(f"{name}: {'increase' if v > 0 else 'decrease'}, {intensity_word(v)}")
    return "; ".join(out)


def llm_prompt(record: dict, cfg: dict, draft: str, problems: list[str] | None = None, max_words: int = 220) -> str:
    """The prompt that asks a language model to rewrite ``draft`` for ``record``, with the
    facts; ``problems`` (of a rejected attempt) are listed so the next one avoids them."""
    llm = _text(cfg)["llm"]
    t, kind, facts = record["truth"], record["kind"], record["facts"]
    cat = catalog()
    if kind == "b":
        op = t["op"]
        lines = [f"Image {i + 1}: {_facts_line(s, [cat.ops[op].band] if cat.ops[op].band else [])}"
                 for i, s in enumerate(facts["images"])]
        prompt = llm["b"].format(n=len(facts["images"]), op=op, facts="\n".join(lines), draft=draft)
    else:
        values = _expected(record)
        bands = [cat.ops[o].band for o in values if cat.ops[o].band]
        stage = t.get("stage", cat.stage_of(next(iter(values))) if values else "lighting")
        others = [o for o in cat.stages[stage].ops if o not in values][:3]
        rules = llm["rules"].format(truth=_truth_line(values), others_hint=", ".join(others) or "other ops",
                                    max_words=max_words)
        if kind == "a":
            fl = f"{_facts_line(facts['before'], bands)}\n→ {_facts_line(facts['after'], bands)}"
            prompt = llm["a"].format(rules=rules, facts=fl, draft=draft)
        elif t.get("no_change"):
            prompt = llm["c_no_change"].format(stage=cat.stages[t["stage"]].title.lower(),
                                               facts=_facts_line(facts["puzzle"]), draft=draft)
        else:
            prompt = llm["c"].format(rules=rules, facts=_facts_line(facts["puzzle"], bands), draft=draft)
    if problems:
        prompt += "\n\nYour previous answer was rejected because " + "; ".join(problems) + \
                  ". Write it again, following the rules."
    return prompt.strip()


def text_generator(backend: str, **options) -> Callable:
    """A ``generate(prompt, images) -> str`` from a planner backend (``qwen``, ``openai``):
    an OpenAI-compatible endpoint gets the prompt as text; a local Qwen-VL model (which
    always looks at an image) gets the puzzle's first image with it."""
    from monet_cli.planners.base import get_planner

    planner = get_planner(backend, **options)
    from monet_cli.puzzles import load_text

    system = load_text()["llm"]["system"].strip()
    if hasattr(planner, "generate_text"):
        return lambda prompt, images=(): planner.generate_text(prompt)
    if hasattr(planner, "complete"):
        return lambda prompt, images=(): planner.complete([{"role": "system", "content": system},
                                                           {"role": "user", "content": prompt}])
    if hasattr(planner, "chat"):
        def generate(prompt, images=()):
            from PIL import Image as PILImage

            image = PILImage.open(images[0]).convert("RGB") if images else PILImage.new("RGB", (64, 64), "grey")
            return planner.chat([{"role": "system", "content": system}, {"role": "user", "content": prompt}], image)

        return generate
    raise UsageError(f"the {backend} backend cannot write text")


def _call(generate: Callable, prompt: str, images: list) -> str:
    try:
        params = inspect.signature(generate).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        two = len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        two = False
    return str(generate(prompt, images) if two else generate(prompt))


# ============================================================================ the dataset


@dataclass
class SynthSummary:
    dataset: str
    backend: str
    out: str | None = None
    records: int = 0
    processed: int = 0  # written by the backend in this run
    cached: int = 0  # found done by an earlier run
    ok: int = 0
    rejected: int = 0  # no grounded text after max_tries (all runs)
    regenerations: int = 0  # extra attempts (all runs)
    errors: int = 0  # backend failures (this run)
    fallback: int = 0  # rejected records written with the template's text
    dropped: int = 0  # rejected records left out of the training file
    unanswered: int = 0  # records the backend has not answered yet (errors, interrupt): run again
    written: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    problems: dict = field(default_factory=dict)  # kind of problem → failed attempts showing it (all runs)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("dataset", "backend", "out", "records", "processed", "cached", "ok",
                                              "rejected", "regenerations", "errors", "fallback", "dropped",
                                              "unanswered", "written", "interrupted")} | {
            "seconds": round(self.seconds, 3), "problems": dict(sorted(self.problems.items()))}


def _problem_kind(p: str) -> str:
    for key, name in (("not a monet operation", "invented_op"), ("does not use", "invented_op"),
                      ("no adjustment is needed", "invented_op"), ("goes", "wrong_direction"),
                      ("calls the", "wrong_intensity"), ("gives", "wrong_value"), ("does not name", "missing_op"),
                      ("backend failed", "backend_error")):
        if key in p:
            return name
    return "format"


def synthesize(dataset, backend: str = "template", *, generate: Callable | None = None, max_tries: int = 3,
               on_reject: str = "template", out=None, backend_options: dict | None = None,
               progress: Callable[[int, int], None] | None = None) -> SynthSummary:
    """Write the training file (``train.jsonl``, or ``out``) of a puzzle dataset with reasoning
    from ``backend``.

    ``template`` writes it directly. Another backend (or a ``generate`` callable, recorded
    under the name ``backend``) rewrites each record's template draft; results are cached
    line by line in ``meta/reasoning/<backend>.jsonl``, so an interrupted run resumes where it
    stopped and never asks twice. A backend that only raises errors on a record leaves it
    unanswered (asked again next run); on ``MAX_DOWN`` such records in a row the run stops
    with an error. The training file is written (atomically) only when every record has an
    answer (else ``unanswered`` says how many lack one); records whose text was rejected get
    the template's text (``on_reject="template"``) or are left out (``"drop"``).
    """
    from monet_cli import puzzles as pz

    t0 = time.perf_counter()
    dataset = Path(dataset)
    info = pz.read_info(dataset)
    cfg = info["config"]
    if on_reject not in ON_REJECT:
        raise UsageError(f"--on-reject must be {' or '.join(ON_REJECT)}, not {on_reject!r}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise UsageError("--max-tries must be a positive integer")
    name = (backend or "template").strip().lower()
    if generate is None and name not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; backends are {', '.join(BACKENDS)}")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise UsageError(f"bad backend name {backend!r}")
    records = pz.read_records(dataset)
    target = Path(out) if out is not None else dataset / pz.TRAIN_FILE
    summary = SynthSummary(dataset=str(dataset), backend=name, out=str(target), records=len(records))
    if name == "template" and generate is None:
        summary.ok = len(records)
        summary.written = pz.write_jsonl_atomic(target, (pz.chat_record(r, template_turns(r, cfg), cfg)
                                                          for r in records))
        _record_train(dataset, info, name, target)
        summary.seconds = time.perf_counter() - t0
        return summary

    if generate is None:
        generate = text_generator(name, **(backend_options or {}))
    cache_dir = dataset / pz.REASONING_DIR
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache_path = cache_dir / f"{name}.jsonl"
    done = {row["id"]: row for row in pz.read_jsonl(cache_path)}
    summary.cached = sum(r["id"] in done for r in records)
    todo = [r for r in records if r["id"] not in done]
    if progress:
        progress(0, len(todo))
    app = pz.JsonlAppender(cache_path)
    down, last_error = 0, ""  # records in a row on which the backend only failed
    try:
        for n, r in enumerate(todo, 1):
            draft = template_prose(r, cfg)
            images = [str(dataset / p) for p in r["images"]]
            prompt = llm_prompt(r, cfg, draft)
            row = {"id": r["id"], "backend": name, "status": "rejected", "tries": 0, "failed": []}
            answered = False
            for attempt in range(1, max_tries + 1):
                row["tries"] = attempt
                try:
                    prose = _call(generate, prompt, images).strip()
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001 - a backend's failure is one failed attempt
                    summary.errors += 1
                    last_error = f"{type(e).__name__}: {e}"
                    row["failed"].append([f"the backend failed ({last_error})"])
                    continue
                answered = True
                problems = check_grounding(r, prose)
                if not problems:
                    row.update(status="ok", prose=prose)
                    break
                row["failed"].append(problems)
                prompt = llm_prompt(r, cfg, draft, problems)
            if not answered:  # not cached: a rerun asks again
                down += 1
                if down >= MAX_DOWN:
                    raise MonetError(f"the {name} backend keeps failing ({last_error}); fix it and run again "
                                     f"to resume ({summary.processed} puzzles done)")
                continue
            down = 0
            app.write(row)
            done[r["id"]] = row
            summary.processed += 1
            if progress:
                progress(n, len(todo))
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        app.close()
    rows = [done[r["id"]] for r in records if r["id"] in done]
    summary.unanswered = len(records) - len(rows)
    summary.ok = sum(x["status"] == "ok" for x in rows)
    summary.rejected = sum(x["status"] != "ok" for x in rows)
    summary.regenerations = sum(max(int(x.get("tries", 1)) - 1, 0) for x in rows)
    for x in rows:
        for attempt in x.get("failed", ()):  # each failed attempt counts each kind of problem once
            for k in {_problem_kind(p) for p in attempt}:
                summary.problems[k] = summary.problems.get(k, 0) + 1
    if not summary.interrupted and not summary.unanswered:
        def chats():
            for r in records:
                row = done[r["id"]]
                if row["status"] == "ok":
                    yield pz.chat_record(r, assemble(r, row["prose"], cfg), cfg)
                elif on_reject == "template":
                    summary.fallback += 1
                    yield pz.chat_record(r, template_turns(r, cfg), cfg)
                else:
                    summary.dropped += 1

        summary.written = pz.write_jsonl_atomic(target, chats())
        _record_train(dataset, info, name, target)
    summary.seconds = time.perf_counter() - t0
    return summary


def _record_train(dataset: Path, info: dict, backend: str, target: Path) -> None:
    """Note in dataset.json which backend wrote the training file (generate keeps it)."""
    from monet_cli import puzzles as pz

    if target.resolve() != (dataset / pz.TRAIN_FILE).resolve():
        return
    info = dict(info)
    info["reasoning"] = {"backend": backend, "file": pz.TRAIN_FILE}
    pz.write_json_atomic(dataset / pz.INFO_FILE, info)


__all__ = ["BACKENDS", "Claim", "SynthSummary", "assemble", "check_grounding", "find_claims", "llm_prompt",
           "synthesize", "template_prose", "template_turns", "text_generator"]
