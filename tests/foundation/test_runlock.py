"""One owner per run directory (megatron_ssd/runlock.py): refusal, takeover of a dead owner's leftovers, members
that started anew, and a kill -9 of the owner that stops its "training" tree (real processes, CPU only)."""
from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from megatron_ssd import runlock
from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.errors import SSDError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock + /proc + PR_SET_PDEATHSIG")
ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 120  # a hang guard for processes to appear or stop, never a performance bound


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in d.rglob("*")}


OWNER = """
    import sys, time
    from pathlib import Path
    from megatron_ssd.runlock import run_lock
    with run_lock(sys.argv[1]):
        Path(sys.argv[2]).write_text("held")
        time.sleep(600)
"""


def _start_owner(run: Path, tmp_path: Path) -> subprocess.Popen:
    ready = tmp_path / "owner.ready"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(OWNER), str(run), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    _wait_for(ready.exists, "the owner to take the lock")
    return proc


def test_second_owner_is_refused_with_pid_and_command_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    owner = _start_owner(run, tmp_path)
    try:
        before = _snapshot(run)
        with pytest.raises(SSDError) as info:
            with runlock.run_lock(run):
                pytest.fail("a second owner got the lock")
        message = str(info.value)
        assert f"pid {owner.pid}" in message and "run_lock" in message and "Nothing was written" in message
        assert "\n" not in message
        assert _snapshot(run) == before
    finally:
        owner.kill()
        owner.wait()
    with runlock.run_lock(run):  # the kernel dropped the dead owner's lock; its record is taken over
        pass


def test_dead_owner_is_taken_over_and_its_temporaries_removed(tmp_path, caplog):
    run = tmp_path / "run"
    (run / "train" / "ckpt" / ".iter_0000010.tmp").mkdir(parents=True)
    (run / "export" / "hf" / ".iter_0000010.tmp-4242").mkdir(parents=True)
    (run / "export" / "hf" / ".iter_0000010.tmp-4242" / "model.safetensors").write_bytes(b"x" * 10)
    (run / "samples").mkdir()
    (run / "samples" / ".shard_00001.parquet.ab12cd34.tmp").write_bytes(b"partial")
    (run / "samples" / "shard_00000.parquet").write_bytes(b"kept")
    (run / "eval").mkdir()
    (run / "eval" / ".done").write_text("{}")
    (run / runlock.LOCK_FILE).write_text(json.dumps({"pid": 999999999, "command": "ssd run", "token": "t"}))
    scratch = tmp_path / "psm_leftover"
    scratch.write_bytes(b"shm")
    (run / runlock.SCRATCH_FILE).write_text(f"{scratch}\n")
    with caplog.at_level(logging.WARNING, logger="megatron_ssd.runlock"):
        with runlock.run_lock(run):
            record = json.loads((run / runlock.LOCK_FILE).read_text())
            assert record["pid"] == os.getpid()
    text = caplog.text
    assert "pid 999999999 (ssd run" in text and "taking it over" in text
    assert "Removed 3 temporary" in text and "1 scratch file" in text
    assert not list(run.rglob("*.tmp*")) and not scratch.exists()
    assert (run / "samples" / "shard_00000.parquet").exists() and (run / "eval" / ".done").exists()
    assert (run / runlock.LOCK_FILE).read_text() == ""  # a clean release leaves no record to take over
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="megatron_ssd.runlock"):
        with runlock.run_lock(run):
            pass
    assert "taking it over" not in caplog.text


def test_lock_is_reentrant_and_exports_the_run_to_children(tmp_path):
    run = tmp_path / "run"
    assert runlock.ENV_DIR not in os.environ
    with runlock.run_lock(run):
        with runlock.run_lock(run):
            assert os.environ[runlock.ENV_DIR] == str(run.resolve())
        assert os.environ[runlock.ENV_DIR] == str(run.resolve())  # still held by the outer block
        assert runlock.join_run() == run.resolve()  # in the owner itself: a no-op
    assert runlock.ENV_DIR not in os.environ


def test_engine_tasks_share_the_run_but_not_with_an_owner(tmp_path):
    run = tmp_path / "run"
    task = SSDConfig()
    task.stage, task.sample.num_engines, task.sample.engine_rank = "sample", 2, 0
    ready = tmp_path / "peer.ready"
    code = textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from megatron_ssd.config.schema import SSDConfig
        from megatron_ssd.runlock import run_lock
        cfg = SSDConfig(); cfg.stage = "sample"; cfg.sample.num_engines = 2; cfg.sample.engine_rank = 1
        with run_lock(sys.argv[1], cfg):
            Path(sys.argv[2]).write_text("held")
            time.sleep(600)
    """)
    peer = subprocess.Popen([sys.executable, "-c", code, str(run), str(ready)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _wait_for(ready.exists, "the peer engine task")
        with runlock.run_lock(run, task):  # engine rank 0 next to rank 1: shared
            pass
        with pytest.raises(SSDError, match=rf"in use by pid {peer.pid}"):
            with runlock.run_lock(run):  # a whole command is refused while engine tasks run
                pass
    finally:
        peer.kill()
        peer.wait()


FAKE_RANK = """
    import os, sys, time
    from pathlib import Path
    from megatron_ssd.runlock import join_run
    join_run()
    Path(sys.argv[1]).write_text(str(os.getpid()))
    while True:
        with open(sys.argv[2], "a") as f:  # like a rank writing metrics into the run directory
            f.write("step\\n")
        time.sleep(0.2)
"""

# Stands in for torchrun: starts its rank as a new program (no inherited files), stops it on SIGTERM/SIGINT.
FAKE_TORCHRUN = """
    import os, signal, subprocess, sys
    rank = subprocess.Popen([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], close_fds=True)
    def stop(signum, frame):  # reaps with os.waitpid: Popen.wait here would deadlock on the main thread's wait
        rank.terminate()
        try:
            os.waitpid(rank.pid, 0)
        except ChildProcessError:
            pass
        os._exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.exit(rank.wait())
"""

# Stands in for `ssd run`: owns the run directory and starts "torchrun" the way the train stage does.
FAKE_SSD = """
    import os, sys
    from megatron_ssd.runlock import run_lock
    from megatron_ssd.training.launch import run_streaming
    run, rank_pid, metrics, rank_code, torchrun_code = sys.argv[1:6]
    with run_lock(run):
        run_streaming([sys.executable, "-c", torchrun_code, rank_code, rank_pid, metrics], dict(os.environ),
                      run + "/train/log.txt")
"""


def test_kill_9_of_the_owner_stops_training_and_frees_the_run(tmp_path):
    run = tmp_path / "run"
    rank_pid_file, metrics = tmp_path / "rank.pid", run / "metrics.log"
    ssd = subprocess.Popen([sys.executable, "-c", textwrap.dedent(FAKE_SSD), str(run), str(rank_pid_file),
                            str(metrics), textwrap.dedent(FAKE_RANK), textwrap.dedent(FAKE_TORCHRUN)],
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL)
    try:
        _wait_for(lambda: rank_pid_file.exists() and rank_pid_file.read_text() and metrics.exists(),
                  "the fake rank to start")
        rank = int(rank_pid_file.read_text())
        torchrun = int(Path(f"/proc/{rank}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert torchrun != ssd.pid
        with pytest.raises(SSDError, match=rf"in use by pid {ssd.pid}"):
            with runlock.run_lock(run):
                pass
        ssd.send_signal(signal.SIGKILL)
        ssd.wait()
        _wait_for(lambda: not _alive(rank) and not _alive(torchrun), "torchrun and its rank to stop")
        size = metrics.stat().st_size
        with runlock.run_lock(run):  # nobody of the killed tree holds the run any more
            time.sleep(0.5)
            assert metrics.stat().st_size == size  # and nothing writes into it
    finally:
        if ssd.poll() is None:
            ssd.kill()
            ssd.wait()


def test_orphans_of_a_dead_owner_keep_the_run(tmp_path):
    run = tmp_path / "run"
    ready = tmp_path / "member.pid"
    with runlock.run_lock(run):
        member = subprocess.Popen([sys.executable, "-c", textwrap.dedent(FAKE_RANK), str(ready), str(tmp_path / "m")],
                                  env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True)
        _wait_for(lambda: ready.exists() and ready.read_text(), "the member to join")
    try:
        with pytest.raises(SSDError, match=rf"still running: pid {member.pid} \(.*join_run"):
            with runlock.run_lock(run):
                pass
    finally:
        member.kill()
        member.wait()
    with runlock.run_lock(run):
        pass


def test_a_member_of_an_earlier_owner_is_refused(tmp_path, monkeypatch):
    run = tmp_path / "run"
    with runlock.run_lock(run):
        pass
    (run / runlock.LOCK_FILE).write_text(json.dumps({"pid": 1, "command": "ssd run", "token": "new-owner"}))
    monkeypatch.setenv(runlock.ENV_DIR, str(run))
    monkeypatch.setenv(runlock.ENV_TOKEN, "old-owner")
    with pytest.raises(SSDError, match="now belongs to pid 1"):
        runlock.join_run()


def test_read_only_and_full_disks_are_user_errors(tmp_path):
    ro = runlock.storage_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "x")))
    full = runlock.storage_error(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "y")))
    assert isinstance(ro, SSDError) and "read-only filesystem" in str(ro) and str(tmp_path / "run" / "x") in str(ro)
    assert isinstance(full, SSDError) and "full disk" in str(full)
    assert runlock.storage_error(OSError(errno.EACCES, "Permission denied")) is None


def test_stale_temp_pattern_spares_real_files(tmp_path):
    for name in (".done", "manifest.json", ".ssd.lock", "latest", "shard.tmp", "iter_0000001"):
        (tmp_path / name).write_text("x")
    for name in (".a.tmp", ".iter_0000001.tmp-12", ".manifest.json.k2j3h4g5.tmp"):
        (tmp_path / name).write_text("x")
    removed = runlock.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".a.tmp", ".iter_0000001.tmp-12", ".manifest.json.k2j3h4g5.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".done", ".ssd.lock", "iter_0000001", "latest",
                                                          "manifest.json", "shard.tmp"]
