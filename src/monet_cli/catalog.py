"""The operation catalogue, loaded once from ``ops/catalog.yaml``.

It is the single source for the renderer, plan validation, prompts and ``monet ops``:
33 operations in three stages, each a number in [-100, 100] whose 0 is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from monet_cli.resources import data_dir

STAGES: tuple[str, ...] = ("lighting", "color", "hsl")


@dataclass(frozen=True)
class Op:
    """One adjustment: its Lightroom name, stage, range and meaning."""

    name: str
    stage: str
    meaning: str
    scale: str
    xmp: str
    min: float = -100.0
    max: float = 100.0
    band: str | None = None  # HSL ops only: Red, Orange, ...
    kind: str | None = None  # HSL ops only: HueAdjustment, SaturationAdjustment, ...


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    description: str
    ops: tuple[str, ...]


@dataclass(frozen=True)
class HslBand:
    name: str
    centre: float  # degrees of sRGB-encoded HSV hue


@dataclass(frozen=True)
class Catalog:
    version: int
    ops: dict[str, Op]
    stages: dict[str, Stage]
    bands: tuple[HslBand, ...]

    def stage_of(self, op: str) -> str:
        return self.ops[op].stage

    def ops_in(self, stage: str) -> tuple[str, ...]:
        return self.stages[stage].ops


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    """The catalogue (parsed once per process)."""
    import yaml

    raw = yaml.safe_load((data_dir("ops") / "catalog.yaml").read_text(encoding="utf-8"))
    ops: dict[str, Op] = {}
    for o in raw["ops"]:
        ops[o["name"]] = Op(
            name=o["name"], stage=o["stage"], meaning=o["meaning"], scale=o["scale"], xmp=o["xmp"],
            min=float(o.get("min", -100)), max=float(o.get("max", 100)),
        )
    bands = tuple(HslBand(b["name"], float(b["centre"])) for b in raw["hsl"]["bands"])
    # HSL ops are listed kind by kind (all hues, then all saturations, then all luminances),
    # the order Lightroom and the published MonetGPT use.
    for k in raw["hsl"]["kinds"]:
        for b in bands:
            name = f"{k['prefix']}{b.name}"
            ops[name] = Op(
                name=name, stage="hsl", meaning=k["meaning"].format(band=b.name.lower()),
                scale=k["scale"], xmp=f"{k['xmp_prefix']}{b.name}", band=b.name, kind=k["prefix"],
            )
    stages = {
        s["name"]: Stage(
            name=s["name"], title=s["title"], description=" ".join(s["description"].split()),
            ops=tuple(n for n, o in ops.items() if o.stage == s["name"]),
        )
        for s in raw["stages"]
    }
    if tuple(stages) != STAGES:
        raise RuntimeError(f"catalogue stages {tuple(stages)} != {STAGES}")
    return Catalog(version=int(raw["version"]), ops=ops, stages=stages, bands=bands)
