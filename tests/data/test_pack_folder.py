import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_ssd.data.pack import pack_folder
from megatron_ssd.data.packed import PackedDataset, collate_packed
from megatron_ssd.errors import DataError

SEQ = 256


@pytest.fixture
def packed(tmp_path, hf_tok, kit):
    rows = kit.make_rows(hf_tok, 40)
    kit.write_shards(tmp_path / "samples", rows, num_shards=3)
    meta = pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")
    return rows, meta, PackedDataset(tmp_path / "packed", hf_tok.fingerprint(), SEQ)


def rows_by_key(rows):
    return {(r["prompt_id"], r["sample_idx"]): r for r in rows}


def test_documents_are_engine_ids_with_shifted_labels_and_completion_only_loss(packed, hf_tok):
    rows, meta, ds = packed
    docs = pq.read_table(ds.path / "documents.parquet").to_pylist()
    assert meta["counts"]["truncated"] == 0 and len(docs) == len(rows) == meta["num_docs"]
    by_key = rows_by_key(rows)
    covered = {b: np.zeros(SEQ, bool) for b in range(len(ds))}
    for d in docs:
        r = by_key[(d["prompt_id"], d["sample_idx"])]
        ids = np.array(r["prompt_token_ids"] + r["token_ids"])
        P, o, n = len(r["prompt_token_ids"]), d["offset"], d["length"]
        assert n == len(ids) - 1
        item = ds[d["bin"]]
        np.testing.assert_array_equal(item["tokens"][o:o + n], ids[:-1])
        np.testing.assert_array_equal(item["labels"][o:o + n], ids[1:])
        # loss exactly on targets that are completion ids: never on a prompt target, always on the final EOS
        np.testing.assert_array_equal(item["loss_mask"][o:o + n], (np.arange(1, n + 1) >= P).astype(np.float32))
        assert item["labels"][o + n - 1] == hf_tok.eos_id and item["loss_mask"][o + n - 1] == 1
        np.testing.assert_array_equal(item["position_ids"][o:o + n], np.arange(n))
        assert d["loss_tokens"] == len(r["token_ids"])
        covered[d["bin"]][o:o + n] = True
    total_loss = 0.0
    for b in range(len(ds)):
        item = ds[b]
        pad = ~covered[b]
        assert (item["loss_mask"][pad] == 0).all()
        assert (item["tokens"][pad] == hf_tok.pad_id).all() and (item["labels"][pad] == hf_tok.pad_id).all()
        total_loss += item["loss_mask"].sum()
    assert total_loss == meta["loss_tokens"] == sum(len(r["token_ids"]) for r in rows)


def test_cu_seqlens_and_position_ids_agree(packed):
    rows, meta, ds = packed
    docs = pq.read_table(ds.path / "documents.parquet").to_pylist()
    real = 0
    for b in range(len(ds)):
        item = ds[b]
        cu = item["cu_seqlens"]
        assert cu.dtype == np.int32 and cu[0] == 0 and cu[-1] == SEQ and (np.diff(cu) > 0).all()
        mine = sorted((d["offset"], d["length"]) for d in docs if d["bin"] == b)
        starts = [o for o, _ in mine]
        used = sum(n for _, n in mine)
        real += used
        expected = starts + [used] + ([SEQ] if used < SEQ else [])
        np.testing.assert_array_equal(cu, expected)  # documents, then the padding tail as its own segment
        pos = item["position_ids"]
        assert (pos[cu[:-1]] == 0).all()
        assert ((np.diff(pos) == 1) | np.isin(np.arange(1, SEQ), cu[1:-1])).all()
        assert item["tokens"].dtype == np.int64 and item["loss_mask"].dtype == np.float32
    assert real == meta["real_tokens"]
    assert meta["packing_efficiency"] == pytest.approx(real / (len(ds) * SEQ))
    assert meta["total_tokens"] == len(ds) * SEQ
    assert meta["docs_per_bin"]["max"] >= meta["docs_per_bin"]["mean"] >= meta["docs_per_bin"]["min"] >= 1


def test_packing_is_deterministic(tmp_path, hf_tok, kit):
    kit.write_shards(tmp_path / "samples", kit.make_rows(hf_tok, 30, seed=3), num_shards=2)
    for out in ("a", "b"):
        pack_folder(tmp_path / "samples", tmp_path / out, hf_tok, SEQ, "truncate")
    for name in ("tokens", "labels", "loss_mask", "cu_seqlens", "cu_offsets"):
        assert (tmp_path / "a" / f"{name}.npy").read_bytes() == (tmp_path / "b" / f"{name}.npy").read_bytes()


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_overlength_policies(tmp_path, hf_tok, kit, policy):
    rows = kit.make_rows(hf_tok, 12, completion_words=(3, 10))
    P = len(rows[1]["prompt_token_ids"])
    rows[1]["token_ids"] = rows[1]["token_ids"] * 40  # far over 96 positions: truncated / dropped
    rows[2]["prompt_token_ids"] = rows[2]["prompt_token_ids"] * 8  # the prompt alone fills the window
    rows[3]["token_ids"] = []  # nothing to learn
    for r in rows:
        r["num_tokens"] = len(r["token_ids"])
    kit.write_shards(tmp_path / "samples", rows, num_shards=1)
    seq = 96
    assert P < seq < len(rows[2]["prompt_token_ids"])
    assert all(len(r["prompt_token_ids"]) + len(r["token_ids"]) <= seq for i, r in enumerate(rows) if i not in (1, 2))
    meta = pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, seq, policy)
    c = meta["counts"]
    assert c["overlength"] == 2 and c["dropped_empty_completion"] == 1
    docs = pq.read_table(tmp_path / "packed" / "documents.parquet").to_pylist()
    ids = {(d["prompt_id"], d["sample_idx"]): d for d in docs}
    key = lambda i: (rows[i]["prompt_id"], rows[i]["sample_idx"])  # noqa: E731
    assert key(3) not in ids and key(2) not in ids
    if policy == "truncate":
        assert (c["truncated"], c["dropped_overlength"], c["dropped_prompt_fills_window"]) == (1, 0, 1)
        assert meta["num_docs"] == 10
        d = ids[key(1)]
        assert d["truncated"] and d["length"] == seq and d["loss_tokens"] == seq - P + 1
        full = len(rows[1]["prompt_token_ids"]) + len(rows[1]["token_ids"]) - 1
        assert c["truncated_positions_removed"] == full - seq
        ds = PackedDataset(tmp_path / "packed")
        item = ds[d["bin"]]
        expect = np.array(rows[1]["prompt_token_ids"] + rows[1]["token_ids"])[: seq + 1]
        np.testing.assert_array_equal(item["tokens"][d["offset"]:d["offset"] + seq], expect[:-1])
        np.testing.assert_array_equal(item["labels"][d["offset"]:d["offset"] + seq], expect[1:])
    else:
        assert (c["truncated"], c["dropped_overlength"], c["dropped_prompt_fills_window"]) == (0, 2, 0)
        assert meta["num_docs"] == 9 and key(1) not in ids
    assert not any(d["truncated"] for d in docs if d["prompt_id"] != rows[1]["prompt_id"] or d["sample_idx"] != 1)
    assert meta["overlength_policy"] == policy


def test_dataset_refuses_other_tokenizer_or_seq_length(packed):
    _, _, ds = packed
    with pytest.raises(DataError, match=r"meta.json.*tokenizer fingerprint.*ssd stage=pack"):
        PackedDataset(ds.path, expected_tokenizer_fingerprint="0" * 64)
    with pytest.raises(DataError, match=r"seq_length=256, but train.seq_length=512.*ssd stage=pack"):
        PackedDataset(ds.path, expected_seq_length=512)
    with pytest.raises(DataError, match="meta.json missing"):
        PackedDataset(ds.path.parent / "nowhere")
    meta = json.loads((ds.path / "meta.json").read_text())
    (ds.path / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(DataError, match="version 99, this build reads"):
        PackedDataset(ds.path)
    (ds.path / "meta.json").write_text(json.dumps(meta))
    np.save(ds.path / "labels.npy", np.zeros((1, 3), dtype=np.int32))
    with pytest.raises(DataError, match=r"labels.npy.*inconsistent"):
        PackedDataset(ds.path)


def test_dataset_pickles_by_path(packed):
    import pickle

    _, _, ds = packed
    blob = pickle.dumps(ds)
    assert len(blob) < 2000  # not the arrays
    again = pickle.loads(blob)
    assert len(again) == len(ds) and again._expected == ds._expected
    for k, v in ds[-1].items():
        np.testing.assert_array_equal(again[-1][k], v)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_collate_micro_batch(packed):
    _, _, ds = packed
    assert len(ds) >= 2
    a, b = ds[0], ds[1]
    batch = collate_packed([a, b])
    import torch

    assert batch["tokens"].shape == (2, SEQ) and batch["tokens"].dtype == torch.int64
    assert batch["loss_mask"].dtype == torch.float32 and batch["cu_seqlens"].dtype == torch.int32
    expect = np.concatenate([a["cu_seqlens"], b["cu_seqlens"][1:] + SEQ])
    np.testing.assert_array_equal(batch["cu_seqlens"].numpy(), expect)
    assert batch["cu_seqlens"][-1] == 2 * SEQ
    assert int(batch["max_seqlen"]) == max(np.diff(a["cu_seqlens"]).max(), np.diff(b["cu_seqlens"]).max())
    single = collate_packed([a])
    np.testing.assert_array_equal(single["cu_seqlens"].numpy(), a["cu_seqlens"])
    np.testing.assert_array_equal(single["position_ids"][0].numpy(), a["position_ids"])


def test_retokenisation_mismatch_is_counted(tmp_path, hf_tok, kit, caplog):
    rows = kit.make_rows(hf_tok, 6)
    rows[0]["prompt_token_ids"] = rows[0]["prompt_token_ids"][:-1] + [hf_tok.pad_id]
    kit.write_shards(tmp_path / "samples", rows, num_shards=1)
    meta = pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")
    assert meta["prompt_retokenisation"]["checked"] == 6
    assert meta["prompt_retokenisation"]["mismatches"] == 1
    assert "shard_00000.parquet row 0" in meta["prompt_retokenisation"]["examples"][0]
    assert "differ from the engine's prompt_token_ids" in caplog.text


# ------------------------------------------------------------------------------------------- bad input
def _shard(tmp_path, rows, kit, schema=None):
    kit.write_shards(tmp_path / "samples", rows, num_shards=1, **({"schema": schema} if schema else {}))
    return tmp_path / "samples" / "shard_00000.parquet"


def test_missing_column_names_file_and_column(tmp_path, hf_tok, kit):
    rows = kit.make_rows(hf_tok, 3)
    schema = kit.SCHEMA.remove(kit.SCHEMA.get_field_index("token_ids"))
    path = _shard(tmp_path, [{k: v for k, v in r.items() if k != "token_ids"} for r in rows], kit, schema)
    with pytest.raises(DataError, match=rf"{path}: missing column 'token_ids'"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")


def test_wrong_type_null_and_out_of_vocab_rows(tmp_path, hf_tok, kit):
    rows = kit.make_rows(hf_tok, 4)
    schema = kit.SCHEMA.set(kit.SCHEMA.get_field_index("token_ids"), pa.field("token_ids", pa.string()))
    path = _shard(tmp_path, [{**r, "token_ids": "1 2"} for r in rows], kit, schema)
    with pytest.raises(DataError, match=rf"{path}: column 'token_ids' has type string, expected list<int32>"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")

    rows[2]["token_ids"] = None
    _shard(tmp_path, rows, kit)
    with pytest.raises(DataError, match="column 'token_ids' is null at row 2"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")

    rows = kit.make_rows(hf_tok, 4)
    rows[3]["token_ids"] = rows[3]["token_ids"] + [hf_tok.vocab_size + 5]
    rows[3]["num_tokens"] += 1
    _shard(tmp_path, rows, kit)
    with pytest.raises(DataError, match=r"column 'token_ids' row 3: token id 405 is outside"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")
    # ids inside the model's padded embedding are accepted when the caller says so
    meta = pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate", vocab_limit=512)
    assert meta["num_docs"] == 4

    rows = kit.make_rows(hf_tok, 4)
    rows[1]["num_tokens"] = 999
    _shard(tmp_path, rows, kit)
    with pytest.raises(DataError, match="row 1: num_tokens=999"):
        pack_folder(tmp_path / "samples", tmp_path / "packed2", hf_tok, SEQ, "truncate")


def test_no_shards_and_unreadable_shard(tmp_path, hf_tok):
    (tmp_path / "samples").mkdir()
    with pytest.raises(DataError, match=r"no shard_\*.parquet files here.*ssd stage=sample"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")
    (tmp_path / "samples" / "shard_00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="shard_00000.parquet: not a readable parquet file"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")


def test_samples_from_another_tokenizer_are_refused(tmp_path, hf_tok, kit):
    kit.write_shards(tmp_path / "samples", kit.make_rows(hf_tok, 4), num_shards=1)
    (tmp_path / "samples" / "meta.json").write_text(json.dumps({"tokenizer_fingerprint": "f" * 64}))
    with pytest.raises(DataError, match=r"samples/meta.json: the samples were generated with tokenizer fingerprint"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")
    (tmp_path / "samples" / "meta.json").write_text(json.dumps({"tokenizer_fingerprint": hf_tok.fingerprint()}))
    assert pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")["num_docs"] == 4


def test_incomplete_sample_folder_is_refused(tmp_path, hf_tok, kit):
    kit.write_shards(tmp_path / "samples", kit.make_rows(hf_tok, 6), num_shards=2)
    (tmp_path / "samples" / "meta.json").write_text(json.dumps({"num_shards": 3}))
    with pytest.raises(DataError, match="num_shards=3 but only 2 shard files exist"):
        pack_folder(tmp_path / "samples", tmp_path / "packed", hf_tok, SEQ, "truncate")


def test_one_per_row_holds_one_document_per_row_with_the_same_tokens(tmp_path, hf_tok, kit):
    """train.packing=one_per_row (the paper presets: a global batch counts sequences): every row is one document then
    padding, and each document's tokens, labels and loss mask equal those it has when packed into shared bins."""
    rows = kit.make_rows(hf_tok, 24, seed=5)
    kit.write_shards(tmp_path / "samples", rows, num_shards=2)
    bins = pack_folder(tmp_path / "samples", tmp_path / "bins", hf_tok, SEQ, "truncate")
    single = pack_folder(tmp_path / "samples", tmp_path / "single", hf_tok, SEQ, "truncate", packing="one_per_row")
    assert (bins["packing"], single["packing"]) == ("bins", "one_per_row")
    assert single["num_bins"] == single["num_docs"] == bins["num_docs"] > bins["num_bins"]
    assert single["docs_per_bin"]["max"] == single["docs_per_bin"]["min"] == 1
    assert single["real_tokens"] == bins["real_tokens"]
    ds_bins, ds_single = (PackedDataset(tmp_path / d, hf_tok.fingerprint(), SEQ) for d in ("bins", "single"))

    def documents(ds):
        out = {}
        for d in pq.read_table(ds.path / "documents.parquet").to_pylist():
            item, span = ds[d["bin"]], slice(d["offset"], d["offset"] + d["length"])
            out[(d["prompt_id"], d["sample_idx"])] = tuple(np.asarray(item[k])[span].tolist()
                                                           for k in ("tokens", "labels", "loss_mask"))
        return out

    assert documents(ds_single) == documents(ds_bins)
    for b in range(len(ds_single)):
        cu = np.asarray(ds_single[b]["cu_seqlens"])
        assert cu[0] == 0 and cu[-1] == SEQ and len(cu) in (2, 3)  # one document, then the padding tail if any
