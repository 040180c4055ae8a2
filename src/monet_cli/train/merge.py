"""``monet train merge``: base model + a run's adapter → one full checkpoint.

The adapter's low-rank update (DoRA: with its magnitude rescaling) is folded into the base
weights (peft ``merge_and_unload``), and the result is saved as a plain transformers
checkpoint — safetensors weights, the base's tokenizer, chat template and image processor
settings — that vLLM (``vllm serve DIR``), ``monet plan --model DIR`` and any transformers
code load without peft. A QLoRA adapter is merged into the base in full precision (a 4-bit
merge would lose what the adapter learned to rounding). This is how the published MonetGPT
weights were shipped.

A full run (``adapter.method: full``) has no adapter: its run folder already is the complete
model, so merging it is a usage error (exit 2) that says to use the folder as it is.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from monet_cli.errors import MonetError, OutputError, UsageError
from monet_cli.train.config import adapter_dir, is_full_run, run_base_model

# Files of a checkpoint folder that are not weights and that a server needs.
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json",
              "added_tokens.json", "chat_template.json", "chat_template.jinja", "preprocessor_config.json",
              "monet.json")
DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class MergeResult:
    out: Path
    base: str
    adapter: Path
    dtype: str
    seconds: float
    bytes: int

    def to_dict(self) -> dict:
        return {"out": str(self.out), "base": self.base, "adapter": str(self.adapter), "dtype": self.dtype,
                "seconds": round(self.seconds, 2), "bytes": self.bytes}


def copy_side_files(base, dest, *, skip=()) -> None:
    """Copy the tokenizer, chat template, processor and marker files (:data:`SIDE_FILES`) that
    ``base`` has, except ``skip``, into ``dest``: what makes a folder of weights a model folder."""
    for name in SIDE_FILES:
        src = Path(base) / name
        if name not in skip and src.is_file():
            shutil.copyfile(src, Path(dest) / name)


def base_model_of(run_or_adapter) -> str:
    """The base model a run (or a bare adapter folder) was trained on, as a ``--model`` spec:
    the run's ``model.name``, else the adapter's ``base_model_name_or_path``."""
    p = Path(run_or_adapter).expanduser()
    _refuse_full_run(p)
    name = run_base_model(p)
    if name:
        return name
    adapter = adapter_dir(p)
    if adapter is None:
        raise MonetError("not a training run or peft adapter folder (no adapter_config.json)", path=p)
    try:
        base = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as e:
        raise MonetError(f"cannot read the adapter's base model ({e})", path=adapter) from None
    if not base:
        raise UsageError(f"{adapter}: the adapter does not name its base model; give --model")
    return str(base)


def _refuse_full_run(path: Path) -> None:
    if is_full_run(path):
        raise UsageError(f"{path} is a full training run (adapter.method: full): the folder already is the complete "
                         f"model, with no adapter to merge; use it as it is (monet plan --backend qwen --model {path}, "
                         f"vllm serve {path})")


def merge(run_dir, out, *, model: str | None = None, dtype: str = "bfloat16", device: str = "cpu",
          force: bool = False) -> MergeResult:
    """Merge ``run_dir``'s adapter into its base model (or ``model``) and save to ``out``."""
    from monet_cli.models import require_ml, resolve_model

    if dtype not in DTYPES:
        raise UsageError(f"--dtype {dtype!r}: choose {', '.join(DTYPES)}")
    _refuse_full_run(Path(run_dir).expanduser())
    adapter = adapter_dir(run_dir)
    if adapter is None:
        raise MonetError("no adapter here: not a finished training run or peft adapter folder "
                         "(a paused run has its adapters under checkpoints/)", path=run_dir)
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not force:
            raise OutputError("exists and is not empty (--force replaces it)", path=out)
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    require_ml("monet train merge", ("torch", "transformers", "peft"))
    spec = model or base_model_of(run_dir)
    base = resolve_model(spec)
    t0 = time.perf_counter()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from monet_cli.planners.qwen import quiet_bitsandbytes

    quiet_bitsandbytes()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(base.path), dtype=torch_dtype, local_files_only=True,
                                                            device_map={"": device})
        with warnings.catch_warnings():  # peft asks transformers 5 by a deprecated name
            warnings.filterwarnings("ignore", category=FutureWarning)
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise MonetError(f"cannot load the base model with the adapter: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}", path=adapter) from None
    merged = model.merge_and_unload(safe_merge=True)
    merged.config.use_cache = True
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp), safe_serialization=True, max_shard_size="5GB")
    copy_side_files(base.path, tmp)
    (tmp / "README.md").write_text(
        f"---\nbase_model: {base.hub_id or spec}\ntags: [monet, monetgpt, photo-retouching, qwen-vl]\n---\n\n"
        f"# {out.name}\n\n{base.hub_id or spec} with the adapter of `{Path(run_dir)}` merged into its weights "
        f"({dtype}) by `monet train merge`.\n\n```sh\nvllm serve {out} --served-model-name monet "
        f"--limit-mm-per-prompt '{{\"image\": 1}}'\nmonet plan photo.jpg --backend openai "
        f"--endpoint http://localhost:8000/v1 --model monet\nmonet plan photo.jpg --backend qwen --model {out}\n```\n",
        encoding="utf-8")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_dir():
        out.rmdir()
    tmp.rename(out)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return MergeResult(out=out, base=spec, adapter=adapter, dtype=dtype, seconds=time.perf_counter() - t0, bytes=size)
