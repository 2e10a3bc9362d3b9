"""A multi-node rendezvous that cannot complete ends within cluster.rdzv_join_timeout_s as one paragraph naming the
endpoint, with a real torchrun (no Slurm: the srun prefix of the train line is dropped) on this machine; and the
runner shows a stage log's tail (the torchrun traceback) only for failures that are not such a paragraph; and the
rendezvous host taken from the node list with or without Slurm's tools."""
from __future__ import annotations

import io
import os
import socket
import sys
from dataclasses import replace

import pytest
from rich.console import Console

from megatron_ssd.config import SSDConfig, validate
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.launch import runner
from megatron_ssd.rundir import RunDir
from megatron_ssd.training.launch import (expand_nodelist, launch_argv, rendezvous_port, run_training,
                                          slurm_head_node)

TIMEOUT_S = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_node_config(**cluster) -> SSDConfig:
    cfg = SSDConfig()
    cfg.cluster = replace(cfg.cluster, launcher="slurm", **cluster)
    cfg.parallel = replace(cfg.parallel, nnodes=2, nproc_per_node=1)
    return cfg


def test_the_train_line_bounds_the_join():
    cmd = launch_argv(two_node_config(rdzv_join_timeout_s=120), "c.yaml", head="gpu-01", port=29511)
    assert "--rdzv-conf=join_timeout=120,read_timeout=60" in cmd
    assert "--rdzv-conf=join_timeout=5,read_timeout=5" in launch_argv(two_node_config(rdzv_join_timeout_s=5), "c.yaml")
    with pytest.raises(ConfigError, match="cluster.rdzv_join_timeout_s=0: must be at least 1"):
        validate(two_node_config(rdzv_join_timeout_s=0))


@pytest.mark.parametrize("head", ["head-node.invalid", "127.0.0.1"], ids=["head-unreachable", "node-never-joins"])
def test_an_unreachable_rendezvous_is_one_paragraph(head, tmp_path):
    """head.invalid: this node is not the head and cannot reach it (RendezvousConnectionError). 127.0.0.1: this node
    hosts the store and the second node never comes (RendezvousTimeoutError). Both end within the timeout."""
    port = free_port()
    cmd = launch_argv(two_node_config(rdzv_join_timeout_s=TIMEOUT_S), tmp_path / "config.yaml", head=head,
                      port=port, job_id="rdzv-test", python=sys.executable)
    torchrun = cmd[cmd.index(sys.executable):]  # what srun starts on each node
    log = tmp_path / "launcher.log"
    log.write_text("an earlier attempt's output\n")
    with pytest.raises(SSDError) as err:
        run_training(torchrun, dict(os.environ), log, out=io.StringIO())
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    for part in (f"--rdzv-endpoint={head}:{port}", f"join timeout {TIMEOUT_S} s", "2 nodes", f"head node {head}",
                 f"port {port} is free", "all nodes started", "cluster.rdzv_join_timeout_s", str(log)):
        assert part in message, part
    kind = "RendezvousConnectionError" if head.endswith(".invalid") else "RendezvousTimeoutError"
    assert kind in message
    text = log.read_text()
    assert text.startswith("an earlier attempt's output\n") and "Traceback" in text  # nothing lost


def test_other_failures_keep_their_exit_status(tmp_path):
    """A failure that is not a rendezvous (here: the ranks' exit status) is left to the train stage."""
    log = tmp_path / "launcher.log"
    log.write_text("RendezvousTimeoutError from an earlier attempt\n")  # only this attempt's output counts
    cmd = [sys.executable, "-c", "import sys; print('rank 0 failed'); sys.exit(3)", "--rdzv-endpoint=h:1"]
    assert run_training(cmd, {}, log, out=io.StringIO()) == 3


class FailingStage:
    """A stage whose libraries print a traceback into its log, then fail with `error`."""

    def __init__(self, error: BaseException):
        self.error = error

    def load(self):
        return self

    def run(self, cfg, ctx):
        os.write(1, b"Traceback (most recent call last):\n  torch.distributed.elastic...RendezvousTimeoutError\n")
        raise self.error


@pytest.mark.parametrize("error, tail", [(SSDError("the training ranks never started: ..."), False),
                                         (RuntimeError("a bug"), True)], ids=["user-error", "bug"])
def test_the_stage_log_tail_is_shown_for_bugs_not_for_ssd_errors(error, tail, tmp_path, monkeypatch):
    """An SSDError is the whole message (one paragraph naming the log); a bug keeps the log's tail on the terminal."""
    monkeypatch.setitem(runner.STAGES, "report", FailingStage(error))
    out = io.StringIO()
    with pytest.raises(type(error)):
        runner._execute("report", SSDConfig(), RunDir(tmp_path / "run"), Console(file=out, width=200))
    assert ("Traceback" in out.getvalue()) is tail
    assert "Traceback" in (tmp_path / "run" / "logs" / "report.log").read_text()  # nothing lost


def path_with(monkeypatch, tmp_path, scontrol: str | None) -> None:
    """PATH holding only a `scontrol` running `scontrol` (bash), or no scontrol at all."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if scontrol is not None:
        (bin_dir / "scontrol").write_text("#!/bin/bash\n" + scontrol)
        (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))


@pytest.mark.parametrize("scontrol", [None, 'echo "scontrol: fatal: Could not establish a configuration source" >&2\n'
                                            "exit 1\n", "exit 0\n"], ids=["missing", "no-controller", "silent"])
def test_the_node_list_is_expanded_without_slurms_tools(scontrol, tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path, scontrol)
    assert expand_nodelist("gpu[001-003,010],login1") == ["gpu001", "gpu002", "gpu003", "gpu010", "login1"]
    assert expand_nodelist("rack[1-2]-n[08-09]") == ["rack1-n08", "rack1-n09", "rack2-n08", "rack2-n09"]
    assert slurm_head_node({"SLURM_JOB_NODELIST": "node[07-08]"}) == "node07"
    assert slurm_head_node({"SLURM_NODELIST": "single"}) == "single"
    with pytest.raises(SSDError, match=r"cannot expand SLURM_JOB_NODELIST='gpu\[001-004'.*node-list syntax"):
        expand_nodelist("gpu[001-004")


def test_scontrols_answer_wins_when_it_has_one(tmp_path, monkeypatch):
    path_with(monkeypatch, tmp_path, 'echo "from-slurm-1"; echo "from-slurm-2"\n')
    assert expand_nodelist("gpu[001-002]") == ["from-slurm-1", "from-slurm-2"]
    with pytest.raises(SSDError, match="SLURM_JOB_NODELIST is not set"):
        slurm_head_node({})


def test_two_jobs_on_one_head_node_get_different_rendezvous_ports():
    """Sweep points (or array tasks) that share a node each bind their own port; MASTER_PORT still wins."""
    assert rendezvous_port({"SLURM_JOB_ID": "3"}) == "29503" and rendezvous_port({"SLURM_JOB_ID": "4"}) == "29504"
    assert rendezvous_port({"SLURM_JOB_ID": "4242"}) == "29742"
    assert rendezvous_port({"SLURM_JOB_ID": "4", "MASTER_PORT": "31000"}) == "31000"
    assert rendezvous_port({}) == "29500"
