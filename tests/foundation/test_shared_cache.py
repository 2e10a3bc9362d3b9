"""The protocol behind the shared base evaluation and the shared base conversion: key, lock, publish, place."""
from __future__ import annotations

import os
import pytest
from filelock import Timeout

from megatron_ssd import shared_cache
from megatron_ssd.shared_cache import content_key, locked, placing, publish


def test_content_key_is_order_free_and_short():
    assert content_key({"a": 1, "b": [1, 2]}) == content_key({"b": [1, 2], "a": 1})
    assert content_key({"a": 1}) != content_key({"a": 2}) and len(content_key({})) == 24


def test_a_failed_publish_leaves_no_entry(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "summary.json").write_text("{}")
    publish(src, tmp_path / "cache" / "k1")
    assert (tmp_path / "cache" / "k1" / "summary.json").read_text() == "{}"
    with pytest.raises(FileNotFoundError):
        publish(tmp_path / "missing", tmp_path / "cache" / "k2")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["k1"]  # no temp folder left behind


def test_placing_links_or_copies_and_a_failed_body_places_nothing(tmp_path):
    entry = tmp_path / "cache" / "k"
    (entry / "sub").mkdir(parents=True)
    (entry / "sub" / "w.bin").write_bytes(b"weights")
    with placing(entry, tmp_path / "run1" / "base", link=True):
        pass
    with placing(entry, tmp_path / "run2" / "base", link=False):
        pass
    linked, copied = tmp_path / "run1" / "base" / "sub" / "w.bin", tmp_path / "run2" / "base" / "sub" / "w.bin"
    assert os.path.samefile(linked, entry / "sub" / "w.bin") and not os.path.samefile(copied, entry / "sub" / "w.bin")
    with pytest.raises(RuntimeError):
        with placing(entry, tmp_path / "run3" / "base", link=True):
            raise RuntimeError("killed mid-placement")
    assert not (tmp_path / "run3" / "base").exists() and list((tmp_path / "run3").iterdir()) == []


def test_locks_are_taken_in_key_order_so_opposite_requests_do_not_deadlock(tmp_path, monkeypatch):
    taken = []

    class Recording(shared_cache.FileLock):
        def __enter__(self):
            taken.append(os.path.basename(self.lock_file))
            return super().__enter__()

    monkeypatch.setattr(shared_cache, "FileLock", Recording)
    with locked(tmp_path, ["b", "a", "b"]):
        with pytest.raises(Timeout):  # held: another taker of "a" waits
            shared_cache.FileLock(str(tmp_path / "a.lock"), timeout=0.1).acquire()
    assert taken == ["a.lock", "b.lock"]
    shared_cache.FileLock(str(tmp_path / "a.lock"), timeout=0.1).acquire()  # released on exit
