"""Choosing the isolation mode: bwrap when it works, a loud fallback when it does not, an error when bwrap was
demanded."""
import pytest

from megatron_ssd.errors import SSDError
from megatron_ssd.evaluation.sandbox import isolation
from megatron_ssd.evaluation.scoring import score_samples
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig

from eval_toys import double_problem, needs_bwrap


def test_missing_bwrap_falls_back_loudly_and_rows_say_so(tmp_path):
    fake = str(tmp_path / "no-bwrap-here")
    with pytest.warns(isolation.IsolationWarning, match="WITHOUT bubblewrap"):
        iso = isolation.detect("auto", bwrap=fake)
    assert iso.mode == isolation.FALLBACK and "not installed" in iso.note
    p = double_problem()
    cfg = SandboxConfig(isolation="auto", bwrap=fake, timeout_s=10.0)
    rows = score_samples([p], [{"prompt_id": p.problem_id, "sample_idx": 0, "text": "def f(x):\n  return 2*x\n"}],
                         cfg)
    assert rows[0]["passed"] and rows[0]["isolation"] == "fallback-rlimits"


def test_demanding_bwrap_without_it_is_an_error(tmp_path):
    with pytest.raises(SSDError, match="isolation=bwrap was requested"):
        isolation.detect("bwrap", bwrap=str(tmp_path / "missing"))
    with pytest.raises(SSDError, match="choose auto, bwrap or fallback"):
        isolation.detect("docker")
    with pytest.raises(SSDError, match="system interpreter"):
        isolation.detect("auto", python=str(tmp_path / "python3"))


@needs_bwrap
def test_bwrap_command_shape():
    iso = isolation.detect("bwrap")
    argv = isolation.bwrap_argv(iso, 1 << 20, ["/usr/bin/python3", "-I", "-S", "-c", "pass"])
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--clearenv", "--remount-ro"):
        assert flag in argv
    assert argv[argv.index("--uid") + 1] == "65534" and argv[-5:] == ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
    assert "/root" not in argv and "/etc" not in argv and "--proc" not in argv
