"""`monet review`: a local page to look at plans, compare before/after, move sliders and accept.

The server is the standard library's ``http.server.ThreadingHTTPServer``: no dependency, kept
with CPython, enough for one photographer's browser on loopback. It serves the page (plain
HTML/JS/CSS in ``monet_cli/review_page/``, no build step, no CDN) and a small JSON API:

==========================================  ===================================================
``GET  /api/photos``                         the review set: id, name, each stage's status
``GET  /api/photos/ID``                      one photo's plan and its ``version``
``GET  /api/photos/ID/image.jpg``            the proxy (long side ``size``, default 1280),
                                             ``view=before`` or rendered with the plan, or with
                                             ``adjustments=<JSON>`` (what the sliders say)
``POST /api/photos/ID/stages/STAGE``         accept: ``{"values": {...}, "version": V}`` — the
                                             stage set to these values and locked, as
                                             ``monet edit-stage --no-replan`` does (history kept)
``POST /api/photos/ID/replan``               ``{"stage": S, "version": V}``: lock S, re-plan the
                                             later unlocked stages with the plan's backend
``POST /api/photos/ID/apply``                ``{"version": V, "force": false}``: render the photo
==========================================  ===================================================

Photos are addressed by their index in the review set, never by a path, so a request cannot
name a file outside it. Every write takes the photo's lock (the one ``monet plan`` and batches
use), writes the sidecar atomically, and checks ``version`` (a hash of the sidecar as the page
loaded it): a second tab with an older copy gets 409 and a message, not a lost edit.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from monet_cli.catalog import STAGES, catalog
from monet_cli.errors import MonetError, PlanError, UsageError

PAGE_DIR = Path(__file__).with_name("review_page")
PROXY_SIDE = 1280
MAX_BODY = 1 << 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def plan_version(sidecar: Path) -> str | None:
    """The version a page holds of a sidecar: a hash of its bytes (None: no sidecar)."""
    try:
        return hashlib.sha256(sidecar.read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        return None


class Review:
    """The review set and what the API does with it (one instance per server)."""

    def __init__(self, photos: list[Path], *, sidecar_dir=None):
        if not photos:
            raise UsageError("no photos to review")
        self.photos = [Path(p) for p in photos]
        self.sidecar_dir = sidecar_dir
        self._proxies: dict[tuple[int, int], object] = {}
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- reading
    def photo(self, pid: str) -> tuple[int, Path]:
        if not pid.isdigit() or int(pid) >= len(self.photos):
            raise HttpError(404, f"no photo {pid!r} in this review")
        return int(pid), self.photos[int(pid)]

    def sidecar(self, photo: Path) -> Path:
        from monet_cli.plan import sidecar_path

        return sidecar_path(photo, self.sidecar_dir)

    def plan(self, photo: Path):
        from monet_cli.sidecars import read_sidecar

        try:
            return read_sidecar(photo, self.sidecar_dir, check_source=False)[0]
        except PlanError:
            return None

    def summary(self, i: int) -> dict:
        p = self.photos[i]
        plan = self.plan(p)
        stages = {s: {"status": plan.stages[s].status, "locked": plan.stages[s].locked} for s in STAGES} if plan else None
        return {"id": i, "name": p.name, "planned": plan is not None, "stages": stages}

    def detail(self, i: int) -> dict:
        p = self.photos[i]
        plan = self.plan(p)
        return {**self.summary(i), "plan": plan.to_dict() if plan else None,
                "version": plan_version(self.sidecar(p))}

    def proxy(self, i: int, size: int):
        from monet_cli.measure import area_downscale
        from monet_cli.preview import load_proxy

        key = (i, size)
        with self._lock:
            if key in self._proxies:
                return self._proxies[key]
        full = self._proxies.get((i, PROXY_SIDE))
        if full is None:
            try:
                full = load_proxy(self.photos[i], PROXY_SIDE)
            except MonetError as e:
                raise HttpError(422, str(e)) from None
            with self._lock:
                self._proxies[(i, PROXY_SIDE)] = full
        px = full if size >= max(full.shape[:2]) else area_downscale(full, size).astype("float32")
        with self._lock:
            self._proxies[key] = px
        return px

    def image(self, i: int, query: dict) -> bytes:
        from PIL import Image as PILImage

        from monet_cli.degrade import working_to_srgb8
        from monet_cli.plan import validate_values
        from monet_cli.render import render_linear

        try:
            size = int(query.get("size", [PROXY_SIDE])[0])
        except ValueError:
            raise HttpError(400, "size must be a whole number") from None
        size = min(max(size, 32), PROXY_SIDE)
        px = self.proxy(i, size)
        view = query.get("view", ["after"])[0]
        if view == "before":
            adj = {}
        elif "adjustments" in query:
            try:
                adj = validate_values(json.loads(query["adjustments"][0]), "adjustments")
            except (ValueError, PlanError) as e:
                raise HttpError(400, str(e)) from None
        else:
            plan = self.plan(self.photos[i])
            adj = plan.adjustments if plan else {}
        out = working_to_srgb8(render_linear(px, adj) if adj else px)
        buf = io.BytesIO()
        PILImage.fromarray(out).save(buf, format="JPEG", quality=88)
        return buf.getvalue()

    # ----------------------------------------------------------------- writing
    def _locked_write(self, photo: Path, version, fn):
        from monet_cli.batch import PhotoLock

        lock = PhotoLock(photo, self.sidecar_dir)
        if not lock.acquire():
            raise HttpError(409, f"{photo.name} is being planned or rendered by another monet command; try again")
        try:
            current = plan_version(self.sidecar(photo))
            if version != current:
                raise HttpError(409, f"the plan of {photo.name} changed since this page loaded it (another tab or "
                                     f"a monet command); reload to see it, then make your change again")
            try:
                return fn()
            except MonetError as e:
                raise HttpError(422, str(e)) from None
        finally:
            lock.release()

    def accept(self, i: int, stage: str, body: dict) -> dict:
        from monet_cli.sidecars import edit_stage

        photo = self.photos[i]
        if stage not in STAGES:
            raise HttpError(404, f"no stage {stage!r}; stages are {', '.join(STAGES)}")
        values = body.get("values")
        if not isinstance(values, dict):
            raise HttpError(400, "expected {\"values\": {op: value}, \"version\": ...}")
        cat = catalog()
        wrong = [k for k in values if k not in cat.ops or cat.stage_of(k) != stage]
        if wrong:
            raise HttpError(400, f"{wrong[0]} is not an operation of the {stage} stage")
        plan = self.plan(photo)
        if plan is None:
            raise HttpError(409, f"{photo.name} has no plan yet; run `monet plan` first")
        current = plan.stages[stage].adjustments
        changes = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if len(changes) != len(values):
            raise HttpError(400, "every value must be a number")
        set_values = {k: v for k, v in changes.items() if current.get(k) != v}
        set_values.update({k: 0.0 for k in current if k not in changes})
        self._locked_write(photo, body.get("version"),
                           lambda: edit_stage(photo, stage, set_values=set_values, replan=False,
                                              sidecar_dir=self.sidecar_dir))
        return self.detail(i)

    def replan(self, i: int, body: dict) -> dict:
        from monet_cli.sidecars import edit_stage

        photo = self.photos[i]
        stage = body.get("stage")
        if stage not in STAGES[:-1]:
            raise HttpError(400, f"stage must be one of {', '.join(STAGES[:-1])} (the later ones are re-planned)")
        self._locked_write(photo, body.get("version"),
                           lambda: edit_stage(photo, stage, replan=True, sidecar_dir=self.sidecar_dir))
        return self.detail(i)

    def apply(self, i: int, body: dict) -> dict:
        from monet_cli.apply import apply_photo
        from monet_cli.batch import Skip

        photo = self.photos[i]
        force = body.get("force") is True

        def run():
            try:
                return apply_photo(photo, overwrite=force, skip_existing=True, sidecar_dir=self.sidecar_dir)
            except Skip as e:
                raise HttpError(409, f"{e} (tick 'replace' to render it again)") from None

        r = self._locked_write(photo, body.get("version"), run)
        return {"output": str(r.output), "width": r.width, "height": r.height, "bit_depth": r.bit_depth}


def _handler(review: Review, *, static_dir: Path = PAGE_DIR):
    class Handler(BaseHTTPRequestHandler):
        server_version = "monet-review"

        def log_message(self, *a):  # quiet: the CLI prints one line per start
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _route(self, method: str):
            url = urlsplit(self.path)
            parts = [p for p in url.path.split("/") if p]
            if any(p in (".", "..") or "\\" in p for p in parts):
                raise HttpError(400, "no such path")
            if method == "GET" and not parts:
                return self._file("index.html")
            if method == "GET" and parts == ["data.js"]:  # the static copy's data; live, there is none
                return self._send(200, b"window.MONET_STATIC = null;\n", _TYPES[".js"])
            if method == "GET" and len(parts) == 2 and parts[0] == "static":
                return self._file(parts[1])
            if len(parts) < 2 or parts[:2] != ["api", "photos"]:
                raise HttpError(404, "no such path")
            rest = parts[2:]
            if method == "GET":
                if not rest:
                    return self._json(200, {"photos": [review.summary(i) for i in range(len(review.photos))],
                                            "ops": _ops()})
                i, _ = review.photo(rest[0])
                if len(rest) == 1:
                    return self._json(200, review.detail(i))
                if rest[1:] == ["image.jpg"]:
                    return self._send(200, review.image(i, parse_qs(url.query)), "image/jpeg")
                raise HttpError(404, "no such path")
            if method == "POST":
                if not rest:
                    raise HttpError(404, "no such path")
                i, _ = review.photo(rest[0])
                body = self._body()
                if len(rest) == 3 and rest[1] == "stages":
                    return self._json(200, review.accept(i, rest[2], body))
                if rest[1:] == ["replan"]:
                    return self._json(200, review.replan(i, body))
                if rest[1:] == ["apply"]:
                    return self._json(200, review.apply(i, body))
            raise HttpError(404, "no such path")

        def _body(self) -> dict:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise HttpError(413, "request too large")
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                raise HttpError(400, "the request body is not JSON") from None
            if not isinstance(body, dict):
                raise HttpError(400, "the request body must be a JSON object")
            return body

        def _file(self, name: str):
            p = static_dir / name
            if p.suffix not in _TYPES or not p.is_file() or p.parent != static_dir:
                raise HttpError(404, "no such file")
            return self._send(200, p.read_bytes(), _TYPES[p.suffix])

        def _serve(self, method: str):
            try:
                self._route(method)
            except HttpError as e:
                self._json(e.status, {"error": str(e)})
            except BrokenPipeError:
                pass
            except Exception as e:  # noqa: BLE001 - one request's fault is its answer, not the server's end
                self._json(500, {"error": f"{type(e).__name__}: {e}"})

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

    return Handler


def _ops() -> list[dict]:
    cat = catalog()
    return [{"name": o.name, "stage": o.stage, "min": o.min, "max": o.max} for o in cat.ops.values()]


def make_server(photos: list[Path], *, host: str = "127.0.0.1", port: int = 8765, sidecar_dir=None):
    """A ready server (not yet serving) for ``photos`` on ``host:port`` (port 0: any free one)."""
    review = Review(photos, sidecar_dir=sidecar_dir)
    try:
        server = ThreadingHTTPServer((host, port), _handler(review))
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port") from None
    server.daemon_threads = True
    server.review = review
    return server


def write_static(photos: list[Path], out: Path, *, sidecar_dir=None, size: int = PROXY_SIDE) -> Path:
    """The page as static files in ``out`` (``index.html``, ``data.js``, before/after JPEGs),
    for sharing a batch's results without a server: it opens from disk in any browser."""
    import shutil

    from monet_cli.images import atomic_write

    review = Review(photos, sidecar_dir=sidecar_dir)
    out = Path(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    items = []
    for i, _p in enumerate(review.photos):
        d = review.detail(i)
        for view in ("before", "after"):
            data = review.image(i, {"view": [view], "size": [str(size)]})
            atomic_write(out / "img" / f"{i}-{view}.jpg", lambda tmp, data=data: Path(tmp).write_bytes(data),
                         overwrite=True)
        items.append(d)
    payload = "window.MONET_STATIC = " + json.dumps({"photos": items, "ops": _ops()}) + ";\n"
    atomic_write(out / "data.js", lambda tmp: Path(tmp).write_text(payload, encoding="utf-8"), overwrite=True)
    for name in ("index.html", "app.js", "style.css"):
        target = out / name if name == "index.html" else out / "static" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PAGE_DIR / name, target)
    return out
