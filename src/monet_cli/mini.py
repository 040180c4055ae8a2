"""monet-mini: a small Qwen2-VL built from a config and trained from scratch on a CPU.

The paper's method (puzzles → fine-tune a Qwen2-VL → plan) at a scale a 2-core machine runs.
The architecture and training settings are data: the ``mini:`` section of ``models/mini.yaml``.

* :func:`build_mini` writes a complete transformers checkpoint (``config.json``,
  ``model.safetensors``, ``tokenizer.json``, ``preprocessor_config.json``) with random seeded
  weights and a ``monet.json`` marker naming the ``mini`` preset (pixel budget, greedy decoding,
  token budgets), so ``monet plan --backend qwen --model DIR`` loads it like any checkpoint.
* Its tokenizer is a byte-level BPE (any text encodes) trained with ``tokenizers`` on monet's
  own text — the planner prompt sets, the puzzle prompts and reasoning phrases, op names and
  meanings, numbers −100…+100 and answers in the planner's format — so a prompt costs about one
  token per word and the embedding table stays small.
* :func:`train_full` trains every weight (no adapter) on ``monet puzzles generate`` datasets
  within a wall-clock budget. It reuses ``monet train``'s data path (:mod:`monet_cli.train.data`:
  the same ChatML encoding, labels only on assistant turns, Qwen's image resize) and differs only
  in what it optimises: ``monet train`` trains peft adapters on a pretrained base, which a random
  model does not have. The learning rate follows a cosine over the *time* budget (warm-up by
  steps), so a run always ends with the schedule ended.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from monet_cli.tiny import CHAT_TEMPLATE, MARKER, SPECIAL_TOKENS

PRESET = "mini"


def settings() -> dict:
    """The ``mini:`` section of ``models/mini.yaml`` (architecture, tokenizer, training)."""
    import yaml

    from monet_cli.resources import data_dir

    raw = yaml.safe_load((data_dir("models") / "mini.yaml").read_text(encoding="utf-8"))
    return raw["mini"]


# ----------------------------------------------------------------------------- tokenizer


def tokenizer_corpus() -> list[str]:
    """Text the BPE learns from: every string in the prompt sets (``models/prompts/*.yaml``,
    ``models/puzzles/*.yaml``), the op catalogue, numbers and answers in the planner's format."""
    import yaml

    from monet_cli.catalog import catalog
    from monet_cli.resources import data_dir

    texts: list[str] = []

    def strings(node):
        if isinstance(node, str):
            texts.append(node)
        elif isinstance(node, dict):
            for k, v in node.items():
                strings(str(k))
                strings(v)
        elif isinstance(node, list):
            for v in node:
                strings(v)

    models = data_dir("models")
    for path in sorted([*(models / "prompts").glob("*.yaml"), *(models / "puzzles").glob("*.yaml")]):
        strings(yaml.safe_load(path.read_text(encoding="utf-8")))
    cat = catalog()
    for op in cat.ops.values():
        texts.append(f"**Adjustment:** {op.name}. Issue: {op.meaning} Solution: {op.scale}")
        for v in (-60, -35, -15, -5, 5, 15, 35, 60):
            texts.append('```json\n{\n  "' + op.name + f'": {v}\n' + "}\n```")
    texts.append(" ".join(str(v) for v in range(-100, 101)))
    texts.append(" ".join(f"{v}%" for v in range(101)) + " " + " ".join(f"{k}00 K" for k in range(20, 121)))
    texts.append("No further adjustments are needed. Adjustments follow.")
    return texts * 3


def build_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer with Qwen's special tokens, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=int(vocab_size), special_tokens=list(SPECIAL_TOKENS),
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(tokenizer_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ----------------------------------------------------------------------------- model


def mini_config(tokenizer, spec: dict | None = None):
    """The ``Qwen2VLConfig`` of monet-mini (``spec``: the ``mini:`` settings)."""
    from transformers import Qwen2VLConfig

    spec = spec or settings()
    t, v = dict(spec["text"]), dict(spec["vision"])
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIAL_TOKENS}
    mrope = t.pop("mrope_section")
    tie = bool(t.pop("tie_word_embeddings", True))
    text = dict(vocab_size=len(tokenizer), max_position_embeddings=4096, tie_word_embeddings=tie,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(mrope)},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                **t)
    vision = dict(depth=int(v["depth"]), embed_dim=int(v["embed_dim"]), hidden_size=t["hidden_size"],
                  num_heads=int(v["num_heads"]), mlp_ratio=int(v["mlp_ratio"]))
    return Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tie,
                         image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                         vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def _save_side_files(folder: Path, tokenizer, meta: dict) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    from monet_cli.models import get_preset

    p = get_preset(PRESET)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=p.min_pixels, max_pixels=p.max_pixels).save_pretrained(folder)
    (folder / MARKER).write_text(json.dumps({"preset": PRESET, "architecture": "qwen2-vl", **meta}) + "\n",
                                 encoding="utf-8")


def build_mini(folder, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Build and save monet-mini with random (seeded) weights in ``folder``; returns the folder.

    Offline, a few seconds. Refuses a non-empty folder unless ``overwrite``.
    """
    from monet_cli.tiny import model_folder, random_model

    folder = model_folder(folder, overwrite=overwrite, what="the model")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    spec = settings()
    tokenizer = build_tokenizer(spec["tokenizer"]["vocab_size"])
    config = mini_config(tokenizer, spec)
    model = random_model(config, tokenizer, seed)
    n = sum(p.numel() for p in model.parameters())
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _save_side_files(folder, tokenizer, {"seed": seed, "parameters": n, "trained": False})
    (folder / "README.md").write_text(
        f"# monet-mini (untrained)\n\nBuilt by `monet models init mini` (seed {seed}): a Qwen2-VL with {n:,} "
        f"parameters and random weights. Train it with benchmarks/mini.py (monet_cli.mini.train_full).\n",
        encoding="utf-8")
    return folder


# ----------------------------------------------------------------------------- full training


@dataclass
class FullRun:
    """What :func:`train_full` did."""

    out: Path
    steps: int
    records_seen: int
    epochs: float
    seconds: float
    loss_first: float
    loss_last: float
    records: int

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["out"] = str(self.out)
        return d


def _lr_factor(step: int, elapsed: float, budget: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    frac = min(1.0, elapsed / budget)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * frac))


def train_full(model_dir, datasets, out, *, minutes: float, seed: int = 0, max_steps: int = 0, threads: int | None = None,
               overrides: dict | None = None, on_step=None) -> FullRun:
    """Train every weight of the model in ``model_dir`` on ``datasets`` (JSONL files or folders,
    :mod:`monet_cli.train.data` format) for ``minutes`` of wall time (or ``max_steps`` optimizer
    steps, whichever ends first); save the trained checkpoint to ``out`` (a model folder that
    ``--model`` takes) with ``metrics.jsonl``. ``on_step(step, loss, elapsed)`` reports progress.

    Records are drawn in a seeded random order, epoch after epoch; AdamW with the ``mini.train``
    settings, loss = mean cross-entropy over the assistant tokens of a step's records.
    """
    import random

    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from monet_cli.errors import UsageError
    from monet_cli.planners.qwen import make_processor
    from monet_cli.train.data import Encoder, collate, read_datasets

    hf_logging.set_verbosity_error()
    hp = {**settings()["train"], **(overrides or {})}
    if threads:
        torch.set_num_threads(int(threads))
    model_dir, out = Path(model_dir), Path(out)
    records, _ = read_datasets([str(d) for d in datasets])
    if not records:
        raise UsageError("no training records")
    marker = json.loads((model_dir / MARKER).read_text(encoding="utf-8")) if (model_dir / MARKER).is_file() else {}
    from monet_cli.models import get_preset

    preset = get_preset(PRESET)
    processor = make_processor(model_dir)
    enc = Encoder(processor, min_pixels=preset.min_pixels, max_pixels=preset.max_pixels)
    keep = [r for r in records if enc.measure(r)[0] <= int(hp["max_length"])]
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=torch.float32, local_files_only=True)
    model.config.use_cache = False
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": float(hp["weight_decay"])},
                             {"params": no_decay, "weight_decay": 0.0}], lr=float(hp["lr"]), betas=(0.9, 0.98))
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    log = (out / "metrics.jsonl").open("w", encoding="utf-8")
    budget = max(1.0, float(minutes) * 60.0)
    accum = int(hp["grad_accum"])
    order: list[int] = []
    seen, step, first, last, ema = 0, 0, None, None, None
    t0 = time.perf_counter()
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget or (max_steps and step >= max_steps):
            break
        for g in opt.param_groups:
            g["lr"] = float(hp["lr"]) * _lr_factor(step, elapsed, budget, int(hp["warmup_steps"]),
                                                    float(hp["min_lr_ratio"]))
        items = []
        for _ in range(accum):
            if not order:
                order = list(range(len(keep)))
                rng.shuffle(order)
            items.append(enc.encode(keep[order.pop()]))
        n_label = sum(x["n_label"] for x in items)
        total = 0.0
        for x in items:  # one record per forward: no padding, images of any size
            b = collate([x], enc.pad_id)
            kwargs = {k: b[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values",
                                        "image_grid_thw") if k in b}
            logits = model(**kwargs).logits[0, :-1].float()
            labels = b["labels"][0, 1:]
            loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / max(n_label, 1)
            loss.backward()
            total += float(loss.detach())
        if hp.get("max_grad_norm"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), float(hp["max_grad_norm"]))
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        seen += len(items)
        first = total if first is None else first
        ema = total if ema is None else 0.95 * ema + 0.05 * total
        last = ema
        elapsed = time.perf_counter() - t0
        log.write(json.dumps({"step": step, "loss": round(total, 5), "lr": opt.param_groups[0]["lr"],
                              "records": seen, "seconds": round(elapsed, 1)}) + "\n")
        log.flush()
        if on_step:
            on_step(step, total, elapsed)
    log.close()
    seconds = time.perf_counter() - t0
    model.config.use_cache = True
    model.eval()
    model.save_pretrained(out)
    run = FullRun(out=out, steps=step, records_seen=seen, epochs=seen / max(len(keep), 1), seconds=round(seconds, 1),
                  loss_first=round(first or 0.0, 4), loss_last=round(last or 0.0, 4), records=len(keep))
    _save_side_files(out, processor.tokenizer, {"seed": marker.get("seed", 0), "trained": True,
                                                "base": str(model_dir), "train": run.to_dict(), "settings": hp,
                                                "datasets": [str(d) for d in datasets]})
    (out / "README.md").write_text(
        f"# monet-mini, trained from scratch\n\nFull training of {model_dir} on {', '.join(map(str, datasets))}: "
        f"{step} steps, {seen} records ({run.epochs:.2f} epochs of {len(keep)}), {seconds / 60:.1f} min, "
        f"loss {run.loss_first} → {run.loss_last} (smoothed).\n", encoding="utf-8")
    return run
