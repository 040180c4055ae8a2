"""Grounded reasoning (monet_cli.synth): the template writer (deterministic, varied, grounded
for every op and direction), the grounding check (wrong direction, invented op, wrong
intensity, missing op), and model backends through a scripted fake: regenerations,
rejections, resume after an interrupt."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest
from PIL import Image
from test_puzzles import make_experts, small_config

from monet_cli import puzzles as pz
from monet_cli import synth
from monet_cli.catalog import catalog
from monet_cli.errors import MonetError, UsageError
from monet_cli.planners.protocol import parse_reasoning, read_values


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    experts = make_experts(tmp_path_factory.mktemp("experts"))
    out = tmp_path_factory.mktemp("ds") / "puzzles"
    pz.generate(experts, out, count=15, seed=7, config=small_config(**{"c.no_change": 0.2}))
    return out


@pytest.fixture
def dataset(made, tmp_path):
    """A fresh copy per test (synthesize writes into it)."""
    return shutil.copytree(made, tmp_path / "puzzles")


def records(ds):
    return pz.read_records(ds)


def cfg_of(ds):
    return pz.read_info(ds)["config"]


def c_record(base: dict, answer: dict, rid: str = "c-test") -> dict:
    """A puzzle C record with ``answer``, reusing the measured facts of a real one."""
    r = copy.deepcopy(base)
    stage = catalog().stage_of(next(iter(answer)))
    r["id"], r["kind"] = rid, "c"
    r["truth"] = {"stage": stage, "no_change": False, "answer": dict(answer),
                  "perturbation": {k: -v for k, v in answer.items()},
                  "plan": {s: (dict(answer) if s == stage else {}) for s in ("lighting", "color", "hsl")}}
    return r


def a_record(base_c: dict, op: str, value: int, rid: str) -> dict:
    r = copy.deepcopy(base_c)
    r["id"], r["kind"], r["images"] = rid, "a", [r["expert"], r["expert"]]
    r["truth"] = {"stage": catalog().stage_of(op), "op": op, "value": value}
    r["facts"] = {"before": base_c["facts"]["expert"], "after": base_c["facts"]["puzzle"]}
    return r


def b_record(base_c: dict, op: str, rid: str, side: int = 1) -> dict:
    r = copy.deepcopy(base_c)
    f = base_c["facts"]
    r["id"], r["kind"], r["images"] = rid, "b", [r["expert"]] * 4
    r["truth"] = {"stage": catalog().stage_of(op), "op": op, "values": [side * 50, 0, -side * 30, side * 70],
                  "ranking": [2, 3, 1, 4], "best": 2, "x": 1, "answer": {op: -side * 40}}
    r["facts"] = {"images": [f["puzzle"], f["expert"], f["puzzle"], f["puzzle"]]}
    return r


def base_c(ds) -> dict:
    return next(r for r in records(ds) if r["kind"] == "c" and not r["truth"]["no_change"])


# ----------------------------------------------------------------------------- template


def test_template_is_deterministic_grounded_and_parses_like_the_planner(made):
    cfg = cfg_of(made)
    for r in records(made):
        turns = synth.template_turns(r, cfg)
        assert turns == synth.template_turns(r, cfg)
        assert synth.check_grounding(r, synth.template_prose(r, cfg)) == [], r["id"]
        if r["kind"] == "c" and not r["truth"]["no_change"]:
            triplets = parse_reasoning(turns[0])
            assert len(triplets) == len(r["truth"]["answer"]) and all(t.issue and t.solution for t in triplets)
            assert read_values(r["truth"]["stage"], turns[1]) == r["truth"]["answer"]


def test_template_is_grounded_for_every_op_direction_and_size(made):
    """Every phrase path of the bank: each op, both directions, several legend words, many ids."""
    cfg = cfg_of(made)
    base = base_c(made)
    for op in catalog().ops:
        for v in (-90, -55, -30, -8, 6, 20, 42, 66, 80):
            for rid in ("x1", "x2", "x3"):
                for r in (c_record(base, {op: v}, f"c-{op}-{v}-{rid}"), a_record(base, op, v, f"a-{op}-{v}-{rid}"),
                          b_record(base, op, f"b-{op}-{v}-{rid}", 1 if v > 0 else -1)):
                    prose = synth.template_prose(r, cfg)
                    assert "{" not in prose and "?" not in prose, prose
                    assert synth.check_grounding(r, prose) == [], (r["id"], prose)
    pair = c_record(base, {"Highlights": -30, "Whites": -45, "Shadows": 20}, "c-three")
    assert synth.check_grounding(pair, synth.template_prose(pair, cfg)) == []


def test_template_reads_varied_like_notes(made):
    cfg = cfg_of(made)
    base = copy.deepcopy(base_c(made))
    seen, target = base["facts"]["puzzle"], base["facts"]["expert"]
    seen.update(median_l=target["median_l"] - 12, p99_l=85.0)  # darker than the expert: Exposure +25 fixes it
    proses = [synth.template_prose(c_record(base, {"Exposure": 25}, f"c-v{i}"), cfg) for i in range(40)]
    adjustments = {parse_reasoning(p)[0].adjustment for p in proses}
    issues = {parse_reasoning(p)[0].issue for p in proses}
    assert len(adjustments) >= 5 and len(issues) >= 3
    assert all(str(int(round(seen["median_l"]))) in i for i in issues if "L*" in i)  # quotes the measurement
    assert all("mild" in a.lower() for a in adjustments)  # the legend's word for 25


def test_no_change_note_says_so_and_proposes_nothing(made):
    cfg = cfg_of(made)
    r = copy.deepcopy(base_c(made))
    r["truth"] = {"stage": "color", "no_change": True, "answer": {}, "plan": {}}
    for i in range(6):
        r["id"] = f"c-none-{i}"
        turns = synth.template_turns(r, cfg)
        assert len(turns) == 1 and synth.NO_CHANGE_MARK in turns[0]
        assert synth.check_grounding(r, turns[0]) == []


# ----------------------------------------------------------------------------- grounding check

GOOD = """Adjustment: Raise the exposure by a slight amount.
Issue: The shadows are murky and the highlights look dull; the median sits at L* 38.
Solution: Brighter midtones open the picture.

Adjustment: Reduce contrast by a mild amount.
Issue: Contrast is harsh.
Solution: Softer tones keep detail at both ends, without touching the shadows."""


def test_check_accepts_grounded_text_and_catches_each_fault(made):
    r = c_record(base_c(made), {"Exposure": 20, "Contrast": -30})
    assert synth.check_grounding(r, GOOD) == []

    def problems(text):
        return " | ".join(synth.check_grounding(r, text))

    assert "Exposure goes down" in problems(GOOD.replace("Raise the exposure", "Lower the exposure"))
    assert "Contrast goes up" in problems(GOOD.replace("Reduce contrast", "Boost contrast"))
    invented = GOOD + "\n\nAdjustment: Open up the shadows by a mild amount.\nIssue: dark.\nSolution: detail."
    assert "Shadows, which this edit does not use" in problems(invented)
    assert "not a monet operation" in problems(GOOD.replace("Reduce contrast by a mild amount.",
                                                            "Reduce contrast by a mild amount and add clarity."))
    assert "'moderate'" in problems(GOOD.replace("by a slight amount", "by a moderate amount"))
    assert "does not name Contrast" in problems(GOOD.split("\n\n")[0])
    assert "+45" in problems(GOOD.replace("by a slight amount", "(+45)"))
    assert "no Adjustment" in problems("Raise the exposure slightly and reduce contrast mildly.")
    assert "code block" in problems(GOOD + "\n```json\n{}\n```")


def test_claims_follow_clauses_shared_verbs_and_negations():
    claims = synth.find_claims("Lower the highlights and whites by a mild amount, keeping the shadows as they are.")
    assert [(c.op, c.direction) for c in claims] == [("Highlights", -1), ("Whites", -1)]
    assert claims[1].word == "mild"
    claims = synth.find_claims("Shift the red hue a slight amount toward orange, and boost the blue saturation.")
    assert [(c.op, c.direction, c.word) for c in claims] == [("HueAdjustmentRed", 1, "slight"),
                                                            ("SaturationAdjustmentBlue", 1, None)]
    assert [c.direction for c in synth.find_claims("Move the tint toward green by a very slight amount.")] == [-1]
    assert [c.direction for c in synth.find_claims("Warm the temperature slightly.")] == [1]
    assert synth.find_claims("The image looks too warm and the shadows are crushed.") == []
    assert synth.find_claims("White and grey surfaces look clean (Duv +0.0095).") == []
    assert [c.op for c in synth.find_claims("Add a touch of Vibrance.")] == ["Vibrance"]
    assert [c.number for c in synth.find_claims("Exposure +20, Contrast -15.")] == [20, -15]


def test_check_for_a_b_and_no_change(made):
    base = base_c(made)
    a = a_record(base, "Temperature", -40, "a-t")
    said = "Image 2 looks too cool. So the temperature was lowered by a moderate amount."
    assert synth.check_grounding(a, said) == []
    assert "goes up" in " ".join(synth.check_grounding(a, "Image 2 is cooler: the temperature was warmed moderately."))
    assert "does not name Temperature" in " ".join(synth.check_grounding(a, "Image 2 is cooler."))
    b = b_record(base, "Exposure", "b-e")
    assert synth.check_grounding(b, "Image 2 is best. Image 1 needs the exposure lowered; Image 4 even more.") == []
    assert "Shadows" in " ".join(synth.check_grounding(b, "Image 2 is best; raise the shadows of Image 3."))
    n = copy.deepcopy(base)
    n["truth"] = {"stage": "hsl", "no_change": True, "answer": {}, "plan": {}}
    assert synth.check_grounding(n, "The colours are natural. **No further adjustments are needed**.") == []
    assert "no adjustment is needed" in " ".join(synth.check_grounding(
        n, "Boost the red saturation slightly. **No further adjustments are needed**."))
    assert "does not say" in " ".join(synth.check_grounding(n, "The colours are natural."))


# ----------------------------------------------------------------------------- model backends


def _draft(prompt: str) -> str:
    return re.split(r"\n\nYour previous answer", prompt.split("Draft:\n", 1)[1])[0]


class Fake:
    """A scripted model: a hallucinated answer first, then the draft it was given."""

    BAD = "Adjustment: Add clarity by a mild amount.\nIssue: soft.\nSolution: crisper.\nImage 1 has too much vibrance."

    def __init__(self, good_after: int = 1, interrupt_at: int | None = None):
        self.good_after, self.interrupt_at = good_after, interrupt_at
        self.calls, self.prompts, self.tries = 0, [], {}

    def __call__(self, prompt, images):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.prompts.append(prompt)
        assert images and all(str(p).endswith(".png") for p in images)
        key = _draft(prompt)
        self.tries[key] = self.tries.get(key, 0) + 1
        return self.BAD if self.tries[key] <= self.good_after else key


def test_a_model_is_regenerated_then_accepted(dataset):
    fake = Fake(good_after=1)
    s = synth.synthesize(dataset, "openai", generate=fake, max_tries=3)
    n = len(records(dataset))
    assert (s.ok, s.rejected, s.regenerations, s.written, s.processed) == (n, 0, n, n, n)
    assert fake.calls == 2 * n and s.problems.get("invented_op") == n
    assert any("was rejected because" in p and "Clarity" in p for p in fake.prompts)
    cache = pz.read_jsonl(dataset / pz.REASONING_DIR / "openai.jsonl")
    assert len(cache) == n and all(row["status"] == "ok" and row["tries"] == 2 for row in cache)
    assert pz.read_info(dataset)["reasoning"]["backend"] == "openai"
    chats = [json.loads(x) for x in (dataset / pz.TRAIN_FILE).read_text().splitlines()]
    assert [c["messages"][-1]["content"] for c in chats] == \
           [synth.template_turns(r, cfg_of(dataset))[-1] for r in records(dataset)]  # answers from the truth


def test_a_model_that_never_grounds_is_rejected(dataset):
    n = len(records(dataset))
    s = synth.synthesize(dataset, "qwen", generate=Fake(good_after=99), max_tries=2, on_reject="drop")
    assert (s.ok, s.rejected, s.regenerations, s.dropped, s.written) == (0, n, n, n, 0)
    s = synth.synthesize(dataset, "qwen", generate=Fake(good_after=99), max_tries=2)  # cached: no new calls
    assert s.cached == n and s.processed == 0 and s.fallback == n and s.written == n


def test_model_run_resumes_after_an_interrupt(dataset):
    before = (dataset / pz.TRAIN_FILE).read_bytes() if (dataset / pz.TRAIN_FILE).exists() else None
    s = synth.synthesize(dataset, "openai", generate=Fake(good_after=0, interrupt_at=4))
    assert s.interrupted and s.processed == 3
    after = (dataset / pz.TRAIN_FILE).read_bytes() if (dataset / pz.TRAIN_FILE).exists() else None
    assert after == before  # the training file is only written when all is done
    fake = Fake(good_after=0)
    s = synth.synthesize(dataset, "openai", generate=fake)
    n = len(records(dataset))
    assert not s.interrupted and s.cached == 3 and fake.calls == n - 3 and s.written == n
    ids = [row["id"] for row in pz.read_jsonl(dataset / pz.REASONING_DIR / "openai.jsonl")]
    assert sorted(ids) == sorted(r["id"] for r in records(dataset))


def test_a_failing_backend_is_retried_and_a_dead_one_stops_the_run(dataset):
    calls = {"n": 0}

    def flaky(prompt):
        calls["n"] += 1
        if calls["n"] % 2:
            raise ConnectionError("reset")
        return _draft(prompt)

    n = len(records(dataset))
    s = synth.synthesize(dataset, "openai", generate=flaky, max_tries=2)
    assert s.errors == n and s.ok == n and s.problems == {"backend_error": n}

    def dead(prompt):
        raise ConnectionError("refused")

    with pytest.raises(MonetError, match="keeps failing"):
        synth.synthesize(dataset, "qwen", generate=dead, max_tries=2)
    assert pz.read_jsonl(dataset / pz.REASONING_DIR / "qwen.jsonl") == []  # nothing cached: a rerun asks again

    first = [str(dataset / p) for p in records(dataset)[0]["images"]]

    def picky(prompt, images):  # fails on one puzzle only (or the few with the same images)
        if list(images) == first:
            raise TimeoutError("slow")
        return _draft(prompt)

    train = (dataset / pz.TRAIN_FILE).read_bytes()
    s = synth.synthesize(dataset, "local", generate=picky)
    assert s.unanswered >= 1 and s.written == 0 and (dataset / pz.TRAIN_FILE).read_bytes() == train


def test_llm_prompt_carries_truth_and_facts(made):
    r = c_record(base_c(made), {"Exposure": 20, "SaturationAdjustmentRed": -30})
    p = synth.llm_prompt(r, cfg_of(made), "DRAFT", ["it says Exposure goes down"])
    assert "Exposure: increase, slight" in p and "red saturation (SaturationAdjustmentRed): decrease, mild" in p
    assert "median L*" in p and "reds: chroma" in p and "DRAFT" in p and p.endswith("following the rules.")


def test_text_generator_wraps_planner_backends(monkeypatch):
    from monet_cli.planners import base

    class OpenAIish:
        def complete(self, messages):
            assert [m["role"] for m in messages] == ["system", "user"]
            return "from endpoint: " + messages[1]["content"]

    class Qwenish:
        def chat(self, messages, image, **kw):
            assert isinstance(image, Image.Image)
            return f"from qwen {image.size}"

    monkeypatch.setattr(base, "get_planner", lambda backend, **o: OpenAIish() if backend == "openai" else Qwenish())
    assert synth.text_generator("openai")("hi", []) == "from endpoint: hi"
    assert synth.text_generator("qwen")("hi", []) == "from qwen (64, 64)"
    assert synth._call(lambda p: p + "!", "x", ["a.png"]) == "x!"
    assert synth._call(lambda p, images: f"{p}{len(images)}", "x", ["a.png"]) == "x1"


def test_bad_options_are_usage_errors(dataset):
    with pytest.raises(UsageError):
        synth.synthesize(dataset, "gemini")
    with pytest.raises(UsageError):
        synth.synthesize(dataset, "template", on_reject="keep")
    with pytest.raises(UsageError):
        synth.synthesize(dataset, "template", max_tries=0)
