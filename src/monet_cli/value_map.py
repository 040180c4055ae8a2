"""Value maps: the values a model says → the values monet renders, per operation.

A model preset may carry a ``value_map:`` (``models/monetgpt-7b.yaml``): for each operation a
monotone piecewise-linear table from the model's value to monet's. The published MonetGPT
weights learned the magnitudes of their own renderer and its value post-processing (Exposure
halved, then 1.923 EV per 100 on gamma-encoded sRGB; negative Contrast divided by three; …),
so "Exposure +100" from them means about +0.96 EV where monet's own scale renders +2 EV. The
map is fitted, not guessed: ``benchmarks/value_map.py`` renders the published operations and
finds, for each model value, the monet value nearest to it in mean CIEDE2000.

The map sits between parsing a model's answer and rendering (:meth:`ValueMap.apply`): a stage
keeps the model's own values in ``model_adjustments`` and the mapped ones in ``adjustments``
(what ``monet apply`` renders), so ``monet show`` and ``monet export-xmp --values model`` can
show either. Values a photographer sets by hand (``monet edit-stage``) are never remapped.
Presets without a map render the model's values unchanged.

Table rules (checked when the preset is read): at least two points, model values strictly
increasing inside the operation's range, monet values inside its range and monotone (all
non-decreasing or all non-increasing), and the point (0, 0) (no change stays no change).
Between points the map is linear; beyond the ends it holds the end value. A row may also
``adds:`` tables of the same kind to other operations of its stage, where the published
operation does more than monet's of the same name; contributions to one operation are summed
and clamped to its range.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from monet_cli.catalog import catalog
from monet_cli.errors import UsageError
from monet_cli.plan import Reasoning, StagePlan


def _interp(points, v: float) -> float:
    return float(np.interp(float(v), [p[0] for p in points], [p[1] for p in points]))


@dataclass(frozen=True)
class OpMap:
    """One row of a value map: ``points`` ``((model, monet), …)`` sorted by model value, and
    ``adds``: tables of the same kind for other operations of the stage that the model's
    value of ``op`` also moves (``((target op, points), …)``), where the published operation
    does more than monet's of the same name (published positive Blacks also raises Contrast
    and Exposure)."""

    op: str
    points: tuple[tuple[float, float], ...]
    rule: str = ""  # the published rule this row reproduces, in words
    adds: tuple[tuple[str, tuple[tuple[float, float], ...]], ...] = ()

    def __call__(self, v: float) -> float:
        return _interp(self.points, v)

    def added(self, v: float) -> dict[str, float]:
        """What the model's value ``v`` of ``op`` adds to the other operations."""
        return {t: _interp(pts, v) for t, pts in self.adds}


@dataclass(frozen=True)
class ValueMap:
    """A preset's value map (module docstring)."""

    name: str  # the preset it belongs to
    ops: tuple[OpMap, ...]
    source: str = ""  # how it was made (the fitting script, its data)

    @property
    def by_op(self) -> dict[str, OpMap]:
        return {m.op: m for m in self.ops}

    @property
    def ident(self) -> str:
        """``name@hash``: which map, recorded in the plans it made (``planner.value_map``)."""
        canon = json.dumps([[m.op, [list(p) for p in m.points]] + ([[t, [list(p) for p in pts]] for t, pts in m.adds]
                                                                  if m.adds else []) for m in self.ops],
                           separators=(",", ":"))
        return f"{self.name}@{hashlib.sha256(canon.encode()).hexdigest()[:12]}"

    def map_value(self, op: str, v: float) -> float:
        """``v`` of ``op`` mapped (unchanged for an operation without a row), clamped to the
        operation's range and rounded to 0.1."""
        m = self.by_op.get(op)
        if m is None:
            return float(v)
        o = catalog().ops[op]
        out = min(max(m(v), o.min), o.max)
        return round(out, 1) + 0.0

    def map_values(self, values: dict[str, float]) -> dict[str, float]:
        """``{op: model value}`` → ``{op: monet value}``: each value through its row, plus what
        the rows' ``adds`` contribute to other operations, summed, clamped to each range and
        rounded to 0.1; values that come to 0 are dropped."""
        rows = self.by_op
        total: dict[str, float] = {}
        for op, v in values.items():
            row = rows.get(op)
            total[op] = total.get(op, 0.0) + (row(v) if row is not None else float(v))
            if row is not None:
                for t, add in row.added(v).items():
                    total[t] = total.get(t, 0.0) + add
        ops = catalog().ops
        out: dict[str, float] = {}
        for op, m in total.items():
            m = round(min(max(m, ops[op].min), ops[op].max), 1) + 0.0
            if m != 0.0:
                out[op] = int(m) if float(m).is_integer() else m
        return out

    def apply(self, sp: StagePlan) -> StagePlan:
        """A stage planned by the model, its values mapped: ``adjustments`` the mapped values,
        ``model_adjustments`` the model's own. Failed, empty or already mapped stages are
        returned as they are."""
        if sp.status != "ok" or not sp.adjustments or sp.model_adjustments is not None:
            return sp
        out = copy.copy(sp)
        out.model_adjustments = dict(sp.adjustments)
        out.adjustments = self.map_values(sp.adjustments)
        out.reasoning = list(sp.reasoning)
        if not out.adjustments:
            out.status = "no_change"
            said = ", ".join(f"{k} {v:+g}" for k, v in sp.adjustments.items())
            out.reasoning.append(Reasoning(
                "Value map", f"The model asked for {said}, which the renderer it was trained with leaves unchanged "
                             f"(value map of {self.name}).", "No adjustment is rendered."))
        return out


def resolve_value_map(spec: str | None, preset=None) -> ValueMap | None:
    """The value map a model planner uses: ``spec`` None → ``preset``'s own (None without
    one); ``"none"`` → no map (the model's values rendered as said); a preset name → that
    preset's map (for a model folder of known weights: ``--value-map monetgpt-7b``)."""
    if spec is None:
        return getattr(preset, "value_map", None)
    name = str(spec).strip()
    if name.lower() == "none":
        return None
    from monet_cli.models import presets

    found = presets().get(name.split("@", 1)[0])
    if found is None:
        raise UsageError(f"--value-map {name}: not a model preset ({', '.join(presets())}) or 'none'")
    if found.value_map is None:
        with_map = [p.name for p in presets().values() if p.value_map is not None]
        raise UsageError(f"--value-map {name}: preset {found.name} has no value map"
                         + (f" (presets with one: {', '.join(with_map)})" if with_map else ""))
    return found.value_map


def map_plan(plan, vm: ValueMap):
    """A copy of ``plan`` whose values are taken as the model's and mapped, stage by stage
    (``monet apply PLAN.json --value-map NAME``: the flat dict the published MonetGPT code
    writes); stages already mapped are kept as they are."""
    out = copy.deepcopy(plan)
    for s, sp in out.stages.items():
        out.stages[s] = vm.apply(sp)
    out.planner.value_map = vm.ident
    return out


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ValueError(f"{what}: expected a finite number, got {v!r}")
    return float(v)


def _table(points, w: str, source, target) -> tuple[tuple[float, float], ...]:
    """A ``[[model, monet], …]`` list checked (module docstring): model values in ``source``'s
    range, strictly increasing; monet values in ``target``'s range, monotone; (0, 0) in it."""
    if not isinstance(points, list):
        raise ValueError(f"{w}: expected a list of [model, monet]")
    pts = []
    for i, p in enumerate(points):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise ValueError(f"{w}.points[{i}]: expected [model, monet]")
        pts.append((_number(p[0], f"{w}.points[{i}]"), _number(p[1], f"{w}.points[{i}]")))
    if len(pts) < 2:
        raise ValueError(f"{w}: needs at least two points")
    for a, b in pts:
        if not (source.min <= a <= source.max and target.min <= b <= target.max):
            raise ValueError(f"{w}: point [{a:g}, {b:g}] is outside [{source.min:g}, {source.max:g}] × "
                             f"[{target.min:g}, {target.max:g}]")
    xs = [a for a, _ in pts]
    if any(b <= a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"{w}: model values must be strictly increasing")
    dy = [b[1] - a[1] for a, b in zip(pts, pts[1:])]
    if any(d < 0 for d in dy) and any(d > 0 for d in dy):
        raise ValueError(f"{w}: the map must be monotone (it goes up and down)")
    if (0.0, 0.0) not in pts:
        raise ValueError(f"{w}: must contain the point [0, 0] (no change stays no change)")
    return tuple(pts)


def parse_value_map(raw, name: str) -> ValueMap:
    """A preset's ``value_map:`` block, checked (module docstring); raises ValueError naming
    the row at fault."""
    if not isinstance(raw, dict) or not isinstance(raw.get("ops"), dict) or not raw["ops"]:
        raise ValueError("value_map: expected an object with 'ops': {operation: {points: [[model, monet], …]}}")
    ops = catalog().ops
    rows = []
    for op, row in raw["ops"].items():
        w = f"value_map.ops.{op}"
        if op not in ops:
            raise ValueError(f"{w}: unknown operation")
        if not isinstance(row, dict) or not isinstance(row.get("points"), list):
            raise ValueError(f"{w}: expected an object with points: [[model, monet], …]")
        pts = _table(row["points"], w, ops[op], ops[op])
        adds = []
        extra = row.get("adds") or {}
        if not isinstance(extra, dict):
            raise ValueError(f"{w}.adds: expected an object {{operation: [[model, added], …]}}")
        for t, tpts in extra.items():
            if t not in ops or t == op:
                raise ValueError(f"{w}.adds.{t}: " + ("unknown operation" if t not in ops else "adds to itself"))
            if ops[t].stage != ops[op].stage:
                raise ValueError(f"{w}.adds.{t}: belongs to stage {ops[t].stage!r}, not {ops[op].stage!r}")
            if not isinstance(tpts, list):
                raise ValueError(f"{w}.adds.{t}: expected [[model, added], …]")
            adds.append((t, _table(tpts, f"{w}.adds.{t}", ops[op], ops[t])))
        rule = row.get("rule", "")
        rows.append(OpMap(op=op, points=pts, rule=" ".join(str(rule).split()), adds=tuple(adds)))
    return ValueMap(name=name, ops=tuple(rows), source=" ".join(str(raw.get("source", "")).split()))


# ----------------------------------------------------------------------------- fitting


def isotonic(y, w=None, *, increasing: bool = True) -> np.ndarray:
    """The least-squares monotone fit of ``y`` (weights ``w``), by pool-adjacent-violators."""
    y = np.asarray(y, dtype=float)
    w = np.ones_like(y) if w is None else np.asarray(w, dtype=float)
    if not increasing:
        return -isotonic(-y, w)
    vals, wts, counts = [], [], []
    for yi, wi in zip(y, w):
        vals.append(yi)
        wts.append(wi)
        counts.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            v2, w2, c2 = vals.pop(), wts.pop(), counts.pop()
            v1, w1, c1 = vals.pop(), wts.pop(), counts.pop()
            vals.append((v1 * w1 + v2 * w2) / (w1 + w2))
            wts.append(w1 + w2)
            counts.append(c1 + c2)
    return np.repeat(vals, counts)


def best_value(objective, *, lo: float = -100.0, hi: float = 100.0, coarse: float = 10.0, tol: float = 0.25) -> float:
    """The ``m`` in [lo, hi] that minimises ``objective(m)``: a grid of step ``coarse``, then a
    golden-section search in the grid cell on either side of its best point."""
    grid = np.arange(lo, hi + 1e-9, coarse)
    f = [objective(float(m)) for m in grid]
    i = int(np.argmin(f))
    a, b = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = objective(c), objective(d)
    while b - a > tol:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = objective(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = objective(d)
    m, fm = (c, fc) if fc < fd else (d, fd)
    return float(grid[i]) if f[i] <= fm else m


def monotone_points(xs, ms) -> list[list[float]]:
    """Fitted ``(model value, best monet value)`` pairs → a valid table: (0, 0) forced, then
    the isotonic fit in whichever direction fits better, rounded to 0.1."""
    xs = [float(x) for x in xs]
    ms = [0.0 if x == 0 else float(m) for x, m in zip(xs, ms)]
    if 0.0 not in xs:
        xs, ms = zip(*sorted([*zip(xs, ms), (0.0, 0.0)]))
    order = np.argsort(xs)
    x = np.asarray(xs)[order]
    y = np.asarray(ms)[order]
    w = np.where(x == 0, 1e6, 1.0)  # (0, 0) is held
    up, down = isotonic(y, w), isotonic(y, w, increasing=False)
    fit = up if np.sum(w * (up - y) ** 2) <= np.sum(w * (down - y) ** 2) else down
    fit = fit - fit[x == 0][0]  # exactly 0 at 0
    return [[float(a), round(float(b), 1) + 0.0] for a, b in zip(x, fit)]
