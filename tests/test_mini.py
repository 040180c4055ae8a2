"""monet-mini (monet_cli.mini): `monet models init mini` builds a Qwen2-VL of a few million
parameters with its own tokenizer that loads through the qwen backend, and a few steps of
`monet train --config mini` (every weight, no adapter) on a hand-written puzzle record run on
the CPU and save a model that plans. Skipped cleanly without torch/transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from typer.testing import CliRunner  # noqa: E402

from monet_cli.cli import app  # noqa: E402
from monet_cli.planners import qwen  # noqa: E402


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mini") / "init"
    r = CliRunner().invoke(app, ["models", "init", "mini", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    return folder, json.loads(r.output)


@pytest.fixture(scope="module")
def proxy():
    rng = np.random.default_rng(1)
    img = np.repeat(np.linspace(0.02, 0.8, 96, dtype=np.float32)[None, :, None], 64, 0).repeat(3, 2)
    return (img * rng.uniform(0.8, 1.2, (64, 96, 3))).astype(np.float32)


def test_init_builds_a_small_qwen2_vl_with_its_own_tokenizer(mini):
    folder, info = mini
    assert 2_000_000 <= info["parameters"] <= 20_000_000
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "qwen2_vl"
    assert json.loads((folder / "monet.json").read_text())["preset"] == "mini"
    from monet_cli.models import missing_files, resolve_model
    from monet_cli.planners.protocol import analysis_prompt, load_prompts

    assert missing_files(folder) == [] and resolve_model(str(folder)).preset.name == "mini"
    tok = qwen.make_processor(folder).tokenizer
    assert len(tok) <= 4200
    prompt = analysis_prompt("lighting", prompts=load_prompts("monetgpt"))
    assert len(tok(prompt)["input_ids"]) < 2 * len(prompt.split())  # a word or punctuation mark per token
    assert tok.decode(tok('{"Exposure": -15}')["input_ids"]) == '{"Exposure": -15}'
    # Qwen2's split: a value's sign is one two-way choice, then one token per digit
    pieces = [tok.convert_ids_to_tokens(tok(f'"Exposure": {v}')["input_ids"]) for v in (30, -63, 7)]
    assert pieces[0][-3:] == ["Ġ", "3", "0"] and pieces[1][-3:] == ["Ġ-", "6", "3"] and pieces[2][-2:] == ["Ġ", "7"]


def test_init_refuses_a_non_empty_folder_and_other_presets(mini, tmp_path):
    r = CliRunner().invoke(app, ["models", "init", "mini", str(mini[0])])
    assert r.exit_code != 0 and "not empty" in str(r.exception)
    r = CliRunner().invoke(app, ["models", "init", "tiny", str(tmp_path / "x")])
    assert r.exit_code != 0 and "only the mini preset" in str(r.exception) and not (tmp_path / "x").exists()


def test_untrained_mini_loads_and_plans_through_the_qwen_backend(mini, proxy):
    p = qwen.QwenPlanner(str(mini[0]), device="cpu", max_new_tokens=8)
    assert (p.quant, p.dtype, p.temperature) == ("none", "float32", 0.0)  # the mini preset, via monet.json
    sp = p.plan_stage("lighting", proxy)
    assert sp.status in ("failed", "no_change", "ok")  # random weights: any outcome, never a crash


def _puzzle_record(folder, proxy):
    from PIL import Image

    from monet_cli.planners.protocol import analysis_prompt, load_prompts, values_prompt

    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(proxy, 0, 1) * 255).astype(np.uint8)).save(folder / "p.png")
    pset = load_prompts("monetgpt")
    answer = 'These values carry out the plan above:\n```json\n{\n  "Exposure": 20\n}\n```'
    rec = {"messages": [{"role": "system", "content": pset.system},
                        {"role": "user", "content": "<image>" + analysis_prompt("lighting", prompts=pset)},
                        {"role": "assistant", "content": "Adjustment: Raise the exposure slightly.\nIssue: dark.\n"
                                                         "Solution: brighter."},
                        {"role": "user", "content": values_prompt("lighting", prompts=pset)},
                        {"role": "assistant", "content": answer}],
           "images": ["p.png"]}
    (folder / "train.jsonl").write_text(json.dumps(rec) + "\n")
    return folder


def test_monet_train_trains_every_weight_of_the_mini_preset(mini, tmp_path, proxy, monkeypatch):
    import shutil

    import yaml

    data = _puzzle_record(tmp_path / "data", proxy)
    home = tmp_path / "home"  # `model.name: mini` is the preset's folder under $MONET_HOME/models
    shutil.copytree(mini[0], home / "models" / "mini-qwen2-vl")
    monkeypatch.setenv("MONET_HOME", str(home))
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(data), "--config", "mini", "--out", str(run), "--set",
                                 "train.max_steps=3", "--set", "train.grad_accum=1", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.splitlines()[-1])
    assert (res["status"], res["step"], res["model_dir"]) == ("complete", 3, str(run))
    resolved = yaml.safe_load((run / "config.yaml").read_text())["resolved"]
    assert resolved["model"]["preset"] == "mini" and resolved["method"] == "full"
    assert resolved["model"]["path"] == str(home / "models" / "mini-qwen2-vl")
    m = res["metrics"]
    assert np.isfinite(m["train_loss_first"]) and np.isfinite(m["train_loss_last"])
    assert m["trainable_parameters"] == mini[1]["parameters"]  # every weight, no adapter
    before, after = _weights(mini[0]), _weights(run)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("visual" in k for k in changed) and any("layers" in k for k in changed)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    marker = json.loads((run / "monet.json").read_text())
    assert marker["preset"] == "mini" and marker["trained"] is True
    p = qwen.QwenPlanner(str(run), device="cpu", max_new_tokens=8)
    assert p.resolved.preset.name == "mini" and p.temperature == 0.0  # the mini preset's settings
    p.plan_stage("lighting", proxy)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
