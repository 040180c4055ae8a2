"""``monet doctor``: what this machine can run, and a smoke plan with the tiny model.

:func:`diagnose` returns plain data (the CLI prints it as a table or JSON): Python and
platform; the versions of torch, transformers, peft, accelerate, bitsandbytes (each
``None`` when missing); CUDA and every GPU's name and memory; whether bitsandbytes'
4-bit works here; the Hugging Face cache and offline setting; which presets have their
weights on disk (and what is missing); which render kernel ``monet apply`` uses (the C
kernel, where it is cached and how long it took to load, or why numba's is used instead);
and, unless ``smoke=False``, a full three-stage plan of a synthetic photo by the tiny random
Qwen2-VL (built in a temporary folder), on the GPU
in 4-bit when there is one, else on the CPU. The smoke plan checks the machinery (load,
generate, protocol, sidecar), not the answer: the tiny model's stages end ``failed``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import sys
import tempfile
import time

PACKAGES = ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "tokenizers")


def _version(pkg: str) -> str | None:
    if importlib.util.find_spec(pkg) is None:
        return None
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def gpu_info() -> dict:
    """``{"available": bool, "cuda": version, "devices": [{name, memory_gb, free_gb}], "error"}``."""
    info: dict = {"available": False, "cuda": None, "devices": []}
    if importlib.util.find_spec("torch") is None:
        info["error"] = "torch is not installed"
        return info
    try:
        import torch

        info["cuda"] = torch.version.cuda
        info["available"] = bool(torch.cuda.is_available())
        for i in range(torch.cuda.device_count() if info["available"] else 0):
            free, total = torch.cuda.mem_get_info(i)
            info["devices"].append({"name": torch.cuda.get_device_name(i), "memory_gb": round(total / 2**30, 1),
                                    "free_gb": round(free / 2**30, 1)})
    except Exception as e:  # a broken driver is a finding, not a crash
        info["error"] = f"{type(e).__name__}: {e}"
    return info


def render_kernel_info() -> dict:
    """``{"choice", "kernel", "library", "simd", "threads", "load_s", "fallback_reason"}``: the kernel
    :func:`monet_cli.render.kernel` picks here (choosing it builds or loads the C kernel; the
    time it took is ``load_s``), and why not the C kernel when it is not."""
    from monet_cli import _ckernel
    from monet_cli.errors import InputError
    from monet_cli.render import kernel

    info: dict = {"choice": os.environ.get("MONET_KERNEL", "auto").strip().lower() or "auto",
                  "kernel": None, "library": None, "simd": None, "threads": _ckernel.threads(), "load_s": None,
                  "fallback_reason": None}
    t0 = time.perf_counter()
    try:
        info["kernel"] = kernel()[0]
    except InputError as e:
        info["error"] = str(e)
    info["load_s"] = round(time.perf_counter() - t0, 3)
    if info["kernel"] == "c":
        info["library"] = str(_ckernel.library_path())
        info["simd"] = _ckernel.simd()
    elif info["choice"] != "numba":
        try:  # the reason the C kernel was passed over (a failed build is not cached: it is retried)
            _ckernel.load()
        except _ckernel.KernelUnavailable as e:
            info["fallback_reason"] = str(e)
    return info


def _smoke_photo():
    """A 320×240 working-space proxy with a grey ramp and colour patches (deterministic)."""
    import numpy as np

    h, w = 240, 320
    ramp = np.linspace(0.01, 0.9, w, dtype=np.float32)
    img = np.repeat(np.repeat(ramp[None, :, None], h, 0), 3, 2).copy()
    img[: h // 3, : w // 4] = (0.6, 0.1, 0.05)
    img[: h // 3, w // 4: w // 2] = (0.05, 0.4, 0.1)
    img[: h // 3, w // 2: 3 * w // 4] = (0.05, 0.1, 0.5)
    return img


def smoke_plan(*, quant: str | None = None, device: str | None = None) -> dict:
    """Build the tiny model in a temporary folder and plan a synthetic photo with it."""
    out: dict = {"ok": False}
    try:
        from monet_cli.plan import Plan
        from monet_cli.planners.base import plan_proxy
        from monet_cli.planners.qwen import QwenPlanner, clear_cache
        from monet_cli.tiny import build_tiny

        with tempfile.TemporaryDirectory(prefix="monet-doctor-") as tmp:
            t0 = time.perf_counter()
            folder = build_tiny(os.path.join(tmp, "tiny"))
            out["build_s"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            planner = QwenPlanner(str(folder), quant=quant, device=device)
            out.update(device=planner.device, quant=planner.quant, load_s=round(time.perf_counter() - t0, 2))
            t0 = time.perf_counter()
            plan = plan_proxy(_smoke_photo(), planner)
            out["plan_s"] = round(time.perf_counter() - t0, 2)
            Plan.from_dict(plan.to_dict())  # the sidecar it would write is valid
            out["stages"] = {s: sp.status for s, sp in plan.stages.items()}
            clear_cache()
        out["ok"] = True
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def diagnose(*, smoke: bool = True) -> dict:
    """Everything ``monet doctor`` reports (module docstring), as plain data."""
    from monet_cli import __version__
    from monet_cli.models import hf_cache_dir, monet_home, preset_status

    report: dict = {
        "monet": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "gpu": gpu_info(),
        "hf_cache": str(hf_cache_dir()),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
        "monet_home": str(monet_home()),
        "render_kernel": render_kernel_info(),
        "presets": [{k: r[k] for k in ("name", "hub_id", "present", "path", "missing", "gpu_memory_gb")}
                    for r in preset_status()],
    }
    bnb = report["packages"]["bitsandbytes"]
    report["bitsandbytes_4bit"] = None if bnb is None else _bnb_works(report["gpu"]["available"])
    ml_ready = all(report["packages"][p] for p in ("torch", "transformers", "tokenizers"))
    if smoke and ml_ready:
        cuda = report["gpu"]["available"]
        quant = "4bit" if cuda and report["bitsandbytes_4bit"] is True else "none"
        report["smoke"] = smoke_plan(quant=quant, device="cuda" if cuda else "cpu")
    elif smoke:
        report["smoke"] = {"ok": False, "error": "the model packages are not installed: pip install 'monet-cli[ml]'"}
    return report


def _bnb_works(cuda: bool) -> bool | str:
    """Quantise and run one 4-bit layer on the GPU (or CPU): True, or why not."""
    try:
        from monet_cli.planners.qwen import quiet_bitsandbytes

        quiet_bitsandbytes()
        import bitsandbytes as bnb
        import torch

        dev = "cuda" if cuda else "cpu"
        layer = bnb.nn.Linear4bit(64, 64, compute_dtype=torch.float32, quant_type="nf4").to(dev)
        y = layer(torch.ones(1, 64, device=dev))
        return bool(torch.isfinite(y).all())
    except Exception as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
