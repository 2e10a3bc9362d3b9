"""The teacher-forced extraction: the declared subsample, the exact path against plain forward passes, and the
vLLM path's reading of `prompt_logprobs`."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from megatron_ssd.evaluation.mechanism.extract import (Selection, TeacherForced, exact_distributions,
                                                       select_sequences, vllm_distributions)


def _rows(problems, samples, seed=0, length=12):
    rng = np.random.default_rng(seed)
    return [{"prompt_id": f"p{p}", "sample_idx": s, "prompt_token_ids": [3, 10 + p, 11, 12],
             "token_ids": rng.integers(6, 200, size=length).tolist()} for p in range(problems) for s in range(samples)]


def test_selection_is_declared_and_keeps_common_problems():
    base, ssd = _rows(6, 3), _rows(5, 3, seed=1)  # p5 has no SSD sample: dropped from both
    seqs = select_sequences({"base": base, "ssd": ssd}, Selection())
    assert {s.problem_id for s in seqs} == {f"p{i}" for i in range(5)} and len(seqs) == 30
    sub = select_sequences({"base": base, "ssd": ssd}, Selection(max_problems=3, max_samples_per_problem=1,
                                                                   max_completion_tokens=4, seed=2))
    assert len(sub) == 6 and all(len(s.completion_ids) == 4 for s in sub)
    assert [s.sample_idx for s in sub] == [0] * 6 and [s.source for s in sub[:2]] == ["base", "ssd"]
    again = select_sequences({"base": base, "ssd": ssd}, Selection(max_problems=3, max_samples_per_problem=1,
                                                                     max_completion_tokens=4, seed=2))
    assert again == sub  # seeded


def test_exact_path_matches_plain_forward_passes(tiny_pair):
    from transformers import AutoModelForCausalLM

    base, _ = tiny_pair
    seqs = [TeacherForced("p0", "base", 0, (3, 10, 11), (20, 21, 22, 23)),
            TeacherForced("p0", "ssd", 0, (3, 10, 11), (30, 31)),  # shares the prompt's cache with the first
            TeacherForced("p1", "base", 0, (3, 12), (40,))]
    d = exact_distributions(base, seqs, 8)
    assert len(d) == 7 and d.exact and d.problem.tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert d.position.tolist() == [3, 4, 5, 6, 3, 4, 2]
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32).eval()
    rows = []
    with torch.inference_mode():
        for s in seqs:
            logits = model(input_ids=torch.tensor([s.ids])).logits[0, len(s.prompt_ids) - 1:-1]
            rows.append(torch.log_softmax(logits, -1))
    ref = torch.cat(rows).double()
    assert np.allclose(d.logp, torch.topk(ref, 8).values.numpy(), atol=1e-5)
    assert np.allclose(d.entropy_low, -(ref.exp() * ref).sum(-1).numpy(), atol=1e-5)


class _Logprob(SimpleNamespace):
    pass


def test_vllm_path_reads_prompt_logprobs_by_rank():
    """vLLM returns, per prompt position, the top-K tokens by rank plus the actual token (rank may exceed K)."""
    seqs = [TeacherForced("p0", "base", 0, (1, 2), (5, 6))]
    entry = {7: _Logprob(logprob=np.log(0.6), rank=1), 5: _Logprob(logprob=np.log(0.3), rank=2),
             9: _Logprob(logprob=np.log(0.01), rank=40)}
    out = SimpleNamespace(prompt_logprobs=[None, {2: _Logprob(logprob=-1.0, rank=1)}, entry,
                                           {6: _Logprob(logprob=np.log(0.9), rank=1),
                                            8: _Logprob(logprob=np.log(0.05), rank=2)}])
    llm = SimpleNamespace(generate=lambda prompts, params, use_tqdm: [out],
                          llm_engine=SimpleNamespace(model_config=SimpleNamespace(get_vocab_size=lambda: 100)))
    d = vllm_distributions(SimpleNamespace(llm=llm), seqs, 2)
    assert d.ids.tolist() == [[7, 5], [6, 8]] and not d.exact
    assert np.exp(d.logp) == pytest.approx(np.array([[0.6, 0.3], [0.9, 0.05]]))
    assert np.all(d.entropy_low <= d.entropy_high)
