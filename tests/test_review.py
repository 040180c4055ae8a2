"""`monet review`: the local server's API (list, proxies that follow the sliders, accept through
the edit-stage path with history and the sidecar lock, the last-writer check between tabs,
path traversal refused with nothing written, apply) and the static copy; then the page itself
in headless Chromium (skipped where Debian's chromium or the playwright package is missing):
move a slider and see the proxy change, accept a stage and find the sidecar locked."""

from __future__ import annotations

import io
import json
import os
import shutil
import threading
import urllib.error
import urllib.request
from pathlib import Path

import fixtures as fx
import numpy as np
import pytest
from PIL import Image

from monet_cli.plan import Plan, Reasoning, load_plan, save_plan, sidecar_path
from monet_cli.review import make_server, write_static

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def photos(tmp_path):
    out = []
    for name, px in (("a.jpg", fx.astronaut(2)), ("b.jpg", fx.coffee(2))):
        p = fx.make_jpeg(tmp_path / name, px)
        plan = Plan.from_adjustments({"Exposure": 10, "Saturation": 8})
        plan.stages["lighting"].reasoning = [Reasoning("Exposure", "The subject is a little dark (median L* 41).",
                                                       "Raise the exposure slightly.")]
        plan.stages["color"].reasoning = [Reasoning("Saturation", "The colours are muted.",
                                                    "Add a little saturation.")]
        save_plan(plan, sidecar_path(p))
        out.append(p)
    return out


@pytest.fixture
def server(photos):
    srv = make_server(photos, port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def call(srv, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.url + path, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if r.headers["Content-Type"] == "application/json" else raw)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def image(raw: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=float)


def snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_list_detail_and_page(server, photos):
    status, data = call(server, "/api/photos")
    assert status == 200 and [p["name"] for p in data["photos"]] == ["a.jpg", "b.jpg"]
    assert data["photos"][0]["stages"]["lighting"]["status"] == "ok" and len(data["ops"]) == 33
    status, d = call(server, "/api/photos/1")
    assert d["plan"]["stages"]["color"]["adjustments"] == {"Saturation": 8} and len(d["version"]) == 16
    status, page = call(server, "/")
    assert status == 200 and b"static/app.js" in page and b"<script" in page
    assert call(server, "/static/app.js")[0] == 200 and call(server, "/static/style.css")[0] == 200
    assert b"null" in call(server, "/data.js")[1]


def test_proxies_follow_the_sliders(server):
    _, before = call(server, "/api/photos/0/image.jpg?view=before&size=256")
    _, after = call(server, "/api/photos/0/image.jpg?size=256")
    _, bright = call(server, '/api/photos/0/image.jpg?size=256&adjustments={"Exposure":60}'.replace('"', "%22"))
    _, dark = call(server, '/api/photos/0/image.jpg?size=256&adjustments={"Exposure":-60}'.replace('"', "%22"))
    b, a, hi, lo = (image(x) for x in (before, after, bright, dark))
    assert b.shape == a.shape and max(b.shape[:2]) == 256
    assert a.mean() > b.mean() + 1  # the plan's Exposure +10
    assert hi.mean() > a.mean() + 10 > lo.mean() + 20
    status, err = call(server, '/api/photos/0/image.jpg?adjustments={"Exposure":500}'.replace('"', "%22"))
    assert status == 400 and "outside" in err["error"]
    assert call(server, "/api/photos/0/image.jpg?adjustments=nope")[0] == 400


def test_accept_locks_the_stage_with_history_and_a_second_tab_gets_a_conflict(server, photos):
    _, d = call(server, "/api/photos/0")
    v1 = d["version"]
    status, d2 = call(server, "/api/photos/0/stages/lighting", {"values": {"Exposure": 25, "Contrast": -5},
                                                                 "version": v1})
    assert status == 200 and d2["version"] != v1
    plan = load_plan(sidecar_path(photos[0]))
    light = plan.stages["lighting"]
    assert light.locked and light.adjustments == {"Exposure": 25.0, "Contrast": -5.0}
    assert len(plan.history) == 1 and plan.history[0]["stages"]["lighting"]["adjustments"] == {"Exposure": 10}
    assert plan.stages["color"].adjustments == {"Saturation": 8}  # --no-replan: the other stages untouched
    before = sidecar_path(photos[0]).read_bytes()
    status, err = call(server, "/api/photos/0/stages/color", {"values": {"Saturation": 30}, "version": v1})
    assert status == 409 and "changed since this page loaded it" in err["error"]
    assert sidecar_path(photos[0]).read_bytes() == before  # the stale tab wrote nothing
    status, d3 = call(server, "/api/photos/0/stages/color", {"values": {}, "version": d2["version"]})
    assert status == 200 and d3["plan"]["stages"]["color"]["adjustments"] == {}  # Saturation removed
    assert call(server, "/api/photos/0/stages/color", {"values": {"Exposure": 5}, "version": d3["version"]})[0] == 400
    assert call(server, "/api/photos/0/stages/nope", {"values": {}, "version": d3["version"]})[0] == 404


def test_a_held_lock_is_respected(server, photos):
    from monet_cli.batch import PhotoLock

    _, d = call(server, "/api/photos/1")
    lock = PhotoLock(photos[1])
    assert lock.acquire()
    try:
        status, err = call(server, "/api/photos/1/stages/lighting", {"values": {"Exposure": 3}, "version": d["version"]})
        assert status == 409 and "another monet command" in err["error"]
    finally:
        lock.release()


@pytest.mark.parametrize("path, body", [
    ("/api/photos/../../etc/passwd", None), ("/static/../review.py", None), ("/static/..%2freview.py", None),
    ("/api/photos/2", None), ("/api/photos/-1", None), ("/api/photos/0/../../../x", None),
    ("/api/photos/../../a.jpg.monet.json", {"values": {}}), ("/api/photos/5/stages/lighting", {"values": {}}),
    ("/api/photos/0%2F..%2F..%2Fx/stages/lighting", {"values": {"Exposure": 1}}),
    ("/etc/passwd", None), ("/api/photos/0/apply/../../x", {"version": None}),
])
def test_path_traversal_is_refused_and_nothing_is_written(server, photos, tmp_path, path, body):
    import http.client

    before = snapshot(tmp_path)
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    data = None if body is None else json.dumps(body)
    conn.request("GET" if body is None else "POST", path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    assert 400 <= r.status < 500, (path, r.status)
    assert b"root:" not in payload and b"import" not in payload
    assert snapshot(tmp_path) == before


def test_replan_and_apply(server, photos):
    _, d = call(server, "/api/photos/0")
    status, d2 = call(server, "/api/photos/0/replan", {"stage": "lighting", "version": d["version"]})
    assert status == 200 and d2["plan"]["stages"]["lighting"]["locked"]
    assert d2["plan"]["planner"]["backend"] in ("auto", "manual")
    status, r = call(server, "/api/photos/0/apply", {"version": d2["version"]})
    assert status == 200 and Path(r["output"]).is_file() and r["bit_depth"] == 8
    status, err = call(server, "/api/photos/0/apply", {"version": d2["version"]})
    assert status == 409 and "exists" in err["error"]  # never overwritten by surprise
    assert call(server, "/api/photos/0/apply", {"version": d2["version"], "force": True})[0] == 200


def test_static_copy(photos, tmp_path):
    out = write_static(photos, tmp_path / "site")
    assert (out / "index.html").is_file() and (out / "static" / "app.js").is_file()
    data = (out / "data.js").read_text()
    assert data.startswith("window.MONET_STATIC = ") and '"a.jpg"' in data
    for i in range(2):
        for view in ("before", "after"):
            assert Image.open(out / "img" / f"{i}-{view}.jpg").size[0] > 0
    assert image((out / "img" / "0-after.jpg").read_bytes()).mean() > image((out / "img" / "0-before.jpg").read_bytes()).mean()


def test_cli_warns_for_a_non_loopback_host_and_writes_static(photos, tmp_path, capsys):
    from monet_cli.cli import main

    try:
        main(["review", str(photos[0]), "--static", str(tmp_path / "s"), "--json"])
    except SystemExit as e:
        assert not e.code
    assert json.loads(capsys.readouterr().out)["photos"] == 1
    import monet_cli.review as rv

    started = []

    class Fake:
        server_address = ("0.0.0.0", 1234)

        def serve_forever(self):
            started.append(True)

        def server_close(self):
            pass

    real = rv.make_server
    rv.make_server = lambda *a, **k: Fake()
    try:
        main(["review", str(photos[0]), "--host", "0.0.0.0"])
    except SystemExit as e:
        assert not e.code
    finally:
        rv.make_server = real
    err = capsys.readouterr().err
    assert started and "anyone who can reach this machine" in err


# ----------------------------------------------------------------------------- the browser


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


needs_browser = pytest.mark.skipif(_chromium() is None, reason="no Chromium (Debian: apt-get install chromium)")


@needs_browser
def test_the_page_in_headless_chromium(server, photos, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(server.url + "/")
        page.wait_for_selector(".card")
        assert page.locator(".card").count() == 2
        page.locator(".card").first.click()
        page.wait_for_selector("#detail:not([hidden])")
        page.wait_for_function("document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0")
        assert "The subject is a little dark" in page.inner_text("#stages")  # the reasoning triplets
        page.screenshot(path=str(tmp_path / "review.png"))
        if os.environ.get("MONET_UPDATE_SCREENSHOT"):  # the README's picture is taken by this test
            shutil.copyfile(tmp_path / "review.png", ROOT / "examples" / "review.png")
        first = page.locator("#after").screenshot()
        old_src = page.eval_on_selector("#after", "e => e.src")
        page.eval_on_selector("#op-Exposure", "e => { e.value = 70; e.dispatchEvent(new Event('input')); }")
        page.wait_for_function(f"document.getElementById('after').src !== {json.dumps(old_src)} && "
                               "document.getElementById('after').complete")
        second = page.locator("#after").screenshot()
        a, b = image(first), image(second)
        assert b.mean() > a.mean() + 5  # the proxy changed: brighter
        page.keyboard.press("Space")  # before/after toggle
        assert page.eval_on_selector("#after", "e => e.style.clipPath") == "inset(0px 0px 0px 100%)"
        page.locator('.stage[data-stage="lighting"] button.accept').click()
        page.wait_for_function("document.getElementById('message').textContent.includes('accepted')")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("document.getElementById('title').textContent.startsWith('b.jpg')")
        browser.close()
    plan = load_plan(sidecar_path(photos[0]))
    assert plan.stages["lighting"].locked and plan.stages["lighting"].adjustments["Exposure"] == 70
    assert len(plan.history) == 1
