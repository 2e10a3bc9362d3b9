"""Fixtures for the data tests: tiny tokenizers trained on the spot (never downloaded) and sample shards."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _corpus(n: int = 400) -> list[str]:
    rng = np.random.default_rng(0)
    words = ["def", "return", "for", "in", "range", "if", "else", "print", "x", "y", "total", "items", "value"]
    lines = []
    for i in range(n):
        body = " ".join(rng.choice(words, size=8))
        lines.append(f"def f{i}(x, y):\n    {body}\n    return x + {i} * y\n")
    return lines


@pytest.fixture(scope="session")
def hf_tokenizer_dir(tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json + tokenizer_config.json with a ChatML-style template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    folder = tmp_path_factory.mktemp("hf_tok")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "chat_template": CHAT_TEMPLATE,
    }))
    (folder / "config.json").write_text(json.dumps({"vocab_size": 512}))  # a model's padded embedding
    return folder


@pytest.fixture(scope="session")
def sp_model_file(tmp_path_factory) -> Path:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=120, model_type="bpe",
        bos_id=1, eos_id=2, unk_id=0, pad_id=3, minloglevel=2,
    )
    path = tmp_path_factory.mktemp("sp_tok") / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="session")
def hf_tok(hf_tokenizer_dir):
    from megatron_ssd.data.tokenizer import load_tokenizer

    return load_tokenizer(hf_tokenizer_dir)


def make_rows(tok, n: int, seed: int = 0, completion_words: tuple[int, int] = (3, 40)) -> list[dict]:
    """Sample rows as the sample stage writes them: a chat-templated prompt and an EOS-terminated completion."""
    rng = np.random.default_rng(seed)
    corpus = _corpus()
    rows = []
    for i in range(n):
        prompt = tok.apply_chat_template([{"role": "user", "content": f"Write f{i}. " + corpus[i % len(corpus)]}])
        words = int(rng.integers(*completion_words))
        text = " ".join(corpus[(i + j) % len(corpus)] for j in range(words // 8 + 1))[: words * 6]
        ids = tok.encode(text) + [tok.eos_id]
        p_ids = tok.encode(prompt)
        rows.append({
            "prompt_id": f"p{i // 2}", "sample_idx": i % 2, "prompt_text": prompt, "prompt_token_ids": p_ids,
            "text": text, "token_ids": ids, "finish_reason": "stop", "num_tokens": len(ids), "seed": 1000 + i,
            "temperature": 1.6, "top_p": 0.8, "min_p": 0.0, "top_k": 20,
        })
    return rows


SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("sample_idx", pa.int32()), ("prompt_text", pa.string()),
    ("prompt_token_ids", pa.list_(pa.int32())), ("text", pa.string()), ("token_ids", pa.list_(pa.int32())),
    ("finish_reason", pa.string()), ("num_tokens", pa.int32()), ("seed", pa.int64()),
    ("temperature", pa.float64()), ("top_p", pa.float64()), ("min_p", pa.float64()), ("top_k", pa.int32()),
])


def write_shards(folder: Path, rows: list[dict], num_shards: int = 2, schema: pa.Schema = SCHEMA) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(num_shards):
        part = rows[s::num_shards]
        path = folder / f"shard_{s:05d}.parquet"
        pq.write_table(pa.Table.from_pylist(part, schema=schema), path)
        paths.append(path)
    return paths


@pytest.fixture
def kit():
    """The helpers above, for tests (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(make_rows=make_rows, write_shards=write_shards, SCHEMA=SCHEMA, CHAT_TEMPLATE=CHAT_TEMPLATE)
