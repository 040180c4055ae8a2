"""The ``monet`` command line: parse, call the library, print. No image logic lives here.

Exit codes: 0 success, 1 failure (bad input, bad plan, some files of a batch failed),
2 usage error, 130 interrupted.
"""

from __future__ import annotations

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


from monet_cli.console import console as _console
from monet_cli.console import escape
from monet_cli.console import print_json as _print_json


def sub_app(name: str, help: str, **options) -> typer.Typer:
    """A command group (``monet NAME …``) with monet's help settings, registered on ``app``."""
    group = typer.Typer(help=help, no_args_is_help=True, rich_markup_mode="rich",
                        context_settings={"help_option_names": ["-h", "--help"]}, **options)
    app.add_typer(group, name=name)
    return group


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
    paths: List[str] = typer.Argument(..., help="Photos, folders or glob patterns, optionally followed by a plan "
                                                "JSON that applies to all of them. Without a plan each photo's "
                                                "sidecar PHOTO.monet.json is used."),
    plan_file: Optional[Path] = typer.Option(None, "--plan", "-p", help="A plan JSON for every photo."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Output file (one photo); its suffix picks the format (.tif, "
                                               ".jpg, .png). Default: <stem>.monet.<ext> beside the photo."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Write outputs into this folder."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Output format for default names: tif, jpg or png."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite existing outputs; apply stale sidecars."),
    colorspace: Optional[str] = typer.Option(None, "--colorspace",
                                             help="Output colour space: srgb, display-p3, adobe-rgb, prophoto, "
                                                  "rec2020, linear-srgb, linear-prophoto, linear-rec2020."),
    depth: Optional[int] = typer.Option(None, "--depth", help="Output bits per channel: 8, 16 or 32 (float TIFF)."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the sidecars live."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Photos in flight at once. Default: 2 where "
                                       "there are 2 or more CPUs, so that one photo is read or written while "
                                       "another renders (each render uses all cores); -j 1 holds one photo in "
                                       "memory."),
    value_map: Optional[str] = typer.Option(None, "--value-map", help="With a plan file: take its values as this "
                                            "model preset's (e.g. monetgpt-7b for the flat dict the published "
                                            "MonetGPT code writes) and render them through its value map."),
    no_metadata: bool = typer.Option(False, "--no-metadata", help="Write no EXIF, GPS or XMP into the outputs "
                                                                   "(by default the photo's camera, lens, exposure, "
                                                                   "capture time, GPS, artist and copyright are "
                                                                   "carried, and the plan is added as XMP)."),
    strip_gps: bool = typer.Option(False, "--strip-gps", help="Carry the metadata but leave out the GPS position."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per photo on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final summary."),
):
    """Render plans onto photos at full resolution and bit depth.

    The plan is a monet plan (sidecar) or the flat {"Exposure": 15, ...} dict that the published MonetGPT emits. Inputs are never modified; outputs are written atomically. The photo's EXIF (camera, lens, exposure, capture time, GPS, artist, copyright) is carried into every output with Orientation 1, and the plan is added as XMP (--no-metadata, --strip-gps); unreadable metadata is a warning, never a failed render. In a batch, photos whose output already exists are skipped (rerun after an interrupt to finish); a single photo with an explicit -o that exists is an error. Both unless --force. Exit 0 when all are done, 1 when some failed, 2 for usage errors, 130 when interrupted.

    [b]Examples[/b]

      monet apply photo.tif                      # uses photo.tif.monet.json → photo.monet.tif
      monet apply photo.tif plan.json            # photo.monet.tif, 16-bit
      monet apply IMG_0042.CR2 plan.json -o out.jpg --colorspace srgb
      monet apply shoot/ --recursive --out-dir renders/ --format jpg --json
      monet apply photo.tif their_output.json --value-map monetgpt-7b
      monet apply shoot/ --out-dir public/ --format jpg --strip-gps
    """
    from monet_cli.apply import apply_photo
    from monet_cli.batch import print_summary, resolve_inputs, run_batch
    from monet_cli.errors import UsageError
    from monet_cli.plan import load_plan

    args = list(paths)
    if plan_file is None and len(args) >= 2 and args[-1].lower().endswith(".json"):
        plan_file = Path(args.pop())
    plan = load_plan(plan_file) if plan_file is not None else None
    if value_map is not None:
        from monet_cli.value_map import map_plan, resolve_value_map

        if plan is None:
            raise UsageError("--value-map applies to a plan file (--plan or PLAN.json); a sidecar made by a model "
                             "records its own mapped values")
        vm = resolve_value_map(value_map)
        if vm is not None:
            plan = map_plan(plan, vm)
    photos, missing, single = resolve_inputs(args, recursive=recursive)
    if output is not None and not single:
        raise UsageError("-o names one output file; for several photos use --out-dir")
    if fmt is not None and fmt.lower().lstrip(".") not in ("tif", "tiff", "jpg", "jpeg", "png"):
        raise UsageError(f"--format must be tif, jpg or png, not {fmt!r}")
    con = _console()

    def job(photo: Path):
        r = apply_photo(photo, plan=plan, out=output, out_dir=out_dir, fmt=fmt, overwrite=force,
                        skip_existing=not (single and output is not None), colorspace=colorspace, depth=depth,
                        sidecar_dir=sidecar_dir, check_source=not force, metadata=not no_metadata,
                        strip_gps=strip_gps)
        for w in (r.metadata or {}).get("warnings", []):
            if not as_json:
                _console(stderr=True).print(f"[yellow]warning:[/yellow] {escape(w)}")
        return r.to_dict()

    from monet_cli.render import kernel

    kernel()  # chosen (and built or loaded) here, in the main thread, before the batch's workers start

    global _FAST_EXIT
    _FAST_EXIT = True  # main() may skip the interpreter's teardown once this command is done
    summary = run_batch(photos, job, jobs=jobs, verb="rendering", quiet=quiet, as_json=as_json,
                        console=con, missing=missing, output_dirs=[d for d in (out_dir, sidecar_dir) if d],
                        silent=single and not as_json)
    if single and not as_json:
        r = summary.results[0]
        if r.error is not None:
            raise r.error
        if not quiet:
            if r.status == "skipped":
                con.print(f"{escape(str(r.path))}: {escape(r.message)}")
            else:
                d, sec = r.data, r.data["seconds"]
                con.print(f"[green]✓[/green] {escape(d['source'])} → [bold]{escape(d['output'])}[/bold]  "
                          f"{d['width']}×{d['height']}, {d['bit_depth']}-bit {d['colorspace']}, "
                          f"{len(d['adjustments'])} ops, {sec['total']:.2f} s (read {sec['read']:.2f}, "
                          f"render {sec['render']:.2f}, write {sec['write']:.2f})")
    elif not as_json:
        print_summary(summary, _console(stderr=True), verb="apply")
    raise typer.Exit(summary.exit_code)


# ---------------------------------------------------------------------------- more commands


def _register_commands() -> None:
    import importlib

    from monet_cli.commands import MODULES

    for name in MODULES:
        importlib.import_module(f"monet_cli.commands.{name}")


_register_commands()


# ---------------------------------------------------------------------------- entry point


# Set by commands whose process has nothing left to do at exit but let the interpreter tear
# down numba, LLVM and thread pools (about 0.15 s of every `monet apply` here).
_FAST_EXIT = False


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line and a meaningful exit code for every failure.

    Run as the ``monet`` command (``argv`` None) after ``monet apply``, the process ends with
    ``os._exit`` once stdout and stderr are flushed: every output is already written, renamed
    and closed and every lock released, so the interpreter's teardown would only cost time.
    Called with ``argv`` (tests, library use) it raises ``SystemExit`` as usual."""
    try:
        _main(argv)
    except SystemExit as e:
        if argv is None and _FAST_EXIT:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)
        raise


def _main(argv: list[str] | None) -> None:
    try:
        rv = app(args=argv, standalone_mode=False)
        # without standalone mode click returns the code of a typer.Exit instead of exiting
        if isinstance(rv, int) and rv:
            sys.exit(rv)
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
