"""Bad inputs fail early with messages that name the problem, for the fused loss and the reference alike."""
import pytest
import torch

from megatron_ssd.kernels import fused_linear_cross_entropy, reference_linear_cross_entropy

BOTH = pytest.mark.parametrize("fn", [fused_linear_cross_entropy, reference_linear_cross_entropy],
                               ids=["fused", "reference"])


def _inputs(n=6, h=8, v=10, dtype=torch.float32):
    return torch.randn(n, h, dtype=dtype), torch.randn(v, h, dtype=dtype), torch.randint(0, v, (n,))


@BOTH
@pytest.mark.parametrize("change,error,match", [
    (lambda h, w, y: (h, torch.randn(10, 7), y), ValueError, "hidden size mismatch"),
    (lambda h, w, y: (h, w, y[:-1]), ValueError, "labels shape"),
    (lambda h, w, y: (h, w.to(torch.bfloat16), y), TypeError, "dtype mismatch"),
    (lambda h, w, y: (h, w, y.float()), TypeError, "labels must be int64 or int32"),
    (lambda h, w, y: (h.double(), w.double(), y), TypeError, "hidden dtype"),
    (lambda h, w, y: (h[0], w, y[0]), ValueError, "at least 2 dims"),
    (lambda h, w, y: (h, w, torch.tensor([0, 1, 2, 10, 3, 4])), ValueError, r"outside \[0, 10\)"),
    (lambda h, w, y: (h, w, torch.tensor([0, 1, -5, 2, 3, 4])), ValueError, "not ignore_index"),
])
def test_bad_inputs(fn, change, error, match):
    with pytest.raises(error, match=match):
        fn(*change(*_inputs()))


@BOTH
@pytest.mark.parametrize("kw,match", [
    ({"reduction": "avg"}, "reduction must be one of"),
    ({"softcap": 0.0}, "softcap must be None or > 0"),
    ({"z_loss": -1.0}, "z_loss must be >= 0"),
])
def test_bad_options(fn, kw, match):
    with pytest.raises(ValueError, match=match):
        fn(*_inputs(), **kw)


def test_cpu_without_interpreter_refuses_instead_of_falling_back(monkeypatch):
    from megatron_ssd.kernels import linear_ce_triton as tk

    monkeypatch.setattr(tk, "is_interpreted", lambda: False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1.*reference_linear_cross_entropy"):
        fused_linear_cross_entropy(*_inputs())


def test_interpreter_works_when_triton_was_imported_first():
    """megatron.core (and others) import triton before a test sets TRITON_INTERPRET; the kernels must not
    depend on Triton standard-library @jit helpers that were decorated in compiled mode."""
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("interpreter-only check")
    script = (
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import triton, triton.language\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "import torch\n"
        "from megatron_ssd.kernels import fused_linear_cross_entropy as f, reference_linear_cross_entropy as r\n"
        "h = torch.randn(9, 16, requires_grad=True); w = torch.randn(40, 16, requires_grad=True)\n"
        "y = torch.randint(0, 40, (9,)); y[2] = -100\n"
        "a = torch.autograd.grad(f(h, w, y, softcap=3.0), (h, w))\n"
        "b = torch.autograd.grad(r(h, w, y, softcap=3.0), (h, w))\n"
        "assert all(torch.allclose(x, z, rtol=1e-4, atol=1e-5) for x, z in zip(a, b))\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
