"""The ``monet`` command line: parse, call the library, print. No image logic lives here.

Exit codes: 0 success, 1 failure (bad input, bad plan, some files of a batch failed),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from monet_cli import __version__
from monet_cli.errors import MonetError

app = typer.Typer(
    name="monet",
    help="Explainable photo retouching: a vision-language model plans exposure, colour and HSL "
         "adjustments as a JSON sidecar; `monet apply` renders them at full resolution and bit depth.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _version(value: bool):
    if value:
        typer.echo(f"monet {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
):
    """monet — plan and render procedural photo edits."""


# ---------------------------------------------------------------------------- ops


@app.command("ops")
def ops_cmd(
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage: lighting, color or hsl."),
    as_json: bool = typer.Option(False, "--json", help="Print the catalogue as JSON."),
):
    """List the 33 operations: name, stage, range, meaning, scale and Adobe XMP tag.

    [b]Examples[/b]

      monet ops
      monet ops --stage hsl
      monet ops --json | jq '.[].name'
    """
    from monet_cli.catalog import STAGES, catalog

    if stage is not None and stage not in STAGES:
        raise MonetError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    ops = [o for o in catalog().ops.values() if stage is None or o.stage == stage]
    if as_json:
        _print_json([{"name": o.name, "stage": o.stage, "min": o.min, "max": o.max, "meaning": o.meaning,
                      "scale": o.scale, "xmp": o.xmp} for o in ops])
        return
    from rich.table import Table

    table = Table(title=f"monet operations ({len(ops)})", show_lines=False)
    for col in ("op", "stage", "range", "meaning", "scale", "XMP tag"):
        table.add_column(col, overflow="fold")
    for o in ops:
        table.add_row(o.name, o.stage, f"{o.min:g}..{o.max:g}", o.meaning, o.scale, o.xmp)
    _console().print(table)


# ---------------------------------------------------------------------------- apply


@app.command("apply")
def apply_cmd(
    paths: List[Path] = typer.Argument(..., help="PHOTO [PLAN]: the photo and, optionally, a plan JSON. "
                                                 "Without a plan, the photo's sidecar PHOTO.monet.json is used."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file; its suffix picks the format (.tif, .jpg, .png). "
                                               "Default: <stem>.monet.<ext> beside the photo."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    colorspace: Optional[str] = typer.Option(None, "--colorspace",
                                             help="Output colour space: srgb, display-p3, adobe-rgb, prophoto, "
                                                  "rec2020, linear-srgb, linear-prophoto, linear-rec2020."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Output bits per channel: 8, 16 or 32 (float TIFF)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON line."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
):
    """Render a plan onto a photo at full resolution and bit depth.

    The plan is a monet plan (sidecar) or the flat {"Exposure": 15, ...} dict that the published MonetGPT emits. The input is never modified; the output is written atomically and an existing output is kept unless --force.

    [b]Examples[/b]

      monet apply photo.tif                      # uses photo.tif.monet.json
      monet apply photo.tif plan.json            # photo.monet.tif, 16-bit
      monet apply IMG_0042.CR2 plan.json -o out.jpg --colorspace srgb
      echo '{"Exposure": 20, "Temperature": -15}' > p.json && monet apply a.jpg p.json --json
    """
    from monet_cli.apply import apply_plan
    from monet_cli.errors import PlanError, UsageError
    from monet_cli.plan import load_plan, sidecar_path

    if len(paths) > 2:
        raise UsageError("apply takes PHOTO [PLAN]")
    photo = paths[0]
    if len(paths) == 2:
        plan = load_plan(paths[1])
    else:
        sc = sidecar_path(photo)
        if not sc.exists():
            raise PlanError(f"no plan given and no sidecar {sc.name}; run `monet plan {photo}` or pass a plan JSON",
                            path=photo)
        plan = load_plan(sc)
    result = apply_plan(photo, plan, output, overwrite=force, colorspace=colorspace, depth=depth)
    if as_json:
        _print_json(result.to_dict())
    elif not quiet:
        s = result.seconds
        _console().print(
            f"[green]✓[/green] {result.source} → [bold]{result.output}[/bold]  "
            f"{result.width}×{result.height}, {result.bit_depth}-bit {result.colorspace}, "
            f"{len(result.adjustments)} ops, {s['total']:.2f} s "
            f"(read {s['read']:.2f}, render {s['render']:.2f}, write {s['write']:.2f})"
        )


# ---------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and a meaningful exit code for every failure."""
    try:
        app(args=argv, standalone_mode=False)
    except MonetError as e:
        from rich.markup import escape

        _console(stderr=True).print(f"[red]monet: error:[/red] {escape(str(e))}")
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("monet: interrupted\n")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:
        # click's usage errors and aborts (typer may vendor click, so match by shape)
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            sys.exit(e.exit_code)
        if type(e).__name__ == "Abort":
            sys.stderr.write("monet: interrupted\n")
            sys.exit(130)
        if os.environ.get("MONET_DEBUG"):
            raise
        sys.stderr.write(f"monet: internal error: {type(e).__name__}: {e} "
                         "(please report it; MONET_DEBUG=1 shows the traceback)\n")
        sys.exit(1)
    sys.exit(0)
