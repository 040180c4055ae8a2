"""``openai``: any OpenAI-compatible chat-completions endpoint that takes images (vLLM,
llama.cpp server, Ollama, LLaMA-Factory's API, …): how to plan a large library on a GPU server.

Standard library only (``urllib``). Each stage is the conversation of
:func:`monet_cli.planners.protocol.run_stage`, sent as ``POST {endpoint}/chat/completions``
with the photo as a ``data:`` URL in the first user message.

* ``endpoint``: the API base (``http://host:8000/v1``) or the full ``…/chat/completions`` URL;
  default ``$MONET_OPENAI_ENDPOINT``, else ``http://127.0.0.1:8000/v1``.
* ``model``: the served model name; default ``$MONET_OPENAI_MODEL``, else the first model the
  server lists at ``GET {endpoint}/models``. A monet preset name also picks its prompt set.
* the API key is read from the environment variable ``api_key_env`` (``MONET_API_KEY``, else
  ``OPENAI_API_KEY``), never from the command line; no key sends no ``Authorization``.
* ``timeout`` seconds per request; connection errors, timeouts, 408, 429 and 5xx are retried
  ``retries`` times with exponential backoff (``backoff`` × 2^attempt, jittered; a server's
  ``Retry-After`` is honoured up to 60 s); other 4xx fail at once with the server's message.
* ``concurrency``: at most this many requests in flight from this planner. The planner is
  thread-safe, so a batch runs that many photos at once.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np

from monet_cli.errors import MonetError, UsageError, flag_names
from monet_cli.plan import StagePlan
from monet_cli.planners.protocol import Message, load_prompts, proxy_to_pil, run_stage

DEFAULT_ENDPOINT = "http://127.0.0.1:8000/v1"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 60.0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class EndpointError(MonetError):
    """The endpoint failed: unreachable, timed out, an HTTP error or an answer of the wrong shape."""


def _base(endpoint: str) -> str:
    e = endpoint.strip().rstrip("/")
    if not e.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {endpoint!r}: expected an http:// or https:// URL")
    for tail in ("/chat/completions", "/completions"):
        if e.endswith(tail):
            e = e[: -len(tail)]
    return e


def image_data_url(image, fmt: str = "jpeg", quality: int = 95) -> str:
    """A PIL image as a ``data:`` URL (JPEG 4:4:4 at ``quality``, or lossless PNG)."""
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", optimize=False, compress_level=3)
        mime = "image/png"
    elif fmt == "jpeg":
        image.save(buf, format="JPEG", quality=quality, subsampling=0)
        mime = "image/jpeg"
    else:
        raise UsageError(f"unknown image format {fmt!r}; use jpeg or png")
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_openai_messages(messages: list[Message], image_url: str) -> list[dict]:
    """Protocol messages → chat-completions messages, the image first in the first user turn."""
    out, placed = [], False
    for m in messages:
        if m["role"] == "user" and not placed:
            out.append({"role": "user", "content": [{"type": "image_url", "image_url": {"url": image_url}},
                                                     {"type": "text", "text": m["content"]}]})
            placed = True
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class OpenAIPlanner:
    """The ``openai`` backend (module docstring)."""

    name = "openai"
    adapter = None

    def __init__(self, model: str | None = None, *, endpoint: str | None = None, api_key_env: str | None = None,
                 timeout: float = 120.0, retries: int = 3, backoff: float = 1.0, concurrency: int = 4,
                 temperature: float = 0.3, max_tokens: int = 1024, image_format: str = "jpeg",
                 prompts: str | None = None, seed: int | None = 0, value_map: str | None = None):
        self.base = _base(endpoint or os.environ.get("MONET_OPENAI_ENDPOINT") or DEFAULT_ENDPOINT)
        self.url = self.base + "/chat/completions"
        if api_key_env:
            self.api_key = os.environ.get(api_key_env) or None
        else:
            self.api_key = os.environ.get("MONET_API_KEY") or os.environ.get("OPENAI_API_KEY") or None
        for name, v, lo in (("timeout", timeout, 0), ("backoff", backoff, -1e-12)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > lo:
                raise UsageError(f"{name} must be a positive number, got {v!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise UsageError(f"retries must be a non-negative integer, got {retries!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise UsageError(f"--concurrency must be a positive integer, got {concurrency!r}")
        if image_format not in ("jpeg", "png"):
            raise UsageError(f"unknown image format {image_format!r}; use jpeg or png")
        self.timeout, self.retries, self.backoff = float(timeout), retries, float(backoff)
        self.concurrency = concurrency
        self._slots = threading.BoundedSemaphore(concurrency)
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.image_format, self.seed = image_format, seed
        self.model = model or os.environ.get("MONET_OPENAI_MODEL") or self._first_model()
        from monet_cli.models import presets
        from monet_cli.value_map import resolve_value_map

        preset = presets().get(self.model) or next((p for p in presets().values() if p.hub_id == self.model), None)
        self.prompts = load_prompts(prompts or (preset.prompts if preset else "monetgpt"))
        # the served preset's value map (monet_cli.value_map), another preset's (--value-map NAME) or none
        self.value_map = resolve_value_map(value_map, preset)
        self.warnings: list[str] = []

    @classmethod
    def from_options(cls, **options) -> "OpenAIPlanner":
        """From ``get_planner("openai", ...)`` options (``None`` values already dropped)."""
        for opt, flag in (("adapter", "--adapter"), ("quant", "--quant")):
            if opt in options:
                raise UsageError(f"{flag} is for --backend qwen; an openai endpoint serves its model as it is")
        sampling = [n for n in ("samples", "consensus", "sample_temperature") if n in options]
        if sampling:
            raise UsageError(f"{flag_names(sampling[:1])[0]} is for --backend qwen (it batches the samples on the "
                             f"model it loads)")
        known = {"model", "endpoint", "api_key_env", "timeout", "retries", "backoff", "concurrency", "temperature",
                 "max_tokens", "image_format", "prompts", "seed", "value_map"}
        unknown = set(options) - known
        if unknown:
            raise UsageError(f"the openai backend takes no option {', '.join(flag_names(unknown))}")
        return cls(**options)

    # ------------------------------------------------------------------ HTTP

    def _request(self, method: str, url: str, body: dict | None = None) -> dict:
        """One JSON request with retries (module docstring); raises :class:`EndpointError`."""
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "monet"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = "no attempt"
        for attempt in range(self.retries + 1):
            retry_after = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method=method)
                with self._slots, urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    raw = resp.read(MAX_RESPONSE_BYTES + 1)
                if len(raw) > MAX_RESPONSE_BYTES:
                    raise EndpointError(f"{url}: answer larger than {MAX_RESPONSE_BYTES // 2**20} MiB")
                try:
                    return json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, ValueError):
                    raise EndpointError(f"{url}: the answer is not JSON: {raw[:200]!r}") from None
            except urllib.error.HTTPError as e:
                detail = _error_detail(e)
                last = f"HTTP {e.code} {e.reason}" + (f": {detail}" if detail else "")
                if e.code not in RETRY_STATUS:
                    hint = " (set the API key in $MONET_API_KEY)" if e.code in (401, 403) else ""
                    raise EndpointError(f"{url}: {last}{hint}") from None
                retry_after = _retry_after(e.headers.get("Retry-After"))
            except (socket.timeout, TimeoutError):
                last = f"no answer within {self.timeout:g} s"
            except urllib.error.URLError as e:
                reason = e.reason
                last = (f"no answer within {self.timeout:g} s" if isinstance(reason, (socket.timeout, TimeoutError))
                        else f"cannot connect ({reason})")
            except (ConnectionError, http.client.HTTPException) as e:
                last = f"connection failed ({type(e).__name__}: {e})"
            if attempt < self.retries:
                wait = retry_after if retry_after is not None else self.backoff * (2 ** attempt)
                time.sleep(wait * (1.0 if retry_after is not None else random.uniform(0.8, 1.2)))
        tries = f" after {self.retries + 1} attempts" if self.retries else ""
        raise EndpointError(f"{url}: {last}{tries}")

    def _first_model(self) -> str:
        try:
            listing = self._request("GET", self.base + "/models")
            return str(listing["data"][0]["id"])
        except (EndpointError, KeyError, IndexError, TypeError) as e:
            raise UsageError(f"--model is needed: the server at {self.base} did not list its models ({e})") from None

    def complete(self, messages: list[dict]) -> str:
        """``messages`` (chat-completions form) → the assistant's text."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens, "stream": False}
        if self.seed is not None:
            body["seed"] = int(self.seed)
        answer = self._request("POST", self.url, body)
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise EndpointError(f"{self.url}: unexpected answer (no choices[0].message.content): "
                                f"{json.dumps(answer)[:200]}") from None
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise EndpointError(f"{self.url}: the answer's content is {type(content).__name__}, not text")
        return content

    # ------------------------------------------------------------------ planning

    def plan_stage(self, stage: str, proxy: np.ndarray, *, style: str = "balanced", instructions: str | None = None,
                   previous: dict[str, StagePlan] | None = None) -> StagePlan:
        url = image_data_url(proxy_to_pil(proxy), self.image_format)
        sp = run_stage(lambda msgs: self.complete(to_openai_messages(msgs, url)), stage,
                       prompts=self.prompts, style=style, instructions=instructions)
        return self.value_map.apply(sp) if self.value_map is not None else sp


def _error_detail(e) -> str:
    try:
        text = e.read(4096).decode("utf-8", "replace")
    except Exception:
        return ""
    try:
        d = json.loads(text)
        err = d.get("error", d) if isinstance(d, dict) else d
        msg = err.get("message") if isinstance(err, dict) else err
        text = str(msg if msg is not None else d)
    except ValueError:
        pass
    return " ".join(text.split())[:300]


def _retry_after(value) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError):
        return None
