"""Reasoning models (Qwen3-*-Thinking-2507) in training: what a trained document holds, and what a chat template of
that kind would do to it if samples were re-rendered as conversations.

The template below is written for this test in the shape of the Qwen3-2507 thinking templates: the generation
prompt opens ``<think>``, and an assistant turn's reasoning (the text before ``</think>``) is rendered only for turns
after the last user message, with its surrounding newlines normalised. It is not copied from a model repository.
"""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from megatron_ssd.data.pack import pack_folder
from megatron_ssd.data.packed import PackedDataset
from megatron_ssd.data.tokenizer import load_tokenizer
from megatron_ssd.evaluation.extract import REASONING_UNTERMINATED, extract_program
from megatron_ssd.problems import Problem

THINKING_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) %}"
    "{%- for m in messages %}{%- if m['role'] == 'user' %}{%- set ns.last_user = loop.index0 %}{%- endif %}"
    "{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}"
    "{%- set content = m['content'] %}{%- set reasoning = '' %}"
    "{%- if '</think>' in content %}"
    "{%- set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{%- set content = content.split('</think>')[-1].lstrip('\\n') %}"
    "{%- endif %}"
    "{%- if loop.index0 > ns.last_user %}"
    "{{- '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content }}"
    "{%- else %}{{- '<|im_start|>assistant\\n' + content }}{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"
)
USER = [{"role": "user", "content": "Read a and b and print their sum."}]
# What a Qwen3-Thinking-2507 generation looks like: the reasoning, the closing tag, the answer; no opening tag (the
# template put it in the prompt). The reasoning starts with a blank line, as sampled text may.
COMPLETION = "\nWe read two integers and add them.\n\n</think>\n\n```python\nprint(sum(map(int, input().split())))\n```"


@pytest.fixture
def thinking_tok(hf_tokenizer_dir):
    return load_tokenizer(hf_tokenizer_dir, chat_template=THINKING_TEMPLATE)


def test_ssd_document_trains_on_the_whole_generation_reasoning_included(tmp_path, thinking_tok, kit):
    tok = thinking_tok
    prompt = tok.apply_chat_template(USER, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n<think>\n")  # the opener is prompt, never a target
    ids = tok.encode(COMPLETION) + [tok.eos_id]
    row = {"prompt_id": "r1", "sample_idx": 0, "prompt_text": prompt, "prompt_token_ids": tok.encode(prompt),
           "text": COMPLETION, "token_ids": ids, "finish_reason": "stop", "num_tokens": len(ids), "seed": 1,
           "temperature": 1.1, "top_p": 0.95, "min_p": 0.0, "top_k": 20}
    kit.write_shards(tmp_path / "samples", [row], num_shards=1)
    pack_folder(tmp_path / "samples", tmp_path / "packed", tok, 512, "truncate")
    item = PackedDataset(tmp_path / "packed", tok.fingerprint(), 512)[0]
    trained = item["labels"][item["loss_mask"] == 1]
    np.testing.assert_array_equal(trained, ids)  # exactly the sampled ids: reasoning, </think>, answer, EOS
    assert tok.decode(trained[:-1]) == COMPLETION
    doc = pq.read_table(tmp_path / "packed" / "documents.parquet").to_pylist()[0]
    assert doc["loss_tokens"] == len(ids) and not doc["truncated"]


def test_the_template_keeps_only_the_final_turns_reasoning_and_rewrites_its_whitespace(thinking_tok):
    tok = thinking_tok
    one = tok.apply_chat_template(USER + [{"role": "assistant", "content": COMPLETION}], add_generation_prompt=False)
    assert "We read two integers and add them." in one  # the trained (final) turn keeps its reasoning ...
    # ... but not byte for byte: the blank lines around it are normalised, so a re-rendered sample is not what was
    # sampled. The pack stage therefore trains on the engine's ids (prompt_token_ids + token_ids), never on text
    # re-rendered through the template.
    sampled = tok.apply_chat_template(USER, add_generation_prompt=True) + COMPLETION + "<|im_end|>\n"
    assert one != sampled
    two = tok.apply_chat_template(
        USER + [{"role": "assistant", "content": "first idea</think>\n\nA1"}] + USER
        + [{"role": "assistant", "content": "second idea</think>\n\nA2"}], add_generation_prompt=False)
    assert "first idea" not in two and "second idea" in two  # reasoning before the last user turn is dropped


def test_cut_inside_the_reasoning_is_no_program_for_the_thinking_model():
    problem = Problem(problem_id="q", source="livecodebench", question="Add.", style="stdin")
    cut = COMPLETION.split("</think>")[0] + "```python\nprint(0)\n```\nwait, "  # finish_reason "length"
    assert extract_program(problem, cut, reasoning=True).method == REASONING_UNTERMINATED
    assert extract_program(problem, COMPLETION, reasoning=True).code == "print(sum(map(int, input().split())))"
