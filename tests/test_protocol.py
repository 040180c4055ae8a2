"""The staged two-turn protocol of the model backends, with a scripted fake model that answers
like the published MonetGPT (good, malformed, out of range, wrong stage's ops, "no adjustment
needed"), and the parsing underneath it. No torch needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from monet_cli.catalog import STAGES, catalog
from monet_cli.plan import Plan, StagePlan
from monet_cli.planners import protocol as pr
from monet_cli.planners.base import plan_proxy

ANALYSIS = """Here is the editing plan.

1. **Adjustment:** The exposure needs to be raised slightly.
   **Issue:** The whole photo is dark; the face sits well below middle grey.
   **Solution:** A slight exposure increase brings the subject into the midtones.

2. **Adjustment:** The highlights need a mild reduction.
   **Issue:** The window behind is nearly clipped.
   **Solution:** Pulling highlights recovers the detail in the bright sky.
"""
VALUES = """Applying the below adjustment values in Lightroom will make the image **optimal**.

```json
{
  "Exposure": 18,
  "Highlights": -30
}
```
"""
NO_CHANGE = "The white balance is already neutral and the colours are natural. **No further adjustments are needed**."


class ScriptedChat:
    """A fake model: returns prepared answers in order, records every conversation it saw."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.seen: list[list[dict]] = []

    def __call__(self, messages):
        self.seen.append([dict(m) for m in messages])
        a = self.answers.pop(0)
        if isinstance(a, BaseException):
            raise a
        return a


# ----------------------------------------------------------------------------- prompts


def test_prompts_list_the_stage_ops_with_meanings_style_and_instructions():
    p = pr.load_prompts("monetgpt")
    cat = catalog()
    for stage in STAGES:
        text = pr.analysis_prompt(stage, prompts=p, style="retro", instructions="make it warmer")
        for op in cat.stages[stage].ops:
            assert f"- {op}: {cat.ops[op].meaning}" in text
        others = [o for s in STAGES if s != stage for o in cat.stages[s].ops]
        assert not any(f"- {o}:" in text for o in others)
        assert "Adjustment:" in text and "Issue:" in text and "Solution:" in text
        assert "film photography" in text and "make it warmer" in text
        assert "{" not in text and "}" not in text  # every placeholder filled
    balanced = pr.analysis_prompt("lighting", prompts=p)
    assert "balanced edit" in balanced and "photographer also asks" not in balanced


def test_values_prompt_carries_the_intensity_legend():
    text = pr.values_prompt("color", prompts=pr.load_prompts(), style="vibrant")
    assert "1-12: Very Slight" in text and "85-100: Extremely Intense" in text and "73-84: Very Significant" in text
    assert "Temperature, Tint, Saturation" in text and "```json" in text and "vibrant" in text
    assert len(pr.legend_text().splitlines()) == 8


def test_repair_prompt_says_why_and_which_names():
    text = pr.repair_prompt("lighting", "it contains no JSON object", prompts=pr.load_prompts())
    assert "it contains no JSON object" in text and "Exposure, Contrast" in text and "{}" in text


def test_unknown_style_and_prompt_set_are_usage_errors():
    from monet_cli.errors import UsageError

    with pytest.raises(UsageError):
        pr.analysis_prompt("lighting", prompts=pr.load_prompts(), style="gothic")
    with pytest.raises(UsageError):
        pr.load_prompts("nope")


# ----------------------------------------------------------------------------- parsing


def test_reasoning_triplets_from_bold_numbered_blocks():
    r = pr.parse_reasoning(ANALYSIS)
    assert [t.adjustment for t in r] == ["The exposure needs to be raised slightly.",
                                         "The highlights need a mild reduction."]
    assert r[0].issue.startswith("The whole photo is dark") and r[1].solution.startswith("Pulling highlights")
    assert "**" not in json.dumps([t.to_dict() for t in r])


def test_reasoning_triplets_plain_and_bulleted():
    text = "Adjustment: Lift shadows\nIssue: crushed\nSolution: open them\n- **Adjustment**: Whites down\n- Issue: hot"
    r = pr.parse_reasoning(text)
    assert [(t.adjustment, t.issue, t.solution) for t in r] == [("Lift shadows", "crushed", "open them"),
                                                                ("Whites down", "hot", "")]
    assert pr.parse_reasoning("just some words") == []


def test_no_change_detection():
    assert pr.says_no_change(NO_CHANGE)
    assert pr.says_no_change("Everything looks right; no adjustments are needed for this photo.")
    # a loose phrase inside a plan that changes other things does not cancel the stage
    mixed = ANALYSIS + "\n3. **Adjustment:** No further adjustment is needed for the blacks.\n**Issue:** fine"
    assert not pr.says_no_change(mixed)
    assert not pr.says_no_change(ANALYSIS)


@pytest.mark.parametrize("text, expected", [
    (VALUES, {"Exposure": 18, "Highlights": -30}),
    ('Sure: {"Exposure": 10}', {"Exposure": 10}),
    ('```json\n{"Exposure": +12, "Contrast": -5,}\n```', {"Exposure": 12, "Contrast": -5}),
    ('```\n{"Exposure": 5} // brighter\n```', {"Exposure": 5}),
    ('first ```json\n{"Exposure": 1}\n``` then corrected ```json\n{"Exposure": 2}\n```', {"Exposure": 2}),
    ('{"note": "a } brace", "Exposure": 3}', {"note": "a } brace", "Exposure": 3}),
    ('```json\n{"Exposure": 4}', {"Exposure": 4}),  # unterminated fence: the bare object still counts
])
def test_extract_json(text, expected):
    assert pr.extract_json(text) == expected


@pytest.mark.parametrize("text, why", [
    ("no json here", "no JSON object"),
    ('```json\n{"Exposure": }\n```', "not valid"),
    ("```json\n[1, 2]\n```", "not an object"),
])
def test_extract_json_failures_say_why(text, why):
    with pytest.raises(pr.AnswerError, match=why):
        pr.extract_json(text)


def test_parse_values_keeps_stage_ops_clamps_and_rejects():
    obj = pr.extract_json('{"Exposure": 150, "Contrast": -12.5, "Saturation": 20, "Sharpness": 10, '
                          '"Shadows": "high", "Whites": NaN, "Blacks": true, "Highlights": 0, "exposure2012": 1}')
    values, problems = pr.parse_values("lighting", obj)
    assert values == {"Exposure": 1, "Contrast": -12.5}  # 150 → 100, then the XMP alias overrides it
    text = " | ".join(problems)
    for needle in ("Saturation belongs to the color stage", "'Sharpness' is not an operation",
                   "Shadows: 'high' is not a number", "Whites: nan is not a finite number", "Blacks: True"):
        assert needle in text
    v, _ = pr.parse_values("lighting", {"Exposure": 150, "Blacks": -1e9, "Whites": -Infinity()})
    assert v == {"Exposure": 100, "Blacks": -100}


def Infinity():
    return math.inf


def test_parse_values_aliases_and_wrappers():
    v, problems = pr.parse_values("hsl", {"adjustments": {"RedHue": 10, "Hue Adjustment Orange": -5,
                                                          "saturationBlue": 7, "Luminance_Green": 3}})
    assert v == {"HueAdjustmentRed": 10, "HueAdjustmentOrange": -5, "SaturationAdjustmentBlue": 7,
                 "LuminanceAdjustmentGreen": 3} and not problems
    assert pr.canonical_op("Temp") == "Temperature" and pr.canonical_op("nonsense") is None


def test_read_values_errors_only_when_nothing_usable():
    assert pr.read_values("color", "```json\n{}\n```") == {}
    assert pr.read_values("color", '{"Tint": 5, "Exposure": 10}') == {"Tint": 5}
    with pytest.raises(pr.AnswerError, match="no usable value: Exposure belongs to the lighting stage"):
        pr.read_values("color", '{"Exposure": 10}')


# ----------------------------------------------------------------------------- run_stage


def test_good_answer_gives_values_and_reasoning():
    chat = ScriptedChat(ANALYSIS, VALUES)
    sp = pr.run_stage(chat, "lighting", style="balanced", instructions="brighter")
    assert sp.status == "ok" and sp.adjustments == {"Exposure": 18, "Highlights": -30}
    assert len(sp.reasoning) == 2 and sp.error is None and sp.raw is None
    first, second = chat.seen
    assert [m["role"] for m in first] == ["system", "user"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == ANALYSIS and "1-12: Very Slight" in second[3]["content"]
    assert "brighter" in first[1]["content"] and "brighter" in second[3]["content"]


def test_no_adjustment_needed_skips_the_values_turn():
    chat = ScriptedChat(NO_CHANGE)
    sp = pr.run_stage(chat, "color")
    assert sp.status == "no_change" and sp.adjustments == {} and len(chat.seen) == 1
    assert sp.reasoning and "neutral" in sp.reasoning[0].issue


def test_malformed_answer_is_repaired_once():
    chat = ScriptedChat(ANALYSIS, "Exposure should go up by about 15.", '```json\n{"Exposure": 15}\n```')
    sp = pr.run_stage(chat, "lighting")
    assert sp.status == "ok" and sp.adjustments == {"Exposure": 15}
    repair = chat.seen[2][-1]["content"]
    assert "could not be used: it contains no JSON object" in repair


def test_malformed_twice_fails_with_raw_text_and_reasoning():
    chat = ScriptedChat(ANALYSIS, "values: exposure plus fifteen", "still { not json")
    sp = pr.run_stage(chat, "lighting")
    assert sp.status == "failed" and sp.adjustments == {}
    assert "no JSON object" in sp.error and "after a repair turn" in sp.error
    for part in ("--- analysis ---", "--- values ---", "--- repair ---", "exposure plus fifteen", "still { not json"):
        assert part in sp.raw
    assert len(sp.reasoning) == 2  # the analysis is kept even when the values fail


def test_out_of_range_values_are_clamped():
    sp = pr.run_stage(ScriptedChat(ANALYSIS, '```json\n{"Exposure": 250, "Shadows": -400.5}\n```'), "lighting")
    assert sp.status == "ok" and sp.adjustments == {"Exposure": 100, "Shadows": -100}


def test_wrong_stage_ops_are_dropped_or_repaired():
    sp = pr.run_stage(ScriptedChat(ANALYSIS, '{"Exposure": 10, "Temperature": 30}'), "lighting")
    assert sp.status == "ok" and sp.adjustments == {"Exposure": 10}
    chat = ScriptedChat(ANALYSIS, '{"Temperature": 30, "HueAdjustmentRed": 5}', '{"Contrast": 8}')
    sp = pr.run_stage(chat, "lighting")
    assert sp.status == "ok" and sp.adjustments == {"Contrast": 8}
    assert "Temperature belongs to the color stage" in chat.seen[2][-1]["content"]


def test_strings_and_nan_are_rejected():
    chat = ScriptedChat(ANALYSIS, '{"Exposure": "15", "Contrast": NaN}', '{"Exposure": "+15"}')
    sp = pr.run_stage(chat, "lighting")
    assert sp.status == "failed" and "'15' is not a number" in sp.error and "nan is not a finite" in sp.error


def test_empty_values_mean_no_change():
    sp = pr.run_stage(ScriptedChat(ANALYSIS, "Nothing to change.\n```json\n{}\n```"), "hsl")
    assert sp.status == "no_change" and len(sp.reasoning) == 2


def test_a_failing_backend_is_recorded_not_raised():
    sp = pr.run_stage(ScriptedChat(ANALYSIS, ConnectionError("server went away")), "lighting")
    assert sp.status == "failed" and sp.error == "ConnectionError: server went away" and "--- analysis ---" in sp.raw


class ScriptedPlanner:
    """A StagePlanner over a scripted model: the protocol as the qwen/openai backends run it."""

    name = "scripted"
    model = "fake-monetgpt"
    adapter = None

    def __init__(self, script: dict):
        self.script = script
        self.images = []

    def plan_stage(self, stage, proxy, *, style, instructions, previous):
        self.images.append(pr.proxy_to_srgb8(proxy))
        return pr.run_stage(ScriptedChat(*self.script[stage]), stage, style=style, instructions=instructions)


def test_full_plan_through_plan_proxy_writes_a_valid_sidecar(tmp_path):
    from monet_cli.plan import load_plan, save_plan

    planner = ScriptedPlanner({
        "lighting": [ANALYSIS, VALUES],
        "color": [NO_CHANGE],
        "hsl": ["Adjustment: Blues a bit deeper\nIssue: pale sky\nSolution: richer blue",
                "garbage", "more garbage"],
    })
    proxy = np.full((24, 32, 3), 0.1, np.float32)
    plan = plan_proxy(proxy, planner, style="vibrant")
    assert [plan.stages[s].status for s in STAGES] == ["ok", "no_change", "failed"]
    assert plan.planner.backend == "scripted" and plan.planner.model == "fake-monetgpt"
    # later stages saw the proxy rendered with the lighting stage (brighter)
    assert planner.images[1].mean() > planner.images[0].mean()
    path = save_plan(plan, tmp_path / "p.monet.json")
    back = load_plan(path)
    assert back.stages["hsl"].raw and back.stages["hsl"].error
    assert back.adjustments == {"Exposure": 18, "Highlights": -30}
    assert Plan.from_dict(json.loads(path.read_text())).to_dict()["stages"] == plan.to_dict()["stages"]


def test_proxy_to_srgb8_encodes_working_space_to_srgb():
    px = np.zeros((2, 3, 3), np.float32)
    px[0, 0] = 0.18
    px[0, 1] = 1.0
    px[0, 2] = 4.0  # over white: clipped
    px[1, 0] = -0.5  # out of gamut: clipped
    out = pr.proxy_to_srgb8(px)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert np.all(np.abs(out[0, 0].astype(int) - 118) <= 1)  # middle grey → sRGB 118
    assert np.all(out[0, 1] == 255) and np.all(out[0, 2] == 255) and np.all(out[1, 0] == 0)
    im = pr.proxy_to_pil(np.zeros((100, 300, 3), np.float32), long_side=150)
    assert im.size == (150, 50)


def test_stageplans_from_the_protocol_pass_the_base_checks():
    from monet_cli.planners.base import _checked

    sp = pr.run_stage(ScriptedChat(ANALYSIS, VALUES), "lighting")
    assert isinstance(_checked("lighting", sp), StagePlan)


# ----------------------------------------------------------------------------- several samples at once


class ScriptedBatchChat:
    """A fake batching backend: per call, one prepared answer per conversation, in order."""

    def __init__(self, *calls):
        self.calls = list(calls)
        self.sizes: list[int] = []
        self.seen: list[list[list[dict]]] = []

    def __call__(self, conversations):
        self.sizes.append(len(conversations))
        self.seen.append([[dict(m) for m in c] for c in conversations])
        answers = self.calls.pop(0)
        if isinstance(answers, BaseException):
            raise answers
        return answers


def test_run_stages_answers_each_turn_as_one_batch():
    chat = ScriptedBatchChat([ANALYSIS, NO_CHANGE, ANALYSIS],  # turn 1: three conversations
                             [VALUES, "Exposure up by about 15."],  # turn 2: the two that need values
                             ['```json\n{"Exposure": 15}\n```'])  # turn 3: the repair of the second
    plans = pr.run_stages(chat, "lighting", 3)
    assert chat.sizes == [3, 2, 1]
    assert [p.status for p in plans] == ["ok", "no_change", "ok"]
    assert plans[0].adjustments == {"Exposure": 18, "Highlights": -30} and plans[2].adjustments == {"Exposure": 15}
    assert "no JSON object" in chat.seen[2][0][-1]["content"]  # the repair says why
    assert len(chat.seen[1][1]) == 4 and chat.seen[1][1][2]["content"] == ANALYSIS


def test_run_stages_records_a_failing_batch_on_the_conversations_it_held():
    chat = ScriptedBatchChat([ANALYSIS, NO_CHANGE], ConnectionError("gone"))
    a, b = pr.run_stages(chat, "lighting", 2)
    assert a.status == "failed" and a.error == "ConnectionError: gone" and "--- analysis ---" in a.raw
    assert b.status == "no_change"
    short = ScriptedBatchChat([ANALYSIS])  # a backend that answers fewer conversations than asked
    assert [p.status for p in pr.run_stages(short, "lighting", 2)] == ["failed", "failed"]


def _sp(values=None, status=None, issue="x"):
    from monet_cli.plan import Reasoning

    values = values or {}
    return StagePlan(status=status or ("ok" if values else "no_change"), adjustments=dict(values),
                     reasoning=[Reasoning("a", issue, "s")])


def test_consensus_is_the_mean_plan_with_left_out_ops_as_zero():
    plans = [_sp({"Exposure": 40, "Contrast": 10}, issue="one"), _sp({"Exposure": 20}, issue="two"),
             _sp(issue="none"), _sp({"Exposure": 30, "Contrast": -14}, issue="three")]
    c = pr.consensus(plans)
    assert c.status == "ok" and c.adjustments == {"Exposure": 23, "Contrast": -1}  # 90/4 = 22.5; -4/4
    assert all(isinstance(v, int) for v in c.adjustments.values())
    assert c.reasoning[0].issue == "two"  # the sampled plan nearest to the mean


def test_consensus_of_disagreeing_or_idle_samples_changes_nothing():
    c = pr.consensus([_sp({"Temperature": 30}), _sp({"Temperature": -30}), _sp({"Tint": 1})])
    assert c.status == "no_change" and c.adjustments == {} and c.reasoning
    idle = pr.consensus([_sp(issue="fine"), _sp(issue="fine too"), _sp({"Exposure": 1})])
    assert idle.status == "no_change" and idle.reasoning[0].issue == "fine"


def _photo(seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.02, 0.6, (1, 1, 3))  # a coloured scene with texture, working-space linear
    return (base * rng.uniform(0.3, 1.5, (48, 64, 1))).astype(np.float32)


def test_medoid_returns_the_sampled_plan_most_samples_agree_with_in_effect():
    lift = [_sp({"Exposure": 30}, issue="e30"), _sp({"Exposure": 34}, issue="e34"),
            _sp({"Exposure": 28, "Contrast": 4}, issue="e28")]
    cast = _sp({"Temperature": -60}, issue="cool")
    m = pr.medoid([cast] + lift, _photo())
    assert m in lift and m.status == "ok"
    assert m.adjustments == {"e30": {"Exposure": 30}, "e34": {"Exposure": 34},
                             "e28": {"Exposure": 28, "Contrast": 4}}[m.reasoning[0].issue]  # one sample's, whole
    assert pr.medoid([cast] + lift, _photo()).to_dict() == m.to_dict()  # deterministic
    # the mean would shrink the lift towards nothing and add a cool cast: 0.75·30 and -15
    assert pr.consensus([cast] + lift).adjustments["Temperature"] == -15


def test_medoid_of_opposite_samples_is_the_no_change_between_them():
    m = pr.medoid([_sp({"Temperature": 40}), _sp({"Temperature": -40}), _sp(issue="fine")], _photo(1))
    assert m.status == "no_change" and m.reasoning[0].issue == "fine"
    # exact ties (two identical samples) go to the smaller plan
    assert pr.medoid([_sp({"Exposure": 20, "Contrast": 0}), _sp({"Exposure": 20})], _photo(2)).adjustments == \
        {"Exposure": 20}


def test_medoid_skips_failed_samples_and_fails_only_when_all_do():
    failed = StagePlan(status="failed", error="unusable")
    assert pr.medoid([failed, _sp({"Exposure": 20})], _photo()).adjustments == {"Exposure": 20}
    c = pr.medoid([failed, StagePlan(status="failed", error="other")], _photo())
    assert c.status == "failed" and c.error == "unusable"
    big = np.concatenate([_photo()] * 8, axis=1)  # larger than MEDOID_LONG_SIDE: compared shrunk
    assert pr.medoid([_sp({"Exposure": -50}), _sp(), _sp({"Exposure": -45})], big).adjustments["Exposure"] < 0


def test_consensus_skips_failed_samples_and_fails_only_when_all_do():
    failed = StagePlan(status="failed", error="unusable")
    assert pr.consensus([failed, _sp({"Exposure": 20}), _sp({"Exposure": 30})]).adjustments == {"Exposure": 25}
    c = pr.consensus([failed, StagePlan(status="failed", error="other")])
    assert c.status == "failed" and c.error == "unusable"
