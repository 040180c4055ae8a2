"""Sidecar workflows: plan a photo into its sidecar, override a stage, find a photo's plan.

These are the library behind ``monet plan``, ``monet edit-stage``, ``monet show`` and the
sidecar lookup of ``monet apply``. A sidecar whose recorded source no longer matches the
photo (the file was edited or replaced) is reported, never silently reused.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import PlanError, UsageError
from monet_cli.plan import Plan, Reasoning, load_plan, save_plan, sidecar_path, source_of, validate_values


class StaleSidecarError(PlanError):
    """The sidecar was made for a different version of the photo."""


@dataclass
class PlanOutcome:
    photo: Path
    sidecar: Path
    plan: Plan
    replaced: bool = False  # an earlier sidecar existed and went into history

    def to_dict(self) -> dict:
        return {"photo": str(self.photo), "sidecar": str(self.sidecar), "replaced": self.replaced,
                "plan": self.plan.to_dict()}


def read_sidecar(photo, sidecar_dir=None, *, check_source: bool = True) -> tuple[Plan, Path]:
    """The photo's sidecar plan and its path; :class:`PlanError` when missing, stale or invalid."""
    photo = Path(photo)
    path = sidecar_path(photo, sidecar_dir)
    if not path.exists():
        raise PlanError(f"no sidecar {path.name}; run `monet plan {photo}` first", path=photo)
    plan = load_plan(path)
    if check_source and plan.source is not None and photo.exists() and not plan.source.matches(photo):
        raise StaleSidecarError(
            f"sidecar {path.name} was made for a different version of this photo (content changed); "
            "replan with `monet plan --force`", path=photo)
    return plan, path


def _push_history(new: Plan, old: Plan) -> None:
    new.history = list(old.history) + [old.snapshot()]


def plan_to_sidecar(photo, planner, *, style: str = "balanced", instructions: str | None = None,
                    seed: int | None = 0, sidecar_dir=None, force: bool = False) -> PlanOutcome:
    """Plan ``photo`` with ``planner`` and write its sidecar atomically.

    An existing, current sidecar is kept (:class:`~monet_cli.batch.Skip`) unless ``force``;
    locked stages of an existing sidecar are kept when replanning; the earlier version goes
    into ``history``. A stale sidecar is an error unless ``force``.
    """
    from monet_cli.batch import Skip
    from monet_cli.planners.base import plan_photo

    photo = Path(photo)
    path = sidecar_path(photo, sidecar_dir)
    old = None
    if path.exists():
        try:
            old, _ = read_sidecar(photo, sidecar_dir)
        except StaleSidecarError:
            if not force:
                raise
            old = load_plan(path)
        except PlanError:
            if not force:
                raise
        if old is not None and not force:
            raise Skip(f"sidecar {path.name} exists (use --force to replan)")
    locked = {s: sp for s, sp in old.stages.items() if sp.locked} if old is not None else None
    plan = plan_photo(photo, planner, style=style, instructions=instructions, locked=locked, seed=seed)
    if old is not None:
        _push_history(plan, old)
    if sidecar_dir is not None:
        Path(sidecar_dir).mkdir(parents=True, exist_ok=True)
    save_plan(plan, path)
    return PlanOutcome(photo, path, plan, replaced=old is not None)


def parse_assignments(items: list[str], stage: str) -> dict[str, float]:
    """``["Exposure=20", "Contrast=-5"]`` → values, checked against the catalogue and ``stage``."""
    values: dict[str, object] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set expects Op=VALUE, got {item!r}")
        try:
            values[name.strip()] = float(raw)
        except ValueError:
            values[name.strip()] = raw
    clean = validate_values(values, "--set")
    cat = catalog()
    zeros = {n for n, v in values.items() if v == 0.0}
    for name in list(clean) + sorted(zeros):
        if cat.stage_of(name) != stage:
            raise UsageError(f"{name} belongs to stage {cat.stage_of(name)!r}, not {stage!r}")
    return {**clean, **{n: 0.0 for n in zeros}}


def edit_stage(photo, stage: str, *, set_values: dict[str, float] | None = None, unset: list[str] | None = None,
               replan: bool = True, sidecar_dir=None, planner=None) -> PlanOutcome:
    """Override ``stage`` of the photo's sidecar, lock it, and re-plan the later unlocked stages.

    ``set_values`` sets ops (0 removes), ``unset`` removes ops. The later stages are planned
    with the sidecar's own backend (or ``planner``) on the photo rendered with the stages up
    to this one; earlier stages and locked later stages are kept. The previous version goes
    into ``history``.
    """
    from monet_cli.models import CONSENSUS, checked_sample_temperature
    from monet_cli.planners.base import get_planner, plan_photo

    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    photo = Path(photo)
    old, path = read_sidecar(photo, sidecar_dir)
    cat = catalog()
    for name in unset or []:
        if name not in cat.ops:
            raise UsageError(f"--unset: unknown operation {name!r}")
        if cat.stage_of(name) != stage:
            raise UsageError(f"--unset: {name} belongs to stage {cat.stage_of(name)!r}, not {stage!r}")
    new = copy.deepcopy(old)
    sp = new.stages[stage]
    changes = []
    for name, value in (set_values or {}).items():
        if value == 0:
            if sp.adjustments.pop(name, None) is not None:
                changes.append(f"{name} removed")
        else:
            sp.adjustments[name] = float(value)
            changes.append(f"{name} set to {value:g}")
    for name in unset or []:
        if sp.adjustments.pop(name, None) is not None:
            changes.append(f"{name} removed")
    if sp.model_adjustments is not None:  # the photographer's values are theirs: no model value behind them
        touched = set(set_values or {}) | set(unset or [])
        kept = {k: v for k, v in sp.model_adjustments.items() if k not in touched}
        sp.model_adjustments = kept or None
    sp.locked = True
    sp.status = "ok" if sp.adjustments else "no_change"
    sp.error = sp.raw = None
    sp.reasoning = [r for r in sp.reasoning if r.adjustment in sp.adjustments]
    if changes:
        sp.reasoning.append(Reasoning("Manual override", "The photographer adjusted this stage by hand.",
                                      "; ".join(changes) + "."))
    later = STAGES[STAGES.index(stage) + 1:]
    if replan and any(not new.stages[s].locked for s in later):
        if planner is None:
            p = new.planner
            opts = {"model": p.model, "adapter": p.adapter} if p.backend not in ("auto", "rules", "manual", "xmp") else {}
            if p.backend in ("qwen", "openai"):  # the later stages' values mapped as the plan's were, or not
                opts["value_map"] = p.value_map if isinstance(p.value_map, str) and p.value_map else "none"
            if p.backend == "qwen" and isinstance(p.samples, int) and not isinstance(p.samples, bool):
                opts["samples"] = p.samples  # re-plan the later stages the way the plan was made
                if p.consensus in CONSENSUS:
                    opts["consensus"] = p.consensus
                try:
                    opts["sample_temperature"] = checked_sample_temperature(p.sample_temperature)
                except ValueError:  # absent (plans from before it was recorded) or edited: the preset's
                    pass
            if p.backend == "auto":
                from monet_cli.planners.learned import caution_of

                opts["caution"] = caution_of(p.model)
            planner = get_planner(p.backend if p.backend not in ("manual", "xmp") else "auto", **opts)
        keep = {s: new.stages[s] for s in STAGES if s not in later or new.stages[s].locked}
        replanned = plan_photo(photo, planner, style=new.planner.style, instructions=new.planner.instructions,
                               locked=keep, seed=new.planner.seed)
        for s in later:
            new.stages[s] = replanned.stages[s]
    new.source = source_of(photo)
    _push_history(new, old)
    save_plan(new, path)
    return PlanOutcome(photo, path, new, replaced=True)
