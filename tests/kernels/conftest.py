"""Kernel tests run the Triton kernels through the interpreter on machines without CUDA.

TRITON_INTERPRET is read when a kernel is decorated, so it is set here, before the kernels are first used; it
is process-wide for the pytest session (and inherited by the TP tests' spawned ranks). Should another test
module have loaded the kernels in compiled mode already, they are reloaded in interpreter mode.
"""
import importlib
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
    _loaded = sys.modules.get("megatron_ssd.kernels.linear_ce_triton")
    if _loaded is not None and not _loaded.is_interpreted() and os.environ["TRITON_INTERPRET"] == "1":
        importlib.reload(_loaded)

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="with a GPU the kernels are compiled; the CPU variant is interpreter-only")),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)
