"""The qwen backend on CPU with the tiny random Qwen2-VL / Qwen2.5-VL built at test time:
build, load (fp32 and 4-bit), generate, a full three-stage plan that writes a valid sidecar
although the model's text is noise (the failure path), the per-process model cache, and a
peft (DoRA) adapter made at test time. Skipped cleanly without torch/transformers."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from monet_cli.catalog import STAGES  # noqa: E402
from monet_cli.planners import protocol as pr  # noqa: E402
from monet_cli.planners import qwen  # noqa: E402
from monet_cli.tiny import build_tiny  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl")


@pytest.fixture(scope="module")
def proxy():
    rng = np.random.default_rng(1)
    img = np.repeat(np.linspace(0.02, 0.8, 96, dtype=np.float32)[None, :, None], 64, 0).repeat(3, 2)
    return (img * rng.uniform(0.8, 1.2, (64, 96, 3))).astype(np.float32)


MESSAGES = [{"role": "system", "content": "You edit photos."},
            {"role": "user", "content": "Describe the exposure."}]


def test_tiny_model_files_and_config(tiny):
    names = {p.name for p in tiny.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json", "monet.json"} <= names
    cfg = json.loads((tiny / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_vl" and cfg["text_config"]["hidden_size"] == 64
    from monet_cli.models import missing_files, resolve_model

    assert missing_files(tiny) == [] and resolve_model(str(tiny)).preset.name == "tiny"


def test_chatml_puts_the_image_once_in_the_first_user_turn():
    text = qwen.chatml(MESSAGES + [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more"}])
    assert text.count(qwen.IMAGE_TOKENS) == 1
    assert text.startswith("<|im_start|>system\nYou edit photos.<|im_end|>\n<|im_start|>user\n" + qwen.IMAGE_TOKENS)
    assert text.endswith("<|im_start|>assistant\n")


def test_load_fp32_and_generate_repeatably(tiny, proxy):
    p = qwen.QwenPlanner(str(tiny), device="cpu")
    assert (p.quant, p.dtype, p.device, p.warnings) == ("none", "float32", "cpu", [])
    assert p.max_new_tokens == {"analysis": 24, "values": 24}  # the tiny preset, via monet.json
    image = pr.proxy_to_pil(proxy)
    a = p.chat(MESSAGES, image, stage="lighting")
    b = p.chat(MESSAGES, image, stage="lighting")
    assert isinstance(a, str) and a == b  # seeded sampling: the same plan twice
    inputs = p.loaded.processor(text=[qwen.chatml(MESSAGES)], images=[image], return_tensors="pt")
    assert int((inputs["input_ids"] == p.loaded.model.config.image_token_id).sum()) <= 16  # the pixel budget


def test_load_4bit(tiny, proxy):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    p = qwen.QwenPlanner(str(tiny), quant="4bit", device="cpu")
    lm = p.loaded.model.model.language_model
    assert isinstance(lm.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert lm.layers[0].self_attn.q_proj.weight.quant_state.quant_type == "nf4"
    assert type(p.loaded.model.model.visual.blocks[0].attn.qkv) is torch.nn.Linear  # vision kept full precision
    assert isinstance(p.chat(MESSAGES, pr.proxy_to_pil(proxy)), str)


def test_full_plan_records_failed_stages_in_a_valid_sidecar(tiny, tmp_path):
    from PIL import Image

    from monet_cli.plan import load_plan, save_plan, sidecar_path
    from monet_cli.planners.base import get_planner, plan_photo

    photo = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(photo, quality=90)
    planner = get_planner("qwen", model=str(tiny), adapter=None, quant=None, endpoint=None)
    plan = plan_photo(photo, planner, style="retro", instructions="warmer")
    for s in STAGES:
        sp = plan.stages[s]
        assert sp.status in ("failed", "no_change", "ok")
        if sp.status == "failed":
            assert sp.error and sp.raw and "--- analysis ---" in sp.raw
    assert any(plan.stages[s].status == "failed" for s in STAGES)  # noise rarely parses
    assert plan.planner.backend == "qwen" and plan.planner.model == str(tiny) and plan.source.name == "photo.jpg"
    back = load_plan(save_plan(plan, sidecar_path(photo)))
    assert back.to_dict()["stages"] == plan.to_dict()["stages"]


def test_model_is_loaded_once_per_process(tiny):
    from monet_cli.planners.base import get_planner

    a = get_planner("qwen", model=str(tiny), quant="none")
    b = get_planner("qwen", model=str(tiny) + "/", quant="none", concurrency=2)
    assert a is not b and a.loaded is b.loaded


def test_peft_dora_adapter(tiny, tmp_path, proxy):
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], use_dora=True, init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(tmp_path / "adapter")

    plain = qwen.QwenPlanner(str(tiny))
    tuned = qwen.QwenPlanner(str(tiny), adapter=str(tmp_path / "adapter"))
    assert tuned.adapter == str(tmp_path / "adapter") and tuned.loaded is not plain.loaded
    inputs = plain.loaded.processor(text=[qwen.chatml(MESSAGES)], images=[pr.proxy_to_pil(proxy)], return_tensors="pt")
    with torch.inference_mode():
        la = plain.loaded.model(**inputs).logits
        lb = tuned.loaded.model(**inputs).logits
    assert not torch.allclose(la, lb)  # the adapter changes the model
    sp = tuned.plan_stage("lighting", proxy, style="balanced", instructions=None, previous={})
    assert sp.status in ("failed", "no_change", "ok")

    if importlib.util.find_spec("bitsandbytes"):  # QLoRA-style: the adapter on a 4-bit base
        q = qwen.QwenPlanner(str(tiny), adapter=str(tmp_path / "adapter"), quant="4bit")
        assert type(q.loaded.model).__name__ == "PeftModel"
        assert isinstance(q.chat(MESSAGES, pr.proxy_to_pil(proxy)), str)

    from monet_cli.errors import MonetError

    with pytest.raises(MonetError, match="not a peft adapter"):
        qwen.QwenPlanner(str(tiny), adapter=str(tmp_path))


def test_qwen25_tiny_builds_loads_and_generates(tmp_path, proxy):
    folder = build_tiny(tmp_path / "tiny25", architecture="qwen2.5-vl")
    p = qwen.QwenPlanner(str(folder))
    assert p.resolved.architecture == "qwen2.5-vl"
    assert type(p.loaded.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert isinstance(p.chat(MESSAGES, pr.proxy_to_pil(proxy)), str)


def test_build_refuses_a_non_empty_folder(tiny):
    from monet_cli.errors import OutputError

    with pytest.raises(OutputError, match="not empty"):
        build_tiny(tiny)


def test_cli_models_tiny_and_doctor_smoke(tmp_path, monkeypatch, capsys):
    from monet_cli.cli import main

    monkeypatch.setenv("MONET_HOME", str(tmp_path / "home"))
    with pytest.raises(SystemExit) as e:
        main(["models", "tiny", "--json"])
    assert e.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(tmp_path / "home" / "models" / "tiny-qwen2-vl")
    from monet_cli.models import resolve_model

    assert resolve_model("tiny").name == "tiny"
    with pytest.raises(SystemExit) as e:
        main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert e.value.code == 0, report
    assert report["smoke"]["ok"] and set(report["smoke"]["stages"]) == set(STAGES)
    assert [p for p in report["presets"] if p["name"] == "tiny"][0]["present"]


def test_generate_many_pads_on_the_left_and_matches_single_answers(tiny, proxy):
    p = qwen.QwenPlanner(str(tiny), device="cpu")
    image = pr.proxy_to_pil(proxy)
    longer = MESSAGES + [{"role": "assistant", "content": "Dark."}, {"role": "user", "content": "Which values?"}]
    kw = dict(max_new_tokens=8, temperature=0, min_pixels=p.resolved.min_pixels, max_pixels=p.resolved.max_pixels)
    batch = qwen.generate_many(p.loaded, [MESSAGES, longer], image, **kw)
    assert batch == [qwen.generate(p.loaded, MESSAGES, image, **kw), qwen.generate(p.loaded, longer, image, **kw)]
    assert qwen.generate_many(p.loaded, [], image, **kw) == []


def test_samples_give_a_repeatable_consensus_plan(tiny, proxy, monkeypatch):
    from monet_cli.errors import UsageError
    from monet_cli.planners.base import get_planner

    p = get_planner("qwen", model=str(tiny), samples=3)
    assert p.samples == 3 and qwen.QwenPlanner(str(tiny)).samples == 1  # the tiny preset: one plan
    sizes = []
    real = qwen.generate_many
    monkeypatch.setattr(qwen, "generate_many", lambda loaded, convs, *a, **k: sizes.append(len(convs)) or
                        real(loaded, convs, *a, **k))
    a = p.plan_stage("lighting", proxy)
    b = p.plan_stage("lighting", proxy)
    assert sizes[0] == 3 and a.to_dict() == b.to_dict()  # three samples per batch; seeded: the same plan twice
    from monet_cli.plan import Plan
    from monet_cli.planners.base import plan_proxy

    d = plan_proxy(proxy, p).to_dict()
    assert d["planner"]["samples"] == 3 and Plan.from_dict(d).planner.samples == 3  # recorded, read back
    assert "samples" not in plan_proxy(proxy, get_planner("auto")).to_dict()["planner"]
    for bad in (0, 65, 2.5, True):
        with pytest.raises(UsageError, match="--samples"):
            get_planner("qwen", model=str(tiny), samples=bad)
    assert d["planner"]["consensus"] == "mean"  # the tiny preset's
    with pytest.raises(UsageError, match="--consensus must be mean or medoid"):
        get_planner("qwen", model=str(tiny), samples=3, consensus="median")


def test_medoid_consensus_plans_one_of_the_sampled_plans(tiny, proxy, monkeypatch):
    from monet_cli.planners import protocol as pr
    from monet_cli.planners.base import get_planner, plan_proxy

    p = get_planner("qwen", model=str(tiny), samples=3, consensus="medoid")
    seen = []
    real = pr.run_stages
    monkeypatch.setattr(qwen, "run_stages", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    a = p.plan_stage("lighting", proxy)
    ok = [s for s in seen[0] if s.status != "failed"]
    assert len(seen[0]) == 3 and (any(a is s for s in ok) if ok else a.status == "failed")
    assert p.plan_stage("lighting", proxy).to_dict() == a.to_dict()  # seeded: the same plan twice
    d = plan_proxy(proxy, p).to_dict()
    assert d["planner"]["consensus"] == "medoid" and d["planner"]["samples"] == 3
    one = plan_proxy(proxy, get_planner("qwen", model=str(tiny))).to_dict()["planner"]
    assert one["samples"] == 1 and "consensus" not in one  # one greedy plan: no consensus to record
    assert not any("--consensus" in w for w in p.warnings)
    lone = get_planner("qwen", model=str(tiny), samples=1, consensus="medoid")
    assert any("--consensus medoid has no effect" in w for w in lone.warnings)  # told, not silently ignored


def test_sample_temperature_is_what_the_samples_are_drawn_at(tiny, proxy, monkeypatch):
    from monet_cli.errors import UsageError
    from monet_cli.plan import Plan
    from monet_cli.planners.base import get_planner, plan_proxy

    temps = []
    real = qwen.generate_many
    monkeypatch.setattr(qwen, "generate_many", lambda loaded, convs, *a, **k: temps.append(k["temperature"]) or
                        real(loaded, convs, *a, **k))
    p = get_planner("qwen", model=str(tiny), samples=2)
    assert p.sample_temperature == 1.0  # the tiny preset's default: the model's own distribution
    cool = get_planner("qwen", model=str(tiny), samples=2, sample_temperature=0.4)
    d = plan_proxy(proxy, cool).to_dict()
    assert temps and set(temps) == {0.4}  # every batch of every stage
    assert d["planner"]["sample_temperature"] == 0.4 and Plan.from_dict(d).planner.sample_temperature == 0.4
    one = plan_proxy(proxy, get_planner("qwen", model=str(tiny))).to_dict()["planner"]
    assert "sample_temperature" not in one  # one greedy plan: nothing was sampled
    for bad in (0, 0.0, -0.5, 3, True):
        with pytest.raises(UsageError, match="--sample-temperature"):
            get_planner("qwen", model=str(tiny), samples=2, sample_temperature=bad)
    lone = get_planner("qwen", model=str(tiny), samples=1, sample_temperature=0.5)
    assert any("--sample-temperature 0.5 has no effect" in w for w in lone.warnings)
    from monet_cli.planners.base import decoding_of  # plans and bench reports say how the model was decoded

    assert decoding_of(cool) == {"samples": 2, "consensus": "mean", "sample_temperature": 0.4}
    assert decoding_of(lone) == {"samples": 1} and decoding_of(get_planner("auto")) is None


def test_edit_stage_replans_with_the_recorded_samples(tiny, proxy, tmp_path, monkeypatch):
    """A plan made from N samples re-plans its later stages from N samples too (the
    sidecar's planner block, not the preset's default)."""
    from PIL import Image

    from monet_cli.planners.base import get_planner
    from monet_cli.sidecars import edit_stage, plan_to_sidecar, read_sidecar

    photo = tmp_path / "photo.png"
    Image.fromarray((np.clip(proxy, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)).save(photo)
    plan_to_sidecar(photo, get_planner("qwen", model=str(tiny), samples=2))
    assert read_sidecar(photo)[0].planner.samples == 2
    sizes = []
    real = qwen.generate_many
    monkeypatch.setattr(qwen, "generate_many", lambda loaded, convs, *a, **k: sizes.append(len(convs)) or
                        real(loaded, convs, *a, **k))
    out = edit_stage(photo, "lighting", set_values={"Exposure": 12.0})
    plan = read_sidecar(photo)[0]
    assert out.plan.stages["lighting"].adjustments == {"Exposure": 12.0} and plan.stages["lighting"].locked
    assert sizes and set(sizes) == {2}  # colour and HSL re-planned, two samples per batch
    assert plan.planner.samples == 2 and len(plan.history) == 1
    plan_to_sidecar(photo, get_planner("qwen", model=str(tiny), samples=2, consensus="medoid"), force=True)
    used = []
    monkeypatch.setattr(qwen, "medoid", lambda plans, proxy: used.append(len(plans)) or plans[0])
    edit_stage(photo, "color", set_values={"Tint": 5.0})
    assert used == [2] and read_sidecar(photo)[0].planner.consensus == "medoid"  # HSL re-planned by medoid
    plan_to_sidecar(photo, get_planner("qwen", model=str(tiny), samples=2, sample_temperature=0.3), force=True)
    temps = []
    monkeypatch.setattr(qwen, "generate_many", lambda loaded, convs, *a, **k: temps.append(k["temperature"]) or
                        real(loaded, convs, *a, **k))
    edit_stage(photo, "lighting", set_values={"Exposure": 5.0})
    assert temps and set(temps) == {0.3} and read_sidecar(photo)[0].planner.sample_temperature == 0.3


def test_sampled_plans_go_through_the_value_map(tiny, proxy, monkeypatch):
    """With --value-map and --samples: the mean of the model's own values is mapped (both kept),
    and the medoid is chosen among the mapped plans (it renders what would be rendered)."""
    from monet_cli.models import presets
    from monet_cli.planners.base import get_planner

    vm = presets()["monetgpt-7b"].value_map
    said = iter([40, 20] * 4)

    def scripted(loaded, convs, image, **kw):
        out = []
        for c in convs:
            lighting = "[Exposure," in c[1]["content"]
            if len(c) == 2:
                out.append("**Adjustment:** Exposure\n**Issue:** Dark.\n**Solution:** Brighten." if lighting
                           else "No further adjustments are needed.")
            else:
                out.append('```json\n{"Exposure": %d}\n```' % next(said))
        return out

    monkeypatch.setattr(qwen, "generate_many", scripted)
    mean = get_planner("qwen", model=str(tiny), samples=2, value_map="monetgpt-7b")
    sp = mean.plan_stage("lighting", proxy, style="balanced", instructions=None, previous={})
    assert sp.model_adjustments == {"Exposure": 30} and sp.adjustments == vm.map_values({"Exposure": 30})
    medoid = get_planner("qwen", model=str(tiny), samples=2, consensus="medoid", value_map="monetgpt-7b")
    sp = medoid.plan_stage("lighting", proxy, style="balanced", instructions=None, previous={})
    assert sp.model_adjustments in ({"Exposure": 40}, {"Exposure": 20})
    assert sp.adjustments == vm.map_values(sp.model_adjustments)
    plain = get_planner("qwen", model=str(tiny), samples=2)  # the tiny preset has no map
    sp = plain.plan_stage("lighting", proxy, style="balanced", instructions=None, previous={})
    assert sp.model_adjustments is None and sp.adjustments == {"Exposure": 30}
