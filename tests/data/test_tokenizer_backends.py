import shutil

import pytest

from megatron_ssd.data.tokenizer import load_tokenizer, tokenizer_fingerprint
from megatron_ssd.errors import ConfigError, DataError

MESSAGES = [{"role": "user", "content": "def add(x, y):"}]


def test_hf_backend(hf_tokenizer_dir, hf_tok):
    assert hf_tok.backend == "hf"
    text = "def f1(x, y):\n    return x + 1 * y\n"
    ids = hf_tok.encode(text)
    assert ids and hf_tok.decode(ids) == text
    assert hf_tok.decode(hf_tok.encode("<|im_start|>")) == "<|im_start|>"
    assert hf_tok.vocab_size == 400
    assert hf_tok.eos_id == hf_tok.encode("<|im_end|>")[0]
    assert hf_tok.pad_id == hf_tok.encode("<|endoftext|>")[0] != hf_tok.eos_id
    prompt = hf_tok.apply_chat_template(MESSAGES)
    assert prompt == "<|im_start|>user\ndef add(x, y):<|im_end|>\n<|im_start|>assistant\n"
    assert not hf_tok.apply_chat_template(MESSAGES, add_generation_prompt=False).endswith("assistant\n")
    assert hf_tok.fingerprint() == tokenizer_fingerprint(hf_tokenizer_dir)


def test_hf_without_template_is_a_clear_error(hf_tokenizer_dir, tmp_path):
    import json

    folder = tmp_path / "tok"
    shutil.copytree(hf_tokenizer_dir, folder)
    cfg = json.loads((folder / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="no chat template"):
        load_tokenizer(folder).apply_chat_template(MESSAGES)


def test_sentencepiece_backend(sp_model_file, kit):
    tok = load_tokenizer(sp_model_file)
    assert tok.backend == "sentencepiece"
    text = "def f1(x, y): return x"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.encode(text, add_special_tokens=True) == [tok.bos_id] + ids
    assert (tok.bos_id, tok.eos_id, tok.pad_id, tok.vocab_size) == (1, 2, 3, 120)
    assert tok.decode([tok.bos_id, *ids, tok.eos_id], skip_special_tokens=True) == text
    with pytest.raises(ConfigError, match="sentencepiece model carries no chat template"):
        tok.apply_chat_template(MESSAGES)
    templated = load_tokenizer(sp_model_file, chat_template="{{ bos_token }}" + kit.CHAT_TEMPLATE)
    assert templated.apply_chat_template(MESSAGES).startswith("<s><|im_start|>user\ndef add")
    # the folder form finds the single .model file
    assert load_tokenizer(sp_model_file.parent).encode(text) == ids
    assert templated.fingerprint() != tok.fingerprint() == tokenizer_fingerprint(sp_model_file)


def test_fingerprint_tracks_tokenisation_and_template_only(hf_tokenizer_dir, tmp_path):
    folder = tmp_path / "tok"
    shutil.copytree(hf_tokenizer_dir, folder)
    base = tokenizer_fingerprint(folder)
    assert base == tokenizer_fingerprint(hf_tokenizer_dir)  # content, not location
    (folder / "model.safetensors").write_bytes(b"weights change nothing")
    (folder / "config.json").write_text("{}")
    assert tokenizer_fingerprint(folder) == base
    (folder / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    assert tokenizer_fingerprint(folder) != base
    (folder / "chat_template.jinja").unlink()
    cfg = (folder / "tokenizer_config.json").read_text()
    (folder / "tokenizer_config.json").write_text(cfg.replace("assistant", "model"))
    assert tokenizer_fingerprint(folder) != base


def test_missing_tokenizer_is_a_data_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(DataError, match="no tokenizer files"):
        tokenizer_fingerprint(tmp_path)
    with pytest.raises(DataError, match="exactly one sentencepiece"):
        load_tokenizer(tmp_path)
    with pytest.raises(DataError, match="no such tokenizer"):
        tokenizer_fingerprint(tmp_path / "absent")
