"""Model presets (``models/*.yaml``) and where a model's weights are on this machine.

``--model`` takes one of three things, resolved by :func:`resolve_model`:

* a **preset** name (``monetgpt-7b``, ``qwen2.5-vl-7b``, ``qwen2.5-vl-3b``, ``qwen2-vl-2b``,
  ``tiny``): its hub id looked up in the local Hugging Face cache (``tiny``: its folder under
  :func:`monet_home`);
* a **local folder** holding a transformers checkpoint (``config.json``, a tokenizer, weights);
* a **hub id** (``org/name``) that the user has downloaded into the Hugging Face cache.

monet never downloads: if the weights are not on disk, :class:`ModelNotFoundError` names the
missing files and the command that fetches them. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from monet_cli.errors import MonetError, UsageError
from monet_cli.resources import data_dir

DEFAULT_PRESET = "monetgpt-7b"
QUANTS: tuple[str, ...] = ("4bit", "8bit", "none")
ARCHITECTURES: dict[str, str] = {"qwen2_vl": "qwen2-vl", "qwen2_5_vl": "qwen2.5-vl"}  # config model_type → ours
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(MonetError):
    """A model's weights are not on this machine (the message says which files and how to get them)."""


# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """One ``models/<name>.yaml``: what to load and how much it needs."""

    name: str
    description: str
    architecture: str  # "qwen2-vl" | "qwen2.5-vl"
    hub_id: str | None = None
    local_dir: str | None = None  # under monet_home()/models, for models monet builds itself
    build: str | None = None  # the command that builds a local_dir model
    parameters_b: float = 0.0
    quant: str = "4bit"  # default quantisation on a CUDA GPU
    min_pixels: int = 56 * 56
    max_pixels: int = 1280 * 28 * 28
    prompts: str = "monetgpt"
    temperature: float = 0.3
    samples: int = 1  # > 1: plan each stage from the consensus of that many sampled plans
    consensus: str = "mean"  # that consensus: "mean" (of the values) or "medoid" (nearest result)
    sample_temperature: float = 1.0  # the temperature those samples are drawn at (1: the model's own distribution)
    max_new_tokens: dict = field(default_factory=lambda: {"analysis": 1024, "values": 256})
    gpu_memory_gb: dict = field(default_factory=dict)  # quant → GiB, estimated
    download_gb: float = 0.0
    value_map: object = None  # a monet_cli.value_map.ValueMap: the model's values → monet's (None: as said)


MAX_SAMPLES = 64


def checked_samples(v, what: str = "generation.samples", error=ValueError) -> int:
    """``v`` if it is a valid number of sampled plans per stage (1 … :data:`MAX_SAMPLES`), else
    ``error`` naming ``what``: one rule for preset files and the ``--samples`` option."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SAMPLES:
        raise error(f"{what} must be a whole number from 1 to {MAX_SAMPLES}, got {v!r}")
    return v


CONSENSUS = ("mean", "medoid")  # how several sampled plans of a stage become one (planners/protocol.py)


def checked_consensus(v, what: str = "generation.consensus", error=ValueError) -> str:
    """``v`` if it names a consensus of :data:`CONSENSUS`, else ``error`` naming ``what``: one
    rule for preset files and the ``--consensus`` option."""
    if v not in CONSENSUS:
        raise error(f"{what} must be {' or '.join(CONSENSUS)}, got {v!r}")
    return v


MAX_SAMPLE_TEMPERATURE = 2.0


def checked_sample_temperature(v, what: str = "generation.sample_temperature", error=ValueError) -> float:
    """``v`` as a float if it is a temperature to draw several plans at (above 0, at most
    :data:`MAX_SAMPLE_TEMPERATURE`: at 0 every sample would be the same greedy plan), else
    ``error`` naming ``what``: one rule for preset files and the ``--sample-temperature`` option."""
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= MAX_SAMPLE_TEMPERATURE
    if not ok:
        raise error(f"{what} must be a number above 0 and at most {MAX_SAMPLE_TEMPERATURE:g} (0 would make every "
                    f"sample the one greedy plan: use --samples 1), got {v!r}")
    return float(v)


def _preset_from(raw: dict, path: Path) -> Preset:
    try:
        value_map = None
        if raw.get("value_map") is not None:
            from monet_cli.value_map import parse_value_map

            value_map = parse_value_map(raw["value_map"], str(raw.get("name", path.stem)))
        gen = raw.get("generation") or {}
        px = raw.get("pixels") or {}
        arch = raw["architecture"]
        if arch not in ARCHITECTURES.values():
            raise ValueError(f"architecture {arch!r} is not one of {', '.join(ARCHITECTURES.values())}")
        quant = str(raw.get("quant", "4bit"))
        if quant not in QUANTS:
            raise ValueError(f"quant {quant!r} is not one of {', '.join(QUANTS)}")
        return Preset(
            name=str(raw["name"]), description=" ".join(str(raw.get("description", "")).split()),
            architecture=arch, hub_id=raw.get("hub_id"), local_dir=raw.get("local_dir"), build=raw.get("build"),
            parameters_b=float(raw.get("parameters_b", 0)), quant=quant,
            min_pixels=int(px.get("min", 56 * 56)), max_pixels=int(px.get("max", 1280 * 28 * 28)),
            prompts=str(raw.get("prompts", "monetgpt")), temperature=float(gen.get("temperature", 0.3)),
            samples=checked_samples(gen.get("samples", 1)), consensus=checked_consensus(gen.get("consensus", "mean")),
            sample_temperature=checked_sample_temperature(gen.get("sample_temperature", 1.0)),
            max_new_tokens={"analysis": 1024, "values": 256, **(gen.get("max_new_tokens") or {})},
            gpu_memory_gb={str(k): float(v) for k, v in (raw.get("gpu_memory_gb") or {}).items()},
            download_gb=float(raw.get("download_gb", 0)), value_map=value_map,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise MonetError(f"bad model preset ({e})", path=path) from None


@lru_cache(maxsize=1)
def presets() -> dict[str, Preset]:
    """All presets, by name (read once from ``models/*.yaml``)."""
    import yaml

    out: dict[str, Preset] = {}
    for path in sorted(data_dir("models").glob("*.yaml")):
        p = _preset_from(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, path)
        out[p.name] = p
    # the default first, the rest by size (largest first), the tiny test model last
    order = sorted(out.values(), key=lambda p: (p.name != DEFAULT_PRESET, -p.parameters_b))
    return {p.name: p for p in order}


def get_preset(name: str) -> Preset:
    try:
        return presets()[name]
    except KeyError:
        raise UsageError(f"unknown model preset {name!r}; presets are {', '.join(presets())}") from None


def memory_help() -> str:
    """A few lines for ``--help``: approximate GPU memory per preset and quantisation."""
    lines = ["Approximate GPU memory (GiB, estimated, not measured) per preset: 4bit / 8bit / none (bf16):"]
    for p in presets().values():
        if p.local_dir:
            continue
        m = p.gpu_memory_gb
        lines.append(f"  {p.name}: {m.get('4bit', '?'):g} / {m.get('8bit', '?'):g} / {m.get('none', '?'):g}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- places


def monet_home() -> Path:
    """monet's own cache folder: ``$MONET_HOME``, else ``$XDG_CACHE_HOME/monet`` or ``~/.cache/monet``."""
    if os.environ.get("MONET_HOME"):
        return Path(os.environ["MONET_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "monet"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, as huggingface_hub finds it (``HF_HUB_CACHE``,
    ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME/hub``, ``~/.cache/huggingface/hub``)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def cached_snapshot(hub_id: str, revision: str = "main") -> Path | None:
    """The folder of ``hub_id`` in the local HF cache (the snapshot ``revision`` points at,
    else the newest snapshot), or None. Reads the cache layout; never touches the network."""
    repo = hf_cache_dir() / ("models--" + hub_id.replace("/", "--"))
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return None
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text().strip()
        if (snaps / commit).is_dir():
            return snaps / commit
    if re.fullmatch(r"[0-9a-f]{40}", revision) and (snaps / revision).is_dir():
        return snaps / revision
    candidates = [p for p in snaps.iterdir() if p.is_dir()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def _exists(folder: Path, name: str) -> bool:
    p = folder / name
    return p.is_file() and os.path.getsize(p) > 0  # a dangling cache symlink is missing


def missing_files(folder: Path | None) -> list[str]:
    """What a transformers checkpoint in ``folder`` lacks to be loaded offline (empty: complete).

    Needed: ``config.json``; a tokenizer (``tokenizer.json``, or ``vocab.json`` + ``merges.txt``);
    weights (``model.safetensors``, or ``model.safetensors.index.json`` and every shard it lists;
    ``pytorch_model.bin`` likewise). ``preprocessor_config.json`` is optional: Qwen-VL's image
    processor settings are the same for every model and are the defaults.
    """
    if folder is None or not Path(folder).is_dir():
        return ["config.json", "tokenizer.json", "model.safetensors (or model.safetensors.index.json and its shards)"]
    folder = Path(folder)
    missing = []
    if not _exists(folder, "config.json"):
        missing.append("config.json")
    if not (_exists(folder, "tokenizer.json") or (_exists(folder, "vocab.json") and _exists(folder, "merges.txt"))):
        missing.append("tokenizer.json")
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if _exists(folder, single):
            break
        if _exists(folder, index):
            try:
                shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                missing.append(f"{index} (unreadable)")
                break
            missing.extend(s for s in shards if not _exists(folder, s))
            break
    else:
        missing.append("model.safetensors (or model.safetensors.index.json and its shards)")
    return missing


# ----------------------------------------------------------------------------- resolving


@dataclass(frozen=True)
class ResolvedModel:
    """What ``--model`` names, found on disk."""

    name: str  # as recorded in a plan: the preset name, the folder or the hub id
    path: Path  # the checkpoint folder
    architecture: str
    preset: Preset | None = None
    hub_id: str | None = None

    @property
    def min_pixels(self) -> int:
        return self.preset.min_pixels if self.preset else 56 * 56

    @property
    def max_pixels(self) -> int:
        return self.preset.max_pixels if self.preset else 1280 * 28 * 28

    @property
    def prompts(self) -> str:
        return self.preset.prompts if self.preset else "monetgpt"

    @property
    def default_quant(self) -> str:
        return self.preset.quant if self.preset else "4bit"

    @property
    def weights_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir()
                   if p.suffix in (".safetensors", ".bin") and p.is_file())


def _architecture_of(folder: Path, where: str) -> str:
    try:
        model_type = json.loads((folder / "config.json").read_text())["model_type"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelNotFoundError(f"cannot read config.json ({e})", path=folder) from None
    arch = ARCHITECTURES.get(model_type)
    if arch is None:
        raise UsageError(f"{where}: model_type {model_type!r} is not supported; monet runs "
                         f"{', '.join(ARCHITECTURES)} (Qwen2-VL, Qwen2.5-VL)")
    return arch


def _folder_preset(folder: Path) -> Preset | None:
    """The preset whose settings a folder asks for in its ``monet.json`` (``{"preset": "tiny"}``,
    written by ``monet models tiny``), if any."""
    try:
        return presets().get(json.loads((folder / "monet.json").read_text(encoding="utf-8"))["preset"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def download_hint(hub_id: str) -> str:
    return (f"get them with `huggingface-cli download {hub_id}` (huggingface_hub ≥ 1.0: `hf download {hub_id}`), "
            f"or pass --model DIR for a folder you downloaded with --local-dir; monet itself never downloads "
            f"(it runs with HF_HUB_OFFLINE=1 semantics)")


def _missing_error(what: str, missing: list[str], hint: str, where: Path | None) -> ModelNotFoundError:
    place = f" in {where}" if where is not None else ""
    return ModelNotFoundError(f"{what}: weights are not on this machine; missing{place}: "
                              f"{', '.join(missing)}; {hint}")


def resolve_model(spec: str | None = None) -> ResolvedModel:
    """The model ``spec`` names (preset, folder or hub id), checked complete on disk.

    Raises :class:`ModelNotFoundError` listing exactly which files are missing and how to get
    them, or :class:`UsageError` for a name that is none of the three.
    """
    spec = (spec or DEFAULT_PRESET).strip()
    if spec in presets():
        preset = presets()[spec]
        if preset.local_dir:
            folder = monet_home() / "models" / preset.local_dir
            missing = missing_files(folder)
            if missing:
                raise _missing_error(f"model {spec}", missing, f"build it with `{preset.build or 'monet models tiny'}`",
                                     folder)
            return ResolvedModel(name=spec, path=folder, architecture=preset.architecture, preset=preset)
        folder = cached_snapshot(preset.hub_id)
        missing = missing_files(folder)
        if missing:
            size = f" (about {preset.download_gb:g} GB)" if preset.download_gb else ""
            raise _missing_error(f"model {spec} ({preset.hub_id}){size}", missing,
                                 download_hint(preset.hub_id), folder or hf_cache_dir())
        return ResolvedModel(name=spec, path=folder, architecture=preset.architecture, preset=preset,
                             hub_id=preset.hub_id)
    path = Path(spec).expanduser()
    if path.is_dir():
        missing = missing_files(path)
        if missing:
            raise _missing_error(f"model folder {spec}", missing, "it is not a complete transformers checkpoint", None)
        return ResolvedModel(name=spec, path=path, architecture=_architecture_of(path, spec),
                             preset=_folder_preset(path))
    if path.exists():
        raise UsageError(f"--model {spec}: is a file; give a preset, a model folder or a hub id")
    if _HUB_ID.match(spec) and not spec.startswith((".", "~")):
        folder = cached_snapshot(spec)
        missing = missing_files(folder)
        if missing:
            raise _missing_error(f"model {spec}", missing, download_hint(spec), folder or hf_cache_dir())
        preset = next((p for p in presets().values() if p.hub_id == spec), None)
        return ResolvedModel(name=spec, path=folder, architecture=_architecture_of(folder, spec), preset=preset,
                             hub_id=spec)
    if os.sep in spec or spec.startswith((".", "~")):
        raise ModelNotFoundError("no such model folder", path=spec)
    raise UsageError(f"unknown model {spec!r}: not a preset ({', '.join(presets())}), "
                     f"a model folder or a hub id (org/name)")


def preset_status() -> list[dict]:
    """Every preset and whether its weights are on this machine (for ``monet models list``)."""
    rows = []
    for p in presets().values():
        try:
            folder = resolve_model(p.name).path
            present, missing = True, []
        except ModelNotFoundError:
            folder = (monet_home() / "models" / p.local_dir) if p.local_dir else cached_snapshot(p.hub_id)
            present, missing = False, missing_files(folder)
        rows.append({"name": p.name, "hub_id": p.hub_id, "architecture": p.architecture,
                     "parameters_b": p.parameters_b, "quant": p.quant, "max_pixels": p.max_pixels,
                     "prompts": p.prompts, "gpu_memory_gb": dict(p.gpu_memory_gb), "download_gb": p.download_gb,
                     "present": present, "path": str(folder) if folder else None, "missing": missing, "build": p.build,
                     "description": p.description,
                     "value_map": p.value_map.ident if p.value_map is not None else None})
    return rows


# ----------------------------------------------------------------------------- default backend


ML_PACKAGES = ("torch", "transformers", "tokenizers")


def require_ml(what: str, packages=ML_PACKAGES) -> None:
    """Raise a one-line :class:`MonetError` when a package ``what`` needs is not installed."""
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise MonetError(f"{what} needs {', '.join(missing)}, not installed here; install the model extra: "
                         f"pip install 'monet-cli[ml]' torch")


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA GPU (imports torch only if it is installed)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install is "no CUDA", not a crash
        return False


def default_backend() -> tuple[str, str]:
    """``(backend, reason)`` for ``monet plan`` without ``--backend``: ``qwen`` (4-bit) when a
    CUDA GPU is present and the default preset's weights are on disk, else ``auto``.

    The weights are checked first, so that a machine without them never imports torch.
    """
    try:
        resolve_model(DEFAULT_PRESET)
    except MonetError as e:
        first = str(e).split(";")[0]
        return "auto", f"planning with auto: {first} (see `monet models list`)"
    import importlib.util

    for pkg in ("torch", "transformers", "bitsandbytes"):
        if importlib.util.find_spec(pkg) is None:
            return "auto", (f"planning with auto: {DEFAULT_PRESET} weights are here but {pkg} is not installed "
                            f"(pip install 'monet-cli[ml]')")
    if not cuda_available():
        return "auto", (f"planning with auto: {DEFAULT_PRESET} weights are here but there is no CUDA GPU "
                        f"(--backend qwen runs it on the CPU, slowly)")
    return "qwen", f"planning with qwen: {DEFAULT_PRESET} in 4-bit on the CUDA GPU"
