"""The planning protocol every backend shares (DESIGN.md, "Planning protocol").

A backend implements :class:`StagePlanner`: given one stage's name and a proxy of the photo
(working-space linear RGB, long side ≤ 1280) already rendered with the earlier stages'
adjustments, it returns that stage's :class:`~monet_cli.plan.StagePlan`. This module does
the rest, identically for every backend:

* :func:`make_proxy` — decode a photo to working-space linear light and box-filter it down;
* :func:`plan_proxy` — stage by stage: keep locked stages, plan the others on the proxy
  rendered with all earlier stages, repair or record what a backend returns (values clamped
  to range; unknown ops, wrong-stage ops, non-finite values or an exception become
  ``status="failed"`` with the reason in ``error``), never raise for a backend's fault;
* :func:`plan_photo` — read a file, make its proxy, plan, record the source;
* :func:`get_planner` — a backend by name.
"""

from __future__ import annotations

import copy
import math
from typing import Protocol, runtime_checkable

import numpy as np

from monet_cli import colorspaces as cs
from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import UsageError, flag_names
from monet_cli.measure import area_downscale, area_size
from monet_cli.plan import Plan, Planner, StagePlan

STYLES: tuple[str, ...] = ("balanced", "vibrant", "retro")
BACKENDS: tuple[str, ...] = ("auto", "rules", "qwen", "openai")
PROXY_LONG_SIDE = 1280


@runtime_checkable
class StagePlanner(Protocol):
    """What a planning backend provides (``auto`` now; ``qwen`` and ``openai`` later)."""

    name: str  # backend name as recorded in the plan: "auto", "qwen", "openai"
    model: str | None
    adapter: str | None

    def plan_stage(self, stage: str, proxy: np.ndarray, *, style: str, instructions: str | None,
                   previous: dict[str, StagePlan]) -> StagePlan:
        """Plan ``stage`` on ``proxy`` (working-space linear float32, earlier stages applied).

        ``previous`` holds the plans of the earlier stages, in order. Return a StagePlan with
        status ``ok`` (adjustments of this stage's ops only) or ``no_change`` (empty
        adjustments, a reasoning triplet saying why). Raising is allowed: the protocol
        records the error as a failed stage.
        """
        ...


# ----------------------------------------------------------------------------- proxy


def _decode(pixels: np.ndarray, trc: cs.TransferFunction) -> np.ndarray:
    """Encoded pixels → linear values of the same RGB space (float32)."""
    if pixels.dtype.kind == "u":
        from monet_cli.render import decode_table

        return decode_table(trc, pixels.dtype.itemsize * 8)[pixels]
    if pixels.dtype.kind != "f":
        raise TypeError(f"unsupported pixel type {pixels.dtype}")
    if trc.is_linear:
        return np.asarray(pixels, dtype=np.float32)
    return trc.decode(pixels).astype(np.float32)


def make_proxy(image, long_side: int = PROXY_LONG_SIDE) -> np.ndarray:
    """The planning proxy of ``image``: working-space linear float32 ``(h, w, 3)``, long side
    at most ``long_side``.

    ``image`` is an :class:`~monet_cli.images.Image` (pixels decoded with its colour space's
    transfer function, converted to linear BT.2020 D65), or an ``(H, W, 3)`` array already in
    the working space. Downscaling is an exact area average (box filter) in linear light, so
    the proxy's statistics — mean light, clipped area, colour of every region — do not depend
    on the file's resolution. Integer pixels are decoded by table inside the compiled box
    filter (:mod:`monet_cli._area`), so a large file never needs a float copy of itself.
    """
    if long_side < 1:
        raise ValueError(f"long_side must be positive, got {long_side}")
    if isinstance(image, np.ndarray):
        pixels, space = image, cs.WORKING
    else:
        pixels, space = image.pixels, image.colorspace
    if pixels.ndim != 3 or pixels.shape[2] < 3:
        raise ValueError(f"expected (H, W, 3) pixels, got shape {pixels.shape}")
    pixels = pixels[..., :3]
    H, W = pixels.shape[:2]
    h, w = area_size(H, W, long_side)
    if (h, w) == (H, W):
        lin = _decode(pixels, space.trc).astype(np.float64)
    elif pixels.dtype.kind == "u":
        from monet_cli._area import box_downscale
        from monet_cli.render import decode_table

        lin = box_downscale(pixels, h, w, decode_table(space.trc, pixels.dtype.itemsize * 8))
    else:
        lin = area_downscale(_decode(pixels, space.trc), long_side)
    if space != cs.WORKING:
        lin = lin @ space.linear().matrix_to(cs.WORKING).T
    return np.ascontiguousarray(lin, dtype=np.float32)


# ----------------------------------------------------------------------------- protocol


def _checked(stage: str, sp) -> StagePlan:
    """A backend's answer made safe: clamp values into range, reject what cannot be repaired."""
    if not isinstance(sp, StagePlan):
        raise TypeError(f"planner returned {type(sp).__name__}, not a StagePlan")
    if sp.status not in ("ok", "no_change", "failed"):
        raise ValueError(f"unknown stage status {sp.status!r}")
    ops = catalog().ops
    clean: dict[str, float] = {}
    for name, value in sp.adjustments.items():
        if name not in ops:
            raise ValueError(f"unknown operation {name!r}")
        if ops[name].stage != stage:
            raise ValueError(f"{name} belongs to stage {ops[name].stage!r}, not {stage!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: not a finite number ({value!r})")
        v = min(max(float(value), ops[name].min), ops[name].max)
        if v != 0.0:
            clean[name] = int(v) if v.is_integer() else v
    out = copy.copy(sp)
    out.adjustments = clean
    out.reasoning = list(sp.reasoning)
    out.locked = False
    if out.status == "ok" and not clean and sp.adjustments:
        out.status = "no_change"
    return out


def _error_text(e: BaseException) -> str:
    msg = str(e)
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def plan_proxy(proxy: np.ndarray, planner: StagePlanner, *, style: str = "balanced",
               instructions: str | None = None, locked: dict[str, StagePlan] | None = None,
               seed: int | None = 0) -> Plan:
    """Plan all stages of a proxy with ``planner`` (module docstring for the rules).

    A stage in ``locked`` is kept exactly as given (its ``locked`` flag included: ``monet
    edit-stage`` also passes the earlier, unlocked stages it keeps) and the later stages are
    planned on the proxy rendered with it. Deterministic for a deterministic backend.
    """
    from monet_cli.render import render_linear

    if style not in STYLES:
        raise UsageError(f"unknown style {style!r}; styles are {', '.join(STYLES)}")
    locked = dict(locked or {})
    unknown = set(locked) - set(STAGES)
    if unknown:
        raise UsageError(f"unknown stage(s) to lock: {', '.join(sorted(unknown))}; stages are {', '.join(STAGES)}")
    if isinstance(instructions, str):
        instructions = instructions.strip() or None
    current = np.ascontiguousarray(proxy, dtype=np.float32)
    stages: dict[str, StagePlan] = {}
    for stage in STAGES:
        if stage in locked:
            sp = copy.deepcopy(locked[stage])  # kept as given, its own ``locked`` flag included
        else:
            try:
                answer = planner.plan_stage(stage, current, style=style, instructions=instructions,
                                            previous=dict(stages))
                sp = _checked(stage, answer)
            except Exception as e:  # noqa: BLE001 - a backend's fault is recorded in the plan, never raised
                sp = StagePlan(status="failed", error=_error_text(e))
        stages[stage] = sp
        if sp.adjustments:
            try:
                current = render_linear(current, sp.adjustments)
            except Exception as e:
                if stage in locked:
                    raise
                stages[stage] = StagePlan(status="failed", error=_error_text(e))
    return Plan(stages=stages, planner=Planner(
        backend=planner.name, model=getattr(planner, "model", None), adapter=getattr(planner, "adapter", None),
        style=style, seed=seed, instructions=instructions, **(decoding_of(planner) or {}),
        value_map=getattr(getattr(planner, "value_map", None), "ident", None)))


def decoding_of(planner) -> dict | None:
    """How a model planner decodes, as plans and bench reports record it: ``{"samples": 1}`` for
    one plan, plus the consensus and sampling temperature when it samples; None for planners
    without samples (auto, rules, openai)."""
    samples = getattr(planner, "samples", None)
    if samples is None:
        return None
    if samples == 1:
        return {"samples": 1}
    return {"samples": samples, "consensus": getattr(planner, "consensus", None),
            "sample_temperature": getattr(planner, "sample_temperature", None)}


def plan_photo(path, planner: StagePlanner, *, style: str = "balanced", instructions: str | None = None,
               locked: dict[str, StagePlan] | None = None, seed: int | None = 0,
               long_side: int = PROXY_LONG_SIDE) -> Plan:
    """Read the photo at ``path``, make its proxy and plan it; ``plan.source`` names the file."""
    from monet_cli.images import read_image
    from monet_cli.plan import source_of

    image = read_image(path, draft=True)  # RAW: half-size demosaic, plenty for a proxy
    plan = plan_proxy(make_proxy(image, long_side), planner, style=style, instructions=instructions,
                      locked=locked, seed=seed)
    plan.source = source_of(path)
    return plan


def get_planner(backend: str = "auto", **options) -> StagePlanner:
    """The planning backend called ``backend``.

    Options given as ``None`` are ignored, so a CLI may pass its defaults through. ``auto``
    (the learned embedded planner, :mod:`monet_cli.planners.learned`) takes ``caution``
    (high, medium — the default —, low); ``rules`` (the analytic one it replaced,
    :mod:`monet_cli.planners.auto`) takes none; ``qwen`` takes ``model``, ``adapter``,
    ``quant``, ``concurrency``, … (see :class:`~monet_cli.planners.qwen.QwenPlanner`); ``openai`` takes ``model``, ``endpoint``,
    ``concurrency``, … (see :class:`~monet_cli.planners.openai.OpenAIPlanner`). A qwen model
    is loaded once per process and shared by every planner asking for it.
    """
    name = (backend or "auto").strip().lower()
    given = {k: v for k, v in options.items() if v is not None}
    if "caution" in given and name != "auto":
        raise UsageError(f"--caution is an option of the auto backend, not of {name}")
    if name in ("auto", "rules"):
        caution = given.pop("caution", None)
        if given:
            raise UsageError(f"the {name} backend takes no option {', '.join(flag_names(given))}")
        if name == "rules":
            from monet_cli.planners.auto import AutoPlanner

            return AutoPlanner()
        from monet_cli.planners.learned import LearnedPlanner

        return LearnedPlanner(caution=caution)
    if name == "qwen":
        from monet_cli.planners.qwen import QwenPlanner

        return QwenPlanner.from_options(**given)
    if name == "openai":
        from monet_cli.planners.openai import OpenAIPlanner

        return OpenAIPlanner.from_options(**given)
    raise UsageError(f"unknown backend {backend!r}; backends are {', '.join(BACKENDS)}")
