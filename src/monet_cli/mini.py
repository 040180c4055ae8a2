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
  token per word and the embedding table stays small. It splits text as Qwen2's tokenizer
  does: each digit is a token, and so is the space before a number, so the sign of a value is
  one two-way choice (``" "`` or ``" -"``). (GPT-2's split, used before, made ``" 30"`` one
  token and ``" -63"`` two: a greedy decoder unsure of a sign then always wrote ``-``, since one
  ``" -"`` token outweighs each of a hundred positive-number tokens.)
* Training is ``monet train`` with the ``mini`` training preset (``models/train/mini.yaml``):
  ``adapter.method: full`` (every weight, no adapter: a random model has no base worth
  adapting) within a wall-clock budget (``train.max_minutes``), the learning rate following a
  cosine over the *time* budget (warm-up by steps).

Nothing here imports torch at module level.
"""

from __future__ import annotations

import json
from pathlib import Path

from monet_cli.tiny import CHAT_TEMPLATE, MARKER, SPECIAL_TOKENS

PRESET = "mini"


def settings() -> dict:
    """The ``mini:`` section of ``models/mini.yaml`` (architecture, tokenizer)."""
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


# The pre-tokenizer pattern of Qwen2's tokenizer (tokenizer.json of Qwen/Qwen2-VL-*).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizer(vocab_size: int):
    """A byte-level BPE tokenizer with Qwen's special tokens, as a transformers fast tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own split: every digit a token of its own, and a space before a number a token
    # of its own. So a value's sign is one binary choice (" " or " -") and its digits follow;
    # with GPT-2's split (" 30" one token, " -" then "63") a greedy decoder that is unsure of
    # the sign always writes "-": one " -" token against a hundred positive-number tokens.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
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
        f"parameters and random weights. Train it with `monet train PUZZLES --config mini --model {folder} "
        f"--out RUN`.\n",
        encoding="utf-8")
    return folder
