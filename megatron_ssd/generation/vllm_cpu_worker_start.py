"""vLLM plugin (CPU only): the engine-core process forks its model worker instead of spawning it.

vLLM's CPU platform sets `VLLM_WORKER_MULTIPROC_METHOD=spawn` for every process it starts. For the first one (the
engine core, started by the launcher) that is right: the launcher may have run OpenMP code, and GNU OpenMP is not
fork-safe. But the engine core starts its worker before it has run any tensor code, and a spawned worker imports
vLLM and torch from scratch: 7.8 s on 2 cores, paid by every engine start. Forked from the engine core, the worker
inherits those modules: an engine start of SmolLM2-135M fell from 27.6 to 15.2 s (median of 2, this module on vs
off; identical prompt log-probabilities and tokens), and `ssd run` starts two engines.

Why the fork is safe at that point: vLLM loads general plugins at the top of `EngineCore.__init__`, before it
builds the executor, and the engine core's own I/O threads start only after the executor exists; the fork copies
a process that has imported libraries but run no OpenMP region and holds no Python thread but the main one.
The switch is scoped to the engine-core process (its worker's own children, if any, inherit "fork"); the launcher
keeps spawning. vLLM loads this in each of its processes through the `vllm.general_plugins` entry point
`megatron_ssd_cpu_fork_worker` (setup.py); `SSD_VLLM_CPU_FORK_WORKER=0` turns it off. GPU platforms are untouched:
vLLM decides there. No maintained library offers this.
"""
from __future__ import annotations

import logging
import multiprocessing
import os

ENV_SWITCH = "SSD_VLLM_CPU_FORK_WORKER"
ENGINE_CORE_PROCESS = "EngineCore"  # vLLM names the engine-core process "EngineCore" or "EngineCore_DP<i>"
_log = logging.getLogger(__name__)


def register() -> None:
    """vLLM general-plugin entry point: in a CPU engine-core process, have the worker forked."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return
    if not multiprocessing.current_process().name.startswith(ENGINE_CORE_PROCESS):
        return
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return
    if not current_platform.is_cpu():
        return
    os.environ["VLLM_WORKER_MULTIPROC_METHOD"] = "fork"
    _log.info("megatron-ssd: the engine core forks its worker (set %s=0 to spawn it)", ENV_SWITCH)
