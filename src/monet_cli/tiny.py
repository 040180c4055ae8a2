"""A tiny random Qwen2-VL / Qwen2.5-VL, built offline in seconds, for tests and smoke tests.

Same architecture and file layout as the real checkpoints — ``config.json``,
``model.safetensors``, a byte-level BPE ``tokenizer.json`` with Qwen's special tokens,
``preprocessor_config.json`` — at toy size: hidden size 64, two language layers, a two-block
vision encoder of width 64 (every Linear has ≥ 64 inputs, which bitsandbytes' CPU 4-bit path
needs), about 0.3 M parameters. Weights are random (seeded), so its text is noise: it checks
loading (fp32, 4-bit, adapters), generation and the failure path of the planning protocol,
never planning quality.

The tokenizer is trained here with ``tokenizers`` on monet's own prompt vocabulary (op names,
the prompt set, JSON), so prompts encode to few tokens and the model runs fast.
"""

from __future__ import annotations

import json
from pathlib import Path

ARCHES = ("qwen2-vl", "qwen2.5-vl")
MARKER = "monet.json"  # names the preset whose settings a model folder uses
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
HIDDEN = 64
HEADS, KV_HEADS = 4, 2  # head_dim 16: mrope_section must sum to head_dim / 2 = 8
MROPE_SECTION = [2, 3, 3]
VOCAB = 1024
MIN_PIXELS, MAX_PIXELS = 56 * 56, 16 * 28 * 28  # at most 16 visual tokens
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus() -> list[str]:
    """Text the tokenizer learns from: monet's prompts, the catalogue and answers in the
    published MonetGPT's format."""
    import yaml

    from monet_cli.catalog import catalog
    from monet_cli.resources import data_dir

    cat = catalog()
    texts = []
    for path in sorted((data_dir("models") / "prompts").glob("*.yaml")):
        texts.append(json.dumps(yaml.safe_load(path.read_text(encoding="utf-8")), ensure_ascii=False))
    for op in cat.ops.values():
        texts.append(f"**Adjustment:** {op.name} Issue: {op.meaning} Solution: {op.scale}")
        texts.append('```json\n{\n  "' + op.name + '": -15,\n  "' + op.name + '": 25\n}\n```')
    texts.append("No further adjustments are needed. 0 1 2 3 4 5 6 7 8 9 10 12 15 20 25 30 40 50 -100 +100")
    return texts * 4


def build_tokenizer():
    """A byte-level BPE tokenizer (any text encodes) with Qwen's special tokens, as a
    transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=list(SPECIAL_TOKENS[1:]))
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(architecture: str, tokenizer):
    """The transformers config of the tiny model for ``architecture`` ("qwen2-vl" / "qwen2.5-vl")."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_hidden_layers=2,
                num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=4096,
                rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": MROPE_SECTION},
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if architecture == "qwen2-vl":
        from transformers import Qwen2VLConfig

        vision = dict(depth=2, embed_dim=HIDDEN, hidden_size=HIDDEN, num_heads=2, mlp_ratio=2)
        return Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
    if architecture == "qwen2.5-vl":
        from transformers import Qwen2_5_VLConfig

        vision = dict(depth=2, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN, num_heads=2, out_hidden_size=HIDDEN,
                      fullatt_block_indexes=[1], window_size=56)
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
    raise ValueError(f"unknown architecture {architecture!r}; choose {', '.join(ARCHES)}")


def model_folder(folder, *, overwrite: bool, what: str) -> Path:
    """``folder`` as a Path, checked as a place to write a model: a folder or nothing; a
    non-empty folder only with ``overwrite`` (OutputError otherwise)."""
    from monet_cli.errors import OutputError

    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a folder", path=folder)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError(f"folder is not empty (use --force to replace {what} in it)", path=folder)
    return folder


def random_model(config, tokenizer, seed: int):
    """A model of ``config`` with seeded random float32 weights (the global torch RNG is left as
    it was), generation ending at ``<|im_end|>`` / ``<|endoftext|>``."""
    import torch
    from transformers import AutoModelForImageTextToText

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    finally:
        torch.random.set_rng_state(state)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                            tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def build_tiny(folder, *, architecture: str = "qwen2-vl", seed: int = 0, overwrite: bool = False) -> Path:
    """Build and save the tiny random model in ``folder``; returns the folder.

    Offline, a few seconds on a CPU. Refuses to write into a non-empty folder unless
    ``overwrite`` (then only its own files are replaced).
    """
    from monet_cli.errors import UsageError

    if architecture not in ARCHES:
        raise UsageError(f"unknown architecture {architecture!r}; choose {', '.join(ARCHES)}")
    folder = model_folder(folder, overwrite=overwrite, what="the tiny model")
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tokenizer = build_tokenizer()
    config = tiny_config(architecture, tokenizer)
    model = random_model(config, tokenizer, seed)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS).save_pretrained(folder)
    # settings for monet (pixel budget, token budget, prompts): those of the `tiny` preset
    (folder / MARKER).write_text(json.dumps({"preset": "tiny", "architecture": architecture, "seed": seed}) + "\n",
                                 encoding="utf-8")
    (folder / "README.md").write_text(
        f"# tiny random {architecture}\n\nBuilt by `monet models tiny` (seed {seed}): random weights, "
        f"{sum(p.numel() for p in model.parameters())} parameters. For tests and smoke tests only; "
        f"its text is noise.\n", encoding="utf-8")
    return folder
