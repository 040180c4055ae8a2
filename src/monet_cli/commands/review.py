"""`monet review`: a local web page to look at plans, compare, move sliders and accept."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from monet_cli.cli import app
from monet_cli.console import console, escape, print_json


@app.command("review")
def review_cmd(
    paths: List[str] = typer.Argument(..., help="Photos, folders or glob patterns."),
    port: int = typer.Option(8765, "--port", help="Port to listen on (0: any free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback makes the "
                                                         "page (and its accept/apply buttons) reachable from other "
                                                         "machines: a warning says so."),
    static: Optional[Path] = typer.Option(None, "--static", help="Write the page as static files into this folder "
                                                                 "(before/after images, plans, reasoning) instead "
                                                                 "of serving it: to share a batch's results."),
    sidecar_dir: Optional[Path] = typer.Option(None, "--sidecar-dir", help="Where the sidecars live."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Descend into sub-folders."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON line (the address, or the static folder)."),
):
    """Review plans in a browser: before/after with a split slider, the three stages with their reasoning, every op as a slider that re-renders a proxy, accept (locks the stage, as edit-stage does), re-plan later stages, apply.

    The page is served on loopback only unless --host says otherwise. Keys: ← → move between photos, space toggles before/after, Esc goes back to the grid. Stop the server with Ctrl-C.

    [b]Examples[/b]

      monet review shoot/                 # then open http://127.0.0.1:8765/
      monet review 'shoot/*.tif' --port 9000
      monet review shoot/ --static review-site/
    """
    from monet_cli.batch import resolve_inputs
    from monet_cli.errors import UsageError
    from monet_cli.review import LOOPBACK, make_server, write_static

    photos, missing, _ = resolve_inputs(paths, recursive=recursive)
    err = console(stderr=True)
    for path, why in missing:
        err.print(f"[yellow]warning:[/yellow] {escape(str(path))}: {escape(why)}")
    if not photos:
        raise UsageError("no photos to review")
    if static is not None:
        out = write_static(photos, static, sidecar_dir=sidecar_dir)
        if as_json:
            print_json({"static": str(out), "photos": len(photos)})
        else:
            console().print(f"[green]✓[/green] {len(photos)} photo(s) → [bold]{escape(str(out / 'index.html'))}[/bold]")
        return
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0-65535, got {port}")
    if host not in LOOPBACK:
        err.print(f"[yellow]warning:[/yellow] listening on {escape(host)}: anyone who can reach this machine can "
                  f"open the page and change or render these photos' plans")
    server = make_server(photos, host=host, port=port, sidecar_dir=sidecar_dir)
    h, p = server.server_address[:2]
    url = f"http://{'[' + h + ']' if ':' in h else h}:{p}/"
    if as_json:
        print_json({"url": url, "photos": len(photos)})
    else:
        console().print(f"reviewing {len(photos)} photo(s) at [bold]{url}[/bold] (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
