"""Model presets, resolving --model (preset, folder, hub id in the local HF cache), the
missing-weights message, the default backend, backend options, and the `models`/`doctor`
commands' light paths. No torch needed, and none of this may import it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monet_cli import models as mm
from monet_cli.errors import MonetError, UsageError
from monet_cli.planners.base import get_planner

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MONET_HOME", str(tmp_path / "monet"))
    return cache


def fake_checkpoint(folder: Path, *, model_type="qwen2_vl", shards=("model-00001-of-00002.safetensors",
                                                                    "model-00002-of-00002.safetensors"),
                    present=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
    (folder / "tokenizer.json").write_text("{}")
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {f"w{i}": s for i, s in enumerate(shards)}}))
    for s in (shards if present is None else present):
        (folder / s).write_bytes(b"x")
    return folder


def cached(cache: Path, hub_id: str, **kw) -> Path:
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("a" * 40)
    return fake_checkpoint(repo / "snapshots" / ("a" * 40), **kw)


# ----------------------------------------------------------------------------- presets


def test_presets_are_complete_data():
    ps = mm.presets()
    assert list(ps)[0] == "monetgpt-7b"
    assert {"monetgpt-7b", "qwen2.5-vl-7b", "qwen2.5-vl-3b", "qwen2-vl-2b", "tiny"} <= set(ps)
    assert ps["monetgpt-7b"].hub_id == "niladridutt/monetGPT" and ps["monetgpt-7b"].architecture == "qwen2-vl"
    assert ps["monetgpt-7b"].max_pixels == 512 * 512
    for p in ps.values():
        assert p.quant in mm.QUANTS and set(p.gpu_memory_gb) == set(mm.QUANTS)
        assert p.gpu_memory_gb["4bit"] <= p.gpu_memory_gb["8bit"] <= p.gpu_memory_gb["none"]
        assert p.min_pixels < p.max_pixels and p.temperature == (0.0 if p.name == "mini" else 0.3)  # mini: greedy
        from monet_cli.planners.protocol import load_prompts

        load_prompts(p.prompts)
        assert bool(p.hub_id) != bool(p.local_dir)
        assert p.samples == (8 if p.name == "mini" else 1)  # mini plans from the mean of 8 sampled plans
    assert ps["monetgpt-7b"].gpu_memory_gb["4bit"] <= 8  # DESIGN.md target for 7B in 4-bit
    help_text = mm.memory_help()
    assert "monetgpt-7b: 7 / 10.5 / 17.5" in help_text and "tiny" not in help_text


def test_unknown_preset():
    with pytest.raises(UsageError, match="presets are monetgpt-7b"):
        mm.get_preset("gpt-5")


# ----------------------------------------------------------------------------- resolving


def test_preset_resolves_to_the_hf_cache_snapshot(hf_cache):
    snap = cached(hf_cache, "niladridutt/monetGPT")
    r = mm.resolve_model("monetgpt-7b")
    assert r.path == snap and r.name == "monetgpt-7b" and r.preset.name == "monetgpt-7b"
    assert r.max_pixels == 262144 and r.default_quant == "4bit" and r.prompts == "monetgpt"
    assert mm.resolve_model(None).name == "monetgpt-7b"


def test_missing_weights_name_the_files_and_the_command(hf_cache):
    with pytest.raises(mm.ModelNotFoundError) as e:
        mm.resolve_model("monetgpt-7b")
    msg = str(e.value)
    assert "config.json" in msg and "tokenizer.json" in msg and "model.safetensors" in msg
    assert "huggingface-cli download niladridutt/monetGPT" in msg and "16.6 GB" in msg and str(hf_cache) in msg


def test_a_partial_download_lists_exactly_the_missing_shards(hf_cache):
    cached(hf_cache, "Qwen/Qwen2.5-VL-7B-Instruct", model_type="qwen2_5_vl",
           present=["model-00001-of-00002.safetensors"])
    with pytest.raises(mm.ModelNotFoundError) as e:
        mm.resolve_model("qwen2.5-vl-7b")
    msg = str(e.value)
    assert "missing in" in msg and "model-00002-of-00002.safetensors;" in msg
    assert "model-00001" not in msg and "config.json" not in msg
    assert "huggingface-cli download Qwen/Qwen2.5-VL-7B-Instruct" in msg


def test_dangling_cache_symlinks_count_as_missing(tmp_path):
    folder = fake_checkpoint(tmp_path / "m", shards=("model.safetensors",))
    (folder / "model.safetensors.index.json").unlink()
    (folder / "model.safetensors").unlink()
    os.symlink(tmp_path / "blobs" / "nothing", folder / "model.safetensors")
    assert mm.missing_files(folder) == ["model.safetensors (or model.safetensors.index.json and its shards)"]


def test_local_folder_and_hub_id(hf_cache, tmp_path):
    folder = fake_checkpoint(tmp_path / "my-model", model_type="qwen2_5_vl")
    r = mm.resolve_model(str(folder))
    assert r.path == folder and r.architecture == "qwen2.5-vl" and r.preset is None and r.name == str(folder)
    cached(hf_cache, "someone/finetune")
    r = mm.resolve_model("someone/finetune")
    assert r.hub_id == "someone/finetune" and r.architecture == "qwen2-vl"
    with pytest.raises(mm.ModelNotFoundError, match="huggingface-cli download someone/other"):
        mm.resolve_model("someone/other")


def test_folder_problems(tmp_path):
    folder = fake_checkpoint(tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(mm.ModelNotFoundError, match="missing: tokenizer.json"):
        mm.resolve_model(str(folder))
    (folder / "vocab.json").write_text("{}")
    (folder / "merges.txt").write_text("#")
    assert mm.resolve_model(str(folder)).path == folder
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UsageError, match="model_type 'llama' is not supported"):
        mm.resolve_model(str(folder))
    with pytest.raises(mm.ModelNotFoundError, match="no such model folder"):
        mm.resolve_model(str(tmp_path / "nope" / "x"))
    with pytest.raises(UsageError, match="not a preset"):
        mm.resolve_model("not-a-thing")


def test_tiny_preset_and_folder_marker(hf_cache, tmp_path):
    with pytest.raises(mm.ModelNotFoundError, match="build it with `monet models tiny`"):
        mm.resolve_model("tiny")
    home_tiny = fake_checkpoint(tmp_path / "monet" / "models" / "tiny-qwen2-vl", shards=("model.safetensors",))
    assert mm.resolve_model("tiny").path == home_tiny
    folder = fake_checkpoint(tmp_path / "elsewhere", shards=("model.safetensors",))
    (folder / "monet.json").write_text('{"preset": "tiny"}')
    r = mm.resolve_model(str(folder))
    assert r.preset.name == "tiny" and r.max_pixels == 16 * 28 * 28


def test_preset_status(hf_cache):
    cached(hf_cache, "Qwen/Qwen2-VL-2B-Instruct")
    rows = {r["name"]: r for r in mm.preset_status()}
    assert rows["qwen2-vl-2b"]["present"] and not rows["qwen2-vl-2b"]["missing"]
    assert not rows["monetgpt-7b"]["present"] and "config.json" in rows["monetgpt-7b"]["missing"]


# ----------------------------------------------------------------------------- backends


def test_default_backend_without_weights_is_auto(hf_cache):
    backend, why = mm.default_backend()
    assert backend == "auto" and "monetgpt-7b" in why and why.count("\n") == 0


def test_default_backend_with_weights_but_no_cuda(hf_cache, monkeypatch):
    cached(hf_cache, "niladridutt/monetGPT")
    monkeypatch.setattr(mm, "cuda_available", lambda: False)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    assert mm.default_backend() == ("auto", "planning with auto: monetgpt-7b weights are here but there is no "
                                            "CUDA GPU (--backend qwen runs it on the CPU, slowly)")
    monkeypatch.setattr(mm, "cuda_available", lambda: True)
    assert mm.default_backend()[0] == "qwen"


def test_backend_options_are_checked(hf_cache):
    with pytest.raises(UsageError, match="--endpoint is for --backend openai"):
        get_planner("qwen", model="tiny", endpoint="http://x")
    with pytest.raises(UsageError, match="--quant is for --backend qwen"):
        get_planner("openai", model="m", quant="4bit", endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="no option --warp"):
        get_planner("qwen", warp=9)
    with pytest.raises(UsageError, match="no option --samples"):
        get_planner("auto", samples=8)
    with pytest.raises(UsageError, match="no option --sample-temperature"):
        get_planner("auto", sample_temperature=0.5)
    with pytest.raises(UsageError, match="--samples is for --backend qwen"):
        get_planner("openai", model="m", samples=8, endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="--consensus is for --backend qwen"):
        get_planner("openai", model="m", consensus="medoid", endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(UsageError, match="--sample-temperature is for --backend qwen"):
        get_planner("openai", model="m", sample_temperature=0.5, endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(mm.ModelNotFoundError):
        get_planner("qwen", model="monetgpt-7b", quant=None, adapter=None, endpoint=None)
    with pytest.raises(UsageError, match="unknown backend"):
        get_planner("gemini")


def test_light_modules_do_not_import_torch():
    code = ("import sys\n"
            "import monet_cli.cli, monet_cli.models, monet_cli.doctor, monet_cli.tiny\n"
            "import monet_cli.planners.qwen, monet_cli.planners.openai, monet_cli.planners.protocol\n"
            "import monet_cli.commands.models\n"
            "from monet_cli.models import default_backend; default_backend()\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_CACHE": "/nonexistent", "MONET_HOME": "/nonexistent"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_models_list_json_and_help(hf_cache, capsys):
    from monet_cli.cli import main

    with pytest.raises(SystemExit) as e:
        main(["models", "list", "--json"])
    assert e.value.code == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "monetgpt-7b" and rows[0]["present"] is False and rows[0]["missing"]
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert "models" in out and "doctor" in out


def test_doctor_without_smoke_reports_the_machine(hf_cache, capsys):
    from monet_cli.cli import main

    with pytest.raises(SystemExit) as e:
        main(["doctor", "--no-smoke", "--json"])
    assert e.value.code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["python"] == sys.version.split()[0] and "torch" in r["packages"] and "gpu" in r
    assert [p["name"] for p in r["presets"]][0] == "monetgpt-7b" and "smoke" not in r


def test_preset_generation_consensus_is_checked(tmp_path):
    raw = {"name": "x", "description": "", "architecture": "qwen2-vl", "hub_id": "a/b", "generation": {}}
    assert mm._preset_from(raw, tmp_path / "x.yaml").consensus == "mean"
    raw["generation"]["consensus"] = "medoid"
    assert mm._preset_from(raw, tmp_path / "x.yaml").consensus == "medoid"
    raw["generation"]["consensus"] = "vote"
    with pytest.raises(MonetError, match="generation.consensus"):
        mm._preset_from(raw, tmp_path / "x.yaml")


def test_preset_generation_sample_temperature_is_checked(tmp_path):
    raw = {"name": "x", "description": "", "architecture": "qwen2-vl", "hub_id": "a/b", "generation": {}}
    assert mm._preset_from(raw, tmp_path / "x.yaml").sample_temperature == 1.0
    raw["generation"]["sample_temperature"] = 0.5
    assert mm._preset_from(raw, tmp_path / "x.yaml").sample_temperature == 0.5
    for bad in (0, -1, 2.5, "0.5", True, None):
        raw["generation"]["sample_temperature"] = bad
        with pytest.raises(MonetError, match="generation.sample_temperature"):
            mm._preset_from(raw, tmp_path / "x.yaml")


def test_preset_generation_samples_are_checked(tmp_path):
    raw = {"name": "x", "description": "", "architecture": "qwen2-vl", "hub_id": "a/b", "generation": {"samples": 4}}
    assert mm._preset_from(raw, tmp_path / "x.yaml").samples == 4
    for bad in (0, 65, "8", 2.0):
        raw["generation"]["samples"] = bad
        with pytest.raises(MonetError, match="generation.samples"):
            mm._preset_from(raw, tmp_path / "x.yaml")
