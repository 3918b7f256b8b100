"""Helpers for the wwwserve integration tests: node processes, a fake
OpenAI-compatible upstream, a tiny YAML writer and a Prometheus text parser."""
from __future__ import annotations

import email.utils
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / ".build" / "debug" / "wwwserve"

LOCAL_MODEL = "smollm2"
FAKE_MODEL = "fake-model"
FAKE_UPSTREAM_NAME = "fake-upstream-name"
SLOW_MODEL = "fake-slow"
BUSY_MODEL = "fake-busy"
API_KEY = "sk-test-alice"
MAX_BODY = 262144

READY_TIMEOUT_S = float(os.environ.get("WWWSERVE_READY_TIMEOUT_S", "90"))


def node_binary() -> Path:
    return Path(os.environ.get("WWWSERVE_BIN", str(DEFAULT_BIN)))


def pin_binary(root: Path):
    """Copies the node binary into `root` and points WWWSERVE_BIN at the copy, so that
    every node of a network (restarts included) runs one build even if it is rebuilt
    meanwhile. Returns the function that restores the environment."""
    saved = os.environ.get("WWWSERVE_BIN")
    binary = root / "wwwserve"
    shutil.copy2(node_binary(), binary)
    os.environ["WWWSERVE_BIN"] = str(binary)

    def restore():
        if saved is None:
            os.environ.pop("WWWSERVE_BIN", None)
        else:
            os.environ["WWWSERVE_BIN"] = saved
    return restore


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- YAML

def _yaml_scalar(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent: int = 0) -> str:
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{k}: {'{}' if isinstance(v, dict) else '[]'}")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                body = to_yaml(item, indent + 2).splitlines()
                lines.append(f"{pad}- {body[0].lstrip()}")
                lines.extend(body[1:])
            elif isinstance(item, list) and item:
                lines.append(f"{pad}-")
                lines.append(to_yaml(item, indent + 2))
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


# --------------------------------------------------------------------------- config

def llamacpp_backend(name="local", capacity=2):
    return {
        "name": name,
        "kind": "llamacpp",
        "capacity": capacity,
        "models": [{"name": LOCAL_MODEL, "quantization": "Q4_1"}],
        "llamacpp": {"model_path": "default", "python": sys.executable,
                     "threads": 1, "ctx": 2048, "parallel": 2},
    }


def openai_backend(name, upstream: "FakeUpstream", model, upstream_name=None, **extra):
    m = {"name": model}
    if upstream_name:
        m["upstream_name"] = upstream_name
    b = {"name": name, "kind": "openai", "base_url": upstream.base_url, "capacity": 4,
         "models": [m]}
    b.update(extra)
    return b


# --------------------------------------------------------------------------- session


# --------------------------------------------------------------------------- node

LIVE_NODES: list["NodeProcess"] = []


class NodeStartError(RuntimeError):
    pass


class NodeProcess:
    """A `wwwserve node --config FILE` child process on a free port."""

    def __init__(self, name: str, config: dict, workdir: Path):
        self.name = name
        self.port = free_port()
        self.host = "127.0.0.1"
        config = json.loads(json.dumps(config))
        config.setdefault("node", {})
        config["node"]["host"] = self.host
        config["node"]["port"] = self.port
        self.config = config
        self.dir = Path(tempfile.mkdtemp(prefix=f"wwwserve-{name}-", dir=workdir))
        self.config_path = self.dir / "config.yaml"
        self.config_path.write_text(to_yaml(config) + "\n")
        self.log_path = self.dir / "node.log"
        self.proc: subprocess.Popen | None = None
        self.url = f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> "NodeProcess":
        binary = node_binary()
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise NodeStartError(
                f"wwwserve binary not found or not executable at {binary}. "
                f"Build it with `swift build` in {REPO_ROOT}, or set WWWSERVE_BIN.")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "node", "--config", str(self.config_path)],
            cwd=str(self.dir), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        LIVE_NODES.append(self)
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeStartError(
                    f"node {self.name} exited with status {self.proc.returncode} during start-up"
                    f"\n--- config ---\n{self.config_path.read_text()}--- log ---\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/ready", timeout=2)
                if r.status_code == 200 and r.json().get("status") == "ready":
                    if self._all_backends_healthy(r.json()):
                        return self
                last = f"/ready {r.status_code}: {r.text[:500]}"
            except (requests.RequestException, ValueError) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.2)
        self.stop()
        raise NodeStartError(
            f"node {self.name} not ready within {timeout_s:.0f}s (last: {last})"
            f"\n--- config ---\n{self.config_path.read_text()}--- log ---\n{self.log_tail()}")

    def _all_backends_healthy(self, ready: dict) -> bool:
        # Managed engines must have loaded; openai-kind backends may be probed lazily.
        backends = ready.get("backends") or []
        want = {b["name"] for b in self.config.get("backends", []) if b.get("kind") == "llamacpp"}
        healthy = {b.get("name") for b in backends if b.get("healthy")}
        return want <= healthy

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            self._log.close()
        except Exception:
            pass
        if self in LIVE_NODES:
            LIVE_NODES.remove(self)

    def log_tail(self, max_lines: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-max_lines:]) + "\n"

    # convenience
    def ready(self) -> dict:
        return requests.get(self.url + "/ready", timeout=5).json()

    def backend(self, name: str) -> dict:
        for b in self.ready().get("backends", []):
            if b.get("name") == name:
                return b
        raise AssertionError(f"backend {name!r} missing from /ready")

    def metrics(self) -> "Metrics":
        r = requests.get(self.url + "/metrics", timeout=5)
        assert r.status_code == 200, r.text
        return Metrics(r.text)


# --------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict, float]] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group(3) or ""))
            try:
                value = float(m.group(4))
            except ValueError:
                continue
            self.samples.append((m.group(1), labels, value))

    def has(self, name: str) -> bool:
        return any(n == name or n.startswith(name + "_") for n, _, _ in self.samples) or \
            re.search(rf"^# TYPE {re.escape(name)}\s", self.text, re.M) is not None

    def sum(self, name: str, **labels) -> float:
        return sum(v for n, l, v in self.samples
                   if n == name and all(l.get(k) == str(x) for k, x in labels.items()))

    def names(self) -> set[str]:
        return {n for n, _, _ in self.samples}


# --------------------------------------------------------------------------- SSE

def sse_lines(resp: requests.Response):
    """Decoded lines of a streamed response (UTF-8 whatever the charset says)."""
    for raw in resp.iter_lines():
        yield raw.decode("utf-8")


def sse_data(resp: requests.Response) -> list[str]:
    return [ln[len("data:"):].strip() for ln in sse_lines(resp) if ln.startswith("data:")]


# --------------------------------------------------------------------------- errors

def assert_openai_error(resp: requests.Response, status: int):
    assert resp.status_code == status, \
        f"expected HTTP {status}, got {resp.status_code}: {resp.text[:500]}"
    ctype = resp.headers.get("content-type", "")
    assert ctype.startswith("application/json"), f"error content-type {ctype!r}"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], err
    assert isinstance(err.get("type"), str) and err["type"], err
    assert "param" in err and (err["param"] is None or isinstance(err["param"], str)), err
    assert "code" in err and (err["code"] is None or isinstance(err["code"], (str, int))), err
    return err


def assert_retry_after(resp: requests.Response):
    ra = resp.headers.get("retry-after")
    assert ra is not None, f"no Retry-After on HTTP {resp.status_code}: {dict(resp.headers)}"
    ra = ra.strip()
    if ra.isdigit():
        assert int(ra) >= 0
    else:
        assert email.utils.parsedate_to_datetime(ra) is not None, f"bad Retry-After {ra!r}"
    return ra


# --------------------------------------------------------------------------- fake upstream

FAKE_PIECES = ["Hello", ", ", "wor", "ld", "! ", "Ünïcødé ✓", " done."]
FAKE_TEXT = "".join(FAKE_PIECES)


class FakeUpstream:
    """A minimal OpenAI-compatible upstream on a free port.

    mode "ok":   answers chat completions; streams SSE written leniently
                 (data: without a space, CRLF line ends, a comment line, events
                 split across separate TCP writes / HTTP chunks).
    mode "slow": sleeps `delay_s` before answering chat completions.
    mode "busy": answers chat completions with 503 and Retry-After.
    GET /v1/models and /health always answer 200 (so the node sees it healthy).
    """

    def __init__(self, mode: str = "ok", delay_s: float = 6.0, model: str = "fake-upstream",
                 pieces: list[str] | None = None):
        self.mode = mode
        self.pieces = pieces or FAKE_PIECES
        self.delay_s = delay_s
        self.model = model
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def _json(self, status, obj, extra=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") in ("/v1/models", "/models"):
                    self._json(200, {"object": "list", "data": [
                        {"id": upstream.model, "object": "model", "created": 0, "owned_by": "fake"}]})
                elif self.path in ("/health", "/v1/health"):
                    self._json(200, {"status": "ok"})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error",
                                               "param": None, "code": None}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with upstream.lock:
                    upstream.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": body})
                if not self.path.endswith("/chat/completions"):
                    return self._json(404, {"error": {"message": "not found",
                                                      "type": "invalid_request_error",
                                                      "param": None, "code": None}})
                if upstream.mode == "busy":
                    return self._json(503, {"error": {"message": "upstream overloaded",
                                                      "type": "server_error", "param": None,
                                                      "code": None}}, {"Retry-After": "7"})
                if upstream.mode == "slow":
                    time.sleep(upstream.delay_s)
                try:
                    if body.get("stream"):
                        self._stream(body)
                    else:
                        self._complete(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _complete(self, body):
                self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body.get("model", upstream.model),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": FAKE_TEXT},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 7, "completion_tokens": len(FAKE_PIECES),
                              "total_tokens": 7 + len(FAKE_PIECES)}})

            def _chunk(self, data: bytes):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _stream(self, body):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                created = int(time.time())
                model = body.get("model", upstream.model)

                def chunk(delta, finish=None):
                    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                            "created": created, "model": model,
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

                events = [chunk({"role": "assistant", "content": ""})]
                events += [chunk({"content": p}) for p in upstream.pieces]
                events.append(chunk({}, "stop"))
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                                   "created": created, "model": model, "choices": [],
                                   "usage": {"prompt_tokens": 7,
                                             "completion_tokens": len(FAKE_PIECES),
                                             "total_tokens": 7 + len(FAKE_PIECES)}})
                wire = b": keep-alive comment\r\n\r\n"
                for e in events:
                    wire += b"data:" + json.dumps(e, ensure_ascii=False).encode() + b"\r\n\r\n"
                wire += b"data:[DONE]\r\n\r\n"
                # Write in odd-sized pieces so events (and UTF-8 sequences, and
                # CRLF pairs) straddle TCP writes, pausing so they really split.
                i, sizes, k = 0, [5, 17, 1, 33, 2, 64, 3], 0
                while i < len(wire):
                    n = sizes[k % len(sizes)]
                    self._chunk(wire[i:i + n])
                    i += n
                    k += 1
                    if k % 4 == 0:
                        time.sleep(0.01)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name=f"fake-upstream-{mode}")
        self.thread.start()

    def chat_requests(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
