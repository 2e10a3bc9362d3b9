"""Anchor-data mixing (`data.mix`): documents like SSD samples, the declared share of positions, bad sources."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_ssd.config.data import DataConfig, MixSource
from megatron_ssd.data.mix import draw, row_messages
from megatron_ssd.data.pack import pack_folder
from megatron_ssd.data.packed import PackedDataset
from megatron_ssd.errors import DataError

SEQ = 256


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_rows(n):
    return [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Say {i}."},
                          {"role": "assistant", "content": f"def f{i}(x):\n    return x + {i}\n"}]} for i in range(n)]


@pytest.fixture
def samples(tmp_path, hf_tok, kit):
    kit.write_shards(tmp_path / "samples", kit.make_rows(hf_tok, 40), num_shards=2)
    return tmp_path / "samples"


def test_mixed_documents_are_chat_templated_with_prompt_masked(tmp_path, samples, hf_tok):
    src = write_jsonl(tmp_path / "anchor.jsonl", chat_rows(30))
    meta = pack_folder(samples, tmp_path / "packed", hf_tok, SEQ, "truncate",
                       mix=[MixSource(path=str(src), fraction=0.1)], mix_seed=3)
    docs = pq.read_table(tmp_path / "packed" / "documents.parquet").to_pylist()
    mixed = [d for d in docs if d["prompt_id"].startswith("mix:anchor.jsonl:")]
    assert mixed and all(d["shard"] == "anchor.jsonl" for d in mixed)
    assert meta["counts"]["mix_documents"] == len(mixed) == meta["mix"]["sources"][0]["documents"]
    ds = PackedDataset(tmp_path / "packed", hf_tok.fingerprint(), SEQ)
    d = mixed[0]
    row = chat_rows(30)[d["row"]]
    prompt = hf_tok.encode(hf_tok.apply_chat_template(row["messages"][:-1], add_generation_prompt=True))
    ids = prompt + hf_tok.encode(row["messages"][-1]["content"]) + [hf_tok.eos_id]
    item = ds[d["bin"]]
    o, n = d["offset"], d["length"]
    assert n == len(ids) - 1
    assert item["tokens"][o:o + n].tolist() == ids[:-1] and item["labels"][o:o + n].tolist() == ids[1:]
    mask = np.asarray(item["loss_mask"][o:o + n])
    assert mask[:len(prompt) - 1].sum() == 0 and mask[len(prompt) - 1:].all()  # completion ids only, EOS included
    assert d["loss_tokens"] == len(ids) - len(prompt)


def test_realised_fraction_is_measured_from_the_packed_documents(tmp_path, samples, hf_tok):
    a = write_jsonl(tmp_path / "a.jsonl", chat_rows(40))
    b = tmp_path / "b.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": f"Add {i}.", "response": f"return x + {i}"} for i in range(40)]), b)
    meta = pack_folder(samples, tmp_path / "packed", hf_tok, SEQ, "truncate",
                       mix=[MixSource(path=str(a), fraction=0.1), MixSource(path=str(b), fraction=0.05, name="pairs")])
    docs = pq.read_table(tmp_path / "packed" / "documents.parquet").to_pylist()
    total = sum(d["length"] for d in docs)
    for name in ("a.jsonl", "pairs"):
        share = sum(d["length"] for d in docs if d["prompt_id"].startswith(f"mix:{name}:")) / total
        src = next(s for s in meta["mix"]["sources"] if s["name"] == name)
        assert src["realised_fraction"] == pytest.approx(share)
        assert abs(share - src["declared_fraction"]) < 0.03  # within about one document of the share
    sources = meta["mix"]["sources"]
    assert meta["mix"]["realised_fraction"] == pytest.approx(sum(s["realised_fraction"] for s in sources))
    assert meta["mix"]["ssd_positions"] + sum(s["positions"] for s in meta["mix"]["sources"]) == meta["real_tokens"]
    without = pack_folder(samples, tmp_path / "plain", hf_tok, SEQ, "truncate")
    assert without["mix"]["realised_fraction"] == 0.0 and without["mix"]["sources"] == []
    assert without["real_tokens"] == meta["mix"]["ssd_positions"]


def test_draw_takes_the_nearest_sum_and_repeats_a_small_source():
    lengths = np.array([10, 10, 10])
    picks, passes = draw(lengths, 54, seed=0)
    assert lengths[picks].sum() == 50 and passes.tolist() == [0, 0, 0, 1, 1]  # 60 would be farther from 54
    picks2, _ = draw(lengths, 54, seed=0)
    assert picks.tolist() == picks2.tolist()
    assert len(draw(lengths, 4, seed=0)[0]) == 0  # even one document overshoots by more than it would add


def test_row_formats_and_why_a_row_is_unusable():
    assert row_messages({"prompt": "p", "response": "r"}) == ([{"role": "user", "content": "p"}], "r")
    assert row_messages({"messages": [{"role": "user", "content": "q"}]}) == "no_final_assistant_turn"
    assert row_messages({"messages": [{"role": "user", "content": "q"},
                                      {"role": "assistant", "content": " "}]}) == "empty_response"
    assert row_messages({"messages": "text"}) == "malformed_messages"
    assert row_messages({"text": "x"}) == "neither_messages_nor_prompt_response"


def test_missing_or_unusable_source_is_one_paragraph_naming_the_file(tmp_path, samples, hf_tok):
    with pytest.raises(DataError, match=r"nope\.jsonl.*does not exist"):
        pack_folder(samples, tmp_path / "p1", hf_tok, SEQ, "truncate",
                    mix=[MixSource(path=str(tmp_path / "nope.jsonl"), fraction=0.1)])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x"}, {"prompt": "", "response": "r"}])
    with pytest.raises(DataError) as err:
        pack_folder(samples, tmp_path / "p2", hf_tok, SEQ, "truncate", mix=[MixSource(path=str(bad), fraction=0.1)])
    msg = str(err.value)
    assert str(bad) in msg and "no usable row" in msg and "bad.jsonl:1" in msg and "\n" not in msg
    assert not (tmp_path / "p2").exists()


def test_mix_config_rules(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", chat_rows(2))
    ok = DataConfig(mix=[MixSource(path=str(src), fraction=0.1)])
    assert ok.mix_problems() == []
    over = DataConfig(mix=[MixSource(path=str(src), fraction=0.6), MixSource(path=str(src), fraction=0.5, name="b")])
    assert any("sum to 1.1" in p for p in over.mix_problems())
    missing = DataConfig(mix=[MixSource(path=str(tmp_path / "gone.jsonl"), fraction=0.0)])
    problems = missing.mix_problems()
    assert any("data.mix[0].path=" in p and "gone.jsonl" in p for p in problems)
    assert any("data.mix[0].fraction=0.0" in p for p in problems)
    dup = DataConfig(mix=[MixSource(path=str(src), fraction=0.1), MixSource(path=str(src), fraction=0.1)])
    assert any("repeat" in p for p in dup.mix_problems())
