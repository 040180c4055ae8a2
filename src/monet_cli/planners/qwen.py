"""``qwen``: a Qwen2-VL / Qwen2.5-VL model through transformers, on this machine.

On a CUDA GPU the model loads in 4-bit NF4 (bitsandbytes; ``quant="8bit"`` or ``"none"`` for
bf16) unless its preset says otherwise; without CUDA it runs on the CPU (unquantised, with a
warning about speed). An optional peft adapter (LoRA/DoRA, ``adapter=DIR``) goes on top. The
model is loaded once per process per ``(folder, adapter, quant, device, dtype)`` and shared by
every planner and photo; generation is serialised by a lock, so batches may run in threads.

The conversation is :func:`monet_cli.planners.protocol.run_stage`; this module only turns
messages into Qwen's chat format (ChatML with the image at the start of the first user turn,
exactly what Qwen's own chat template writes for one image) and generates. With ``samples``
N > 1 each stage is N sampled conversations generated as one left-padded batch
(:func:`generate_many`), combined by :func:`monet_cli.planners.protocol.consensus`.

Nothing here imports torch, transformers, peft or bitsandbytes at module level. The processor
is an image-only :class:`Qwen2VLProcessor`: transformers 5 would otherwise build a video
processor, which needs torchvision.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from monet_cli.catalog import STAGES
from monet_cli.errors import MonetError, UsageError, flag_names
from monet_cli.models import (QUANTS, ResolvedModel, checked_consensus, checked_sample_temperature, checked_samples,
                              cuda_available, require_ml, resolve_model)
from monet_cli.plan import StagePlan
from monet_cli.planners.protocol import Message, consensus, load_prompts, medoid, proxy_to_pil, run_stage, run_stages

BIG_MODEL_BYTES = 2 * 1024**3  # above this, CPU runs are slow enough to warn, and use bf16
# Kept in full precision: the output head and the vision encoder (small, and sensitive to
# quantisation). transformers 4 matches these as substrings ("visual"), 5 as module-path
# prefixes or suffixes ("model.visual"), so both spellings are given.
SKIP_QUANT = ["lm_head", "visual", "model.visual"]
IMAGE_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
SAMPLE_TEMPERATURE = 1.0  # default: samples for a consensus plan come from the model's own distribution


def _need(pkg: str, what: str):
    require_ml(what, (pkg,))


def quiet_bitsandbytes() -> None:
    """bitsandbytes' CPU backend logs a warning at import when the optional ``kernels`` package
    (a faster CPU 4-bit matmul) is absent; it works without it, so keep the CLI's output clean."""
    import logging

    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


def chatml(messages: list[Message]) -> str:
    """Messages → Qwen's ChatML prompt, the image placeholder first in the first user turn,
    ending with an open assistant turn."""
    parts, image_placed = [], False
    for m in messages:
        content = str(m["content"])
        if m["role"] == "user" and not image_placed:
            content, image_placed = IMAGE_TOKENS + content, True
        parts.append(f"<|im_start|>{m['role']}\n{content}<|im_end|>\n")
    parts.append("<|im_start|>assistant\n")
    return "".join(parts)


@lru_cache(maxsize=1)
def _processor_class():
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor

    class ImageOnlyQwenVLProcessor(Qwen2VLProcessor):
        """Qwen2-VL / Qwen2.5-VL processor for images only (no video processor, no torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template)

    return ImageOnlyQwenVLProcessor


def make_processor(folder):
    """The image-only processor of a Qwen-VL checkpoint folder. ``preprocessor_config.json`` is
    optional: the defaults are Qwen-VL's own (patch 14, merge 2, CLIP mean/std)."""
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    if (folder / "preprocessor_config.json").is_file():
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder, local_files_only=True)
    else:
        image_processor = Qwen2VLImageProcessorPil()
    return _processor_class()(image_processor, tokenizer)


# ----------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model and its processor, loaded once and shared."""

    model: object
    processor: object
    device: str
    dtype: str
    quant: str
    adapter: str | None
    seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokenizer(self):
        return self.processor.tokenizer


_CACHE: dict[tuple, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(folder, *, adapter=None, quant: str = "none", device: str = "cpu",
               dtype: str = "float32") -> LoadedModel:
    """Load (once per process) the checkpoint in ``folder`` with ``quant`` ("4bit" NF4, "8bit",
    "none"), on ``device`` ("cpu", "cuda", "cuda:1"), compute dtype ``dtype``, plus a peft
    ``adapter`` folder. Offline: only local files are read."""
    if quant not in QUANTS:
        raise UsageError(f"unknown quantisation {quant!r}; choose {', '.join(QUANTS)}")
    key = (str(Path(folder).resolve()), str(Path(adapter).resolve()) if adapter else None, quant, device, dtype)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
        _need("torch", "the qwen backend")
        _need("transformers", "the qwen backend")
        if quant != "none":
            _need("bitsandbytes", f"--quant {quant}")
        if adapter:
            _need("peft", "--adapter")
            from monet_cli.train.config import adapter_dir

            adapter = adapter_dir(adapter) or adapter  # a `monet train` run folder keeps it in adapter/
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise MonetError("not a peft adapter folder (no adapter_config.json)", path=adapter)
        t0 = time.perf_counter()
        quiet_bitsandbytes()  # transformers and peft import it when it is installed
        from transformers import AutoModelForImageTextToText
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        torch_dtype = _torch_dtype(dtype)
        kwargs: dict = {"dtype": torch_dtype, "local_files_only": True,
                        "device_map": {"": 0 if device == "cuda" else device}}
        if quant != "none":
            from transformers import BitsAndBytesConfig

            if quant == "4bit":
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                    bnb_4bit_compute_dtype=torch_dtype, llm_int8_skip_modules=SKIP_QUANT)
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=SKIP_QUANT)
        try:
            model = AutoModelForImageTextToText.from_pretrained(str(folder), **kwargs)
            processor = make_processor(folder)
        except (OSError, ValueError, RuntimeError, ImportError) as e:
            raise MonetError(f"cannot load the model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                             path=folder) from None
        if adapter:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
            except (OSError, ValueError, RuntimeError, KeyError) as e:
                raise MonetError(f"cannot apply the adapter to {folder}: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}", path=adapter) from None
            if quant == "none":
                model = model.merge_and_unload()  # same result, plain Linear layers: faster
        model.eval()
        loaded = LoadedModel(model=model, processor=processor, device=device, dtype=dtype, quant=quant,
                             adapter=str(adapter) if adapter else None, seconds=time.perf_counter() - t0)
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Forget every loaded model (frees its memory once nothing else holds it)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def generate(loaded: LoadedModel, messages: list[Message], image, *, max_new_tokens: int = 1024,
             temperature: float = 0.3, seed: int | None = 0, min_pixels: int = 56 * 56,
             max_pixels: int = 1280 * 28 * 28) -> str:
    """One assistant answer to ``messages`` about ``image`` (a PIL image). ``temperature`` 0
    is greedy; otherwise sampling, seeded with ``seed`` for repeatable plans."""
    return generate_many(loaded, [messages], image, max_new_tokens=max_new_tokens, temperature=temperature,
                         seed=seed, min_pixels=min_pixels, max_pixels=max_pixels)[0]


def generate_many(loaded: LoadedModel, conversations: list[list[Message]], image, *, max_new_tokens: int = 1024,
                  temperature: float = 0.3, seed: int | None = 0, min_pixels: int = 56 * 56,
                  max_pixels: int = 1280 * 28 * 28) -> list[str]:
    """One answer to each conversation about the same ``image``, generated as one batch (left
    padded): on a CPU, 8 sampled answers of a small model take about as long as one."""
    import torch

    if not conversations:
        return []
    proc = loaded.processor
    n = len(conversations)
    inputs = proc(text=[chatml(m) for m in conversations], images=[image] * n, return_tensors="pt",
                  padding=True, padding_side="left",
                  images_kwargs={"size": {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}})
    inputs = inputs.to(loaded.model.device)
    tok = loaded.tokenizer
    stop = [i for i in (tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>"))
            if isinstance(i, int) and i >= 0]
    gen: dict = {"max_new_tokens": int(max_new_tokens), "eos_token_id": stop or None,
                 "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else (stop[0] if stop else None)}
    if temperature and temperature > 0:
        gen.update(do_sample=True, temperature=float(temperature), top_p=1.0, top_k=0)
    else:
        gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with loaded.lock, torch.inference_mode():
        if seed is not None:
            torch.manual_seed(int(seed))
        out = loaded.model.generate(**inputs, **gen)
    start = inputs["input_ids"].shape[1]
    return [tok.decode(row[start:], skip_special_tokens=True).strip() for row in out]


# ----------------------------------------------------------------------------- planner


def _bf16_ok(device: str) -> bool:
    import torch

    with torch.cuda.device(torch.device(device)):
        return bool(torch.cuda.is_bf16_supported())


def _pick_device(device: str | None) -> str:
    if device:
        device = device.strip().lower()
        if device.startswith("cuda") and not cuda_available():
            raise UsageError(f"--device {device}: no CUDA GPU is available (torch sees none)")
        if device not in ("cpu",) and not device.startswith("cuda"):
            raise UsageError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
        return device
    return "cuda" if cuda_available() else "cpu"


class QwenPlanner:
    """The ``qwen`` backend (module docstring).

    ``model`` is a preset, a checkpoint folder or a downloaded hub id (default ``monetgpt-7b``);
    ``quant`` defaults to the preset's on CUDA (4bit) and to ``none`` on the CPU. ``warnings``
    lists what a user should be told (e.g. CPU speed). Plans are repeatable for a given ``seed``.
    """

    name = "qwen"

    def __init__(self, model: str | None = None, *, adapter=None, quant: str | None = None,
                 device: str | None = None, dtype: str | None = None, temperature: float | None = None,
                 max_new_tokens: int | None = None, seed: int | None = 0, prompts: str | None = None,
                 samples: int | None = None, consensus: str | None = None, sample_temperature: float | None = None,
                 value_map: str | None = None):
        if adapter is not None:
            from monet_cli.train.config import is_full_run, run_base_model

            if is_full_run(adapter):  # adapter.method: full: the run folder is the model
                raise UsageError(f"{adapter} is a full training run (every weight trained, no adapter): "
                                 f"plan with --model {adapter} instead of --adapter")
            if model is None:  # a `monet train` run: plan with the model it trained
                model = run_base_model(adapter)
        self.resolved: ResolvedModel = resolve_model(model)
        self.model = self.resolved.name
        if adapter is not None and not Path(adapter).expanduser().is_dir():
            raise MonetError("no such adapter folder", path=adapter)
        self.adapter = str(adapter) if adapter else None
        self.device = _pick_device(device)
        cuda = self.device.startswith("cuda")
        if quant is not None and quant not in QUANTS:
            raise UsageError(f"unknown quantisation {quant!r}; choose {', '.join(QUANTS)}")
        self.quant = quant or (self.resolved.default_quant if cuda else "none")
        big = self.resolved.weights_bytes > BIG_MODEL_BYTES
        self.dtype = dtype or ("bfloat16" if cuda or big else "float32")
        if cuda and dtype is None and not _bf16_ok(self.device):
            self.dtype = "float16"  # pre-Ampere GPUs (T4, V100) have no bf16
        self.warnings: list[str] = []
        if not cuda and big:
            self.warnings.append(f"no CUDA GPU: {self.model} runs on the CPU, which takes minutes per photo "
                                 f"(use a GPU, --backend openai with a GPU server, or --backend auto)")
        preset = self.resolved.preset
        self.temperature = float(temperature if temperature is not None else (preset.temperature if preset else 0.3))
        budget = dict(preset.max_new_tokens) if preset else {"analysis": 1024, "values": 256}
        if max_new_tokens is not None:
            budget = {"analysis": int(max_new_tokens), "values": int(max_new_tokens)}
        self.max_new_tokens = budget
        self.seed = seed
        self.samples = (checked_samples(samples, "--samples", UsageError) if samples is not None
                        else preset.samples if preset else 1)
        self.consensus = (checked_consensus(consensus, "--consensus", UsageError) if consensus is not None
                          else preset.consensus if preset else "mean")
        self.sample_temperature = (
            checked_sample_temperature(sample_temperature, "--sample-temperature", UsageError)
            if sample_temperature is not None else preset.sample_temperature if preset else SAMPLE_TEMPERATURE)
        for flag, given in (("--consensus", consensus), ("--sample-temperature", sample_temperature)):
            if given is not None and self.samples == 1:
                self.warnings.append(f"{flag} {given} has no effect with one sample per stage (--samples 1)")
        self.prompts = load_prompts(prompts or self.resolved.prompts)
        from monet_cli.value_map import resolve_value_map

        # the preset's value map (monet_cli.value_map), another preset's (--value-map NAME) or none
        self.value_map = resolve_value_map(value_map, preset)
        self.loaded = load_model(self.resolved.path, adapter=self.adapter and Path(self.adapter).expanduser(),
                                 quant=self.quant, device=self.device, dtype=self.dtype)

    @classmethod
    def from_options(cls, **options) -> "QwenPlanner":
        """From ``get_planner("qwen", ...)`` options (``None`` values already dropped)."""
        if "endpoint" in options:
            raise UsageError("--endpoint is for --backend openai")
        concurrency = options.pop("concurrency", 1)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"--concurrency must be a positive integer, got {concurrency!r}")
        known = {"model", "adapter", "quant", "device", "dtype", "temperature", "max_new_tokens", "seed", "prompts",
                 "samples", "consensus", "sample_temperature", "value_map"}
        unknown = set(options) - known
        if unknown:
            raise UsageError(f"the qwen backend takes no option {', '.join(flag_names(unknown))}")
        return cls(**options)

    def _seed(self, stage: str, turn: int) -> int | None:
        """One seed per (plan seed, stage, turn): repeatable, not repetitive."""
        if self.seed is None:
            return None
        return int(self.seed) * 1000 + (STAGES.index(stage) if stage in STAGES else 0) * 10 + turn

    def chat(self, messages: list[Message], image, *, turn: int = 0, stage: str = "") -> str:
        kind = "analysis" if turn == 0 else "values"
        return generate(self.loaded, messages, image, max_new_tokens=self.max_new_tokens[kind],
                        temperature=self.temperature, seed=self._seed(stage, turn), min_pixels=self.resolved.min_pixels,
                        max_pixels=self.resolved.max_pixels)

    def chat_many(self, conversations: list[list[Message]], image, *, turn: int = 0, stage: str = "") -> list[str]:
        """Answers to several conversations, one batch, sampled at ``sample_temperature``."""
        kind = "analysis" if turn == 0 else "values"
        return generate_many(self.loaded, conversations, image, max_new_tokens=self.max_new_tokens[kind],
                             temperature=self.sample_temperature, seed=self._seed(stage, turn),
                             min_pixels=self.resolved.min_pixels, max_pixels=self.resolved.max_pixels)

    def plan_stage(self, stage: str, proxy: np.ndarray, *, style: str = "balanced", instructions: str | None = None,
                   previous: dict[str, StagePlan] | None = None) -> StagePlan:
        """One conversation (``samples`` 1), or one plan of ``samples`` sampled conversations,
        generated together: their mean (:func:`consensus`) or their :func:`medoid`. With a
        value map, the mean is taken of the model's values and then mapped; the medoid is
        chosen among the mapped plans (by what would be rendered)."""
        image = proxy_to_pil(proxy)
        turns = iter(range(3))
        if self.samples == 1:
            return self._mapped(run_stage(lambda msgs: self.chat(msgs, image, turn=next(turns), stage=stage), stage,
                                          prompts=self.prompts, style=style, instructions=instructions))
        plans = run_stages(lambda convs: self.chat_many(convs, image, turn=next(turns), stage=stage), stage,
                           self.samples, prompts=self.prompts, style=style, instructions=instructions)
        if self.consensus == "medoid":
            return medoid([self._mapped(p) for p in plans], proxy)
        return self._mapped(consensus(plans))

    def _mapped(self, sp: StagePlan) -> StagePlan:
        return self.value_map.apply(sp) if self.value_map is not None else sp
