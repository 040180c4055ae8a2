"""The training recipe: fine-tune a Qwen-VL model with a peft DoRA / LoRA adapter, or train
every weight of it (``adapter.method: full``, e.g. the ``mini`` preset from scratch).

Read top to bottom:

1. :func:`prepare` — resolve the model folder, read and hash the datasets, measure every
   record's tokens (from image sizes; no pixels decoded), drop or refuse over-long records,
   split off the held-out records, count the steps. ``--dry-run`` stops here and prints.
2. :func:`load_model` — the base model (bf16 on CUDA, fp32 on the CPU; 4-bit NF4 for QLoRA),
   gradient checkpointing, and the adapter on every Linear of the language model (and of the
   vision encoder, if asked), seeded; for ``full``, no adapter: every parameter trains.
3. :func:`train` — AdamW, a warm-up + cosine (or linear, constant) schedule over the steps or,
   with ``train.max_minutes``, over the time budget; gradient accumulation with a
   token-weighted loss (each step's loss is the mean over all assistant tokens of its
   micro-batches, as if it were one big batch), gradient clipping, eval loss on the held-out
   records, checkpoints, the final adapter (``RUN_DIR/adapter``) or, for ``full``, the trained
   model written into ``RUN_DIR`` itself (a complete model folder: ``--model RUN_DIR``), and the
   model card.

**Exact resume.** The data order of an epoch is a pure function of (seed, epoch); a
checkpoint (``RUN_DIR/checkpoints/step-NNNNNN/``) holds the adapter (for ``full``, every
weight: ``model.safetensors``), the optimizer, scheduler and gradient-scaler states, every
random generator's state (per process) and the position (epoch, micro-batch) — all taken at
an optimizer-step boundary. ``--resume`` restores them
and continues as if never stopped. Ctrl-C finishes the current micro-batch, saves the state
of the last completed step (the partial accumulation is redone on resume) and exits 130;
a second Ctrl-C aborts at once. (A ``train.max_minutes`` run resumes too, but its learning
rate follows the clock, so not bit for bit.)

**Several GPUs.** Launched by ``torchrun`` or ``accelerate launch`` (``WORLD_SIZE`` > 1) the
recipe uses one GPU per process and DistributedDataParallel: each epoch's order is dealt out
round-robin (the last ``WORLD_SIZE - 1`` records of the shuffled order may sit the epoch out),
losses and eval are reduced over processes, and only process 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monet_cli.errors import MonetError, UsageError
from monet_cli.train.config import (ADAPTER, CONFIG_FILE, RESUME_SETTABLE, RunDirError, TrainConfig,
                                    TrainInterrupted, read_run_config, set_value, to_yaml, validate)
from monet_cli.train.data import DataError, Encoder, Record, epoch_order, read_datasets, split_indices
from monet_cli.train.merge import SIDE_FILES, copy_side_files

CHECKPOINTS = "checkpoints"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"
CARD = "README.md"
MARKER = "monet.json"  # the preset a model folder asks for (monet_cli.models._folder_preset)
FULL_WEIGHTS = "model.safetensors"  # a full run's weights: in RUN_DIR once finished, in each checkpoint
# what a full run writes into RUN_DIR besides the run files: a complete transformers model folder
MODEL_FILES = ("config.json", "generation_config.json", FULL_WEIGHTS, "model.safetensors.index.json", "model.tmp",
               *SIDE_FILES)
RUN_FILES = (CONFIG_FILE, ADAPTER, CHECKPOINTS, METRICS_LOG, METRICS, CARD, *MODEL_FILES)  # what --force replaces


# ----------------------------------------------------------------------------- 1. prepare


@dataclass
class Prepared:
    """Everything about a run that is known before the model is loaded."""

    config: TrainConfig
    model: object  # monet_cli.models.ResolvedModel
    records: list[Record]
    train_idx: list[int]
    eval_idx: list[int]
    lengths: list[tuple[int, int]]  # per record: (tokens, assistant tokens)
    min_pixels: int
    max_pixels: int
    world_size: int
    steps_per_epoch: int
    total_steps: int
    device: str
    dtype: str
    resolved: dict
    warnings: list[str] = field(default_factory=list)


def _world() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun / accelerate's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _device_and_dtype(cfg: TrainConfig, local_rank: int) -> tuple[str, str]:
    from monet_cli.models import cuda_available

    device = cfg.model.device
    if device == "auto":
        device = f"cuda:{local_rank}" if cuda_available() else "cpu"
    elif device.startswith("cuda") and not cuda_available():
        raise UsageError(f"model.device {device}: no CUDA GPU is available (torch sees none)")
    elif device == "cuda":
        device = f"cuda:{local_rank}"
    dtype = cfg.model.dtype
    if dtype == "auto":
        if device.startswith("cuda"):
            import torch

            dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        else:
            dtype = "float32"
    return device, dtype


def shard(order: list[int], rank: int, world: int) -> list[int]:
    """Process ``rank``'s share of an epoch's order: every ``world``-th record, equal counts."""
    usable = len(order) - len(order) % world
    return order[rank:usable:world]


def _micro_batches(indices: list[int], batch_size: int) -> list[list[int]]:
    return [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]


def prepare(cfg: TrainConfig, *, source: str | None = None) -> Prepared:
    """Step 1 (module docstring). Imports the tokenizer (transformers), loads no weights."""
    from monet_cli.models import require_ml, resolve_model
    from monet_cli.planners.qwen import make_processor

    validate(cfg)
    require_ml("monet train", ("torch", "transformers") if cfg.adapter.method == "full"
               else ("torch", "transformers", "peft"))
    _, local_rank, world = _world()
    model = resolve_model(cfg.model.name)
    records, infos = read_datasets(cfg.data.datasets)
    min_px = cfg.data.min_pixels or model.min_pixels
    max_px = cfg.data.max_pixels or model.max_pixels
    if min_px > max_px:
        raise UsageError(f"config: data.min_pixels {min_px} is above data.max_pixels {max_px}")
    encoder = Encoder(make_processor(model.path), min_pixels=min_px, max_pixels=max_px)
    lengths = [encoder.measure(r) for r in records]
    too_long = [i for i, (n, _) in enumerate(lengths) if n > cfg.data.max_length]
    warnings = []
    if too_long:
        worst = max(too_long, key=lambda i: lengths[i][0])
        what = (f"{len(too_long)} record(s) exceed data.max_length={cfg.data.max_length} tokens "
                f"(longest {lengths[worst][0]}: {records[worst].where})")
        if cfg.data.too_long == "error":
            raise DataError(f"{what}; raise data.max_length or --set data.too_long=drop")
        warnings.append(f"{what}; dropped")
    train_idx, eval_idx = split_indices(len(records), cfg.data.eval_fraction, cfg.data.eval_max, cfg.train.seed)
    dropped = set(too_long)
    train_idx = [i for i in train_idx if i not in dropped]
    eval_idx = [i for i in eval_idx if i not in dropped]
    if len(train_idx) < world:
        raise DataError(f"{len(train_idx)} training record(s) for {world} process(es): nothing to train on")
    t = cfg.train
    micro = math.ceil((len(train_idx) // world) / t.batch_size)
    steps_per_epoch = math.ceil(micro / t.grad_accum)
    total = t.max_steps if t.max_steps > 0 else steps_per_epoch * t.epochs
    device, dtype = _device_and_dtype(cfg, local_rank)
    if cfg.model.quant == "4bit" and not device.startswith("cuda"):
        warnings.append("model.quant=4bit without CUDA: bitsandbytes' CPU backend works but is slow; "
                        "QLoRA is meant for a CUDA GPU")
    resolved = {
        "model": {"spec": cfg.model.name, "path": str(model.path), "architecture": model.architecture,
                  "hub_id": model.hub_id, "preset": model.preset.name if model.preset else None},
        "pixels": {"min": min_px, "max": max_px},
        "datasets": [i.to_dict() for i in infos],
        "records": {"total": len(records), "train": len(train_idx), "eval": len(eval_idx),
                    "dropped_too_long": len(too_long)},
        "tokens": {"train": sum(lengths[i][0] for i in train_idx),
                   "train_assistant": sum(lengths[i][1] for i in train_idx)},
        "steps": {"per_epoch": steps_per_epoch, "total": total,
                  "records_per_step": t.batch_size * t.grad_accum * world},
        "device": device, "dtype": dtype, "world_size": world, "method": cfg.adapter.method,
    }
    if source:
        resolved["config_source"] = source
    return Prepared(config=cfg, model=model, records=records, train_idx=train_idx, eval_idx=eval_idx, lengths=lengths,
                    min_pixels=min_px, max_pixels=max_px, world_size=world, steps_per_epoch=steps_per_epoch,
                    total_steps=total, device=device, dtype=dtype, resolved=resolved, warnings=warnings)


# ----------------------------------------------------------------------------- 2. model


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def target_modules(model, *, language_model: bool, vision: bool) -> str:
    """A peft ``target_modules`` regular expression for every Linear of the language model
    and/or the vision encoder (``lm_head`` excluded; it is trained only via modules_to_save):
    each Linear's path with its layer numbers as ``\\d+``, e.g.
    ``model\\.language_model\\.layers\\.\\d+\\.self_attn\\.q_proj``."""
    import re

    import torch

    patterns = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] == "lm_head":
            continue
        is_vision = re.search(r"\bvisual\b", name) is not None
        if (vision if is_vision else language_model):
            parts = name.split(".")
            # layer numbers become \d+; other numbers (an nn.Sequential's index) stay literal
            pat = r"\.".join(r"\d+" if p.isdigit() and i > 0 and parts[i - 1] in ("layers", "blocks", "h")
                             else re.escape(p) for i, p in enumerate(parts))
            if pat not in patterns:
                patterns.append(pat)
    return "|".join(patterns)


def base_model_id(prep: Prepared) -> str:
    """What the adapter records as its base: the hub id when there is one, else the folder."""
    return prep.model.hub_id or str(Path(prep.model.path).resolve())


def load_model(prep: Prepared):
    """Step 2: the base model on ``prep.device`` with a fresh adapter (seeded) → peft model;
    for ``adapter.method: full`` the model itself, every parameter trainable."""
    import torch
    from transformers import AutoModelForImageTextToText
    from transformers.utils import logging as hf_logging

    from monet_cli.planners.qwen import SKIP_QUANT, quiet_bitsandbytes

    cfg = prep.config
    quiet_bitsandbytes()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    dtype = _torch_dtype(prep.dtype)
    kwargs: dict = {"dtype": dtype, "local_files_only": True, "device_map": {"": prep.device},
                    "attn_implementation": cfg.model.attn_implementation}
    if cfg.model.quant == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, llm_int8_skip_modules=SKIP_QUANT)
    try:
        model = AutoModelForImageTextToText.from_pretrained(str(prep.model.path), **kwargs)
    except (OSError, ValueError, RuntimeError, ImportError) as e:
        raise MonetError(f"cannot load the model: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}",
                         path=prep.model.path) from None
    model.config.use_cache = False
    full = cfg.adapter.method == "full"
    for p in model.parameters():
        p.requires_grad_(full)
    if cfg.model.quant == "4bit" and prep.device == "cpu":
        # bitsandbytes repacks 4-bit CPU weights for inference on the first no-grad forward
        # (our eval) and cannot train on them afterwards; keep the training layout
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    if cfg.model.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable()  # non-reentrant by default in transformers 5
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if full:
        return model
    from peft import LoraConfig, get_peft_model

    a = cfg.adapter
    targets = target_modules(model, language_model=a.language_model, vision=a.vision)
    if not targets:
        raise MonetError("no Linear layers to adapt in this model", path=prep.model.path)
    lora = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, use_dora=a.method == "dora",
                      target_modules=targets, modules_to_save=list(a.modules_to_save) or None, bias="none")
    torch.manual_seed(cfg.train.seed)  # the adapter's initial weights
    with warnings.catch_warnings():  # peft asks transformers 5 by a deprecated name
        warnings.filterwarnings("ignore", category=FutureWarning)
        model = get_peft_model(model, lora)
    model.peft_config["default"].base_model_name_or_path = base_model_id(prep)
    return model


# ----------------------------------------------------------------------------- 3. train


@dataclass
class TrainState:
    """Where a run is, saved in each checkpoint's ``state.json``."""

    step: int = 0
    epoch: int = 0
    position: int = 0  # micro-batches of this process done in the current epoch
    records: int = 0  # records trained on, all processes
    tokens: int = 0  # tokens (prompts, images, answers) trained on, all processes
    seconds: float = 0.0  # training time, summed over sessions (kept current after each step)
    first_loss: float | None = None
    last_loss: float | None = None
    evals: list = field(default_factory=list)  # [{"step", "eval_loss"}]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunResult:
    """What :func:`train` did: ``status`` is ``complete`` (the step limit or train.max_minutes
    reached), ``paused`` (train.stop_after) or ``already-complete`` (a --resume of a finished run)."""

    run_dir: Path
    status: str
    step: int
    total_steps: int
    metrics: dict
    adapter: Path | None  # RUN_DIR/adapter; None for a full run
    model: object = None  # the trained (peft) model, in this process (None for an already complete run)
    primary: bool = True  # process 0 (the one that writes and reports) of a multi-process run
    model_dir: Path | None = None  # a complete full run: RUN_DIR, a model folder for --model


def lr_factor(step: int, *, total: int, warmup: int, kind: str, min_ratio: float,
              fraction: float | None = None) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based): a linear
    warm-up over ``warmup`` steps, then cosine (half a period), linear or constant decay to
    ``min_ratio`` at step ``total`` (the schedule of transformers' ``get_*_schedule_with_warmup``).
    With ``fraction`` (the share of a time budget spent, train.max_minutes) the decay runs on
    it instead of on the steps; the warm-up stays in steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if fraction is not None:
        progress = min(1.0, max(0.0, fraction))
    else:
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if kind == "constant":
        decay = 1.0
    elif kind == "linear":
        decay = 1.0 - progress
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * decay


def _rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = [kind, keys.tolist(), pos, has_gauss, cached]
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    v, internal, g = state["python"]
    random.setstate((v, tuple(internal), g))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _ignore_ctrl_c(_worker_id: int) -> None:
    """Data workers leave Ctrl-C (sent to the whole terminal process group) to the trainer."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StopOnCtrlC:
    """The first Ctrl-C asks the loop to save and stop; a second one aborts (KeyboardInterrupt)."""

    def __init__(self, say):
        self.requested, self.say, self.previous = False, say, None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say("[yellow]interrupt:[/yellow] saving a checkpoint after this micro-batch "
                 "(Ctrl-C again to abort without saving)")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run (one with ``state.json``), or None."""
    folder = Path(run_dir) / CHECKPOINTS
    done = sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")
                  and (p / "state.json").is_file()) if folder.is_dir() else []
    return done[-1] if done else None


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("monet-cli", "torch", "transformers", "peft", "bitsandbytes"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    if "monet-cli" not in out:
        from monet_cli import __version__

        out["monet-cli"] = __version__
    return out


class _Console:
    """Output of process 0 only: rich markup lines on stderr (nothing when quiet)."""

    def __init__(self, console, quiet: bool, rank: int):
        self.console = console if (rank == 0 and not quiet) else None

    def __call__(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


@contextmanager
def _progress(con: _Console, total: int, done: int, budget: float = 0.0, spent: float = 0.0):
    """Yields ``update(step, fields, seconds)``: a rich progress bar on a terminal, else a plain
    line per call. With a time ``budget`` (seconds) the bar measures training time, not steps."""
    c = con.console
    if c is None:
        yield lambda step, fields, seconds: None
        return
    if not c.is_terminal:
        def line(step, fields, seconds):
            where = f"step {step}  {_clock(seconds)}/{_clock(budget)}" if budget else f"step {step}/{total}"
            c.print(f"{where}  " + "  ".join(f"{k} {v}" for k, v in fields.items() if v))
        yield line
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    count = TextColumn("step {task.fields[step]}") if budget else MofNCompleteColumn()
    with Progress(TextColumn("[bold]training"), BarColumn(), count, TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=c) as bar:
        task = bar.add_task("train", total=budget or total, completed=spent if budget else done, info="", step=done)

        def update(step, fields, seconds):
            bar.update(task, completed=min(seconds, budget) if budget else step, step=step,
                       info="  ".join(f"{k} {v}" for k, v in fields.items() if v))
        yield update


def _check_run_dir(run_dir: Path, *, resume: bool, force: bool) -> None:
    if resume and force:
        raise UsageError("--resume continues a run and --force starts it over: give one of them")
    if not run_dir.exists():
        if resume:
            raise RunDirError("no such run folder to resume", path=run_dir)
        return
    if not run_dir.is_dir():
        raise RunDirError("exists and is not a folder", path=run_dir)
    if resume:
        return
    ours = [run_dir / n for n in RUN_FILES if (run_dir / n).exists()]
    ours += sorted(run_dir.glob("model-*-of-*.safetensors"))  # a sharded full model
    if not any(run_dir.iterdir()):
        return
    if not force:
        raise RunDirError("run folder exists; --resume continues it, --force starts it over", path=run_dir)
    for p in ours:
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def _check_same_folder(model: str, run_dir: Path) -> None:
    """A run folder must not be the model folder it trains (a full run writes its model there)."""
    from monet_cli.models import resolve_model

    try:
        p = resolve_model(model).path
    except MonetError:
        return  # prepare() says what is wrong with the model
    if run_dir.exists() and Path(p).resolve() == run_dir.resolve():
        raise UsageError("--out is the model folder being trained; give another run folder", path=run_dir)


def resume_config(run_dir, *, datasets=None, model: str | None = None, sets=()) -> tuple[TrainConfig, dict]:
    """The saved config of ``run_dir`` for ``--resume``, with the few ``--set`` keys a resume
    may change (:data:`~monet_cli.train.config.RESUME_SETTABLE`); DATASET… and --model, when
    given, must be those of the run."""
    from monet_cli.train.config import parse_sets

    cfg, resolved = read_run_config(run_dir)
    if datasets and [str(d) for d in datasets] != list(cfg.data.datasets):
        raise UsageError(f"--resume: DATASET… differs from the run's ({', '.join(cfg.data.datasets)}); "
                         f"leave it out to resume, or start a new run")
    if model and model != cfg.model.name:
        raise UsageError(f"--resume: --model {model} differs from the run's ({cfg.model.name})")
    for key, value in parse_sets(sets):
        if key not in RESUME_SETTABLE:
            raise UsageError(f"--resume: {key} cannot change in a resumed run (it would not continue exactly); "
                             f"these can: {', '.join(sorted(RESUME_SETTABLE))}")
        set_value(cfg, key, value)
    cfg.out = str(run_dir)
    return validate(cfg), resolved


def train(cfg: TrainConfig, *, resume: bool = False, force: bool = False, console=None, quiet: bool = False,
          on_step=None, source: str | None = None) -> RunResult:
    """Step 3: train ``cfg`` into ``cfg.out`` (module docstring). ``resume`` continues from the
    newest checkpoint with the saved config (see :func:`resume_config`); ``force`` replaces an
    earlier run's files. ``on_step(state)`` is called after each optimizer step (process 0);
    ``source`` (where the config came from) is recorded in the resolved config.

    Raises :class:`TrainInterrupted` (exit 130) after Ctrl-C, once the checkpoint is saved.
    """
    import torch

    if not cfg.out:
        raise UsageError("no run folder: give --out RUN_DIR")
    run_dir = Path(cfg.out).expanduser()
    rank, local_rank, world = _world()
    say = _Console(console, quiet, rank)
    full = cfg.adapter.method == "full"
    if rank == 0:
        _check_same_folder(cfg.model.name, run_dir)
        _check_run_dir(run_dir, resume=resume, force=force)
    saved_resolved = {}
    if resume:
        finals = ([run_dir / FULL_WEIGHTS, run_dir / "model.safetensors.index.json"] if full  # index: sharded
                  else [run_dir / ADAPTER / "adapter_config.json"])
        if (run_dir / METRICS).is_file() and any(f.is_file() for f in finals):
            metrics = json.loads((run_dir / METRICS).read_text())
            if metrics.get("complete"):
                say(f"{run_dir}: the run is already complete")
                return RunResult(run_dir, "already-complete", metrics.get("steps", 0), metrics.get("steps", 0),
                                 metrics, None if full else run_dir / ADAPTER, None, rank == 0,
                                 run_dir if full else None)
        _, saved_resolved = read_run_config(run_dir)
    dist = None
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
    try:
        prep = prepare(cfg, source=saved_resolved.get("config_source") if resume else source)
        for w in prep.warnings:
            say(f"[yellow]warning:[/yellow] {w}")
        if resume and saved_resolved.get("datasets"):
            before = [d.get("sha256") for d in saved_resolved["datasets"]]
            now = [d["sha256"] for d in prep.resolved["datasets"]]
            if before != now:
                raise UsageError("--resume: the dataset changed since the run started (its sha256 differs); "
                                 "start a new run")
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            # a resume keeps the saved facts and records the keys it may have changed
            (run_dir / CONFIG_FILE).write_text(to_yaml(cfg, saved_resolved or prep.resolved), encoding="utf-8")
        return _Loop(prep, run_dir, resume=resume, say=say, quiet=quiet, on_step=on_step,
                     rank=rank, world=world, dist=dist).run()
    finally:
        if dist is not None and dist.is_initialized():
            dist.destroy_process_group()


class _Loop:
    """The training loop of one process (:func:`train`); state lives here so that a reader sees
    the loop in :meth:`run` and the bookkeeping in small methods."""

    def __init__(self, prep: Prepared, run_dir: Path, *, resume: bool, say, quiet: bool, on_step, rank: int,
                 world: int, dist):
        import torch

        from monet_cli.planners.qwen import make_processor
        from monet_cli.train.data import EncodedRecords

        self.prep, self.cfg, self.run_dir = prep, prep.config, run_dir
        self.say, self.quiet, self.on_step = say, quiet, on_step
        self.rank, self.world, self.dist = rank, world, dist
        t = self.cfg.train
        _seed_all(t.seed + rank)
        self.device = torch.device(prep.device)
        self.full = self.cfg.adapter.method == "full"
        self.model = load_model(prep)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        o = self.cfg.optim
        if self.full:  # weight decay on the ≥ 2-D weights only: not on embeddings, norms, biases
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
            rest = [p for n, p in named if not (p.ndim >= 2 and "embed" not in n)]
            groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}]
        else:
            groups = [{"params": self.trainable, "weight_decay": o.weight_decay}]
        self.optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        warmup = o.warmup_steps if o.warmup_steps > 0 else math.ceil(o.warmup_ratio * prep.total_steps)
        self.budget = t.max_minutes * 60.0  # seconds; 0: no time budget
        self.time_up = False
        self.fraction = 0.0  # of the time budget, when the scheduler last stepped (the same on all processes)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total=prep.total_steps, warmup=warmup, kind=o.scheduler,
                                                min_ratio=o.min_lr_ratio,
                                                fraction=self.fraction if self.budget else None))
        self.scaler = torch.amp.GradScaler("cuda") if prep.dtype == "float16" and self.device.type == "cuda" else None
        self.net = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.cfg.adapter.vision or self.full)
        self.encoder = Encoder(make_processor(prep.model.path), min_pixels=prep.min_pixels, max_pixels=prep.max_pixels)
        import inspect

        plain = self.model if self.full else self.model.get_base_model()
        accepts = inspect.signature(plain.forward).parameters
        self.input_names = [k for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw",
                                        "mm_token_type_ids") if k in accepts]  # the last: transformers 5 only
        self.dataset = EncodedRecords(prep.records, self.encoder)
        self.state = TrainState()
        self.rng = _rng_state()  # the state at the last step boundary
        self.resumed_from = None
        if resume:
            ck = latest_checkpoint(run_dir)
            if ck is not None:
                self._load_checkpoint(ck)
                self.resumed_from = ck
        self.session_start = time.perf_counter()
        self.session_seconds0 = self.state.seconds

    # -- data ----------------------------------------------------------------------------

    def _windows(self, epoch: int, rank: int) -> list[list[list[int]]]:
        """Process ``rank``'s micro-batches of ``epoch``, grouped into optimizer steps."""
        t = self.cfg.train
        order = epoch_order(self.prep.train_idx, t.seed, epoch)
        micro = _micro_batches(shard(order, rank, self.world), t.batch_size)
        return [micro[i:i + t.grad_accum] for i in range(0, len(micro), t.grad_accum)]

    def _window_labels(self, epoch: int) -> list[int]:
        """Assistant tokens of each optimizer step of ``epoch``, summed over all processes
        (known in advance from the measured lengths: no communication needed)."""
        per_rank = [self._windows(epoch, r) for r in range(self.world)]
        return [sum(self.prep.lengths[i][1] for wins in per_rank for mb in wins[w] for i in mb)
                for w in range(len(per_rank[0]))]

    def _loader(self, batches: list[list[int]]):
        import torch
        from functools import partial

        from monet_cli.train.data import collate

        # a generator of its own: the global RNG (dropout) must not depend on when loaders start
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.data.workers,
                                           collate_fn=partial(collate, pad_id=self.encoder.pad_id),
                                           generator=torch.Generator().manual_seed(self.cfg.train.seed),
                                           worker_init_fn=_ignore_ctrl_c if self.cfg.data.workers else None)

    def _loss_sum(self, batch, net):
        """Summed cross-entropy of a micro-batch's assistant tokens (next-token prediction)."""
        import torch
        import torch.nn.functional as F

        inputs = {k: batch[k].to(self.device) for k in self.input_names if k in batch}
        logits = net(**inputs).logits[:, :-1].float()
        labels = batch["labels"][:, 1:].to(self.device)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                               reduction="sum") if labels.numel() else torch.zeros((), device=self.device)

    def _all_sum(self, *values: float) -> list[float]:
        if self.dist is None:
            return list(values)
        import torch

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        self.dist.all_reduce(t)
        return t.tolist()

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> RunResult:
        t, prep, st = self.cfg.train, self.prep, self.state
        self._write_log_truncated()
        if self.resumed_from is not None:
            self.say(f"resuming from {self.resumed_from} (step {st.step}/{prep.total_steps})")
        stop_at = t.stop_after if t.stop_after > st.step else 0  # a resume goes on past an earlier pause
        self.model.train()
        self.time_up = self._time_up()
        with _StopOnCtrlC(self.say) as stop, \
                _progress(self.say, prep.total_steps, st.step, self.budget, self._seconds()) as show:
            if st.step == 0 and prep.eval_idx and not st.evals:
                self._evaluate()
            busy, window_tokens, window_records = 0.0, 0, 0  # compute seconds, tokens, records since the last log
            while st.step < prep.total_steps and not self.time_up:
                windows = self._windows(st.epoch, self.rank)
                window_labels = self._window_labels(st.epoch)
                first = st.position // t.grad_accum
                batches = [mb for w in windows[first:] for mb in w]
                batch_iter = iter(self._loader(batches))
                for w in range(first, len(windows)):
                    n_label = window_labels[w]
                    loss_sum, t0 = 0.0, time.perf_counter()
                    for j in range(len(windows[w])):
                        batch = next(batch_iter)
                        last = j == len(windows[w]) - 1
                        with (self.net.no_sync() if self.dist is not None and not last else nullcontext()):
                            loss = self._loss_sum(batch, self.net)
                            # mean over the step's assistant tokens on all processes (DDP averages grads)
                            scaled = loss * (self.world / max(1, n_label))
                            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                        loss_sum += float(loss.detach())
                        window_tokens += batch["n_tokens"]
                        window_records += batch["n_records"]
                        if self._stop_requested(stop):
                            del batch_iter
                            self._save_checkpoint(interrupted=True)
                            raise TrainInterrupted(
                                f"interrupted; checkpoint of step {st.step} saved in "
                                f"{self.run_dir / CHECKPOINTS}; continue with --resume", path=None)
                    lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
                    grad_norm = self._optimizer_step()
                    busy += time.perf_counter() - t0
                    loss_sum, = self._all_sum(loss_sum)
                    step_loss = loss_sum / max(1, n_label)
                    st.step += 1
                    st.position += len(windows[w])
                    if w == len(windows) - 1:
                        st.epoch, st.position = st.epoch + 1, 0
                    st.first_loss = step_loss if st.first_loss is None else st.first_loss
                    st.last_loss = step_loss
                    tokens, records = self._all_sum(window_tokens, window_records)
                    st.tokens += int(tokens)
                    st.records += int(records)
                    st.seconds = self._seconds()
                    self.rng = _rng_state()
                    self.time_up = self._time_up()
                    done = st.step >= prep.total_steps or self.time_up
                    if st.step % t.log_every == 0 or done:
                        dt = max(1e-9, busy)
                        entry = {"step": st.step, "epoch": st.epoch, "loss": round(step_loss, 6),
                                 "lr": lr,
                                 "grad_norm": None if grad_norm is None else round(grad_norm, 6),
                                 "tokens_per_s": round(tokens / dt, 1), "records_per_s": round(records / dt, 3),
                                 "seconds": round(self._seconds(), 2)}
                        self._log(entry)
                        show(st.step, {"loss": f"{step_loss:.4f}", "lr": f"{entry['lr']:.2e}",
                                       "tok/s": f"{entry['tokens_per_s']:.0f}",
                                       "eval": f"{st.evals[-1]['eval_loss']:.4f}" if st.evals else ""},
                             st.seconds)
                        busy, window_tokens, window_records = 0.0, 0, 0
                    if prep.eval_idx and t.eval_every and st.step % t.eval_every == 0 and not done:
                        self._evaluate()
                    paused = bool(stop_at) and st.step >= stop_at and not done
                    if (t.save_every and st.step % t.save_every == 0) or paused:
                        self._save_checkpoint()
                    if self.on_step is not None and self.rank == 0:
                        self.on_step(st)
                    if done or paused:
                        break
                del batch_iter
                if st.step >= prep.total_steps or (stop_at and st.step >= stop_at) or self.time_up:
                    break
            if self.time_up and st.step < prep.total_steps:
                self.say(f"time budget of {t.max_minutes:g} min reached at step {st.step}")
            elif st.step < prep.total_steps:
                self.say(f"paused at step {st.step}/{prep.total_steps}; continue with --resume")
                return RunResult(self.run_dir, "paused", st.step, prep.total_steps, self._metrics(False), None,
                                 self.model, self.rank == 0)
            if prep.eval_idx:
                self._evaluate()
        return self._finish()

    def _shared_seconds(self) -> float:
        """Training time by process 0's clock, the same number on every process."""
        if self.dist is None:
            return self._seconds()
        import torch

        t = torch.tensor([self._seconds()], dtype=torch.float64, device=self.device)
        self.dist.broadcast(t, src=0)
        return float(t.item())

    def _time_up(self) -> bool:
        """The time budget (train.max_minutes) is spent."""
        return bool(self.budget) and self._shared_seconds() >= self.budget

    def _stop_requested(self, stop: _StopOnCtrlC) -> bool:
        if self.dist is None:
            return stop.requested
        flag, = self._all_sum(1.0 if stop.requested else 0.0)  # every process stops at the same micro-batch
        return flag > 0

    def _optimizer_step(self) -> float | None:
        import torch

        o = self.cfg.optim
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = None
        if o.max_grad_norm > 0:
            norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, o.max_grad_norm))
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.budget:
            self.fraction = self._shared_seconds() / self.budget
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    def _evaluate(self) -> float:
        """Mean cross-entropy per assistant token on the held-out records (all processes)."""
        import torch

        st = self.state
        idx = self.prep.eval_idx[self.rank::self.world]  # uneven shares are fine: no DDP wrapper here
        rng = _rng_state()
        self.model.eval()
        loss, count = 0.0, 0
        with torch.no_grad():
            for batch in self._loader(_micro_batches(idx, self.cfg.train.batch_size)):
                loss += float(self._loss_sum(batch, self.model))
                count += batch["n_label"]
        self.model.train()
        _set_rng_state(rng)
        loss, count = self._all_sum(loss, count)
        value = loss / max(1, count)
        st.evals.append({"step": st.step, "eval_loss": round(value, 6)})
        self._log({"step": st.step, "eval_loss": round(value, 6), "eval_records": len(self.prep.eval_idx),
                   "eval_tokens": int(count)})
        if st.step > 0:
            self.say(f"step {st.step}: eval loss {value:.4f}")
        return value

    # -- files ---------------------------------------------------------------------------

    def _seconds(self) -> float:
        return self.session_seconds0 + (time.perf_counter() - self.session_start)

    def _log(self, entry: dict) -> None:
        if self.rank == 0:
            with open(self.run_dir / METRICS_LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")

    def _write_log_truncated(self) -> None:
        """On resume, forget log lines written after the checkpoint (they will be redone)."""
        path = self.run_dir / METRICS_LOG
        if self.rank != 0 or not path.is_file():
            return
        keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and json.loads(ln).get("step", 0) <= self.state.step]
        if self.resumed_from is None:
            keep = []
        path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def _barrier(self):
        if self.dist is not None:
            self.dist.barrier()

    def _save_checkpoint(self, *, interrupted: bool = False) -> Path:
        """The state at the last step boundary → ``checkpoints/step-NNNNNN`` (written to a
        ``.tmp`` folder, then renamed: a crash never leaves a half checkpoint)."""
        import torch

        st = self.state
        final = self.run_dir / CHECKPOINTS / f"step-{st.step:06d}"
        if final.is_dir() and (final / "state.json").is_file():
            return final
        tmp = final.with_name(final.name + ".tmp")
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            if self.full:
                from safetensors.torch import save_model

                save_model(self.model, str(tmp / FULL_WEIGHTS))  # tied weights stored once
            else:
                self.model.save_pretrained(str(tmp))
            torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                        "scaler": self.scaler.state_dict() if self.scaler else None}, tmp / "trainer.pt")
        self._barrier()
        torch.save(self.rng, tmp / f"rng-{self.rank}.pt")
        self._barrier()
        if self.rank == 0:
            state = {**st.to_dict(), "seconds": round(self._seconds(), 3), "interrupted": interrupted,
                     "world_size": self.world, "total_steps": self.prep.total_steps}
            (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
            tmp.rename(final)
            keep = self.cfg.train.keep_checkpoints
            if keep:
                older = sorted(p for p in (self.run_dir / CHECKPOINTS).glob("step-*")
                               if p.is_dir() and not p.name.endswith(".tmp"))[:-keep]
                for p in older:
                    shutil.rmtree(p, ignore_errors=True)
        self._barrier()
        return final

    def _load_checkpoint(self, ck: Path) -> None:
        import torch

        state = json.loads((ck / "state.json").read_text(encoding="utf-8"))
        if state.get("world_size", 1) != self.world:
            raise UsageError(f"--resume: the run was trained by {state.get('world_size', 1)} process(es); "
                             f"resume it with the same number (now {self.world})")
        if self.full:
            from safetensors.torch import load_model as load_weights

            missing, unexpected = load_weights(self.model, str(ck / FULL_WEIGHTS), strict=False,
                                               device=str(self.device))
            if missing or unexpected:
                raise MonetError(f"checkpoint does not fit the model: {sorted([*missing, *unexpected])[:3]}",
                                 path=ck)
        else:
            from peft import set_peft_model_state_dict
            from safetensors.torch import load_file

            result = set_peft_model_state_dict(self.model, load_file(str(ck / "adapter_model.safetensors"),
                                                                     device=str(self.device)))
            if getattr(result, "unexpected_keys", None):
                raise MonetError(f"checkpoint does not fit the model: {result.unexpected_keys[:3]}", path=ck)
        trainer = torch.load(ck / "trainer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(trainer["optimizer"])
        self.scheduler.load_state_dict(trainer["scheduler"])
        if self.scaler and trainer.get("scaler"):
            self.scaler.load_state_dict(trainer["scaler"])
        self.rng = torch.load(ck / f"rng-{self.rank}.pt", weights_only=True)
        _set_rng_state(self.rng)
        self.state = TrainState(**{k: state[k] for k in TrainState().to_dict() if k in state})

    def _metrics(self, complete: bool) -> dict:
        import torch

        st, prep = self.state, self.prep
        m = {"complete": complete, "method": self.cfg.adapter.method,
             "stopped_by": ("max_minutes" if self.time_up and st.step < prep.total_steps else "steps") if complete
             else None, "steps": st.step, "total_steps": prep.total_steps, "epochs": st.epoch,
             "records": st.records, "tokens": st.tokens, "seconds": round(self._seconds(), 2),
             "tokens_per_s": round(st.tokens / max(1e-9, self._seconds()), 1),
             "train_loss_first": st.first_loss, "train_loss_last": st.last_loss,
             "eval_loss_before": st.evals[0]["eval_loss"] if st.evals and st.evals[0]["step"] == 0 else None,
             "eval_loss_after": st.evals[-1]["eval_loss"] if st.evals else None, "evals": st.evals,
             "trainable_parameters": sum(p.numel() for p in self.trainable),
             "device": prep.device, "dtype": prep.dtype, "world_size": self.world, "versions": _versions()}
        if self.device.type == "cuda":
            m["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)
            m["gpu"] = torch.cuda.get_device_name(self.device)
        return m

    def _finish(self) -> RunResult:
        from monet_cli.train.card import write_card

        metrics = self._metrics(True)
        adapter = None if self.full else self.run_dir / ADAPTER
        if self.rank == 0:
            if self.full:
                self._save_full_model(metrics)
            else:
                tmp = adapter.with_name(ADAPTER + ".tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                self.model.save_pretrained(str(tmp))
                shutil.rmtree(adapter, ignore_errors=True)
                tmp.rename(adapter)
            (self.run_dir / METRICS).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
            write_card(self.run_dir, self.cfg, self.prep.resolved, metrics)
            what = f"model in [bold]{self.run_dir}[/bold]" if self.full else f"adapter in [bold]{adapter}[/bold]"
            self.say(f"[green]✓[/green] {what} ({metrics['steps']} steps, {metrics['seconds']:.1f} s)")
        self._barrier()
        return RunResult(self.run_dir, "complete", self.state.step, self.prep.total_steps, metrics, adapter,
                         self.model, self.rank == 0, self.run_dir if self.full else None)

    def _save_full_model(self, metrics: dict) -> None:
        """A full run's model → ``RUN_DIR`` itself, a complete model folder for ``--model RUN_DIR``:
        the weights and ``config.json`` (save_pretrained), the base folder's tokenizer, chat
        template and image processor files, and a ``monet.json`` naming the base's preset (so a
        trained ``mini`` keeps the mini pixel budget, prompts and generation settings). Written in
        ``RUN_DIR/model.tmp`` first, then moved in."""
        base = Path(self.prep.model.path)
        tmp = self.run_dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        use_cache = self.model.config.use_cache
        self.model.config.use_cache = True  # for generation
        try:
            self.model.save_pretrained(str(tmp))
        finally:
            self.model.config.use_cache = use_cache
        copy_side_files(base, tmp, skip=(MARKER,))
        marker = {}
        if (base / MARKER).is_file():
            try:
                marker = json.loads((base / MARKER).read_text(encoding="utf-8"))
            except ValueError:
                marker = {}
        preset = self.prep.model.preset
        if preset is not None or marker:
            if preset is not None:
                marker["preset"] = preset.name
            marker.setdefault("architecture", self.prep.model.architecture)
            marker.update(trained=True, method="full", base=self.cfg.model.name, steps=metrics["steps"],
                          seconds=metrics["seconds"])
            (tmp / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        for old in self.run_dir.glob("model-*-of-*.safetensors"):  # an earlier, sharded save
            old.unlink()
        for f in sorted(tmp.iterdir()):
            os.replace(f, self.run_dir / f.name)
        tmp.rmdir()
