"""ssd serve run_dir=DIR [mode=shadow|canary|base|ssd] [share=0.05] [host=127.0.0.1] [port=8000] [key=value ...]

Serve a finished run's SSD checkpoint (export/hf, its `latest` pointer) beside its base model behind one
OpenAI-compatible endpoint (/v1/chat/completions, /v1/completions, /v1/models), and log every call to
DIR/serve/telemetry.jsonl (docs/SERVING.md). Two vLLM servers start with the command and stop with it (also when it
is killed); Ctrl-C or SIGTERM stops everything.

Modes: shadow (base answers; SSD answers the same call on the side, logged, never returned), canary (`share` of the
routing keys, the OpenAI `user` field or the X-SSD-Routing-Key header, go to SSD, each key always to the same
one), base (the rollback), ssd (the promotion). Without mode= the router resumes the last recorded mode (shadow
the first time). Flip it while serving with `ssd serve-mode run_dir=DIR mode=base`: no restart, recorded in
DIR/serve/events.jsonl.

Arguments:
  run_dir             the run directory (required)
  mode, share         the routing mode, and the canary's share of routing keys (default 0.05)
  host, port          where the endpoint listens (127.0.0.1:8000); any other host requires an API key
  api_key_file        a file holding the API key clients must send (`Authorization: Bearer ...`); else the
                      environment variable SSD_SERVE_API_KEY, if set
  model_name          the model id clients send (default: the run's model.name)
  log_text            log the answers' texts (true; false keeps lengths, emptiness and finish reasons only)
  kv_gib              KV cache per vLLM server on CPU, GiB (default: the run's sample.cpu_kvcache_gib)
  start_timeout_s     how long the vLLM servers may take to start (600)
  timeout_s           per call to a vLLM server (600)
  max_shadow_inflight shadow calls in flight beyond this are skipped, and logged so (32)
"""
from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel

from megatron_ssd import runlock
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.generation.engine import remove_scratch
from megatron_ssd.models.base_model import resolve_base_model
from megatron_ssd.rundir import RunDir, config_hash
from megatron_ssd.serving import upstream
from megatron_ssd.serving.control import clear_state, starting_mode, write_state
from megatron_ssd.serving.router import RouterConfig, RouterState, build_app
from megatron_ssd.serving.routing import BASE, SSD, check_mode
from megatron_ssd.serving.telemetry import Telemetry

from .options import parse, wants_help

EXIT_USER_ERROR = 2
API_KEY_ENV = "SSD_SERVE_API_KEY"
LOG_NAME = "serve"


@dataclass
class ServeOptions:
    run_dir: str = ""
    mode: str | None = None
    share: float | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key_file: str | None = None
    model_name: str | None = None
    log_text: bool = True
    kv_gib: int | None = None
    start_timeout_s: float = 600.0
    timeout_s: float = 600.0
    max_shadow_inflight: int = 32


class _Stopped(Exception):
    """SIGTERM: stop the servers and the router in order, like Ctrl-C."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if wants_help(argv, __doc__):
        return 0
    console = Console(stderr=True)
    try:
        return serve(parse(ServeOptions, argv, "ssd serve"), console)
    except SSDError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USER_ERROR


def serve(opts: ServeOptions, console: Console) -> int:
    if not opts.run_dir:
        raise ConfigError("ssd serve: run_dir=... is required (a finished run directory with export/hf).")
    api_key = _api_key(opts)
    run = RunDir(opts.run_dir)
    cfg = run.config()
    ssd_path = run.latest_export()
    from megatron_ssd.models.hf_io import verify_hf_folder  # why: torch-heavy; not on the path of `ssd --help`

    verify_hf_folder(ssd_path)  # a damaged export is refused by name before any server starts
    mode, share, source = starting_mode(run, opts.mode, opts.share)
    try:
        check_mode(mode, share)
    except ValueError as exc:
        raise ConfigError(f"ssd serve: {exc}") from None
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        with runlock.run_lock(run.path):
            base_path = resolve_base_model(cfg.model)
            return _serve_locked(opts, console, run, cfg, {BASE: base_path, SSD: ssd_path}, api_key, mode, share,
                                 source)
    except (KeyboardInterrupt, _Stopped):
        console.print("[yellow]ssd serve: stopped.[/]")
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


def _raise_stopped(signum: int, frame: Any) -> None:
    raise _Stopped()


def _api_key(opts: ServeOptions) -> str | None:
    key = None
    if opts.api_key_file:
        try:
            key = Path(opts.api_key_file).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigError(f"ssd serve: api_key_file={opts.api_key_file}: cannot be read ({exc.strerror}).") \
                from None
        if not key:
            raise ConfigError(f"ssd serve: api_key_file={opts.api_key_file} is empty.")
    elif os.environ.get(API_KEY_ENV):
        key = os.environ[API_KEY_ENV].strip()
    if key is None and not _is_loopback(opts.host):
        raise ConfigError(f"ssd serve: host={opts.host} makes the endpoint reachable from other machines, so it "
                          f"needs an API key: pass api_key_file=PATH or set {API_KEY_ENV}. Clients then send "
                          "`Authorization: Bearer <key>` (the OpenAI clients' api_key).")
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _serve_locked(opts: ServeOptions, console: Console, run: RunDir, cfg: Any, paths: dict[str, Path],
                  api_key: str | None, mode: str, share: float, source: str) -> int:
    log_path = run.stage_log(LOG_NAME)
    _log_to(log_path)
    sock = _bind(opts.host, opts.port)
    telemetry = Telemetry(run.telemetry_path, run.serve_events_path)
    specs = upstream.plan(paths, served_name=opts.model_name or cfg.model.name, dtype=cfg.model.dtype,
                          max_model_len=cfg.model.max_model_len, seed=cfg.seed,
                          enforce_eager=cfg.sample.enforce_eager, **_devices(cfg),
                          kv_gib=opts.kv_gib if opts.kv_gib is not None else cfg.sample.cpu_kvcache_gib,
                          tensor_parallel_size=cfg.sample.tensor_parallel_size,
                          gpu_memory_utilization=cfg.sample.gpu_memory_utilization,
                          cpu_threads=cfg.sample.cpu_threads_bind)
    internal_key = secrets.token_hex(16)
    started = time.monotonic()
    servers: dict[str, upstream.UpstreamServer] = {}
    scratch: list[str] = []
    stop_monitor = threading.Event()
    monitor: threading.Thread | None = None
    try:
        with console.status("starting the vLLM servers of base and ssd ...") as status:
            def tick(current: dict[str, upstream.UpstreamServer]) -> None:
                ready = [n for n, s in current.items() if s.ready_s is not None]
                status.update(f"starting the vLLM servers of base and ssd ({time.monotonic() - started:.0f} s; "
                              f"ready: {', '.join(ready) or 'none'}; logs: {run.stage_log('serve-base').parent})")

            servers, scratch = upstream.start_all(specs, internal_key, lambda n: run.stage_log(f"serve-{n}"),
                                                  timeout_s=opts.start_timeout_s, tick=tick)
        startup_s = time.monotonic() - started
        state = RouterState(mode=mode, share=share, telemetry=telemetry)
        state.set_mode(mode, share, source=source)
        state.on_mode_change = lambda e: console.print(
            f"mode: [bold]{e['mode']}[/]" + (f" (share {e['share']:g})" if e["mode"] == "canary" else "") +
            f" ← {e['previous']['mode']} ({e['source']}{': ' + e['reason'] if e.get('reason') else ''})")
        admin_token = secrets.token_hex(16)
        port = sock.getsockname()[1]
        url = f"http://{opts.host}:{port}"
        telemetry.event("start", pid=os.getpid(), url=url, model_name=specs[BASE].served_name,
                        checkpoints={n: str(p) for n, p in paths.items()}, startup_s=round(startup_s, 2),
                        servers={n: {"pid": s.pid, "port": s.spec.port, "ready_s": round(s.ready_s or 0, 2)}
                                 for n, s in servers.items()})
        write_state(run, {"pid": os.getpid(), "url": url, "admin_url": f"http://127.0.0.1:{port}"
                          if _is_wildcard(opts.host) else url, "admin_token": admin_token,
                          "api_key_required": api_key is not None, "model_name": specs[BASE].served_name,
                          "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                          "servers": {n: {"pid": s.pid, "url": s.spec.url, "model_path": str(s.spec.model_path)}
                                      for n, s in servers.items()}})
        monitor = threading.Thread(target=_monitor, args=(servers, scratch, state, stop_monitor, console),
                                   daemon=True)
        monitor.start()
        router_cfg = RouterConfig(model_name=specs[BASE].served_name,
                                  upstreams={n: s.spec.url for n, s in servers.items()}, upstream_key=internal_key,
                                  admin_token=admin_token, salt=run.stored_config_hash() or config_hash(cfg),
                                  api_key=api_key, log_text=opts.log_text, timeout_s=opts.timeout_s,
                                  max_shadow_inflight=opts.max_shadow_inflight)
        console.print(_ready_panel(run, url, state, specs[BASE].served_name, servers, startup_s, api_key))
        _run_uvicorn(build_app(router_cfg, state), sock)
        return 0
    finally:
        stop_monitor.set()
        upstream.stop_all(servers.values())
        if monitor is not None:
            monitor.join(15)
        remove_scratch(scratch)
        clear_state(run, os.getpid())
        with contextlib.suppress(OSError):
            sock.close()
        if servers:
            telemetry.event("stop", pid=os.getpid())


def _devices(cfg: Any) -> dict[str, Any]:
    import torch  # why: start-up cost; only the serving command needs to know about GPUs

    cuda = torch.cuda.is_available()
    return {"cuda": cuda, "gpu_count": torch.cuda.device_count() if cuda else 0}


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"ssd serve: cannot listen on {host}:{port} ({exc.strerror}); choose another port=... "
                          "(port=0 picks a free one) or stop what uses it.") from None
    sock.listen(512)
    return sock


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _log_to(path: Path) -> None:
    """The router's and uvicorn's log lines go to logs/serve.log; the console shows ours only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("uvicorn", "uvicorn.error", "megatron_ssd.serving"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _run_uvicorn(app: Any, sock: socket.socket) -> None:
    import uvicorn  # why: start-up cost; `ssd --help` and the other subcommands do not need the server

    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def _monitor(servers: dict[str, upstream.UpstreamServer], scratch: list[str], state: RouterState,
             stop: threading.Event, console: Console) -> None:
    """A server that exits is marked down (SSD calls fall back to base at once, base calls get a 503), what is
    left of its process group (engine core, workers) is killed, and the shared memory it leaves is removed (only
    files no live process uses: the other server's stay)."""
    reported: set[str] = set()
    while not stop.wait(1.0):
        for name, server in servers.items():
            code = server.exited()
            if code is None or name in reported:
                continue
            reported.add(name)
            server.signal_group(signal.SIGKILL)
            state.mark_down(name, f"its vLLM server (pid {server.pid}) exited with status {code}")
            deadline = time.monotonic() + 10
            while server.group_members() and time.monotonic() < deadline:
                time.sleep(0.1)
            remove_scratch(scratch)
            console.print(f"[bold red]the {name} server exited (status {code}); "
                          f"{'calls routed to SSD fall back to base' if name == SSD else 'calls get HTTP 503'}. "
                          f"Log: {server.log_path}[/]")


def _ready_panel(run: RunDir, url: str, state: RouterState, model: str, servers: dict[str, Any], startup_s: float,
                 api_key: str | None) -> Panel:
    lines = [f"endpoint: [bold]{url}/v1[/]  model: [bold]{model}[/]" +
             ("  (API key required)" if api_key else ""),
             f"mode: [bold]{state.mode}[/]" + (f" (share {state.share:g})" if state.mode == "canary" else ""),
             f"checkpoints: base {servers[BASE].spec.model_path}; ssd {servers[SSD].spec.model_path}",
             f"vLLM servers ready in {startup_s:.1f} s (logs: {run.stage_log('serve-base').parent})",
             f"telemetry: {run.telemetry_path}",
             f"flip: ssd serve-mode run_dir={run.path} mode=base|ssd|shadow|canary [share=...]",
             "stop: Ctrl-C"]
    return Panel("\n".join(lines), title="ssd serve", expand=False)


if __name__ == "__main__":
    sys.exit(main())
