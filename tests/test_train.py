"""`monet train` on CPU with the tiny random Qwen2-VL and a tiny multi-image, multi-turn
ShareGPT dataset written at test time: configs and presets, dataset reading and hashes, label
masking, a few steps, memorisation, exact resume (Ctrl-C and train.stop_after), adapter
reload with the same logits, merge, planning with the run, 4-bit (QLoRA) steps, and the CLI's
errors; full training (adapter.method: full: the run folder is the model, exact resume, merge
refused) and the time budget (train.max_minutes). The config and data tests run without torch."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from monet_cli.errors import UsageError
from monet_cli.train import config as tc
from monet_cli.train import data as td

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are an image-editing assistant working like Lightroom."


def write_dataset(folder: Path, n: int = 4, *, sharegpt: bool = False, seed: int = 0) -> Path:
    """``n`` records, two small PNGs each, two user/assistant turns: like a puzzle set."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        names = []
        for k in range(2):
            name = f"images/{i:03d}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (40 + 8 * (i % 3), 56, 3), dtype=np.uint8)).save(folder / name)
            names.append(name)
        turns = [("system", SYSTEM), ("user", f"<image><image>Which edit turns the first into the second? ({i})"),
                 ("assistant", f"Exposure, about +{10 * (i + 1)}."), ("user", "Give the value as JSON."),
                 ("assistant", '```json\n{"Exposure": ' + str(10 * (i + 1)) + "}\n```")]
        if sharegpt:
            conv = [{"from": {"user": "human", "assistant": "gpt"}.get(r, r), "value": c} for r, c in turns]
            lines.append({"conversations": conv, "images": names})
        else:
            lines.append({"messages": [{"role": r, "content": c} for r, c in turns], "images": names})
    (folder / "data.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------- config (no torch)


def test_presets_are_complete_and_load():
    keys = {s: set(v) for s, v in tc.TrainConfig().to_dict().items() if isinstance(v, dict)}
    names = tc.preset_names()
    assert {"dora-paper", "lora", "qlora", "tiny-cpu", "mini"} <= set(names)
    for name in names:
        raw = yaml.safe_load((tc.presets_dir() / f"{name}.yaml").read_text())
        assert {s: set(v) for s, v in raw.items() if isinstance(v, dict)} == keys, name  # every key listed
        tc.validate(tc.load_config(name))
    paper = tc.load_config("dora-paper")
    assert paper.to_dict() == tc.TrainConfig().to_dict()  # the defaults are the paper's preset
    a = paper.adapter
    assert (a.method, a.rank, a.alpha, a.dropout) == ("dora", 256, 512, 0.2)
    assert (paper.optim.lr, paper.optim.scheduler, paper.train.epochs, paper.train.grad_accum) == (1e-4, "cosine", 1, 4)
    assert paper.adapter.language_model and not paper.adapter.vision
    assert tc.load_config("qlora").model.quant == "4bit" and tc.load_config("lora").adapter.method == "lora"
    mini = tc.load_config("mini")
    assert (mini.model.name, mini.adapter.method, mini.model.device, mini.model.dtype) == ("mini", "full", "cpu",
                                                                                             "float32")
    assert (mini.train.max_minutes, mini.optim.warmup_steps, mini.optim.betas) == (25, 20, [0.9, 0.98])


def test_build_config_overrides_and_yaml_round_trip(tmp_path):
    cfg = tc.build_config("lora", datasets=["a.jsonl"], model="tiny", out=tmp_path / "run",
                          sets=["optim.lr=3e-4", "adapter.modules_to_save=[embed_tokens,lm_head]", "train.seed=7",
                                "data.max_pixels=null", "model.gradient_checkpointing=false"])
    assert cfg.optim.lr == 3e-4 and cfg.adapter.modules_to_save == ["embed_tokens", "lm_head"]
    assert cfg.train.seed == 7 and cfg.data.max_pixels is None and cfg.model.name == "tiny"
    assert cfg.model.gradient_checkpointing is False and cfg.data.datasets == ["a.jsonl"]
    text = tc.to_yaml(cfg, {"steps": {"total": 3}})
    back = yaml.safe_load(text)
    assert back["resolved"] == {"steps": {"total": 3}}
    assert tc.from_dict(back, where="x").to_dict() == cfg.to_dict()
    custom = tmp_path / "my.yaml"
    custom.write_text("optim: {lr: 5.0e-5}\ntrain: {grad_accum: 16}\n")
    c2 = tc.build_config(str(custom))
    assert (c2.optim.lr, c2.train.grad_accum, c2.adapter.rank) == (5e-5, 16, 256)  # the rest: defaults


@pytest.mark.parametrize("sets, match", [
    (["optim.learning_rate=1"], "unknown config key 'optim.learning_rate'"),
    (["nosuch.key=1"], "unknown config key"),
    (["train.batch_size=two"], "train.batch_size must be int"),
    (["train.batch_size=0"], "train.batch_size must be ≥ 1"),
    (["adapter.method=ia3"], "adapter.method must be one of dora, lora"),
    (["optim.lr"], "expected key=value"),
    (["train.max_minutes=-1"], "train.max_minutes must be ≥ 0"),
    (["optim.warmup_steps=-1"], "optim.warmup_steps must be ≥ 0"),
    (["train.max_minutes=5", "optim.warmup_ratio=0.1"], "optim.warmup_ratio must be 0 with a time budget"),
])
def test_bad_settings_are_usage_errors(sets, match):
    with pytest.raises(UsageError, match=match):
        tc.build_config(None, sets=sets)


def test_full_training_settings():
    cfg = tc.build_config("tiny-cpu", sets=["adapter.method=full", "adapter.rank=0"])  # rank: ignored by full
    assert cfg.adapter.method == "full"
    with pytest.raises(UsageError) as e:  # 4-bit weights cannot be trained: one clear line
        tc.build_config("qlora", sets=["adapter.method=full"])
    msg = str(e.value)
    assert "\n" not in msg and "model.quant must be none with adapter.method=full" in msg and "4bit" in msg


def test_lr_schedule_on_steps_and_on_time():
    from monet_cli.train.recipe import lr_factor

    kw = {"total": 100, "warmup": 10, "kind": "cosine", "min_ratio": 0.1}
    assert lr_factor(0, **kw) == pytest.approx(1 / 11) and lr_factor(9, **kw) == pytest.approx(10 / 11)
    assert lr_factor(10, **kw) == pytest.approx(1.0) and lr_factor(100, **kw) == pytest.approx(0.1)
    # on a time budget the warm-up stays in steps; the decay follows the share of the time spent
    assert lr_factor(5, **kw, fraction=0.9) == pytest.approx(6 / 11)
    assert lr_factor(50, **kw, fraction=0.5) == pytest.approx(0.55) == lr_factor(90, **kw, fraction=0.5)
    assert lr_factor(11, **kw, fraction=2.0) == pytest.approx(0.1)
    assert lr_factor(20, total=100, warmup=0, kind="linear", min_ratio=0.0, fraction=0.25) == pytest.approx(0.75)


def test_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(UsageError, match="unknown training preset 'nope'"):
        tc.build_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 1e-4, momentum: 0.9}\n")
    with pytest.raises(UsageError, match="unknown config key 'optim.momentum'"):
        tc.build_config(str(bad))


# ----------------------------------------------------------------------------- data (no torch)


def test_read_dataset_both_styles_hashes_and_split(tmp_path):
    a = write_dataset(tmp_path / "a", 5)
    b = write_dataset(tmp_path / "b", 5, sharegpt=True)
    ra, ia = td.read_dataset(a)
    rb, ib = td.read_dataset(b / "data.jsonl")
    assert [r.messages for r in ra] == [r.messages for r in rb]  # both styles read the same
    assert ia.records == 5 and ia.images == 10 and ia.images_sha256 == ib.images_sha256
    assert ra[0].messages[0] == ("system", SYSTEM) and len(ra[0].images) == 2
    assert Path(ra[0].images[0]).is_absolute() and ra[0].where.endswith("data.jsonl:1")
    again = td.read_dataset(a)[1]
    assert again.sha256 == ia.sha256  # stable
    from PIL import Image

    Image.new("RGB", (8, 8)).save(a / "images" / "000_0.png")  # one image changes → the hash changes
    assert td.read_dataset(a)[1].images_sha256 != ia.images_sha256
    train, held = td.split_indices(50, 0.1, 3, seed=0)
    assert len(held) == 3 and sorted(train + held) == list(range(50))
    assert td.split_indices(50, 0.1, 3, seed=0) == (train, held)
    assert td.split_indices(5, 0.01, 10, seed=0)[1] != []  # at least one held out
    assert td.epoch_order(list(range(10)), 0, 1) == td.epoch_order(list(range(10)), 0, 1) != \
        td.epoch_order(list(range(10)), 0, 2)


def test_bad_records_name_file_and_line(tmp_path):
    base = tmp_path / "d"
    base.mkdir()
    (base / "x.png").write_bytes(b"")

    def check(obj, match):
        (base / "data.jsonl").write_text(json.dumps(obj) + "\n")
        with pytest.raises(td.DataError, match=match):
            td.read_dataset(base)

    user, bot = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}
    check({"messages": [user, bot], "images": ["x.png", "y.png"]}, r"data.jsonl:1: image not found: .*y.png")
    check({"messages": [{"role": "user", "content": "<image>"}, bot], "images": ["x.png", "x.png"]},
          r"1 <image> placeholder\(s\) for 2 image")
    check({"messages": [user, bot], "images": ["missing.png"]}, "image not found")
    check({"messages": [user]}, "last turn must be the assistant")
    check({"messages": [bot, user]}, "alternate")
    check({"messages": [{"role": "tool", "content": "x"}, bot]}, "role 'tool'")
    check({"nothing": 1}, "needs a non-empty 'messages'")
    (base / "data.jsonl").write_text("{not json\n")
    with pytest.raises(td.DataError, match="data.jsonl:1: not valid JSON"):
        td.read_dataset(base)
    with pytest.raises(td.DataError, match="no such dataset"):
        td.read_dataset(tmp_path / "nope")
    # images without placeholders go first in the first user turn (Qwen's convention)
    (base / "data.jsonl").write_text(json.dumps({"messages": [user, bot], "images": ["x.png"]}) + "\n")
    assert td.read_dataset(base)[0][0].messages[0] == ("user", "<image>hi")


def test_import_does_not_load_torch():
    code = ("import sys, monet_cli.cli, monet_cli.commands.train, monet_cli.train.config, monet_cli.train.data, "
            "monet_cli.train.card; bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


# ----------------------------------------------------------------------------- with the tiny model

torch_needed = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("torch", "transformers", "peft")),
    reason="needs torch, transformers and peft")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is too small to gain from threads; on a busy 2-core machine they only contend."""
    try:
        import torch
    except ImportError:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("torch")
    from monet_cli.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "tiny-qwen2-vl")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("puzzles") / "set", 6)


def config(tiny, dataset, out, *sets):
    return tc.build_config("tiny-cpu", datasets=[dataset], model=str(tiny), out=out, sets=list(sets))


@torch_needed
def test_labels_mask_everything_but_assistant_turns(tiny, dataset):
    from monet_cli.planners.qwen import make_processor

    records, _ = td.read_dataset(dataset)
    proc = make_processor(tiny)
    enc = td.Encoder(proc, min_pixels=3136, max_pixels=12544)
    rec = records[1]
    x = enc.encode(rec)
    ids, labels = x["input_ids"].tolist(), x["labels"].tolist()
    tok = proc.tokenizer
    # the learned spans are exactly the assistant answers, each with its <|im_end|>
    spans, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != td.IGNORE:
            assert lab == i
            cur.append(i)
        elif cur:
            spans.append(cur)
            cur = []
    answers = [c for r, c in rec.messages if r == "assistant"]
    assert [tok.decode(s) for s in spans] == [a + "<|im_end|>" for a in answers]
    # everything else (system, user turns, images, role headers) is masked
    n_pad = ids.count(enc.image_pad)
    assert n_pad == sum(int(t * h * w) // 4 for t, h, w in x["image_grid_thw"].tolist()) > 0
    assert x["mm_token_type_ids"].sum().item() == n_pad
    assert ids.count(enc.vision_start) == 2 and all(labels[k] == td.IGNORE for k, i in enumerate(ids)
                                                    if i in (enc.image_pad, enc.vision_start))
    text = tok.decode(ids)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|vision_start|>")
    assert enc.measure(rec) == (len(ids), x["n_label"])  # the size-only count agrees with the encoding
    batch = td.collate([enc.encode(records[0]), x], pad_id=enc.pad_id)
    assert batch["input_ids"].shape[0] == 2 and batch["image_grid_thw"].shape[0] == 4
    assert (batch["labels"][batch["attention_mask"] == 0] == td.IGNORE).all()


@torch_needed
def test_train_saves_adapter_config_card_and_reloads_with_same_logits(tiny, dataset, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from monet_cli.planners.qwen import make_processor
    from monet_cli.train.recipe import train

    run = tmp_path / "run"
    result = train(config(tiny, dataset, run, "train.max_steps=3"), quiet=True)
    assert result.status == "complete" and result.step == 3
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "README.md").is_file()
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["adapter"]["method"] == "dora" and saved["resolved"]["steps"]["total"] == 3
    ds = saved["resolved"]["datasets"][0]
    assert len(ds["sha256"]) == 64 and ds["records"] == 6 and ds["images"] == 12
    card = (run / "README.md").read_text()
    assert ds["sha256"] in card and "DoRA" in card and "library_name: peft" in card
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in log if "loss" in x] == [1, 2, 3] and any("eval_loss" in x for x in log)
    assert result.metrics["eval_loss_before"] is not None and result.metrics["eval_loss_after"] is not None

    records, _ = td.read_dataset(dataset)
    enc = td.Encoder(make_processor(tiny), min_pixels=3136, max_pixels=12544)
    batch = td.collate([enc.encode(records[0])], pad_id=enc.pad_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                    "mm_token_type_ids")}
    trained = result.model.eval()
    base = AutoModelForImageTextToText.from_pretrained(tiny)
    with torch.no_grad():
        expected = trained(**inputs).logits
        plain = base(**inputs).logits
        reloaded = PeftModel.from_pretrained(base, run / "adapter").eval()
        got = reloaded(**inputs).logits
    assert not torch.allclose(plain, expected, atol=1e-4)  # training changed the model
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    # merged full weights give the same logits and load as a plain model folder
    from monet_cli.models import resolve_model
    from monet_cli.train.merge import merge

    m = merge(run, tmp_path / "merged", dtype="float32")
    assert resolve_model(str(m.out)).preset.name == "tiny"  # monet.json and the tokenizer came along
    merged = AutoModelForImageTextToText.from_pretrained(m.out)
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-4, rtol=1e-4)
    assert not any("lora" in k for k in merged.state_dict())


@torch_needed
def test_memorisation_loss_falls_by_half(tiny, tmp_path):
    from monet_cli.train.recipe import train

    small = write_dataset(tmp_path / "small", 3, seed=3)
    r = train(config(tiny, small, tmp_path / "run", "data.eval_fraction=0", "train.epochs=6"), quiet=True)
    assert r.metrics["train_loss_last"] <= 0.5 * r.metrics["train_loss_first"], r.metrics


def _adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@torch_needed
def test_resume_after_ctrl_c_equals_an_uninterrupted_run(tiny, dataset, tmp_path):
    import torch

    from monet_cli.train.config import TrainInterrupted
    from monet_cli.train.recipe import resume_config, train

    sets = ("train.max_steps=4", "adapter.dropout=0.3")  # dropout: the RNG must be restored too
    straight = train(config(tiny, dataset, tmp_path / "straight", *sets), quiet=True)

    def ctrl_c(state):
        if state.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # like a user's Ctrl-C: finish the micro-batch, save, stop

    cut = tmp_path / "cut"
    with pytest.raises(TrainInterrupted, match="checkpoint of step 2") as e:
        train(config(tiny, dataset, cut, *sets), quiet=True, on_step=ctrl_c)
    assert e.value.exit_code == 130
    ck = cut / "checkpoints" / "step-000002"
    assert json.loads((ck / "state.json").read_text())["interrupted"] and (ck / "adapter_config.json").is_file()
    assert not (cut / "adapter").exists()
    cfg, _ = resume_config(cut)
    resumed = train(cfg, resume=True, quiet=True)
    assert resumed.status == "complete" and resumed.step == 4
    a, b = _adapter_tensors(straight.adapter), _adapter_tensors(resumed.adapter)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-6)
    assert resumed.metrics["train_loss_last"] == pytest.approx(straight.metrics["train_loss_last"], abs=1e-6)
    assert resumed.metrics["eval_loss_after"] == pytest.approx(straight.metrics["eval_loss_after"], abs=1e-6)
    steps = [json.loads(x)["step"] for x in (cut / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # no step logged twice
    # a finished run resumes to "already complete"
    assert train(resume_config(cut)[0], resume=True, quiet=True).status == "already-complete"


def run_cli(args, capsys):
    from monet_cli.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@torch_needed
def test_cli_pause_resume_plan_and_errors(tiny, dataset, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["train", dataset, "--model", tiny, "--config", "tiny-cpu", "--out", run]
    code, out, err = run_cli(base + ["--dry-run", "--set", "train.max_steps=4"], capsys)
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["train"]["max_steps"] == 4 and doc["resolved"]["steps"]["total"] == 4 and not run.exists()
    assert doc["resolved"]["records"] == {"total": 6, "train": 5, "eval": 1, "dropped_too_long": 0}

    code, out, err = run_cli(base + ["--set", "train.max_steps=4", "--set", "train.stop_after=2", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "paused" and (run / "checkpoints" / "step-000002").is_dir()
    # the run folder exists: neither --resume nor --force → a usage error
    code, _, err = run_cli(base, capsys)
    assert code == 2 and "run folder exists" in err
    code, _, err = run_cli(["train", "--resume", "--out", run, "--set", "optim.lr=1"], capsys)
    assert code == 2 and "cannot change in a resumed run" in err
    code, out, err = run_cli(["train", "run", "--resume", "--out", run, "--set", "train.stop_after=0", "--json"],
                             capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "complete" and json.loads(out)["step"] == 4

    # plan with the run: the base model comes from the run, the adapter from RUN/adapter
    from PIL import Image

    from monet_cli.plan import load_plan

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    code, out, err = run_cli(["plan", photo, "--backend", "qwen", "--adapter", run, "--json"], capsys)
    assert code in (0, 1), err  # the tiny model's noise makes failed stages (exit 1), still a sidecar
    plan = load_plan(json.loads(out.splitlines()[-1])["sidecar"])
    assert plan.planner.backend == "qwen" and plan.planner.adapter == str(run)
    assert plan.planner.model == str(tiny)

    code, out, err = run_cli(["train", "merge", run, "--out", tmp_path / "merged", "--dtype", "float32", "--json"],
                             capsys)
    assert code == 0, err
    assert (Path(json.loads(out)["out"]) / "model.safetensors").is_file()

    # --force starts over: the old run's files are replaced
    code, out, err = run_cli(base + ["--force", "--set", "train.max_steps=1", "--json"], capsys)
    assert code == 0 and json.loads(out)["step"] == 1 and not (run / "checkpoints").exists(), err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 1

    code, _, err = run_cli(["train", tmp_path / "nope", "--model", tiny, "--out", tmp_path / "r2"], capsys)
    assert code == 1 and "no such dataset" in err
    code, _, err = run_cli(["train", dataset, "--model", tiny, "--out", tmp_path / "r3", "--set", "optim.momentum=1"],
                           capsys)
    assert code == 2 and "unknown config key 'optim.momentum'" in err
    code, _, err = run_cli(["train", dataset, "--model", tiny], capsys)
    assert code == 2 and "--out" in err
    code, out, _ = run_cli(["train", "--help"], capsys)
    assert code == 0 and "merge" in out and "run" in out


@torch_needed
def test_qlora_steps_on_a_4bit_base(tiny, dataset, tmp_path):
    pytest.importorskip("bitsandbytes")
    from monet_cli.train.recipe import train

    r = train(config(tiny, dataset, tmp_path / "q", "model.quant=4bit", "adapter.method=lora",
                     "train.max_steps=2", "adapter.modules_to_save=[]"), quiet=True)
    assert r.status == "complete" and np.isfinite(r.metrics["train_loss_last"])
    q = r.model.get_base_model().model.language_model.layers[0].self_attn.q_proj
    assert type(q).__name__ == "Linear4bit" and type(q.base_layer).__name__ == "Linear4bit"


# ----------------------------------------------------------------------------- full training, time budget


def _model_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@torch_needed
def test_full_run_is_a_model_folder_resumes_exactly_and_plans(tiny, dataset, tmp_path, capsys):
    import torch
    from transformers import AutoModelForImageTextToText

    from monet_cli.models import resolve_model
    from monet_cli.planners.qwen import make_processor
    from monet_cli.train.recipe import train

    full = ("--set", "adapter.method=full", "--set", "optim.lr=1e-3", "--set", "train.max_steps=4")
    straight = train(config(tiny, dataset, tmp_path / "straight", *full[1::2]), quiet=True)
    assert straight.status == "complete" and straight.adapter is None and straight.model_dir == tmp_path / "straight"

    run = tmp_path / "run"
    base = ["train", dataset, "--model", tiny, "--config", "tiny-cpu", "--out", run, *full]
    code, out, err = run_cli(base + ["--set", "train.stop_after=2", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["status"] == "paused"
    ck = run / "checkpoints" / "step-000002"
    assert (ck / "model.safetensors").is_file() and (ck / "trainer.pt").is_file()
    assert not (run / "model.safetensors").exists() and not (run / "adapter").exists()
    code, out, err = run_cli(["train", "--resume", "--out", run, "--set", "train.stop_after=0", "--json"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert (res["status"], res["step"], res["adapter"], res["model_dir"]) == ("complete", 4, None, str(run))
    assert res["metrics"]["method"] == "full" and res["metrics"]["stopped_by"] == "steps"

    # every weight trained (vision encoder and language model), exactly as an uninterrupted run
    init, after, ref = _model_tensors(tiny), _model_tensors(run), _model_tensors(tmp_path / "straight")
    assert after.keys() == init.keys() == ref.keys()
    changed = [k for k in init if not torch.equal(init[k], after[k])]
    assert any("visual" in k for k in changed) and any("layers" in k for k in changed)
    for k in after:
        torch.testing.assert_close(after[k], ref[k], atol=1e-6, rtol=1e-6)
    assert res["metrics"]["train_loss_last"] == pytest.approx(straight.metrics["train_loss_last"], abs=1e-6)

    # RUN is a complete model folder: the tiny preset's settings, the same logits as the trained model
    resolved = resolve_model(str(run))
    assert resolved.preset.name == "tiny" and resolved.path == run
    assert json.loads((run / "monet.json").read_text())["trained"] is True
    card = (run / "README.md").read_text()
    assert "library_name: transformers" in card and f"--model {run}" in card and "merge" not in card
    records, _ = td.read_dataset(dataset)
    enc = td.Encoder(make_processor(run), min_pixels=3136, max_pixels=12544)
    batch = td.collate([enc.encode(records[0])], pad_id=enc.pad_id)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                    "mm_token_type_ids")}
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForImageTextToText.from_pretrained(run)(**inputs).logits,
                                   straight.model.eval()(**inputs).logits, atol=1e-5, rtol=1e-5)

    from PIL import Image

    from monet_cli.plan import load_plan

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo)
    code, out, err = run_cli(["plan", photo, "--backend", "qwen", "--model", run, "--json"], capsys)
    assert code in (0, 1), err  # noise answers fail stages (exit 1), still a sidecar
    assert load_plan(json.loads(out.splitlines()[-1])["sidecar"]).planner.model == str(run)

    # nothing to merge, no adapter to plan with: one clear line each, exit 2
    code, _, err = run_cli(["train", "merge", run, "--out", tmp_path / "merged"], capsys)
    assert code == 2 and "full training run" in err and "--model" in err and not (tmp_path / "merged").exists()
    code, _, err = run_cli(["plan", photo, "--backend", "qwen", "--adapter", run, "--force"], capsys)
    assert code == 2 and f"plan with --model {run}" in err
    code, out, err = run_cli(["train", "--resume", "--out", run, "--json"], capsys)
    assert code == 0 and json.loads(out)["status"] == "already-complete", err
    # --force starts over, the model files included; --out may not be the model being trained
    code, out, err = run_cli(base[:-2] + ["--set", "train.max_steps=1", "--force", "--json"], capsys)
    assert code == 0 and json.loads(out)["step"] == 1, err
    code, _, err = run_cli(["train", dataset, "--model", run, "--config", "tiny-cpu", "--out", run, "--force",
                            "--set", "adapter.method=full"], capsys)
    assert code == 2 and "--out is the model folder being trained" in err and (run / "model.safetensors").is_file()


@torch_needed
def test_full_training_memorises(tiny, tmp_path):
    from monet_cli.train.recipe import train

    small = write_dataset(tmp_path / "small", 3, seed=3)
    r = train(config(tiny, small, tmp_path / "run", "adapter.method=full", "data.eval_fraction=0", "train.epochs=10"),
              quiet=True)
    assert r.metrics["train_loss_last"] <= 0.5 * r.metrics["train_loss_first"], r.metrics


@torch_needed
def test_time_budget_stops_early_and_schedules_on_time(tiny, dataset, tmp_path):
    from monet_cli.train.recipe import lr_factor, train

    run = tmp_path / "run"
    r = train(config(tiny, dataset, run, "adapter.method=full", "train.epochs=1000", "train.max_minutes=0.005",
                     "optim.warmup_steps=1", "optim.lr=1e-3"), quiet=True)
    m = r.metrics
    assert r.status == "complete" and m["stopped_by"] == "max_minutes" and 1 <= r.step < r.total_steps
    assert m["seconds"] >= 0.3 and m["eval_loss_after"] is not None and (run / "model.safetensors").is_file()
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    assert log[0]["lr"] == pytest.approx(5e-4)  # warm-up: step 1 of 1
    for prev, cur in itertools.pairwise(log):  # then a cosine over the share of the budget spent, not over the steps
        share = prev["seconds"] / (0.005 * 60)  # when the previous step ended (logged to 0.01 s)
        want = 1e-3 * lr_factor(prev["step"], total=r.total_steps, warmup=1, kind="cosine", min_ratio=0.1,
                                fraction=share)
        assert cur["lr"] == pytest.approx(want, abs=1e-4)
    assert "time budget 0.005 min" in (run / "README.md").read_text()
