"""The plan: a versioned, human-editable JSON document, stored as a sidecar next to the photo.

Layout (schema ``monet.plan``, version 1)::

    {
      "schema": "monet.plan", "version": 1,
      "source": {"name": "IMG_0042.CR2", "size": 25165824, "sha256": "…"},
      "planner": {"backend": "auto", "model": null, "adapter": null, "style": "balanced",
                  "seed": 0, "instructions": null, "monet_version": "0.1.0"},
                  # + "samples", "consensus", "sample_temperature" (qwen)
      "created": "2026-11-27T22:15:00+00:00",
      "stages": {
        "lighting": {"status": "ok", "locked": false,
                     "reasoning": [{"adjustment": "Exposure", "issue": "…", "solution": "…"}],
                     "adjustments": {"Exposure": 15}},
        "color": {…}, "hsl": {…}
      },
      # a stage whose model values went through a preset's value map (monet_cli.value_map)
      # also holds "model_adjustments": the model's own values ("adjustments" are rendered);
      # the planner then records "value_map": "monetgpt-7b@<hash>"
      "history": [ <earlier versions of this plan, without their own history> ]
    }

``status`` is ``ok`` (adjustments planned), ``no_change`` (the planner found nothing to do)
or ``failed`` (``error`` and the model's ``raw`` text say why; adjustments are empty).
The flat ``{"Exposure": 15, …}`` dicts that the published MonetGPT emits are accepted by
:func:`load_plan` and become a plan with the values split by stage.
"""

from __future__ import annotations

import copy
import datetime as _dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from monet_cli import __version__
from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import PlanError

SCHEMA = "monet.plan"
SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".monet.json"
STATUSES = ("ok", "no_change", "failed")
MAX_PLAN_BYTES = 8 * 1024 * 1024


@dataclass
class Reasoning:
    """One <Adjustment, Issue, Solution> triplet."""

    adjustment: str
    issue: str
    solution: str

    def to_dict(self) -> dict:
        return {"adjustment": self.adjustment, "issue": self.issue, "solution": self.solution}


@dataclass
class StagePlan:
    adjustments: dict[str, float] = field(default_factory=dict)
    reasoning: list[Reasoning] = field(default_factory=list)
    locked: bool = False
    status: str = "ok"
    error: str | None = None
    raw: str | None = None
    # the model's own values where a preset's value map turned them into ``adjustments``
    # (monet_cli.value_map); None where the values were rendered as given
    model_adjustments: dict[str, float] | None = None

    def to_dict(self) -> dict:
        d = {"status": self.status, "locked": self.locked,
             "reasoning": [r.to_dict() for r in self.reasoning],
             "adjustments": {k: _num(v) for k, v in self.adjustments.items()}}
        if self.model_adjustments is not None:
            d["model_adjustments"] = {k: _num(v) for k, v in self.model_adjustments.items()}
        if self.error is not None:
            d["error"] = self.error
        if self.raw is not None:
            d["raw"] = self.raw
        return d


@dataclass
class Source:
    """The photo a plan was made for. ``mtime_ns`` lets an unchanged file skip re-hashing."""

    name: str
    size: int
    sha256: str
    mtime_ns: int | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "size": self.size, "sha256": self.sha256}
        if self.mtime_ns is not None:
            d["mtime_ns"] = self.mtime_ns
        return d

    def matches(self, path) -> bool:
        """Whether ``path`` still holds the content this plan was made for.

        Size first, then (when the modification time changed or was not recorded) the hash.
        """
        st = Path(path).stat()
        if st.st_size != self.size:
            return False
        if self.mtime_ns is not None and st.st_mtime_ns == self.mtime_ns:
            return True
        return file_sha256(path) == self.sha256


@dataclass
class Planner:
    backend: str = "manual"
    model: str | None = None
    adapter: str | None = None
    style: str = "balanced"
    seed: int | None = None
    instructions: str | None = None
    monet_version: str = __version__
    samples: int | None = None  # model backends: sampled plans per stage behind the consensus (1: one answer)
    consensus: str | None = None  # with samples > 1: "mean" or "medoid" (planners/protocol.py)
    sample_temperature: float | None = None  # with samples > 1: the temperature they were drawn at
    value_map: str | None = None  # "preset@hash" of the value map applied to the model's values, if any

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("samples", "consensus", "sample_temperature", "value_map"):  # absent where unused
            if d[k] is None:
                del d[k]
        return d


@dataclass
class Plan:
    stages: dict[str, StagePlan] = field(default_factory=lambda: {s: StagePlan() for s in STAGES})
    source: Source | None = None
    planner: Planner = field(default_factory=Planner)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    history: list[dict] = field(default_factory=list)

    # ------------------------------------------------------------------ views
    @property
    def adjustments(self) -> dict[str, float]:
        """All stages' adjustments in one ``{op: value}`` dict, stage order."""
        out: dict[str, float] = {}
        for s in STAGES:
            out.update(self.stages[s].adjustments)
        return out

    @property
    def model_adjustments(self) -> dict[str, float]:
        """All stages' values as the model said them, before a value map: a stage's
        ``model_adjustments`` where it has them, else its ``adjustments`` (values rendered as
        given: a planner without a map, or the photographer's own)."""
        out: dict[str, float] = {}
        for s in STAGES:
            sp = self.stages[s]
            if sp.model_adjustments is not None:
                own = {k: v for k, v in sp.adjustments.items() if k not in sp.model_adjustments and k not in out}
                out.update(sp.model_adjustments)
                out.update(own)  # ops the photographer added to a mapped stage
            else:
                out.update(sp.adjustments)
        return out

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA, "version": SCHEMA_VERSION,
            "source": self.source.to_dict() if self.source else None,
            "planner": self.planner.to_dict(),
            "created": self.created,
            "stages": {s: self.stages[s].to_dict() for s in STAGES},
            "history": self.history,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def snapshot(self) -> dict:
        """This version without its history, for the next version's ``history``."""
        d = self.to_dict()
        d.pop("history")
        return copy.deepcopy(d)

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_adjustments(cls, adjustments: dict, *, where: str = "plan") -> "Plan":
        """A plan from a flat ``{op: value}`` dict (the published MonetGPT's output)."""
        values = validate_values(adjustments, where)
        cat = catalog()
        plan = cls()
        for name, v in values.items():
            plan.stages[cat.stage_of(name)].adjustments[name] = v
        return plan

    @classmethod
    def from_dict(cls, d: dict, *, where: str = "plan") -> "Plan":
        """Validate and build; every error names the offending field."""
        if not isinstance(d, dict):
            raise PlanError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if "stages" not in d and "schema" not in d:
            return cls.from_adjustments(d, where=where)
        if d.get("schema", SCHEMA) != SCHEMA:
            raise PlanError(f"{where}.schema: expected {SCHEMA!r}, got {d.get('schema')!r}")
        version = d.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise PlanError(f"{where}.version: expected an integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise PlanError(f"{where}.version: plan schema {version} was written by a newer monet "
                            f"(this one reads up to {SCHEMA_VERSION}); upgrade monet")
        if version < 1:
            raise PlanError(f"{where}.version: unknown plan schema version {version}")
        stages_d = d.get("stages")
        if not isinstance(stages_d, dict):
            raise PlanError(f"{where}.stages: expected an object with {', '.join(STAGES)}")
        unknown = set(stages_d) - set(STAGES)
        if unknown:
            raise PlanError(f"{where}.stages: unknown stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        cat = catalog()
        stages = {}
        for s in STAGES:
            sd = stages_d.get(s, {})
            w = f"{where}.stages.{s}"
            if not isinstance(sd, dict):
                raise PlanError(f"{w}: expected an object")
            adj = validate_values(sd.get("adjustments", {}), f"{w}.adjustments")
            wrong = [n for n in adj if cat.stage_of(n) != s]
            if wrong:
                raise PlanError(f"{w}.adjustments: {wrong[0]} belongs to stage {cat.stage_of(wrong[0])!r}")
            status = sd.get("status", "ok")
            if status not in STATUSES:
                raise PlanError(f"{w}.status: expected one of {', '.join(STATUSES)}, got {status!r}")
            locked = sd.get("locked", False)
            if not isinstance(locked, bool):
                raise PlanError(f"{w}.locked: expected true or false, got {locked!r}")
            reasons = sd.get("reasoning", [])
            if not isinstance(reasons, list):
                raise PlanError(f"{w}.reasoning: expected a list")
            triplets = []
            for i, r in enumerate(reasons):
                if not isinstance(r, dict) or not all(isinstance(r.get(k), str) for k in ("adjustment", "issue", "solution")):
                    raise PlanError(f"{w}.reasoning[{i}]: expected an object with string adjustment, issue, solution")
                triplets.append(Reasoning(r["adjustment"], r["issue"], r["solution"]))
            for key in ("error", "raw"):
                if sd.get(key) is not None and not isinstance(sd.get(key), str):
                    raise PlanError(f"{w}.{key}: expected a string")
            model = sd.get("model_adjustments")
            if model is not None:
                model = validate_values(model, f"{w}.model_adjustments")
                wrong = [n for n in model if cat.stage_of(n) != s]
                if wrong:
                    raise PlanError(f"{w}.model_adjustments: {wrong[0]} belongs to stage {cat.stage_of(wrong[0])!r}")
            stages[s] = StagePlan(adjustments=adj, reasoning=triplets, locked=locked, status=status,
                                  error=sd.get("error"), raw=sd.get("raw"), model_adjustments=model)
        source = None
        if d.get("source") is not None:
            sd = d["source"]
            if not (isinstance(sd, dict) and isinstance(sd.get("name"), str) and isinstance(sd.get("size"), int)
                    and isinstance(sd.get("sha256"), str)):
                raise PlanError(f"{where}.source: expected name (string), size (integer), sha256 (string)")
            mt = sd.get("mtime_ns")
            source = Source(sd["name"], sd["size"], sd["sha256"], mt if isinstance(mt, int) else None)
        pd = d.get("planner") or {}
        if not isinstance(pd, dict):
            raise PlanError(f"{where}.planner: expected an object")
        known = Planner.__dataclass_fields__
        planner = Planner(**{k: v for k, v in pd.items() if k in known})
        history = d.get("history", [])
        if not isinstance(history, list):
            raise PlanError(f"{where}.history: expected a list")
        return cls(stages=stages, source=source, planner=planner,
                   created=str(d.get("created", "")), history=history)


def _num(v: float):
    return int(v) if float(v).is_integer() else round(float(v), 3)


def validate_values(adjustments, where: str = "plan") -> dict[str, float]:
    """``{op: number}`` checked against the catalogue: known names, finite numbers in range.

    Zero values are dropped (they are the identity). Raises :class:`PlanError` naming the field.
    """
    if not isinstance(adjustments, dict):
        raise PlanError(f"{where}: expected an object of op: value, got {type(adjustments).__name__}")
    ops = catalog().ops
    clean: dict[str, float] = {}
    for name, value in adjustments.items():
        if name not in ops:
            import difflib

            close = difflib.get_close_matches(str(name), list(ops), n=1)
            hint = f" (did you mean {close[0]}?)" if close else " (see `monet ops`)"
            raise PlanError(f"{where}: unknown operation {name!r}{hint}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PlanError(f"{where}.{name}: expected a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v):
            raise PlanError(f"{where}.{name}: expected a finite number, got {value!r}")
        op = ops[name]
        if not op.min <= v <= op.max:
            raise PlanError(f"{where}.{name}: {value} is outside [{op.min:g}, {op.max:g}]")
        if v != 0.0:
            clean[name] = v
    return clean


# ---------------------------------------------------------------------- files


def _reject_constant(c: str):
    raise ValueError(f"{c} is not a number JSON allows")


def parse_plan_text(text: str, *, where: str = "plan") -> Plan:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:
        raise PlanError(f"{where}: not valid JSON ({e})") from None
    return Plan.from_dict(data, where="plan")


def load_plan(path) -> Plan:
    """Read a plan file (a monet plan or a flat ``{op: value}`` dict)."""
    p = Path(path)
    if not p.exists():
        raise PlanError("no such plan file", path=p)
    if p.is_dir():
        raise PlanError("is a directory, not a plan file", path=p)
    if p.stat().st_size > MAX_PLAN_BYTES:
        raise PlanError(f"plan file is larger than {MAX_PLAN_BYTES // 2**20} MiB", path=p)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlanError("not a text (UTF-8) file", path=p) from None
    try:
        return parse_plan_text(text)
    except PlanError as e:
        raise PlanError(str(e), path=p) from None


def save_plan(plan: Plan, path, *, overwrite: bool = True) -> Path:
    """Write ``plan`` as JSON atomically (temp file + rename)."""
    from monet_cli.images import atomic_write

    data = plan.to_json().encode("utf-8")
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data), overwrite=overwrite)


def sidecar_path(photo, sidecar_dir=None) -> Path:
    """``IMG_0042.CR2`` → ``IMG_0042.CR2.monet.json`` beside it (or in ``sidecar_dir``)."""
    p = Path(photo)
    folder = Path(sidecar_dir) if sidecar_dir is not None else p.parent
    return folder / (p.name + SIDECAR_SUFFIX)


def file_sha256(path, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_of(path) -> Source:
    p = Path(path)
    st = p.stat()
    return Source(name=p.name, size=st.st_size, sha256=file_sha256(p), mtime_ns=st.st_mtime_ns)
