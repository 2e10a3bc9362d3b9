"""Replay a run's eval problems through the promotion endpoint, so the telemetry carries answers with known tests.

Each call is what the offline evaluation sent the engine: the problem's chat messages (`prompting.chat_messages`),
the run's evaluation decoding, and the per-sample seed of the eval stream (`EVAL_SEED_OFFSET`), so the base model
served here can be compared with `eval/base`. The problem id travels in the OpenAI `metadata` field
(`ssd_problem_id`, `ssd_sample_idx`), which the router logs and strips; the routing key (`user`) is
`replay:<problem>:<sample>`, so in canary mode each sample is routed on its own and a problem's samples can land
on both checkpoints. `ssd canary-report` scores the logged answers in the sandbox.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import httpx

from ..generation.engine import Decoding
from ..generation.evalrun import EVAL_SEED_OFFSET
from ..generation.seeds import sample_seed
from ..problems import Problem
from ..prompting import chat_messages
from .router import CHECKPOINT_HEADER, PROBLEM_KEY, SAMPLE_KEY


def replay_bodies(problems: Iterable[Problem], decoding: Decoding, *, model: str, run_seed: int,
                  samples: int = 1) -> list[dict[str, Any]]:
    """One /v1/chat/completions body per (problem, sample)."""
    bodies = []
    for p in problems:
        for i in range(samples):
            body: dict[str, Any] = {
                "model": model, "messages": chat_messages(p), "temperature": decoding.temperature,
                "top_p": decoding.top_p, "top_k": decoding.top_k, "min_p": decoding.min_p,
                "max_tokens": decoding.max_tokens, "seed": sample_seed(run_seed + EVAL_SEED_OFFSET, p.problem_id, i),
                "user": f"replay:{p.problem_id}:{i}",
                "metadata": {PROBLEM_KEY: p.problem_id, SAMPLE_KEY: str(i)},
            }
            if decoding.stop:
                body["stop"] = list(decoding.stop)
            bodies.append(body)
    return bodies


def replay(url: str, bodies: list[dict[str, Any]], *, api_key: str | None = None, concurrency: int = 4,
           timeout_s: float = 600.0, advance: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Send every body to `url`/v1/chat/completions; one outcome per body, in order:
    {"problem_id", "sample_idx", "status", "checkpoint", "error"}."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    with httpx.Client(base_url=url, headers=headers, timeout=timeout_s) as client:
        def one(body: dict[str, Any]) -> dict[str, Any]:
            meta = body.get("metadata") or {}
            out = {"problem_id": meta.get(PROBLEM_KEY), "sample_idx": meta.get(SAMPLE_KEY), "status": None,
                   "checkpoint": None, "error": None}
            try:
                resp = client.post("/v1/chat/completions", json=body)
                out.update(status=resp.status_code, checkpoint=resp.headers.get(CHECKPOINT_HEADER))
                if resp.status_code != 200:
                    out["error"] = resp.text[:300]
            except httpx.HTTPError as exc:
                out["error"] = f"{type(exc).__name__}: {exc}"
            if advance is not None:
                advance()
            return out

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, bodies))
