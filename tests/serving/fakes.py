"""A fake OpenAI-compatible upstream (stdlib http.server in a thread) and the router on a real uvicorn socket, so
the router's rules are tested over HTTP without vLLM.

The fake answers `<name>: <last message or prompt>` with usage counts; a prompt containing `FAIL500:<name>` gets a
500 from that fake, TOOLONG a vLLM-style 400, `SLOW:<name>` makes that fake wait 0.3 s. It records every body and
Authorization header it received.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import uvicorn

from megatron_ssd.serving.router import RouterConfig, RouterState, build_app
from megatron_ssd.serving.telemetry import Telemetry

MODEL = "tiny"
UPSTREAM_KEY = "internal-key"
ADMIN = "admin-token"


class FakeUpstream:
    def __init__(self, name: str):
        self.name = name
        self.bodies: list[dict] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                self._send(200, {"status": "ok"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                chat = self.path.endswith("/chat/completions")
                prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
                if f"FAIL500:{outer.name}" in prompt:
                    return self._send(500, {"error": {"message": "boom", "type": "InternalServerError"}})
                if "TOOLONG" in prompt:
                    return self._send(400, {"error": {"message": "This model's maximum context length is 16 tokens.",
                                                      "type": "BadRequestError", "param": "input_tokens",
                                                      "code": 400}})
                if f"SLOW:{outer.name}" in prompt:
                    time.sleep(0.3)
                text = f"{outer.name}: {prompt}"
                usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                         "total_tokens": len(prompt.split()) + len(text.split())}
                if body.get("stream"):
                    return self._stream(chat, text, usage, (body.get("stream_options") or {}).get("include_usage"))
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                          if chat else {"index": 0, "text": text, "finish_reason": "stop"})
                self._send(200, {"id": "cmpl-1", "object": "chat.completion" if chat else "text_completion",
                                 "created": 0, "model": body.get("model"), "choices": [choice], "usage": usage})

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, chat, text, usage, include_usage):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    finish = "stop" if i == len(words) - 1 else None
                    choice = ({"index": 0, "delta": {"content": piece}, "finish_reason": finish} if chat
                              else {"index": 0, "text": piece, "finish_reason": finish})
                    self.wfile.write(f"data: {json.dumps({'id': 's', 'choices': [choice]})}\n\n".encode())
                if include_usage:
                    self.wfile.write(f"data: {json.dumps({'id': 's', 'choices': [], 'usage': usage})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A URL nothing listens on (connection refused): a server that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class RouterThread:
    """The router on a real socket in a background thread (uvicorn), with its telemetry under `root`."""

    def __init__(self, root: Path, upstreams: dict[str, str], *, mode="shadow", share=0.05, **config):
        self.telemetry = Telemetry(root / "telemetry.jsonl", root / "events.jsonl")
        self.root = root
        self.state = RouterState(mode=mode, share=share, telemetry=self.telemetry)
        cfg = RouterConfig(model_name=MODEL, upstreams=upstreams, upstream_key=UPSTREAM_KEY, admin_token=ADMIN,
                           salt="test-salt", **config)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(build_app(cfg, self.state), log_config=None, access_log=False,
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)

    def records(self, wait_for: int | None = None, timeout: float = 5.0) -> list[dict]:
        """The telemetry records, waiting until there are `wait_for` of them (shadow answers come later)."""
        path = self.root / "telemetry.jsonl"
        deadline = time.monotonic() + timeout
        while True:
            rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
            if wait_for is None or len(rows) >= wait_for or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def events(self) -> list[dict]:
        path = self.root / "events.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)
