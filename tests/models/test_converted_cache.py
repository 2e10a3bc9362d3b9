"""The shared base-model conversion: converted once per key, linked into each run, never written through."""
import json
import os
import threading
from pathlib import Path

import pytest

from megatron_ssd.models import checkpoint as ckpt
from megatron_ssd.models.convert import SUMMARY
from megatron_ssd.models.converted_cache import cached_conversion, conversion_key

SETTINGS = {"tp": 1, "ep": 1, "dtype": "float32"}


@pytest.fixture
def source(tmp_path) -> Path:
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (src / "model.safetensors").write_bytes(b"weights-v1")
    return src


class FakeConverter:
    """Writes what hf_to_megatron writes (an iter dir, `latest`, the summary); counts its calls."""

    def __init__(self, fail: bool = False):
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, out: Path) -> dict:
        with self.lock:
            self.calls += 1
        out.mkdir(parents=True)
        (out / "iter_0000000").mkdir()
        (out / "iter_0000000" / "shard.distcp").write_bytes(b"x" * 64)
        if self.fail:
            raise RuntimeError("killed mid-conversion")
        ckpt.write_latest(out, 0)
        summary = {"checkpoint": str(out / "iter_0000000"), "dtype": "float32"}
        (out / SUMMARY).write_text(json.dumps(summary))
        return summary


def test_second_run_links_the_first_conversion(tmp_path, source):
    cache, convert = tmp_path / "cache", FakeConverter()
    first = cached_conversion(source, tmp_path / "run1" / "base", cache_dir=cache, settings=SETTINGS, convert=convert)
    second = cached_conversion(source, tmp_path / "run2" / "base", cache_dir=cache, settings=SETTINGS, convert=convert)
    assert convert.calls == 1
    assert (first["cache_hit"], second["cache_hit"]) == (False, True)
    assert second["checkpoint"] == str(tmp_path / "run2" / "base" / "iter_0000000")
    shard = Path(second["checkpoint"]) / "shard.distcp"
    entry = Path(second["cache_entry"])
    assert os.stat(shard).st_ino == os.stat(entry / "iter_0000000" / "shard.distcp").st_ino  # a link, not a copy
    # each run's summary names its own paths; the cache's summary is not written through the link
    assert json.loads((tmp_path / "run2" / "base" / SUMMARY).read_text())["checkpoint"] == second["checkpoint"]
    assert json.loads((entry / SUMMARY).read_text())["checkpoint"].startswith(str(entry.parent))
    assert ckpt.resolve_checkpoint(tmp_path / "run2" / "base").name == "iter_0000000"


def test_the_key_follows_the_source_and_the_settings(source):
    key = conversion_key(source, SETTINGS)
    assert key == conversion_key(source, dict(SETTINGS))
    assert key != conversion_key(source, {**SETTINGS, "tp": 2})
    assert key != conversion_key(source, {**SETTINGS, "dtype": "bfloat16"})
    (source / "model.safetensors").write_bytes(b"weights-v2-longer")
    assert key != conversion_key(source, SETTINGS)


def test_concurrent_runs_convert_once(tmp_path, source):
    cache, convert = tmp_path / "cache", FakeConverter()
    results, errors = [], []

    def point(i: int) -> None:
        try:
            results.append(cached_conversion(source, tmp_path / f"run{i}" / "base", cache_dir=cache,
                                             settings=SETTINGS, convert=convert))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=point, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and convert.calls == 1
    assert sorted(r["cache_hit"] for r in results) == [False, True, True, True]


def test_an_interrupted_conversion_publishes_nothing(tmp_path, source):
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError):
        cached_conversion(source, tmp_path / "run1" / "base", cache_dir=cache, settings=SETTINGS,
                          convert=FakeConverter(fail=True))
    assert not (tmp_path / "run1" / "base").exists()
    assert not [p for p in cache.iterdir() if not p.name.endswith(".lock")]
    again = FakeConverter()
    summary = cached_conversion(source, tmp_path / "run1" / "base", cache_dir=cache, settings=SETTINGS, convert=again)
    assert again.calls == 1 and summary["cache_hit"] is False


def test_the_cache_folder_is_chosen_by_the_environment(monkeypatch, tmp_path):
    from megatron_ssd.config.model import ModelConfig
    from megatron_ssd.models.base_model import CONVERSION_CACHE_ENV, conversion_cache_dir

    model = ModelConfig(cache_dir=str(tmp_path / "cache"))
    monkeypatch.delenv(CONVERSION_CACHE_ENV, raising=False)
    assert conversion_cache_dir(model) == tmp_path / "cache" / "megatron"
    monkeypatch.setenv(CONVERSION_CACHE_ENV, str(tmp_path / "shared"))
    assert conversion_cache_dir(model) == tmp_path / "shared"
    monkeypatch.setenv(CONVERSION_CACHE_ENV, "off")
    assert conversion_cache_dir(model) is None
