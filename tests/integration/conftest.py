"""One real run of the embedded default per test session, shared by every test that needs a finished run.

The chain (prompts -> diagnose -> sample -> pack -> train -> export -> evaluate -> report, real vLLM, Megatron-core
and sandbox) is the costliest thing the suite does, so it runs once (`embedded.run_embedded_sweep`: a local
two-point sweep over T_train). Tests that read a finished run directory take a point from `embedded_sweep`; a test
that writes into a run copies it first: the fixture's folders are shared and must stay as the sweep left them.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # `embedded`, for tests in other folders too
from embedded import EmbeddedSweep, run_embedded_sweep  # noqa: E402


@pytest.fixture(scope="session")
def embedded_sweep(tmp_path_factory) -> EmbeddedSweep:
    return run_embedded_sweep(tmp_path_factory.mktemp("embedded_sweep"))
