"""One telemetry record per call, and the router's events, appended to the run directory (docs/SERVING.md).

A call's record is written once, when everything it waits for is done: the answer returned to the client and, in
shadow mode, the SSD answer that was logged instead. Whichever finishes last writes it (`CallRecord.finish_*`), so
neither the client's response nor a streaming generator ever waits on the shadow. Records still pending when the
router stops are written with the shadow marked cancelled.

Record fields (`serve/telemetry.jsonl`):

    time, request_id, endpoint ("chat.completions" | "completions"), stream, mode, share (canary only)
    key_source ("user" | "header" | "request_id"), key_hash (routing.key_digest)
    routed         the checkpoint routing chose; checkpoint: the one that answered (null: nobody did)
    fallback       null, or {"from": "ssd", "reason": ...} when base answered because SSD could not
    status         HTTP status returned to the client; error: the error message (non-2xx)
    latency_s      request received -> last byte of the answer; ttft_s (streams): -> first chunk
    prompt_tokens, completion_tokens, finish_reason (first choice)
    outputs        [{"text", "finish_reason"}] per choice ("text" only with log_text: else "chars", "empty")
    problem_id     metadata.ssd_problem_id (replayed eval problems: their tests score the answer)
    sample_idx     metadata.ssd_sample_idx
    shadow         shadow mode: the SSD answer in the same shape ({"checkpoint", "status", "latency_s",
                   "prompt_tokens", "completion_tokens", "finish_reason", "outputs", "error"}), or
                   {"skipped": why}
"""
from __future__ import annotations

import datetime as _dt
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from ..rundir import append_jsonl

CHAT, COMPLETIONS = "chat.completions", "completions"
log = logging.getLogger("megatron_ssd.serving")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


def choice_text(choice: Mapping[str, Any], endpoint: str) -> str:
    """The generated text of one choice of a chat or completions answer (a full body or a stream chunk's delta)."""
    if endpoint == CHAT:
        message = choice.get("message") or choice.get("delta") or {}
        return message.get("content") or ""
    return choice.get("text") or ""


def answer_fields(body: Mapping[str, Any] | None, endpoint: str, log_text: bool) -> dict[str, Any]:
    """Token counts, finish reasons and texts of a (non-streamed) OpenAI answer body."""
    body = body or {}
    usage = body.get("usage") or {}
    outputs = []
    for choice in sorted(body.get("choices") or [], key=lambda c: c.get("index", 0)):
        outputs.append(output(choice_text(choice, endpoint), choice.get("finish_reason"), log_text))
    return {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
            "finish_reason": outputs[0]["finish_reason"] if outputs else None, "outputs": outputs}


def output(text: str, finish_reason: str | None, log_text: bool) -> dict[str, Any]:
    if log_text:
        return {"text": text, "finish_reason": finish_reason}
    return {"chars": len(text), "empty": not text.strip(), "finish_reason": finish_reason}


class StreamAccumulator:
    """What a streamed answer said, gathered from its chunks (text deltas per choice, finish reasons, usage)."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str | None] = {}
        self.usage: dict[str, Any] = {}

    def add(self, chunk: Mapping[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            i = int(choice.get("index", 0))
            self.texts.setdefault(i, []).append(choice_text(choice, self.endpoint))
            if choice.get("finish_reason") is not None:
                self.finish[i] = choice["finish_reason"]
        if chunk.get("usage"):
            self.usage = dict(chunk["usage"])

    def fields(self, log_text: bool) -> dict[str, Any]:
        outputs = [output("".join(self.texts[i]), self.finish.get(i), log_text) for i in sorted(self.texts)]
        return {"prompt_tokens": self.usage.get("prompt_tokens"),
                "completion_tokens": self.usage.get("completion_tokens"),
                "finish_reason": outputs[0]["finish_reason"] if outputs else None, "outputs": outputs}


class Telemetry:
    """Appends call records and events to the run directory's serve/ files (`rundir.append_jsonl`)."""

    def __init__(self, calls_path: Path, events_path: Path):
        self.calls_path, self.events_path = Path(calls_path), Path(events_path)
        self._pending: set[CallRecord] = set()
        self._lock = threading.Lock()
        self.lost = 0  # records that could not be written (a full disk): counted, logged, and serving goes on

    def call(self, **fields: Any) -> "CallRecord":
        record = CallRecord(self, {"time": now_iso(), **fields})
        with self._lock:
            self._pending.add(record)
        return record

    def event(self, event: str, **fields: Any) -> dict[str, Any]:
        row = {"time": now_iso(), "event": event, **fields}
        append_jsonl(self.events_path, row)
        return row

    def _write(self, record: "CallRecord") -> None:
        with self._lock:
            self._pending.discard(record)
        try:
            append_jsonl(self.calls_path, record.fields)
        except OSError as exc:  # users keep being served; /health and logs/serve.log say records are missing
            self.lost += 1
            log.error("telemetry record %s not written to %s: %s", record.fields.get("request_id"),
                      self.calls_path, exc)

    def flush_pending(self, why: str) -> int:
        """Write the records still waiting for an answer (the router is stopping), saying so; returns how many."""
        with self._lock:
            pending = list(self._pending)
        for record in pending:
            record.finish_shadow({"skipped": why})
            record.finish_primary(status=record.fields.get("status"), error=why)
        return len(pending)


class CallRecord:
    """One call's record; written when the client's answer and, if one was sent, the shadow answer are both in."""

    def __init__(self, sink: Telemetry, fields: dict[str, Any]):
        self.sink, self.fields = sink, fields
        self._waiting = {"primary"}
        self._lock = threading.Lock()

    def expect_shadow(self) -> None:
        with self._lock:
            self._waiting.add("shadow")
            self.fields["shadow"] = "pending"

    def finish_primary(self, **fields: Any) -> None:
        self._finish("primary", self.fields.update, fields)

    def finish_shadow(self, shadow: dict[str, Any]) -> None:
        self._finish("shadow", lambda _: self.fields.__setitem__("shadow", shadow), shadow)

    def _finish(self, part: str, apply: Callable[[Any], None], value: Any) -> None:
        with self._lock:
            if part not in self._waiting:
                return
            apply(value)
            self._waiting.discard(part)
            done = not self._waiting
        if done:
            self.sink._write(self)
