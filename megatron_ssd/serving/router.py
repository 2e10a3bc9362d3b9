"""The promotion endpoint: one OpenAI-compatible API in front of the base and SSD vLLM servers.

    POST /v1/chat/completions, POST /v1/completions   routed by `routing.route`; bodies pass through unchanged
    GET  /v1/models                                   the one public model id
    GET  /health                                      the mode and which servers are known down (no key needed)
    GET/POST /admin/mode                              the mode and canary share, with the admin token (a random
                                                      secret in the owner-only serve/state.json; `ssd serve-mode`)

Every answer says which checkpoint produced it: the `X-SSD-Checkpoint` header and an `ssd_checkpoint` field in the
body (in every chunk of a stream), which OpenAI clients ignore. Every call, rejected ones included, appends one
telemetry record (`telemetry.py`).

Failures: a call routed to SSD that cannot reach it (connection refused or broken, timeout, 5xx, or its process
known to have exited) is answered by base, and the record and the `X-SSD-Fallback` header say why. Nothing routed
to base ever goes to SSD instead: in a rollback the unvetted checkpoint must stay out, so base down is a 503. A 4xx
from a server (a prompt over the context, a bad parameter) is the client's error and is passed through as vLLM
wrote it (OpenAI's error shape). Bad requests the router sees itself (malformed JSON, unknown model, a missing or
wrong API key) get OpenAI-style 4xx bodies; an error of the router is a 500 with the same shape, its traceback in
the log, never in the response.

Streaming (`"stream": true`) is supported: the chosen server's server-sent events are relayed chunk by chunk, each
tagged with the checkpoint; the router asks for the usage chunk to log token counts and drops it again when the
client did not ask for it. A fallback is possible only before the first byte; a stream that breaks afterwards ends
with an error event and is logged as broken. A shadow call is never streamed: it is sent as an ordinary request.

Hand-written on Starlette and httpx rather than a generic proxy: the routing, the body tag, the per-call record and
the shadow copy are the point of this module, and no maintained OpenAI proxy does them.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .routing import BASE, CANARY, SSD, check_mode, key_digest, route, routing_key
from .telemetry import CHAT, COMPLETIONS, CallRecord, StreamAccumulator, Telemetry, answer_fields

log = logging.getLogger("megatron_ssd.serving")
CHECKPOINT_HEADER = "X-SSD-Checkpoint"
FALLBACK_HEADER = "X-SSD-Fallback"
TAG = "ssd_checkpoint"
PROBLEM_KEY, SAMPLE_KEY = "ssd_problem_id", "ssd_sample_idx"


@dataclass
class RouterConfig:
    model_name: str  # the model id clients send (both servers serve under it)
    upstreams: dict[str, str]  # checkpoint -> server base URL
    upstream_key: str  # the servers' internal API key
    admin_token: str
    salt: str  # of the routing-key hash (the run's config hash: independent populations per experiment)
    api_key: str | None = None  # required from clients when set
    log_text: bool = True  # log the answers' texts (else only their lengths, emptiness and finish reasons)
    timeout_s: float = 600.0  # per upstream call
    max_shadow_inflight: int = 32  # shadow calls in flight beyond this are skipped (and logged so), not queued
    max_body_bytes: int = 16 << 20


@dataclass
class RouterState:
    mode: str
    share: float
    telemetry: Telemetry
    since: str = ""
    down: dict[str, str] = field(default_factory=dict)  # checkpoint -> why its server is known to be down
    on_mode_change: Callable[[dict[str, Any]], None] | None = None
    shadow_inflight: int = 0

    def set_mode(self, mode: Any, share: Any, *, source: str, reason: str = "") -> dict[str, Any]:
        """Switch the mode for every call that starts from now on, and record the change as an event."""
        mode, share = check_mode(mode, share)
        previous = {"mode": self.mode, "share": self.share}
        self.mode, self.share = mode, share
        event = self.telemetry.event("mode", mode=mode, share=share, previous=previous, source=source, reason=reason)
        self.since = event["time"]
        if self.on_mode_change is not None:
            self.on_mode_change(event)
        return event

    def mark_down(self, checkpoint: str, reason: str) -> None:
        """Called from the process monitor: calls skip this server from now on (SSD ones fall back to base)."""
        self.down[checkpoint] = reason
        self.telemetry.event("upstream-down", checkpoint=checkpoint, reason=reason)


def error_body(message: str, kind: str = "invalid_request_error", code: str | None = None,
               param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Rejected(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(error_body(self.message, self.kind, self.code), status_code=self.status, headers=headers)


class Unavailable(Exception):
    """The server a call must go to cannot answer (and no fallback is allowed)."""


def build_app(cfg: RouterConfig, state: RouterState) -> Starlette:
    router = _Router(cfg, state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=64)
        router.client = httpx.AsyncClient(timeout=httpx.Timeout(cfg.timeout_s, connect=5.0), limits=limits)
        try:
            yield
        finally:
            for task in list(router.tasks):
                task.cancel()
            await asyncio.gather(*router.tasks, return_exceptions=True)
            state.telemetry.flush_pending("the router stopped before the shadow answer came back")
            await router.client.aclose()

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(f"{request.method} {request.url.path}: {exc.detail}",
                                       code="not_found" if exc.status_code == 404 else None),
                            status_code=exc.status_code)

    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("router error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"internal error of the promotion router ({type(exc).__name__}); see the "
                                       "run's logs/serve.log", "server_error"), status_code=500)

    routes = [
        Route("/v1/chat/completions", router.chat_completions, methods=["POST"]),
        Route("/v1/completions", router.completions, methods=["POST"]),
        Route("/v1/models", router.models, methods=["GET"]),
        Route("/health", router.health, methods=["GET"]),
        Route("/admin/mode", router.admin_mode, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error, Exception: server_error})


class _Router:
    def __init__(self, cfg: RouterConfig, state: RouterState):
        self.cfg, self.state = cfg, state
        self.client: httpx.AsyncClient | None = None
        self.tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------------------------------ small endpoints
    def _authorise(self, request: Request) -> None:
        if self.cfg.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.cfg.api_key.encode()):
            raise Rejected(401, "Incorrect or missing API key: send it as `Authorization: Bearer <key>` (the key "
                                "`ssd serve` was started with).", "invalid_api_key")

    async def models(self, request: Request) -> JSONResponse:
        try:
            self._authorise(request)
        except Rejected as exc:
            return exc.response()
        return JSONResponse({"object": "list", "data": [{"id": self.cfg.model_name, "object": "model",
                                                         "created": 0, "owned_by": "megatron-ssd"}]})

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "mode": self.state.mode, "share": self.state.share,
                             "down": dict(self.state.down), "telemetry_lost": self.state.telemetry.lost})

    async def admin_mode(self, request: Request) -> JSONResponse:
        current = {"mode": self.state.mode, "share": self.state.share, "since": self.state.since}
        try:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), self.cfg.admin_token.encode()):
                raise Rejected(401, "wrong or missing admin token (`ssd serve-mode run_dir=...` reads it from the "
                                    "run's serve/state.json).", "invalid_admin_token")
            if request.method == "GET":
                return JSONResponse(current)
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise Rejected(400, f"the body is not valid JSON ({exc}).") from None
            if not isinstance(body, dict) or "mode" not in body:
                raise Rejected(400, 'send {"mode": "shadow" | "canary" | "base" | "ssd", "share": 0.05, '
                                    '"reason": "..."}.')
            try:
                event = self.state.set_mode(body["mode"], body.get("share", self.state.share),
                                            source=str(body.get("source") or "admin API"),
                                            reason=str(body.get("reason") or ""))
            except ValueError as exc:
                raise Rejected(400, str(exc)) from None
            return JSONResponse({"mode": event["mode"], "share": event["share"], "since": event["time"],
                                 "previous": event["previous"]})
        except Rejected as exc:
            return exc.response()

    # ---------------------------------------------------------------------------------------------- the proxy
    async def chat_completions(self, request: Request) -> Response:
        return await self.proxy(request, CHAT, "/v1/chat/completions")

    async def completions(self, request: Request) -> Response:
        return await self.proxy(request, COMPLETIONS, "/v1/completions")

    async def proxy(self, request: Request, endpoint: str, path: str) -> Response:
        started = time.monotonic()
        request_id = request.headers.get("x-request-id") or f"ssd-{uuid.uuid4().hex}"
        mode, share = self.state.mode, self.state.share
        headers = {"X-Request-Id": request_id, "X-SSD-Mode": mode}
        base_fields = {"request_id": request_id, "endpoint": endpoint, "mode": mode}
        try:
            self._authorise(request)
            body = await self._body(request)
        except Rejected as exc:
            self._log_rejected(base_fields, exc, started)
            return exc.response(headers)
        metadata = body.pop("metadata", None)
        metadata = metadata if isinstance(metadata, dict) else {}
        stream = body.get("stream") is True
        key, source = routing_key(body, request.headers, request_id)
        digest = key_digest(key, self.cfg.salt)
        decision = route(mode, share, digest)
        record = self.state.telemetry.call(
            **base_fields, stream=stream, **({"share": share} if mode == CANARY else {}), key_source=source,
            key_hash=digest, routed=decision.primary, problem_id=metadata.get(PROBLEM_KEY),
            sample_idx=metadata.get(SAMPLE_KEY), shadow=None)
        if decision.shadow:
            self._start_shadow(path, body, record)
        try:
            if stream:
                return await self._stream(path, body, decision.primary, record, headers, started, endpoint)
            return await self._answer(path, body, decision.primary, record, headers, started, endpoint)
        except Unavailable as exc:
            record.finish_primary(checkpoint=None, fallback=None, status=503, error=str(exc),
                                  latency_s=round(time.monotonic() - started, 4))
            return JSONResponse(error_body(str(exc), "server_error", "checkpoint_unavailable"), status_code=503,
                                headers=headers)
        except asyncio.CancelledError:
            record.finish_primary(checkpoint=None, status=None, error="the client disconnected before the answer",
                                  latency_s=round(time.monotonic() - started, 4))
            raise
        except BaseException as exc:  # the record must not wait forever for an answer that never comes
            record.finish_primary(checkpoint=None, status=500, error=f"{type(exc).__name__}: {exc}",
                                  latency_s=round(time.monotonic() - started, 4))
            raise

    async def _body(self, request: Request) -> dict[str, Any]:
        size = request.headers.get("content-length")
        if size and size.isdigit() and int(size) > self.cfg.max_body_bytes:
            raise Rejected(413, f"the request body is larger than {self.cfg.max_body_bytes} bytes.")
        raw = await request.body()
        if len(raw) > self.cfg.max_body_bytes:
            raise Rejected(413, f"the request body is larger than {self.cfg.max_body_bytes} bytes.")
        try:
            body = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and undecodable bytes
            raise Rejected(400, f"We could not parse the JSON body of your request ({exc}). Send a JSON object "
                                "as the OpenAI API expects.", "invalid_json") from None
        if not isinstance(body, dict):
            raise Rejected(400, f"the request body must be a JSON object, not {type(body).__name__}.",
                           "invalid_json")
        model = body.get("model")
        if model is not None and model != self.cfg.model_name:
            raise Rejected(404, f"The model `{model}` does not exist. This endpoint serves "
                                f"`{self.cfg.model_name}` (GET /v1/models).", "model_not_found")
        return body

    def _log_rejected(self, fields: dict[str, Any], exc: Rejected, started: float) -> None:
        record = self.state.telemetry.call(**fields, checkpoint=None, status=exc.status)
        record.finish_primary(error=exc.message, latency_s=round(time.monotonic() - started, 4))

    def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.cfg.upstream_key}"}

    def _order(self, primary: str) -> list[str]:
        """Servers to try, in order: SSD calls may fall back to base; base calls never go to SSD."""
        return [SSD, BASE] if primary == SSD else [BASE]

    async def _answer(self, path: str, body: dict[str, Any], primary: str, record: CallRecord,
                      headers: dict[str, str], started: float, endpoint: str) -> Response:
        fallback = None
        for name in self._order(primary):
            if name in self.state.down:
                if name == BASE:
                    raise Unavailable(f"the base checkpoint's server is down ({self.state.down[name]}).")
                fallback = {"from": name, "reason": f"server down: {self.state.down[name]}"}
                continue
            try:
                resp = await self.client.post(self.cfg.upstreams[name] + path, json=body,
                                              headers=self._auth_headers())
            except httpx.HTTPError as exc:
                if name == BASE:
                    raise Unavailable(f"the base checkpoint's server did not answer ({type(exc).__name__}: "
                                      f"{exc}).") from None
                fallback = {"from": name, "reason": f"{type(exc).__name__}: {exc}"}
                continue
            if resp.status_code >= 500 and name == SSD:
                fallback = {"from": name, "reason": f"HTTP {resp.status_code}: {resp.text[:200]}"}
                continue
            return self._reply(resp, name, fallback, record, headers, started, endpoint)
        raise Unavailable("no checkpoint could answer.")  # unreachable: base is always last

    def _reply(self, resp: httpx.Response, name: str, fallback: dict[str, Any] | None, record: CallRecord,
               headers: dict[str, str], started: float, endpoint: str) -> JSONResponse:
        status = resp.status_code
        try:
            payload = resp.json()
        except ValueError:
            status, payload = 502, error_body(f"the {name} server answered HTTP {resp.status_code} with a body "
                                              "that is not JSON.", "server_error")
        fields: dict[str, Any] = {"checkpoint": name, "fallback": fallback, "status": status,
                                  "latency_s": round(time.monotonic() - started, 4)}
        if status == 200 and isinstance(payload, dict):
            payload[TAG] = name
            fields.update(answer_fields(payload, endpoint, self.cfg.log_text))
        else:
            fields["error"] = _error_message(payload)
        record.finish_primary(**fields)
        return JSONResponse(payload, status_code=status, headers=self._headers(headers, name, fallback))

    @staticmethod
    def _headers(headers: dict[str, str], name: str, fallback: dict[str, Any] | None) -> dict[str, str]:
        out = {**headers, CHECKPOINT_HEADER: name}
        if fallback:
            out[FALLBACK_HEADER] = f"{fallback['from']} unavailable"
        return out

    # ------------------------------------------------------------------------------------------------ streams
    async def _stream(self, path: str, body: dict[str, Any], primary: str, record: CallRecord,
                      headers: dict[str, str], started: float, endpoint: str) -> Response:
        options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        wants_usage = bool(options.get("include_usage"))
        upstream_body = {**body, "stream_options": {**options, "include_usage": True}}
        fallback = None
        for name in self._order(primary):
            if name in self.state.down:
                if name == BASE:
                    raise Unavailable(f"the base checkpoint's server is down ({self.state.down[name]}).")
                fallback = {"from": name, "reason": f"server down: {self.state.down[name]}"}
                continue
            req = self.client.build_request("POST", self.cfg.upstreams[name] + path, json=upstream_body,
                                            headers=self._auth_headers())
            try:
                resp = await self.client.send(req, stream=True)
            except httpx.HTTPError as exc:
                if name == BASE:
                    raise Unavailable(f"the base checkpoint's server did not answer ({type(exc).__name__}: "
                                      f"{exc}).") from None
                fallback = {"from": name, "reason": f"{type(exc).__name__}: {exc}"}
                continue
            if resp.status_code >= 500 and name == SSD:
                await resp.aclose()
                fallback = {"from": name, "reason": f"HTTP {resp.status_code}"}
                continue
            if resp.status_code != 200:  # an error before the stream: an ordinary JSON answer
                await resp.aread()
                await resp.aclose()
                return self._reply(resp, name, fallback, record, headers, started, endpoint)
            events = self._relay(resp, name, fallback, record, started, endpoint, wants_usage)
            return StreamingResponse(events, media_type="text/event-stream",
                                     headers=self._headers(headers, name, fallback))
        raise Unavailable("no checkpoint could answer.")

    async def _relay(self, resp: httpx.Response, name: str, fallback: dict[str, Any] | None, record: CallRecord,
                     started: float, endpoint: str, wants_usage: bool) -> AsyncIterator[bytes]:
        acc = StreamAccumulator(endpoint)
        first: float | None = None
        error = None
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators (re-made below), comments
                data = line[5:].strip()
                if data == "[DONE]":
                    yield b"data: [DONE]\n\n"
                    continue
                try:
                    chunk = json.loads(data)
                except ValueError:
                    yield f"data: {data}\n\n".encode()
                    continue
                if first is None:
                    first = time.monotonic()
                acc.add(chunk)
                if not wants_usage:
                    if chunk.get("usage") and not chunk.get("choices"):
                        continue  # the usage chunk the router asked for on its own behalf
                    chunk.pop("usage", None)
                chunk[TAG] = name
                yield f"data: {json.dumps(chunk)}\n\n".encode()
        except httpx.HTTPError as exc:
            error = f"the {name} server's stream broke: {type(exc).__name__}: {exc}"
            yield f"data: {json.dumps(error_body(error, 'server_error'))}\n\n".encode()
        except (asyncio.CancelledError, GeneratorExit):
            error = "the client disconnected before the end of the stream"
            raise
        finally:
            await resp.aclose()
            fields = {"checkpoint": name, "fallback": fallback, "status": 200,
                      "latency_s": round(time.monotonic() - started, 4),
                      "ttft_s": None if first is None else round(first - started, 4),
                      **acc.fields(self.cfg.log_text)}
            if error:
                fields["error"] = error
            record.finish_primary(**fields)

    # ------------------------------------------------------------------------------------------------ shadows
    def _start_shadow(self, path: str, body: dict[str, Any], record: CallRecord) -> None:
        if SSD in self.state.down:
            record.fields["shadow"] = {"skipped": f"SSD server down: {self.state.down[SSD]}"}
            return
        if self.state.shadow_inflight >= self.cfg.max_shadow_inflight:
            record.fields["shadow"] = {"skipped": f"{self.state.shadow_inflight} shadow calls already in flight "
                                                  f"(max_shadow_inflight={self.cfg.max_shadow_inflight})"}
            return
        shadow_body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}  # one whole answer
        record.expect_shadow()
        self.state.shadow_inflight += 1
        task = asyncio.get_running_loop().create_task(self._shadow(path, shadow_body, record))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _shadow(self, path: str, body: dict[str, Any], record: CallRecord) -> None:
        started = time.monotonic()
        fields: dict[str, Any] = {"checkpoint": SSD}
        try:
            resp = await self.client.post(self.cfg.upstreams[SSD] + path, json=body, headers=self._auth_headers())
            fields["status"] = resp.status_code
            try:
                payload = resp.json()
            except ValueError:
                payload = {}
            if resp.status_code == 200:
                fields.update(answer_fields(payload, record.fields["endpoint"], self.cfg.log_text))
            else:
                fields["error"] = _error_message(payload) or resp.text[:200]
        except httpx.HTTPError as exc:
            fields.update(status=None, error=f"{type(exc).__name__}: {exc}")
        except asyncio.CancelledError:
            fields.update(status=None, error="cancelled: the router stopped")
            raise
        finally:
            fields["latency_s"] = round(time.monotonic() - started, 4)
            self.state.shadow_inflight -= 1
            record.finish_shadow(fields)


def _error_message(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message"))
    return None
