"""Planners: turn a photo into a staged plan of adjustments.

Every backend implements :class:`~monet_cli.planners.base.StagePlanner` (plan one stage on
a proxy); :func:`~monet_cli.planners.base.plan_proxy` runs the staged protocol of
DESIGN.md around it (earlier stages rendered into the proxy, locked stages kept, a failing
stage recorded, never raised). ``auto`` is the embedded planner learned from puzzles (numpy,
CPU, :mod:`~monet_cli.planners.learned`); ``rules`` the analytic one it replaced.
"""

from monet_cli.planners.base import (
    STYLES,
    StagePlanner,
    get_planner,
    make_proxy,
    plan_photo,
    plan_proxy,
)

__all__ = ["STYLES", "StagePlanner", "get_planner", "make_proxy", "plan_photo", "plan_proxy"]
