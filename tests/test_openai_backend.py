"""The openai backend against a real HTTP server started here on 127.0.0.1: a full plan with
MonetGPT-style answers, the request it sends, the API key, retries on 500/429, no retry on
401, timeouts, answers of the wrong shape, model discovery and the concurrency limit."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from monet_cli.catalog import STAGES
from monet_cli.errors import UsageError
from monet_cli.models import presets
from monet_cli.planners.base import get_planner, plan_proxy
from monet_cli.planners.openai import EndpointError, OpenAIPlanner

ANALYSIS = {
    "lighting": "**Adjustment:** Raise exposure slightly.\n**Issue:** Dark subject.\n**Solution:** Brighten it.",
    "color": "**Adjustment:** Warm it up a little.\n**Issue:** A blue cast.\n**Solution:** Temperature up.",
    "hsl": "The colours are already right. **No further adjustments are needed**.",
}
VALUES = {
    "lighting": 'These values make it **optimal**.\n```json\n{"Exposure": 15, "Contrast": 140}\n```',
    "color": '```json\n{"Temperature": 12, "Exposure": 40}\n```',
}


def chat_reply(text: str) -> dict:
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def monet_answer(body: dict) -> dict:
    """A fake MonetGPT server: answers from the stage named in the analysis prompt and the turn."""
    first_user = body["messages"][1]["content"][1]["text"]
    stage = ("lighting" if "[Exposure," in first_user else "color" if "[Temperature," in first_user else "hsl")
    return chat_reply(ANALYSIS[stage] if len(body["messages"]) == 2 else VALUES[stage])


class Server:
    """A scripted OpenAI-compatible server. ``script`` is a list of actions consumed one per
    request to /chat/completions (then ``default``): a dict (JSON 200), an int (that status),
    ("sleep", s), ("status", code, headers), or a callable(body) -> dict."""

    def __init__(self, default=monet_answer):
        self.script: list = []
        self.default = default
        self.requests: list[dict] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "served-monetgpt"}, {"id": "other"}]})
                else:
                    self._send(404, {"error": {"message": "no such route"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = outer.script.pop(0) if outer.script else outer.default
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                # A request is in flight until its reply is ready, not until the reply is sent:
                # the client frees its slot when the reply arrives and may send the next request
                # before this thread is back from the write.
                try:
                    if isinstance(action, tuple) and action[0] == "sleep":
                        time.sleep(action[1])
                        reply = (200, chat_reply("{}"), None)
                    elif isinstance(action, tuple) and action[0] == "status":
                        reply = (action[1], {"error": {"message": f"scripted {action[1]}"}}, action[2])
                    elif isinstance(action, int):
                        reply = (action, {"error": {"message": f"scripted {action}"}}, None)
                    elif callable(action):
                        reply = (200, action(body), None)
                    else:
                        reply = (200, action, None)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1
                try:
                    self._send(*reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def proxy():
    return np.full((40, 60, 3), 0.12, np.float32)


def planner_for(server, **kw) -> OpenAIPlanner:
    kw.setdefault("model", "monetgpt-7b")
    kw.setdefault("backoff", 0.01)
    return OpenAIPlanner(endpoint=server.url, **kw)


def test_full_plan_against_a_monetgpt_style_server(server, proxy, monkeypatch):
    monkeypatch.setenv("MONET_API_KEY", "sk-test-123")
    planner = get_planner("openai", model="monetgpt-7b", endpoint=server.url, adapter=None, quant=None)
    plan = plan_proxy(proxy, planner, style="vibrant", instructions="a bit warmer")
    assert [plan.stages[s].status for s in STAGES] == ["ok", "ok", "no_change"]
    assert plan.stages["lighting"].model_adjustments == {"Exposure": 15, "Contrast": 100}  # clamped
    assert plan.stages["color"].model_adjustments == {"Temperature": 12}  # Exposure is not a colour op
    vm = presets()["monetgpt-7b"].value_map  # rendered through the preset's value map (test_value_map.py)
    assert plan.stages["lighting"].adjustments == vm.map_values({"Exposure": 15, "Contrast": 100})
    assert plan.stages["lighting"].reasoning[0].issue == "Dark subject."
    assert plan.planner.backend == "openai" and plan.planner.model == "monetgpt-7b"
    assert len(server.requests) == 5  # 2 + 2 + 1 (hsl needs nothing: no values turn)

    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["Authorization"] == "Bearer sk-test-123"
    body = first["body"]
    assert body["model"] == "monetgpt-7b" and body["temperature"] == 0.3 and body["stream"] is False
    assert body["messages"][0]["role"] == "system" and "Lightroom" in body["messages"][0]["content"]
    image_part, text_part = body["messages"][1]["content"]
    assert image_part["type"] == "image_url" and text_part["type"] == "text" and "a bit warmer" in text_part["text"]
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    from PIL import Image

    im = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert im.size == (60, 40)
    second = server.requests[1]["body"]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == ANALYSIS["lighting"] and "1-12: Very Slight" in second[3]["content"]


def test_no_key_sends_no_authorization(server, proxy, monkeypatch):
    monkeypatch.delenv("MONET_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    planner_for(server).plan_stage("hsl", proxy, style="balanced", instructions=None, previous={})
    assert "Authorization" not in server.requests[0]["headers"]


def test_a_500_is_retried(server, proxy):
    server.script = [500, 502]
    sp = planner_for(server, retries=3).plan_stage("lighting", proxy, style="balanced", instructions=None,
                                                   previous={})
    assert sp.status == "ok" and sp.model_adjustments["Exposure"] == 15 and len(server.requests) == 4


def test_persistent_500s_fail_the_stage_not_the_plan(server, proxy):
    server.script = [500] * 3
    plan = plan_proxy(proxy, planner_for(server, retries=2))
    lighting = plan.stages["lighting"]
    assert lighting.status == "failed" and "HTTP 500" in lighting.error and "scripted 500" in lighting.error
    assert "after 3 attempts" in lighting.error
    assert plan.stages["color"].status == "ok" and plan.stages["hsl"].status == "no_change"


def test_429_honours_retry_after(server, proxy):
    server.script = [("status", 429, {"Retry-After": "0"})]
    sp = planner_for(server, retries=1, backoff=30).plan_stage("hsl", proxy, style="balanced", instructions=None,
                                                               previous={})
    assert sp.status == "no_change" and len(server.requests) == 2  # Retry-After 0, not 30 s of backoff


def test_401_is_not_retried_and_names_the_key(server, proxy):
    server.script = [401]
    sp = planner_for(server, retries=3).plan_stage("lighting", proxy, style="balanced", instructions=None,
                                                   previous={})
    assert sp.status == "failed" and "HTTP 401" in sp.error and "MONET_API_KEY" in sp.error
    assert len(server.requests) == 1


def test_timeout(server, proxy):
    server.script = [("sleep", 2.0), ("sleep", 2.0)]
    t0 = time.perf_counter()
    sp = planner_for(server, timeout=0.3, retries=1).plan_stage("lighting", proxy, style="balanced",
                                                                instructions=None, previous={})
    assert time.perf_counter() - t0 < 1.9
    assert sp.status == "failed" and "no answer within 0.3 s" in sp.error and len(server.requests) == 2


def test_answers_of_the_wrong_shape(server, proxy):
    server.script = [{"choices": []}]
    sp = planner_for(server, retries=0).plan_stage("lighting", proxy, style="balanced", instructions=None,
                                                   previous={})
    assert sp.status == "failed" and "unexpected answer" in sp.error
    p = planner_for(server)
    server.script = [{"choices": [{"message": {"content": [{"type": "text", "text": "part one "},
                                                           {"type": "text", "text": "two"}]}}]}]
    assert p.complete([{"role": "user", "content": "hi"}]) == "part one two"


def test_model_discovery_and_endpoint_forms(server):
    p = OpenAIPlanner(endpoint=server.url + "/chat/completions/")
    assert p.model == "served-monetgpt" and p.url == server.url + "/chat/completions"
    with pytest.raises(UsageError, match="expected an http"):
        OpenAIPlanner(endpoint="gpu:8000", model="m")
    with pytest.raises(UsageError, match="--model is needed"):
        OpenAIPlanner(endpoint="http://127.0.0.1:9/v1", retries=0, timeout=1)


def test_unreachable_endpoint_is_a_clear_error():
    p = OpenAIPlanner(endpoint="http://127.0.0.1:9/v1", model="m", retries=1, backoff=0.01, timeout=1)
    with pytest.raises(EndpointError, match=r"cannot connect .* after 2 attempts"):
        p.complete([{"role": "user", "content": "hi"}])


def test_concurrency_limits_requests_in_flight(server):
    server.default = lambda body: (time.sleep(0.1), chat_reply("ok"))[1]
    p = planner_for(server, concurrency=2)
    threads = [threading.Thread(target=p.complete, args=([{"role": "user", "content": "hi"}],)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.requests) == 6 and server.max_in_flight == 2
    with pytest.raises(UsageError, match="--concurrency must be a positive integer"):
        planner_for(server, concurrency=0)
