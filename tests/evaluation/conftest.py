"""Shared fixtures for the evaluation tests: small problems of every style and sandbox configs.

The sandbox tests run real processes. They use bubblewrap when this machine can (the preferred mode) and the
fallback otherwise; tests that only make sense under one mode say so with `needs_bwrap` / an explicit config.
"""
from __future__ import annotations

import pytest

from megatron_ssd.evaluation.sandbox.runner import SandboxConfig
from megatron_ssd.problems import Problem

from eval_toys import assert_problem, double_problem, functional_problem, stdin_problem


@pytest.fixture(scope="session")
def sandbox_cfg() -> SandboxConfig:
    return SandboxConfig(workers=2, timeout_s=10.0, memory_mb=256)


@pytest.fixture
def problems() -> dict[str, Problem]:
    ps = [double_problem(), assert_problem(), stdin_problem(), functional_problem(True), functional_problem(False)]
    return {p.problem_id: p for p in ps}
