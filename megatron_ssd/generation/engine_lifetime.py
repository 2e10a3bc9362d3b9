"""vLLM's engine processes die with the process that started them, also when it is killed with SIGKILL.

`vllm.LLM` starts its engine core as a child process, which starts one worker process per rank. On CPU (and on GPU
once CUDA is initialised) vLLM uses multiprocessing's *spawn*: each child is a fresh interpreter that runs only
vLLM's code, and vLLM's only parent-death handling is the workers' pipe from the engine core. So a `kill -9` of
`ssd run` left `VLLM::EngineCore`, its `VLLM::Worker` and the multiprocessing resource tracker running, re-parented
to PID 1, with the KV cache, the GPU memory and ~400 MB of /dev/shm (the message queues' `psm_*` segments).

The code that runs in every such child is vLLM's plugin loader: the `vllm.general_plugins` entry point
`megatron_ssd_engine_dies_with_parent` (setup.py) calls `in_engine_process` in the engine core and in every worker.
In a child of an engine that `VLLMEngine` started (it exports `ENV_MARK`) it asks the kernel for SIGKILL when its
parent dies (PR_SET_PDEATHSIG, `runlock.die_with_parent`; the engine core's parent is the stage's main thread, a
worker's is the engine core), and joins the run directory, which records it (pid + start time) for the run lock's
takeover; it does not hold the members lock, since the owner keeps an idle engine across its `run_lock` blocks.
SIGKILL, not SIGTERM: vLLM's engine core answers SIGTERM by draining its requests into a queue nobody reads. Where
vLLM forks instead (plugins then load only once, before the fork) the fork hook of
`runlock.forked_children_die_with_parent` does the same. Once the engine's processes are gone, the resource tracker
(which they share with the launcher) sees its pipe close, unlinks the segments they registered and exits; the run
lock's takeover removes whatever is left (`runlock.end_survivors`, `runlock.remove_scratch`).

Processes of vLLM that no `VLLMEngine` started (`ssd serve`'s servers, which stop by process group) are left alone.
"""
from __future__ import annotations

import multiprocessing
import os
import signal

from .. import runlock

ENV_MARK = "SSD_ENGINE_DIES_WITH_PARENT"
SIGNAL = signal.SIGKILL


def mark_engine_processes() -> None:
    """In the process about to create a `vllm.LLM`: its engine core and workers, spawned or forked, die with it."""
    os.environ[ENV_MARK] = "1"
    runlock.forked_children_die_with_parent(SIGNAL)


def in_engine_process() -> None:
    """vLLM plugin entry point, run in each of its processes: in a (spawned) child of a marked engine, die with the
    parent and join the run directory. A no-op in the process that created the engine and outside `VLLMEngine`."""
    parent = multiprocessing.parent_process()
    if os.environ.get(ENV_MARK) != "1" or parent is None or parent.pid is None:
        return
    if os.environ.get(runlock.ENV_DIR):
        runlock.join_run(SIGNAL, parent=parent.pid, hold=False)
    else:
        runlock.die_with_parent(SIGNAL, parent=parent.pid)
