"""`monet export-xmp`, `monet import-xmp`: plans to and from Lightroom / Camera Raw XMP."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from monet_cli.cli import app
from monet_cli.console import console, escape, print_json

_AS_SHOT_HELP = ("Raw files: the as-shot white balance in kelvin (Lightroom shows it with White Balance "
                 "“As Shot”), for an exact absolute Temperature. Default: from the XMP or the raw file's "
                 "metadata, else 5500 K.")


def _as_shot(kelvin: Optional[float], tint: Optional[float]):
    from monet_cli.errors import UsageError
    from monet_cli.xmp import LR_KELVIN, LR_TINT, AsShot

    if kelvin is None:
        if tint is not None:
            raise UsageError("--as-shot-tint needs --as-shot-kelvin")
        return None
    if not LR_KELVIN[0] <= kelvin <= LR_KELVIN[1]:
        raise UsageError(f"--as-shot-kelvin must be in {LR_KELVIN[0]:g}..{LR_KELVIN[1]:g}")
    if tint is not None and not LR_TINT[0] <= tint <= LR_TINT[1]:
        raise UsageError(f"--as-shot-tint must be in {LR_TINT[0]:g}..{LR_TINT[1]:g}")
    return AsShot(kelvin, tint if tint is not None else 0.0, "given on the command line")


def _run_all(items, job, *, as_json: bool) -> None:
    """Run ``job`` per item; one failing file never stops the others; exit 1 if any failed."""
    from monet_cli.errors import MonetError

    failed = 0
    for item in items:
        try:
            job(item)
        except MonetError as e:
            if len(items) == 1:
                raise
            failed += 1
            if as_json:
                print_json({"path": str(item), "error": str(e)})
            else:
                console(stderr=True).print(f"[red]monet: error:[/red] {escape(str(e))}")
    if failed:
        raise MonetError(f"{failed} of {len(items)} files failed")


def _print_notes(con, notes, unsupported=()) -> None:
    for n in notes:
        con.print(f"  [yellow]note:[/yellow] {escape(n)}")
    if unsupported:
        con.print(f"  [yellow]not represented in monet ({len(unsupported)}):[/yellow]")
        for u in unsupported:
            why = f"  [dim]{escape(u['reason'])}[/dim]" if u.get("reason") else ""
            con.print(f"    {escape(u['tag'])} = {escape(u['value'])}{why}")


@app.command("export-xmp")
def export_xmp_cmd(
    photos: List[Path] = typer.Argument(..., help="Photos whose plan (sidecar PHOTO.monet.json or --plan) is exported."),
    plan_file: Optional[Path] = typer.Option(None, "--plan", "-p", help="A plan JSON to export instead of the sidecars "
                                                                          "(the same plan for every photo)."),
    embed: bool = typer.Option(False, "--embed", help="Write a copy of the JPEG/TIFF/DNG with the XMP inside "
                                                      "(<stem>.monet-xmp.<ext>), which Lightroom reads."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output file (one photo only)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing XMP sidecar or copy "
                                                            "(the original photo is never written)."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the plan sidecars live."),
    as_shot_kelvin: Optional[float] = typer.Option(None, "--as-shot-kelvin", help=_AS_SHOT_HELP),
    as_shot_tint: Optional[float] = typer.Option(None, "--as-shot-tint", help="Raw files: the as-shot tint "
                                                                              "(−150..150; default 0 with "
                                                                              "--as-shot-kelvin)."),
    values: str = typer.Option("rendered", "--values", help="rendered: the values monet renders; model: the "
                                                           "model's own values where its preset's value map "
                                                           "changed them."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per photo."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
):
    """Export plans as Lightroom / Camera Raw settings (crs: XMP) that Lightroom, Camera Raw and darktable open.

    Raw files get Adobe's sidecar NAME.xmp (IMG_0042.CR2 → IMG_0042.xmp); an existing one is kept unless --force, since it may hold your own Lightroom edits. Lightroom reads JPEG, TIFF and DNG settings from inside the file: --embed writes a copy with the XMP embedded. `monet ops` lists each op's tag; the mapping and where it is approximate are in the docs of monet_cli.xmp.

    [b]Examples[/b]

      monet export-xmp IMG_0042.CR2                 # → IMG_0042.xmp
      monet export-xmp photo.jpg --embed            # → photo.monet-xmp.jpg
      monet export-xmp IMG_0042.CR2 --as-shot-kelvin 5150 --as-shot-tint 8
      monet export-xmp *.NEF --plan look.json --json
      monet export-xmp photo.tif --values model     # MonetGPT's own numbers
    """
    from monet_cli.errors import PlanError, UsageError
    from monet_cli.plan import load_plan, sidecar_path
    from monet_cli.xmp import export_xmp

    if output is not None and len(photos) > 1:
        raise UsageError("-o/--output takes one photo")
    from monet_cli.xmp import EXPORT_VALUES

    if values not in EXPORT_VALUES:
        raise UsageError(f"--values must be {' or '.join(EXPORT_VALUES)}, got {values!r}")
    as_shot = _as_shot(as_shot_kelvin, as_shot_tint)
    shared = load_plan(plan_file) if plan_file is not None else None
    con = console()

    def job(photo: Path) -> None:
        plan = shared
        if plan is None:
            sc = sidecar_path(photo, sidecar_dir)
            if not sc.exists():
                raise PlanError(f"no plan: no sidecar {sc.name}; run `monet plan {photo}` or pass --plan", path=photo)
            plan = load_plan(sc)
        r = export_xmp(photo, plan, embed=embed, output=output, overwrite=force, as_shot=as_shot, values=values)
        if as_json:
            print_json(r.to_dict())
        elif not quiet:
            kind = "embedded copy" if r.embedded else "sidecar"
            wb = ""
            if r.raw and r.tags.get("WhiteBalance") == "Custom":
                wb = (f", white balance {r.tags['Temperature']} K / tint {r.tags['Tint']} "
                      f"(as shot {r.as_shot.kelvin:g} K: {escape(r.as_shot.source)})")
            n = sum(1 for v in (plan.model_adjustments if values == "model" else plan.adjustments).values() if v)
            con.print(f"[green]✓[/green] {escape(str(photo))} → [bold]{escape(str(r.output))}[/bold] "
                      f"({kind}, {n} ops{wb})")
            _print_notes(con, r.notes)

    _run_all(photos, job, as_json=as_json)


@app.command("import-xmp")
def import_xmp_cmd(
    paths: List[Path] = typer.Argument(..., help="XMP sidecars, or photos (their sidecar NAME.xmp or embedded XMP "
                                                 "is read)."),
    photo: Optional[Path] = typer.Option(None, "--photo", help="The photo a single XMP belongs to, when its name "
                                                               "does not say."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the plan here (one input only) "
                                                                       "instead of the photo's sidecar."),
    stdout: bool = typer.Option(False, "--stdout", help="Print the plan JSON instead of writing it (one input only)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace an existing plan sidecar."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Write plan sidecars here."),
    as_shot_kelvin: Optional[float] = typer.Option(None, "--as-shot-kelvin", help=_AS_SHOT_HELP),
    as_shot_tint: Optional[float] = typer.Option(None, "--as-shot-tint", help="Raw files: the as-shot tint."),
    as_json: bool = typer.Option(False, "--json", help="One JSON line per input: plan, plan path, what was not "
                                                       "represented, notes."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing on success."),
):
    """Import Lightroom / Camera Raw settings (sidecar or embedded XMP) as monet plans.

    Writes PHOTO.monet.json beside the photo (an existing plan is kept unless --force). Settings monet cannot represent (Clarity, Vibrance, Dehaze, tone curves, sharpening, crops, local adjustments…) are listed, never silently dropped.

    [b]Examples[/b]

      monet import-xmp IMG_0042.xmp                 # → IMG_0042.CR2.monet.json
      monet import-xmp IMG_0042.CR2                 # finds IMG_0042.xmp
      monet import-xmp edited.jpg --stdout          # embedded XMP, plan on stdout
      monet import-xmp shoot/*.xmp --json > imported.jsonl
    """
    from monet_cli.errors import UsageError
    from monet_cli.plan import sidecar_path
    from monet_cli.xmp import import_xmp, save_imported_plan

    if len(paths) > 1 and (output is not None or stdout or photo is not None):
        raise UsageError("-o/--output, --stdout and --photo take one input")
    if output is not None and stdout:
        raise UsageError("give -o/--output or --stdout, not both")
    as_shot = _as_shot(as_shot_kelvin, as_shot_tint)
    con = console()

    def job(path: Path) -> None:
        r = import_xmp(path, photo=photo, as_shot=as_shot)
        if not stdout:
            target = output
            if target is None and sidecar_dir is not None and r.photo is not None:
                target = sidecar_path(r.photo, sidecar_dir)
            save_imported_plan(r, target, overwrite=force)
        if as_json:
            print_json(r.to_dict())
            return
        if stdout:
            typer.echo(r.plan.to_json(), nl=False)
            if not quiet:
                _print_notes(console(stderr=True), r.notes, r.unsupported)
            return
        if not quiet:
            src = f"{r.xmp} (embedded)" if r.embedded else str(r.xmp)
            vals = ", ".join(f"{k} {v:+g}" for k, v in r.adjustments.items()) or "no adjustments"
            con.print(f"[green]✓[/green] {escape(src)} → [bold]{escape(str(r.plan_path))}[/bold]: {escape(vals)}")
            _print_notes(con, r.notes, r.unsupported)

    _run_all(paths, job, as_json=as_json)
