"""The fork-the-worker plugin acts only in a CPU engine-core process and only when enabled; the real engine's
worker being forked, and sampling the same tokens as a spawned one, is tested in test_sample_vllm.py."""
import multiprocessing
import os
from importlib.metadata import entry_points

import pytest

from megatron_ssd.generation import vllm_cpu_worker_start as plugin

pytest.importorskip("vllm.platforms")


@pytest.fixture
def process_name():
    me = multiprocessing.current_process()
    original = me.name

    def set_name(name: str) -> None:
        me.name = name

    yield set_name
    me.name = original


def test_registered_as_a_vllm_plugin():
    names = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert names.get("megatron_ssd_cpu_fork_worker") == "megatron_ssd.generation.vllm_cpu_worker_start:register"


@pytest.mark.parametrize("name", ["EngineCore", "EngineCore_DP0"])
def test_an_engine_core_forks_its_worker(monkeypatch, process_name, name):
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    process_name(name)
    plugin.register()
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "fork"


@pytest.mark.parametrize("name, switch", [("MainProcess", "1"), ("VllmWorker-0", "1"), ("EngineCore", "0")])
def test_other_processes_and_the_off_switch_keep_spawn(monkeypatch, process_name, name, switch):
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    monkeypatch.setenv(plugin.ENV_SWITCH, switch)
    process_name(name)
    plugin.register()
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"


def test_gpu_platforms_are_left_to_vllm(monkeypatch, process_name):
    from vllm import platforms

    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    monkeypatch.setattr(platforms.current_platform, "is_cpu", lambda: False)
    process_name("EngineCore")
    plugin.register()
    assert os.environ["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
