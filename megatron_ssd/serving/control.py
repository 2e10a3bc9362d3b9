"""A running router's whereabouts, the mode it starts in, and mode flips from another process.

`ssd serve` writes `serve/state.json` (owner-only permissions: it holds the admin token) once the router listens,
and removes it when it stops; `ssd serve-mode` and `ssd canary-replay` find the router through it. The mode
survives restarts: a router started without `mode=` resumes the last mode recorded in `serve/events.jsonl`, so a
rollback stays a rollback when the command is restarted, and `ssd serve-mode` on a run whose router is not running
records the mode for the next start.
"""
from __future__ import annotations

import os
from typing import Any

import httpx

from ..errors import SSDError
from ..rundir import RunDir, append_jsonl, atomic_write_json, read_json
from .routing import SHADOW, check_mode
from .telemetry import now_iso

DEFAULT_MODE = SHADOW  # users keep getting the base model until someone decides otherwise
DEFAULT_SHARE = 0.05


def write_state(run: RunDir, state: dict[str, Any]) -> None:
    atomic_write_json(run.serve_state_path, state)
    os.chmod(run.serve_state_path, 0o600)


def read_state(run: RunDir) -> dict[str, Any] | None:
    """The state of a router that is running now, or None (no state file, or its process is gone)."""
    state = read_json(run.serve_state_path, [])
    if not isinstance(state, dict) or not _alive(state.get("pid")):
        return None
    return state


def clear_state(run: RunDir, pid: int) -> None:
    state = read_json(run.serve_state_path, [])
    if isinstance(state, dict) and state.get("pid") == pid:
        run.serve_state_path.unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def last_mode(run: RunDir) -> tuple[str, float, str] | None:
    """(mode, share, when) of the last recorded mode event, or None."""
    for event in reversed(run.serve_events([]) or []):
        if event.get("event") == "mode":
            try:
                mode, share = check_mode(event.get("mode"), event.get("share", DEFAULT_SHARE))
            except ValueError:
                continue
            return mode, share, str(event.get("time", "?"))
    return None


def starting_mode(run: RunDir, mode: str | None, share: float | None) -> tuple[str, float, str]:
    """The mode a router starts in: the command line's, else the last recorded one, else shadow; and where it came
    from (for the start event and the console)."""
    recorded = last_mode(run)
    if mode is None:
        if recorded is not None:
            return recorded[0], recorded[1] if share is None else share, f"resumed (recorded {recorded[2]})"
        mode = DEFAULT_MODE
    if share is None:
        share = recorded[1] if recorded is not None else DEFAULT_SHARE
    return mode, share, "command line"


def set_mode(run: RunDir, mode: str, share: float | None, reason: str = "") -> dict[str, Any]:
    """Flip the mode of the run's router (over its admin API), or record it for the next start when none runs.
    Returns {"live": bool, "mode", "share", "previous"?}."""
    mode, share = _checked(mode, share, run)
    state = read_state(run)
    if state is None:
        share = share if share is not None else (last_mode(run) or (None, DEFAULT_SHARE))[1]
        append_jsonl(run.serve_events_path, {"time": now_iso(), "event": "mode", "mode": mode, "share": share,
                                             "source": "ssd serve-mode (no router running)", "reason": reason})
        return {"live": False, "mode": mode, "share": share}
    body: dict[str, Any] = {"mode": mode, "source": "ssd serve-mode", "reason": reason}
    if share is not None:
        body["share"] = share
    try:
        resp = httpx.post(f"{state['admin_url']}/admin/mode", json=body, timeout=10.0,
                          headers={"Authorization": f"Bearer {state['admin_token']}"})
    except httpx.HTTPError as exc:
        raise SSDError(f"the router of {run.path} (pid {state.get('pid')}, {state.get('admin_url')}) did not answer "
                       f"({type(exc).__name__}: {exc}); is it still starting? Nothing was changed.") from None
    if resp.status_code != 200:
        raise SSDError(f"the router refused the mode change (HTTP {resp.status_code}: "
                       f"{resp.text[:300]}). Nothing was changed.")
    return {"live": True, **resp.json()}


def _checked(mode: str, share: float | None, run: RunDir) -> tuple[str, float | None]:
    try:
        check_mode(mode, DEFAULT_SHARE if share is None else share)
    except ValueError as exc:
        raise SSDError(f"ssd serve-mode run_dir={run.path}: {exc}") from None
    return mode, share
