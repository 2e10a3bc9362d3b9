"""The vLLM server processes' command lines, the split of the machine between them, and their lifetime, with a
stand-in server process (no vLLM): it answers /health and, like vLLM's API server, has a child (the engine core)
that outlives it when it is killed with SIGKILL, and that it stops itself on SIGTERM."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from megatron_ssd.errors import SSDError
from megatron_ssd.serving import upstream
from megatron_ssd.serving.upstream import ServerSpec, group_members, plan, shares_devices

FAKE_SERVER = textwrap.dedent("""
    import http.server, os, signal, subprocess, sys
    core = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # the engine core stand-in
    def stop(*_):
        core.terminate(); core.wait(); os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    if os.environ.get("FAKE_FAIL"):
        print("CUDA out of memory (pretend)", flush=True); core.kill(); sys.exit(3)
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers()
        def log_message(self, *a):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


@dataclass(frozen=True)
class FakeSpec(ServerSpec):
    fail: bool = False

    def command(self):
        return [sys.executable, "-c", FAKE_SERVER, str(self.port)]

    def environment(self, api_key):
        return {**super().environment(api_key), **({"FAKE_FAIL": "1"} if self.fail else {})}


def fake(name, **kw):
    return FakeSpec(name, Path("/nowhere"), served_name="m", port=upstream.free_port(), dtype="float32",
                    max_model_len=64, seed=0, enforce_eager=True, cuda=False, **kw)


def wait_gone(pgid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return group_members(pgid)


def test_cpu_command_line_matches_the_pipelines_engine_settings():
    spec = plan({"base": Path("/b"), "ssd": Path("/s")}, served_name="smol", dtype="float32", max_model_len=1024,
                seed=7, enforce_eager=True, cuda=False, kv_gib=1, cpus=[0, 1])
    assert [spec["base"].cpu_bind, spec["ssd"].cpu_bind] == ["0", "1"]  # one core each: no thread-pool fight
    cmd = spec["base"].command()
    assert cmd[1:3] == ["-m", upstream.SERVER_MODULE] and "--enforce-eager" in cmd
    for flag, value in (("--model", "/b"), ("--served-model-name", "smol"), ("--dtype", "float32"),
                        ("--max-model-len", "1024"), ("--host", "127.0.0.1"), ("--max-num-batched-tokens", "4096")):
        assert cmd[cmd.index(flag) + 1] == value
    assert "--no-enable-chunked-prefill" in cmd and "--api-key" not in cmd  # the key travels in the environment
    env = spec["ssd"].environment("k")
    assert (env["VLLM_API_KEY"], env["VLLM_CPU_KVCACHE_SPACE"], env["VLLM_CPU_OMP_THREADS_BIND"]) == ("k", "1", "1")
    assert plan({"base": Path("/b"), "ssd": Path("/s")}, served_name="m", dtype="float32", max_model_len=64, seed=0,
                enforce_eager=False, cuda=False, cpus=[3])["ssd"].cpu_bind == "3"  # one CPU: shared


def test_gpus_are_split_when_there_are_enough_else_shared_with_half_the_memory_and_started_in_turn():
    kw = dict(served_name="m", dtype="bfloat16", max_model_len=4096, seed=0, enforce_eager=False, cuda=True,
              gpu_memory_utilization=0.9)
    paths = {"base": Path("/b"), "ssd": Path("/s")}
    own = plan(paths, gpu_count=4, tensor_parallel_size=2, **kw)
    assert [own["base"].gpus, own["ssd"].gpus] == ["0,1", "2,3"] and own["ssd"].gpu_memory_utilization == 0.9
    assert not shares_devices(own)
    shared = plan(paths, gpu_count=1, **kw)
    assert shared["base"].gpus == shared["ssd"].gpus == "0" and shared["ssd"].gpu_memory_utilization == 0.45
    assert shares_devices(shared)
    cmd = shared["base"].command()
    assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.45" and "--no-enable-chunked-prefill" not in cmd
    assert shared["base"].environment("k")["CUDA_VISIBLE_DEVICES"] == "0"
    with pytest.raises(SSDError, match="needs 2 GPUs"):
        plan(paths, gpu_count=1, tensor_parallel_size=2, **kw)


def test_servers_start_together_and_stop_with_their_children(tmp_path):
    specs = {"base": fake("base"), "ssd": fake("ssd")}
    servers, _ = upstream.start_all(specs, "k", lambda n: tmp_path / f"{n}.log", timeout_s=30)
    assert all(s.ready_s is not None for s in servers.values())
    groups = [s.pid for s in servers.values()]
    assert all(len(group_members(g)) == 2 for g in groups)  # server + engine-core stand-in
    upstream.stop_all(servers.values(), grace_s=5)
    assert not any(group_members(g) for g in groups)


def test_a_server_killed_with_sigkill_leaves_its_child_until_the_group_is_signalled(tmp_path):
    servers, _ = upstream.start_all({"ssd": fake("ssd")}, "k", lambda n: tmp_path / f"{n}.log", timeout_s=30)
    server = servers["ssd"]
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait(5)
    assert len(group_members(server.pid)) == 1  # the orphaned engine core, as vLLM leaves it
    server.signal_group(signal.SIGKILL)  # what the monitor of `ssd serve` does
    assert not wait_gone(server.pid)


def test_a_server_that_fails_to_start_is_one_error_with_its_log(tmp_path):
    with pytest.raises(SSDError, match="exited with status 3 while starting(.|\n)*CUDA out of memory"):
        upstream.start_all({"base": fake("base"), "ssd": fake("ssd", fail=True)}, "k",
                           lambda n: tmp_path / f"{n}.log", timeout_s=30)


def test_servers_die_with_the_command_even_on_kill_9(tmp_path):
    """PR_SET_PDEATHSIG (runlock.die_with_parent): the server gets SIGTERM when the command dies, and stops its
    engine core as vLLM's does."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_upstream import fake
        from megatron_ssd.serving import upstream
        servers, _ = upstream.start_all({{"base": fake("base")}}, "k", lambda n: Path({str(tmp_path)!r}) / "b.log",
                                        timeout_s=30)
        print(servers["base"].pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pgid = int(parent.stdout.readline())
        assert len(group_members(pgid)) == 2
        parent.kill()
        parent.wait(5)
        assert not wait_gone(pgid)
    finally:
        parent.kill()
