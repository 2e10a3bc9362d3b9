"""Training checkpoints: megatron-core `dist_checkpointing` (torch_dist), resumable exactly and reshardable.

Layout (shared with the converter and export; `megatron_ssd.models.checkpoint`):
    <run>/train/ckpt/iter_XXXXXXX/      one dist checkpoint per saved iteration
    <run>/train/ckpt/latest             "iter_XXXXXXX" of the newest *complete* one (+ Megatron-LM's
                                        latest_checkpointed_iteration.txt)
An iteration is written under `.iter_XXXXXXX.tmp`, renamed when every rank has finished writing, and only then
do the pointers move (atomic file replace). A run killed mid-save leaves the previous checkpoint as `latest`.
With `train.async_save`, the shard files are written by a background process (megatron-core's async caller)
while training goes on; the rename and the pointers happen in the request's finalisation, once all ranks report
completion. Meant for GPUs (the copy to host memory is the only pause); it works on CPU too, where tests use it.

What one checkpoint holds:
    model / model0, model1, ...   the weights (one entry per virtual-pipeline chunk), Megatron's global keys
    optimizer                     fp32 main params + Adam moments in the `fully_reshardable` distributed-
                                  optimizer format (model-space tensors), so a checkpoint saved under one
                                  TP/PP/DP layout resumes under another (the cheaper `dp_reshardable` format
                                  reshards only across DP). Left out of the final checkpoint with
                                  train.save_final_optimizer=false: it then exports but cannot be trained on
    opt_param_scheduler           the LR/WD schedule position
    rng_state                     Python/NumPy/torch/CUDA generators and Megatron's RNG tracker, per (PP, TP)
                                  rank; restored only when the layout is unchanged (a resharded run has other
                                  RNG streams by construction; SSD trains without dropout, so nothing draws)
    iteration, ssd                iteration, layout, data order (seed, bin count, global batch) -> the data
                                  position is the iteration; checked on resume
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..errors import SSDError
from ..models import checkpoint as ckpt_layout
from ..models.parallel import ParallelDims, on_gpu
from .loss import gpt_of
from .optim import load_optimizer_state, materialize_adam_state

OPTIMIZER_FORMAT = "fully_reshardable"
CHECKPOINT_VERSION = 3.0


def _model_keys(n: int) -> list[str]:
    return ["model"] if n == 1 else [f"model{i}" for i in range(n)]


def rng_state() -> dict[str, Any]:
    from megatron.core import tensor_parallel

    state = {
        "random_rng_state": random.getstate(),
        "np_rng_state": np.random.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "rng_tracker_states": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if on_gpu():
        state["cuda_rng_state"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["random_rng_state"])
    np.random.set_state(state["np_rng_state"])
    torch.set_rng_state(state["torch_rng_state"])
    if on_gpu() and "cuda_rng_state" in state:
        torch.cuda.set_rng_state(state["cuda_rng_state"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["rng_tracker_states"])


class Checkpointer:
    """Save/load of the full training state for this rank's model chunks, optimizer and scheduler."""

    def __init__(self, root: str | os.PathLike, dims: ParallelDims, *, async_save: bool = False):
        self.root = Path(root)
        self.dims = dims
        self.async_save = async_save
        self._queue = None
        self.last_saved: Path | None = None  # the newest *complete* checkpoint written or loaded by this run

    # ------------------------------------------------------------------------------------------ discovery
    def latest(self) -> Path | None:
        """The newest complete checkpoint, or None when training has not saved one yet."""
        if not any((self.root / p).is_file() for p in (ckpt_layout.LATEST, ckpt_layout.LATEST_MEGATRON)):
            return None
        return ckpt_layout.resolve_checkpoint(self.root)

    # ------------------------------------------------------------------------------------------ state dicts
    def _metadata(self) -> dict:
        from megatron.core import parallel_state as ps

        return {"dp_cp_group": ps.get_data_parallel_group(with_context_parallel=True)}

    def _sharded_state_dict(self, chunks, optimizer, scheduler, *, iteration: int, ssd: dict,
                            is_loading: bool, with_rng: bool, with_optimizer: bool = True) -> dict:
        from megatron.core import parallel_state as ps
        from megatron.core.dist_checkpointing.mapping import ShardedObject

        sd: dict[str, Any] = {}
        for key, chunk in zip(_model_keys(len(chunks)), chunks):
            sd[key] = gpt_of(chunk).sharded_state_dict(metadata=self._metadata())
        if with_optimizer:
            if is_loading:
                materialize_adam_state(optimizer)
            sd["optimizer"] = optimizer.sharded_state_dict(
                sd, is_loading=is_loading,
                metadata={"distrib_optim_sharding_type": OPTIMIZER_FORMAT, "chained_optim_avoid_prefix": True,
                          **self._metadata()},
            )
        sd["opt_param_scheduler"] = scheduler.state_dict()
        sd["iteration"] = iteration
        sd["checkpoint_version"] = CHECKPOINT_VERSION
        sd["ssd"] = ssd
        if with_rng:
            d = self.dims
            sd["rng_state"] = ShardedObject(
                "rng_state", [rng_state()], (ps.get_pipeline_model_parallel_world_size(), d.tensor),
                (ps.get_pipeline_model_parallel_rank(), d.tp_rank),
                replica_id=ps.get_data_parallel_rank(with_context_parallel=True),
            )
        return sd

    def _save_strategy(self):
        """torch_dist, with the writing of replicated tensors spread over the data-parallel ranks."""
        from megatron.core import parallel_state as ps
        from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
        from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

        strategy = get_default_save_sharded_strategy("torch_dist")
        if self.dims.data * self.dims.context > 1:
            strategy = FullyParallelSaveStrategyWrapper(strategy, ps.get_data_parallel_group(with_context_parallel=True))
        return strategy

    # ---------------------------------------------------------------------------------------------- save
    def save(self, iteration: int, chunks, optimizer, scheduler, ssd: dict, *, with_optimizer: bool = True) -> Path:
        """Collective. Writes iteration `iteration`; `latest` moves when the write is complete."""
        from megatron.core import dist_checkpointing

        self.finalize(blocking=True)  # one save in flight at a time
        name = ckpt_layout.iter_dir_name(iteration)
        final, tmp = self.root / name, self.root / f".{name}.tmp"
        if self.dims.rank == 0:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        dist.barrier()
        sd = self._sharded_state_dict(chunks, optimizer, scheduler, iteration=iteration,
                                      ssd={**ssd, "optimizer_saved": with_optimizer}, is_loading=False, with_rng=True,
                                      with_optimizer=with_optimizer)
        request = dist_checkpointing.save(sd, str(tmp), sharded_strategy=self._save_strategy(),
                                          async_sharded_save=self.async_save)

        def publish() -> None:
            dist.barrier()
            ckpt_layout.write_checksums_collective(tmp)  # the manifest is the last file, hashed by all ranks
            if self.dims.rank == 0:
                if final.exists():
                    shutil.rmtree(final)
                os.replace(tmp, final)
                ckpt_layout.write_latest(self.root, iteration)
            dist.barrier()
            self.last_saved = final

        if request is None:
            publish()
        else:
            request.add_finalize_fn(publish)
            self._async_queue().schedule_async_request(request)
        return final

    def _async_queue(self):
        if self._queue is None:
            from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue

            self._queue = AsyncCallsQueue()
        return self._queue

    def finalize(self, blocking: bool = False) -> None:
        """Collective: complete finished async saves (all of them with blocking=True)."""
        if self._queue is not None:
            self._queue.maybe_finalize_async_calls(blocking=blocking)

    def close(self) -> None:
        if self._queue is not None:
            self._queue.maybe_finalize_async_calls(blocking=True)
            self._queue.close()
            self._queue = None

    # ---------------------------------------------------------------------------------------------- load
    def read_common(self, path: Path) -> dict:
        from megatron.core import dist_checkpointing

        ckpt_layout.verify_complete(path)
        try:
            return dist_checkpointing.load_common_state_dict(str(path))
        except ckpt_layout.load_errors() as exc:  # CheckpointException is a BaseException
            raise SSDError(f"{path}: cannot read the checkpoint's common state ({type(exc).__name__}: {exc}); it "
                           "is corrupt or not a training checkpoint. Point `latest` at an older iter_* directory "
                           "or delete the run's train/ckpt to restart.") from exc

    def load(self, path: Path, chunks, optimizer, scheduler) -> dict:
        """Collective. Restores model, optimizer, scheduler (and RNG when the layout is unchanged).

        Returns the checkpoint's `ssd` section (with `iteration` and whether RNG was restored).
        """
        from megatron.core import dist_checkpointing

        common = self.read_common(path)
        if common.get("ssd", {}).get("optimizer_saved") is False:
            raise SSDError(f"{path}: this final checkpoint was saved without optimizer state "
                           "(train.save_final_optimizer=false); it exports, but training cannot continue from it. "
                           "Train with train.save_final_optimizer=true to extend a run past train.train_iters.")
        if "ssd" not in common or "optimizer" not in common:
            raise SSDError(f"{path}: not a megatron-ssd training checkpoint (no optimizer/ssd state); a converted "
                           "base model belongs in train/base, not train/ckpt.")
        saved_layout = common["ssd"].get("layout", {})
        same_rng_layout = all(saved_layout.get(k) == self.dims.sharding()[k]
                              for k in ("tensor", "pipeline", "virtual_pipeline", "context", "expert"))
        sd = self._sharded_state_dict(chunks, optimizer, scheduler, iteration=common["iteration"],
                                      ssd=common["ssd"], is_loading=True, with_rng=same_rng_layout)
        try:
            loaded = dist_checkpointing.load(sd, str(path))
        except ckpt_layout.load_errors() as exc:  # CheckpointException is a BaseException
            raise SSDError(f"{path}: cannot load this checkpoint ({type(exc).__name__}: {exc}). If it was written "
                           f"by another model or is damaged, point {self.root / ckpt_layout.LATEST} at an older "
                           "iter_* directory or delete train/ckpt to restart from the base model.") from exc
        for key, chunk in zip(_model_keys(len(chunks)), chunks):
            gpt_of(chunk).load_state_dict(loaded[key], strict=True)
        load_optimizer_state(optimizer, loaded["optimizer"])
        scheduler.load_state_dict(loaded["opt_param_scheduler"])
        if same_rng_layout:
            set_rng_state(loaded["rng_state"][0])
        self.last_saved = path
        return {**common["ssd"], "iteration": int(common["iteration"]), "rng_restored": same_rng_layout}


def load_base_weights(path: str | os.PathLike, chunks) -> Path:
    """Collective: the converted base model's weights (a root with `latest`, or an iter dir) into this rank's
    chunks, under any layout. All chunks load in one `dist_checkpointing.load` call: with virtual pipelining a
    chunk holds only some layers, and megatron-core validates that every requested shard is read exactly once
    per load. A model tensor absent from the checkpoint raises."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing.validation import StrictHandling

    d = ckpt_layout.resolve_checkpoint(path)
    ckpt_layout.verify_complete(d)
    keys = _model_keys(len(chunks))
    sd = {key: gpt_of(chunk).sharded_state_dict() for key, chunk in zip(keys, chunks)}
    try:
        loaded = dist_checkpointing.load(sd, str(d), strict=StrictHandling.RAISE_UNEXPECTED)
    except ckpt_layout.load_errors() as exc:  # CheckpointException is a BaseException
        raise SSDError(f"{d}: cannot load the base model weights ({type(exc).__name__}: {exc}); reconvert the base "
                       "model (delete train/base and rerun the train stage).") from exc
    for key, chunk in zip(keys, chunks):
        gpt_of(chunk).load_state_dict(loaded[key], strict=True)
    return d
