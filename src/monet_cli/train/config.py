"""Training settings: dataclasses, YAML presets, ``--set key=value`` overrides, printing.

A config is built in this order, each step overriding the one before:

1. the dataclass defaults below (the same values as ``models/train/dora-paper.yaml``);
2. ``--config``: a preset name (``models/train/<name>.yaml``: ``dora-paper``, ``lora``,
   ``qlora``, ``tiny-cpu``, ``mini``) or a YAML file; only the keys it names change;
3. the command line: ``DATASET…`` → ``data.datasets``, ``--model`` → ``model.name``,
   ``--out`` → ``out``;
4. ``--set section.key=value`` (the value is read as YAML: ``--set optim.lr=2e-4``,
   ``--set adapter.modules_to_save=[embed_tokens,lm_head]``).

``adapter.method`` is ``dora`` or ``lora`` (a peft adapter on a frozen base) or ``full``: every
weight of the model is trained, no peft (meant for small models such as the ``mini`` preset,
which is trained from scratch). For ``full`` the adapter's other keys (rank, alpha, dropout,
language_model, vision, modules_to_save) are ignored, and ``model.quant: 4bit`` is an error
(4-bit weights cannot be trained). AdamW then decays only the ≥ 2-D non-embedding weights.

**Time budget.** ``train.max_minutes`` > 0 stops training once that much training time (wall
clock, summed over ``--resume`` sessions; model loading excluded) has passed, or at the step
limit (epochs, max_steps), whichever comes first; the learning-rate schedule after the warm-up
then runs on the elapsed share of the budget instead of the share of steps, so a run always
ends with its schedule ended. The warm-up is counted in steps: ``optim.warmup_steps`` (> 0:
that many steps, in place of ``optim.warmup_ratio``; with a time budget ``warmup_ratio`` must
be 0, as the number of steps is not known in advance). Such a run resumes, but not bit for bit
(its learning rate depends on the clock).

Unknown keys and wrong types are errors that name the key and where it came from. The saved
``RUN_DIR/config.yaml`` is this config plus a ``resolved`` section (model folder, dataset
hashes, split sizes, steps) written by the recipe; ``--dry-run`` prints the same document.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from monet_cli.errors import MonetError, UsageError

DEFAULT_PRESET = "dora-paper"
METHODS = ("dora", "lora", "full")  # full: every weight, no peft
QUANTS = ("none", "4bit")
DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULERS = ("cosine", "linear", "constant")
TOO_LONG = ("drop", "error")
# Keys that --resume may change: they do not alter what is computed, only when it is
# logged, evaluated, saved or paused.
RESUME_SETTABLE = frozenset({"train.log_every", "train.eval_every", "train.save_every", "train.keep_checkpoints",
                             "train.stop_after", "data.workers"})


class RunDirError(UsageError):
    """The run folder exists and neither --resume nor --force was given (or cannot be resumed)."""


class TrainInterrupted(MonetError):
    """Training was interrupted (Ctrl-C); a checkpoint was saved. Exit 130, like any interrupt."""

    exit_code = 130


# ----------------------------------------------------------------------------- settings


@dataclass
class ModelSettings:
    name: str = "Qwen/Qwen2-VL-7B-Instruct"  # preset, local folder or downloaded hub id (--model)
    quant: str = "none"  # none | 4bit (NF4 base, QLoRA; meant for CUDA)
    dtype: str = "auto"  # auto: bfloat16 on CUDA (float16 without bf16 support), float32 on the CPU
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun/accelerate: one GPU per process)
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2 (if installed)


@dataclass
class AdapterSettings:
    method: str = "dora"  # dora | lora | full (every weight trained, no peft; the keys below are then ignored)
    rank: int = 256
    alpha: float = 512.0
    dropout: float = 0.2
    language_model: bool = True  # every Linear of the language model (attention and MLP)
    vision: bool = False  # also every Linear of the vision encoder and its merger
    modules_to_save: list[str] = field(default_factory=list)  # trained fully, e.g. [embed_tokens, lm_head]


@dataclass
class DataSettings:
    datasets: list[str] = field(default_factory=list)  # JSONL files or folders of them (DATASET…)
    eval_fraction: float = 0.02  # held out for eval loss (at least one record when there are two or more)
    eval_max: int = 256  # at most this many held-out records
    min_pixels: int | None = None  # image pixel budget; null: the model preset's
    max_pixels: int | None = 262144  # paper: 512 x 512; null: the model preset's
    max_length: int = 4096  # tokens per record, images included
    too_long: str = "drop"  # drop | error: what to do with a record longer than max_length
    workers: int = 2  # processes that load and encode records (0: in the training process)


@dataclass
class OptimSettings:
    lr: float = 1.0e-4
    scheduler: str = "cosine"  # cosine | linear | constant, after the warm-up
    warmup_ratio: float = 0.0  # share of all steps spent warming up linearly from 0
    warmup_steps: int = 0  # > 0: warm up over this many steps instead (what a train.max_minutes run uses)
    min_lr_ratio: float = 0.0  # the schedule ends at lr * min_lr_ratio
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-8
    max_grad_norm: float = 1.0  # 0: no clipping


@dataclass
class LoopSettings:
    epochs: int = 1
    max_steps: int = 0  # > 0: at most this many optimizer steps (the schedule is sized to it)
    batch_size: int = 1  # records per micro-batch, per process
    grad_accum: int = 4  # micro-batches per optimizer step
    seed: int = 0  # data order, split, adapter initialisation, dropout
    log_every: int = 1  # steps between loss lines in metrics.jsonl
    eval_every: int = 0  # steps between evals (0: only before and after training)
    save_every: int = 200  # steps between checkpoints (0: only at the end and on Ctrl-C)
    keep_checkpoints: int = 2  # newest checkpoints kept (0: all)
    stop_after: int = 0  # > 0: save and stop after this step (a later --resume goes on); the schedule is unchanged
    max_minutes: float = 0.0  # > 0: stop after this much training time; the lr schedule runs on time (docstring)


@dataclass
class TrainConfig:
    """Every setting of a training run (module docstring)."""

    model: ModelSettings = field(default_factory=ModelSettings)
    adapter: AdapterSettings = field(default_factory=AdapterSettings)
    data: DataSettings = field(default_factory=DataSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    train: LoopSettings = field(default_factory=LoopSettings)
    out: str | None = None  # the run folder (--out)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def copy(self) -> "TrainConfig":
        return from_dict(self.to_dict(), where="copy")


SECTIONS = {"model": ModelSettings, "adapter": AdapterSettings, "data": DataSettings, "optim": OptimSettings,
            "train": LoopSettings}


# ----------------------------------------------------------------------------- merging


def _coerce(value, hint, key: str, where: str):
    """``value`` as type ``hint`` (int, float, bool, str, list[...] or X | None), or a
    :class:`UsageError` naming the key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key, where)
    bad = UsageError(f"{where}: {key} must be {getattr(hint, '__name__', str(hint))}, got {value!r}")
    if origin is list:
        if isinstance(value, str):  # --set a=x,y or a single item
            value = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise bad
        return [_coerce(v, args[0] if args else str, key, where) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise bad from None
        if f != int(f):
            raise bad
        return int(f)
    if hint is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise bad
        return str(value)
    raise bad


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def set_value(cfg: TrainConfig, key: str, value, *, where: str = "--set") -> None:
    """Set ``section.key`` (or ``out``) to ``value``, checked against the field's type."""
    parts = key.strip().split(".")
    if parts == ["out"]:
        cfg.out = _coerce(value, str | None, "out", where)
        return
    if len(parts) != 2 or parts[0] not in SECTIONS:
        raise UsageError(f"{where}: unknown config key {key!r}; keys are section.name with sections "
                         f"{', '.join(SECTIONS)} (and out)")
    section, name = parts
    hints = _hints(SECTIONS[section])
    if name not in hints:
        raise UsageError(f"{where}: unknown config key {key!r}; {section} has {', '.join(hints)}")
    setattr(getattr(cfg, section), name, _coerce(value, hints[name], key, where))


def merge(cfg: TrainConfig, raw: dict, *, where: str) -> TrainConfig:
    """Override ``cfg`` with the keys of a YAML document ``raw`` (nested ``section: {key: value}``)."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a training config is a mapping of sections, got {type(raw).__name__}")
    for section, values in raw.items():
        if section == "resolved":  # written by a run; facts, not settings
            continue
        if section == "out":
            set_value(cfg, "out", values, where=where)
            continue
        if section not in SECTIONS:
            raise UsageError(f"{where}: unknown config section {section!r}; sections are {', '.join(SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise UsageError(f"{where}: section {section!r} must be a mapping")
        for name, value in values.items():
            set_value(cfg, f"{section}.{name}", value, where=where)
    return cfg


def from_dict(raw: dict, *, where: str) -> TrainConfig:
    return merge(TrainConfig(), raw, where=where)


def parse_sets(items) -> list[tuple[str, object]]:
    """``["optim.lr=2e-4", ...]`` → ``[("optim.lr", 0.0002), ...]`` (values read as YAML)."""
    import yaml

    out = []
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"--set {item!r}: expected key=value, e.g. --set optim.lr=2e-4")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        out.append((key.strip(), value))
    return out


# ----------------------------------------------------------------------------- presets


def presets_dir() -> Path:
    from monet_cli.resources import data_dir

    return data_dir("models") / "train"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read the config ({e.strerror or e})", path=path) from None
    except yaml.YAMLError as e:
        raise UsageError(f"not valid YAML ({str(e).splitlines()[0]})", path=path) from None
    return raw or {}


def config_path(spec: str | None) -> Path:
    """The YAML file ``--config`` names: a preset name or a path."""
    spec = spec or DEFAULT_PRESET
    preset = presets_dir() / f"{spec}.yaml"
    if "/" not in spec and "\\" not in spec and not spec.endswith((".yaml", ".yml")):
        if preset.is_file():
            return preset
        raise UsageError(f"unknown training preset {spec!r}; presets are {', '.join(preset_names())}, "
                         f"or give a YAML file")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise UsageError("no such config file", path=path)
    return path


def load_config(spec: str | None = None) -> TrainConfig:
    """The config of preset or file ``spec`` (default ``dora-paper``) over the defaults."""
    path = config_path(spec)
    return merge(TrainConfig(), _read_yaml(path), where=str(path))


def build_config(spec: str | None = None, *, datasets=None, model: str | None = None, out=None,
                 sets=()) -> TrainConfig:
    """The config of a ``monet train`` command line (steps 1–4 of the module docstring), validated."""
    cfg = load_config(spec)
    if datasets:
        cfg.data.datasets = [str(d) for d in datasets]
    if model:
        cfg.model.name = str(model)
    if out is not None:
        cfg.out = str(out)
    for key, value in parse_sets(sets):
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> TrainConfig:
    """Range and choice checks; raises :class:`UsageError` naming the key."""
    def need(ok: bool, key: str, what: str):
        if not ok:
            section, name = key.split(".")
            raise UsageError(f"config: {key} {what}, got {getattr(getattr(cfg, section), name)!r}")

    m, a, d, o, t = cfg.model, cfg.adapter, cfg.data, cfg.optim, cfg.train
    need(m.quant in QUANTS, "model.quant", f"must be one of {', '.join(QUANTS)}")
    need(m.dtype in DTYPES, "model.dtype", f"must be one of {', '.join(DTYPES)}")
    need(m.device == "auto" or m.device == "cpu" or m.device.startswith("cuda"), "model.device",
         "must be auto, cpu, cuda or cuda:N")
    need(a.method in METHODS, "adapter.method", f"must be one of {', '.join(METHODS)}")
    if a.method == "full":  # every weight trains: the adapter's shape settings do not apply
        need(m.quant == "none", "model.quant",
             "must be none with adapter.method=full (4-bit weights cannot be trained; QLoRA needs an adapter)")
    else:
        need(a.rank >= 1, "adapter.rank", "must be ≥ 1")
        need(a.alpha > 0, "adapter.alpha", "must be > 0")
        need(0 <= a.dropout < 1, "adapter.dropout", "must be in [0, 1)")
        need(a.language_model or a.vision, "adapter.language_model",
             "and adapter.vision are both false: the adapter needs Linear layers to adapt")
    need(0 <= d.eval_fraction < 1, "data.eval_fraction", "must be in [0, 1)")
    need(d.eval_max >= 0, "data.eval_max", "must be ≥ 0")
    need(d.max_length >= 16, "data.max_length", "must be ≥ 16")
    need(d.too_long in TOO_LONG, "data.too_long", f"must be one of {', '.join(TOO_LONG)}")
    need(d.workers >= 0, "data.workers", "must be ≥ 0")
    need(d.max_pixels is None or d.max_pixels >= 28 * 28, "data.max_pixels", "must be ≥ 784 (one visual token)")
    need(d.min_pixels is None or d.min_pixels >= 28 * 28, "data.min_pixels", "must be ≥ 784")
    need(o.lr > 0, "optim.lr", "must be > 0")
    need(o.scheduler in SCHEDULERS, "optim.scheduler", f"must be one of {', '.join(SCHEDULERS)}")
    need(0 <= o.warmup_ratio < 1, "optim.warmup_ratio", "must be in [0, 1)")
    need(o.warmup_steps >= 0, "optim.warmup_steps", "must be ≥ 0")
    need(t.max_minutes >= 0, "train.max_minutes", "must be ≥ 0 (0: no time budget)")
    need(not (t.max_minutes > 0 and o.warmup_ratio > 0 and o.warmup_steps == 0), "optim.warmup_ratio",
         "must be 0 with a time budget (train.max_minutes): the number of steps is not known in advance; "
         "give optim.warmup_steps instead")
    need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas", "must be two numbers in [0, 1)")
    need(o.max_grad_norm >= 0, "optim.max_grad_norm", "must be ≥ 0")
    need(t.epochs >= 1, "train.epochs", "must be ≥ 1")
    for key in ("max_steps", "eval_every", "save_every", "keep_checkpoints", "stop_after"):
        need(getattr(t, key) >= 0, f"train.{key}", "must be ≥ 0")
    for key in ("batch_size", "grad_accum", "log_every"):
        need(getattr(t, key) >= 1, f"train.{key}", "must be ≥ 1")
    return cfg


# ----------------------------------------------------------------------------- printing, run folders


def to_yaml(cfg: TrainConfig, resolved: dict | None = None) -> str:
    """The complete config as YAML (plus the ``resolved`` facts of a run, when given)."""
    import yaml

    doc = cfg.to_dict()
    if resolved is not None:
        doc["resolved"] = resolved
    class Dumper(yaml.SafeDumper):
        pass

    def lists(dumper, data):  # short lists of scalars on one line, the rest in block style
        flow = all(not isinstance(x, (dict, list)) for x in data)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)

    Dumper.add_representer(list, lists)
    head = "# monet training config (monet train --dry-run prints it; a run saves it as RUN_DIR/config.yaml)\n"
    return head + yaml.dump(json.loads(json.dumps(doc)), Dumper=Dumper, sort_keys=False, default_flow_style=False,
                            allow_unicode=True, width=120)


CONFIG_FILE = "config.yaml"
ADAPTER = "adapter"


def read_run_config(run_dir) -> tuple[TrainConfig, dict]:
    """A run folder's saved config and its ``resolved`` section."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunDirError(f"not a monet training run (no {CONFIG_FILE})", path=run_dir)
    raw = _read_yaml(path)
    return validate(from_dict(raw, where=str(path))), dict(raw.get("resolved") or {})


def adapter_dir(path) -> Path | None:
    """The peft adapter folder of ``path``: ``path`` itself when it holds ``adapter_config.json``,
    else, for a finished ``monet train`` run folder (``config.yaml`` beside ``adapter/``), its
    ``adapter/``; None otherwise. Imports nothing heavy."""
    p = Path(path).expanduser()
    if (p / "adapter_config.json").is_file():
        return p
    if (p / CONFIG_FILE).is_file() and (p / ADAPTER / "adapter_config.json").is_file():
        return p / ADAPTER
    return None


def is_full_run(path) -> bool:
    """True when ``path`` is a ``monet train`` run folder with ``adapter.method: full``: no
    adapter; once finished, the folder is itself a complete model (``--model RUN``). Imports
    nothing heavy."""
    p = Path(path).expanduser()
    if not (p / CONFIG_FILE).is_file():
        return False
    try:
        return read_run_config(p)[0].adapter.method == "full"
    except MonetError:
        return False


def run_base_model(path) -> str | None:
    """The base model (``model.name``) of the monet training run that ``path`` is, or whose
    ``adapter/`` folder it is; None for anything else (a full run has no base to add: it is
    the model, see :func:`is_full_run`). Imports nothing heavy."""
    p = Path(path).expanduser()
    for run in (p, p.parent):
        if (run / CONFIG_FILE).is_file() and adapter_dir(run) is not None:
            try:
                return read_run_config(run)[0].model.name
            except MonetError:
                return None
    return None
