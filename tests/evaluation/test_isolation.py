"""Choosing the isolation mode: bubblewrap is required unless the user opts out by name; without it nothing runs and
the error says how to fix it. The bwrap command line keeps /dev minimal and every writable tmpfs size-capped."""
import pytest

from megatron_ssd.config.schema import SSDConfig
from megatron_ssd.config.validate import validate
from megatron_ssd.errors import ConfigError, SSDError
from megatron_ssd.evaluation.sandbox import isolation, runner
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig
from megatron_ssd.evaluation.scoring import score_samples, summarize

from eval_toys import double_problem, needs_bwrap

SAMPLE = "def f(x):\n  return 2*x\n"


def test_missing_bwrap_stops_before_any_sample_with_the_fix(tmp_path, monkeypatch):
    executed = []
    monkeypatch.setattr(runner, "run_job", lambda *a, **k: executed.append(a))
    p = double_problem()
    cfg = SandboxConfig(bwrap=str(tmp_path / "no-bwrap-here"))
    with pytest.raises(SSDError) as err:
        score_samples([p], [{"prompt_id": p.problem_id, "sample_idx": 0, "text": SAMPLE}], cfg)
    text = str(err.value)
    assert "not installed" in text and "scripts/bootstrap.sh" in text and "eval.isolation=rlimits-only" in text
    assert "\n" not in text and executed == []


def test_a_bwrap_that_cannot_start_is_one_paragraph(tmp_path):
    broken = tmp_path / "bwrap"
    broken.write_text("#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SSDError) as err:
        isolation.detect(isolation.BWRAP, bwrap=str(broken))
    text = str(err.value)
    assert "no sample was run" in text and "user namespaces" in text and "rlimits-only" in text


def test_the_opt_in_is_recorded_in_rows_and_summary(monkeypatch):
    monkeypatch.setattr(isolation, "_CACHE", {})  # detection warns once per process: start from a fresh check
    p = double_problem()
    with pytest.warns(isolation.IsolationWarning, match="WITHOUT bubblewrap"):
        rows = score_samples([p], [{"prompt_id": p.problem_id, "sample_idx": 0, "text": SAMPLE}],
                             SandboxConfig(isolation="rlimits-only", timeout_s=10.0))
    assert rows[0]["passed"] and rows[0]["isolation"] == isolation.FALLBACK
    summary = summarize(rows, [p], [1], 1, 0.95, 100, 0)
    assert summary["isolation"] == [isolation.FALLBACK]
    assert "rlimits-only" in summary["isolation_warning"] and summary["memory_limit"] == [rows[0]["memory_limit"]]


def test_bad_isolation_values_are_refused():
    with pytest.raises(SSDError, match="choose bwrap"):
        isolation.detect("docker")
    with pytest.raises(SSDError, match="system interpreter"):
        isolation.detect(isolation.RLIMITS_ONLY, python="/nonexistent/python3")
    cfg = SSDConfig()
    assert cfg.eval.isolation == "bwrap"
    cfg.eval.isolation = "auto"
    with pytest.raises(ConfigError, match="eval.isolation='auto'"):
        validate(cfg)


@needs_bwrap
def test_bwrap_command_shape():
    iso = isolation.detect(isolation.BWRAP)
    argv = isolation.bwrap_argv(iso, 1 << 20, ["/usr/bin/python3", "-I", "-S", "-c", "pass"], 2 << 20)
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--remount-ro"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534" and argv[-5:] == ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
    assert "/root" not in argv and "/etc" not in argv and "--proc" not in argv
    shm = argv.index("/dev/shm")
    assert argv[shm - 1] == "--tmpfs" and argv[shm - 5:shm - 3] == ["--size", str(2 << 20)]
    assert argv[argv.index("/dev") + 1:argv.index("/dev") + 3] != [] and ["--remount-ro", "/dev"] == argv[
        shm + 1:shm + 3]
    assert "/dev/shm" not in isolation.bwrap_argv(iso, 1 << 20, ["true"], 0)
