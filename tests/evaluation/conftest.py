"""Shared fixtures for the evaluation tests: small problems of every style and sandbox configs.

The sandbox tests run real processes under bubblewrap when this machine has it (the default and required mode)
and under the explicit `rlimits-only` opt-in otherwise; tests that only make sense under bwrap carry `needs_bwrap`.
CI sets SSD_REQUIRE_BWRAP=1 (`.ci/run`): there a test skipped for want of bubblewrap fails instead, because CI has
it and a skip would hide a regression.
"""
from __future__ import annotations

import os

import pytest

from megatron_ssd.evaluation.sandbox.isolation import BWRAP, RLIMITS_ONLY
from megatron_ssd.evaluation.sandbox.runner import SandboxConfig
from megatron_ssd.problems import Problem

from eval_toys import assert_problem, bwrap_works, double_problem, functional_problem, stdin_problem

REQUIRE_BWRAP = os.environ.get("SSD_REQUIRE_BWRAP", "") not in ("", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Under SSD_REQUIRE_BWRAP, a skip for want of bubblewrap is a failure (runs before pytest's skipif)."""
    if not REQUIRE_BWRAP:
        return
    for mark in item.iter_markers("skipif"):
        if "bubblewrap" in str(mark.kwargs.get("reason", "")) and not bwrap_works():
            pytest.fail("SSD_REQUIRE_BWRAP=1 but bubblewrap cannot run here: this sandbox test would be skipped. "
                        "Run `bash scripts/bootstrap.sh` as root (it installs bubblewrap and checks user namespaces).",
                        pytrace=False)


def sandbox_mode() -> str:
    """bwrap where it works; elsewhere the explicit opt-in (a failure under SSD_REQUIRE_BWRAP)."""
    if bwrap_works():
        return BWRAP
    if REQUIRE_BWRAP:
        pytest.fail("SSD_REQUIRE_BWRAP=1 but bubblewrap cannot run here.", pytrace=False)
    return RLIMITS_ONLY


@pytest.fixture(scope="session")
def sandbox_cfg() -> SandboxConfig:
    return SandboxConfig(workers=2, timeout_s=10.0, memory_mb=256, isolation=sandbox_mode())


@pytest.fixture
def problems() -> dict[str, Problem]:
    ps = [double_problem(), assert_problem(), stdin_problem(), functional_problem(True), functional_problem(False)]
    return {p.problem_id: p for p in ps}
