"""The SSD trainer: supervised fine-tuning of the base model on its own packed samples, on megatron-core.

    Trainer(cfg, paths)   checks the layout against the model, starts the process groups, opens the packed
                          data, builds the model chunks (DDP + Float16Module), the (distributed) optimizer and
                          the LR schedule, then resumes from `train/ckpt/latest` or loads the base weights.
    .fit()                runs iterations until train.train_iters, logging every step and saving every
                          train.save_interval iterations and at the end; returns the run summary.
    .train_step(i)        one global batch: forward/backward over this rank's micro-batches with megatron-core's
                          schedule for the layout (no pipelining, 1F1B or interleaved 1F1B), a finite-loss check,
                          the optimizer step, the LR step.

A non-finite loss stops training before the optimizer step with `NonFiniteLoss`, naming the iteration, the
micro-batch, its bins and the prompts packed in them; the checkpoint `latest` points to stays the last good one.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..config.parallel import ParallelLayout
from ..config.schema import SSDConfig
from ..errors import SSDError
from ..data.packed import PackedDataset
from ..models.arch import describe, load_hf_config
from ..models.checkpoint import checkpoint_info
from ..models.parallel import ParallelDims, init_process_groups, on_gpu
from ..models.provider import te_available
from ..rundir import atomic_write_json, config_hash
from ..tracking import run_spec
from .batches import BatchOrder, MicroBatch, MicroBatchBuilder
from .checkpoint import Checkpointer, load_base_weights
from .flops import effective_seq_length, flops_per_token, mfu, peak_flops
from .loss import ForwardStep, micro_batch_losses, reduce_losses
from .metrics import MetricsLogger
from .model import PRECISION_DTYPES, build_model_chunks, num_parameters
from .optim import build_optimizer, build_scheduler, current_lr
from .paths import STAGE, TrainPaths
from .preemption import EXIT_PREEMPTED, PreemptionWatch


class NonFiniteLoss(SSDError):
    """The loss (or gradient norm) became NaN/inf; training stopped without applying the update."""


class Trainer:
    def __init__(self, cfg: SSDConfig, paths: TrainPaths, *, init_method: str | None = None):
        from megatron.core.pipeline_parallel import get_forward_backward_func

        self.cfg, self.t, self.paths = cfg, cfg.train, paths
        t = self.t

        # The model and the layout, checked before any process group exists.
        self.hf_config = load_hf_config(paths.hf_template)
        self.info = describe(self.hf_config)
        self.base_info = checkpoint_info(paths.base)
        self.padded_vocab_size = self.base_info.padded_vocab_size
        layout = ParallelLayout.from_config(cfg.parallel, world_size=int(os.environ.get("WORLD_SIZE", "1")))
        layout.validate(t, self.info, padded_vocab_size=self.padded_vocab_size, cuda=on_gpu())

        self.dims: ParallelDims = init_process_groups(layout, seed=t.seed, init_method=init_method)
        d = self.dims
        self.use_te = te_available()

        # Data: every rank reads the bins of its data-parallel replica (memory-mapped).
        self.dataset = PackedDataset(paths.packed, expected_seq_length=t.seq_length)
        self.order = BatchOrder(len(self.dataset), t.global_batch_size, t.seed)
        device = torch.device("cuda", torch.cuda.current_device()) if on_gpu() else torch.device("cpu")
        # THD with TE, and under CP in any case: without TE the model then gets the CPU CP attention
        # (models.provider.layer_spec -> models.cpu_cp_attention), the reference path that runs CP on gloo.
        self.micro_batch = MicroBatchBuilder(
            self.dataset, thd=self.use_te, cp_size=d.context, cp_rank=d.cp_rank, fp8=bool(t.fp8),
            sequence_parallel_size=d.tensor if d.sequence_parallel else 1, device=device)
        self.num_microbatches = d.micro_batches_per_step(t)

        # Model, optimizer, schedule.
        self.chunks = build_model_chunks(self.hf_config, cfg.parallel, d, t, padded_vocab_size=self.padded_vocab_size,
                                         use_te=self.use_te)
        self.optimizer = build_optimizer(t, self.chunks, distributed=cfg.parallel.distributed_optimizer)
        self.scheduler = build_scheduler(t, self.optimizer)
        self.forward_step = ForwardStep(t.loss_impl, sequence_parallel=d.sequence_parallel)
        self.forward_backward = get_forward_backward_func()

        # Where training starts: the latest checkpoint of this run, else the base model.
        self.checkpointer = Checkpointer(paths.ckpt, d, async_save=t.async_save)
        self.iteration = 0
        self.resumed_from: Path | None = self.checkpointer.latest()
        if self.resumed_from is not None:
            state = self.checkpointer.load(self.resumed_from, self.chunks, self.optimizer, self.scheduler)
            self._check_data_state(state, self.resumed_from)
            self.iteration = state["iteration"]
            self.rng_restored = state["rng_restored"]
        else:
            load_base_weights(paths.base, self.chunks)
            # The optimizer copied the (not yet loaded) params into its fp32 main params when it was built.
            self.optimizer.reload_model_params()
            self.rng_restored = False
        self._documents = None

    # ------------------------------------------------------------------------------------------- state
    def data_state(self) -> dict[str, Any]:
        """What a checkpoint records about the data order and layout (`Checkpointer`'s `ssd` section)."""
        t = self.t
        return {
            "data_seed": t.seed,
            "num_bins": len(self.dataset),
            "global_batch_size": t.global_batch_size,
            "seq_length": t.seq_length,
            "consumed_bins": self.iteration * t.global_batch_size,
            "layout": self.dims.sharding(),
            "padded_vocab_size": self.padded_vocab_size,
            "config_hash": config_hash(self.cfg),
        }

    def _check_data_state(self, state: dict, path: Path) -> None:
        now = self.data_state()
        for key in ("data_seed", "num_bins", "global_batch_size", "seq_length"):
            if state.get(key) != now[key]:
                raise SSDError(f"{path}: saved with {key}={state.get(key)}, but this run has {key}={now[key]}; the "
                               "data order would not continue where it stopped. Train in a new run directory, or "
                               "restore the original packed data/config.")

    # ------------------------------------------------------------------------------------------- steps
    def micro_batches(self, iteration: int) -> list[MicroBatch]:
        d, t = self.dims, self.t
        bins = self.order.rank_micro_batches(iteration, d.dp_rank, d.data, t.micro_batch_size)
        return [self.micro_batch(b) for b in bins]

    def forward_backward_step(self, micro: list[MicroBatch], *, forward_only: bool = False) -> torch.Tensor:
        """Gradients (unless forward_only) of the global per-token loss; returns [n_micro, 2] (loss sum, tokens)
        on the last pipeline stage (empty elsewhere). Gradients are finalised (DP-reduced, scaled by the
        global token count) by megatron-core's `finalize_model_grads` at the end of the schedule."""
        for chunk in self.chunks:
            chunk.zero_grad_buffer()
        self.optimizer.zero_grad()
        data = [iter(micro) for _ in self.chunks]
        losses = self.forward_backward(
            forward_step_func=self.forward_step,
            data_iterator=data if len(data) > 1 else data[0],
            model=self.chunks,
            num_microbatches=len(micro),
            seq_length=micro[0].seq_length,
            micro_batch_size=micro[0].micro_batch_size,
            forward_only=forward_only,
        )
        return micro_batch_losses(losses)

    def train_step(self, iteration: int) -> dict[str, Any]:
        start = time.perf_counter()
        micro = self.micro_batches(iteration)
        per_mb = self.forward_backward_step(micro)
        self._check_finite(iteration, per_mb, micro)
        update_successful, grad_norm, _ = self.optimizer.step()
        if grad_norm is not None and not math.isfinite(grad_norm):
            self._fail(iteration, f"the gradient norm is {grad_norm} although every micro-batch loss was finite",
                       None)
        lr = current_lr(self.optimizer)
        self.scheduler.step(increment=1)
        loss, loss_tokens = reduce_losses(per_mb, is_last_stage=self.dims.is_last_stage)
        if on_gpu():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        return {"loss": loss, "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"), "lr": lr,
                "loss_tokens": loss_tokens, "step_time_s": seconds, "skipped": not update_successful}

    # ------------------------------------------------------------------------------------------- failures
    def _check_finite(self, iteration: int, per_mb: torch.Tensor, micro: list[MicroBatch]) -> None:
        bad = [k for k in range(len(per_mb)) if not math.isfinite(float(per_mb[k, 0]))]
        flag = torch.tensor([1.0 if bad else 0.0], device="cuda" if on_gpu() else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() == 0:
            return
        mine = [(self.dims.dp_rank, k, tuple(int(b) for b in micro[k].bins), float(per_mb[k, 0])) for k in bad]
        gathered: list = [None] * self.dims.world
        dist.all_gather_object(gathered, mine)
        found = sorted({entry for rank_entries in gathered for entry in rank_entries})
        self._fail(iteration, "non-finite loss", found)

    def _fail(self, iteration: int, what: str, found: list | None) -> None:
        """Raise NonFiniteLoss on every rank (all of them get here: the checks use globally reduced values)."""
        self.checkpointer.finalize(blocking=True)  # an async save in flight is the last good state: complete it
        lines = [f"Training stopped at iteration {iteration + 1} of {self.t.train_iters}: {what}; the update was "
                 "not applied." if found is not None else
                 f"Training stopped at iteration {iteration + 1} of {self.t.train_iters}: {what}."]
        for dp_rank, k, bins, value in found or []:
            prompts = self.prompts_in_bins(list(bins))
            lines.append(f"  data-parallel rank {dp_rank}, micro-batch {k}: loss sum {value}; packed bins {list(bins)} "
                         f"({self.paths.packed}); prompts {prompts}")
        last = self.checkpointer.last_saved
        lines.append(f"The last good checkpoint is kept: {last}." if last else
                     "No checkpoint was saved in this run yet; a rerun starts again from the base model.")
        lines.append("Check those samples, lower train.lr or raise train.clip_grad, then rerun the train stage "
                     "(it resumes from the last good checkpoint).")
        raise NonFiniteLoss("\n".join(lines))

    def prompts_in_bins(self, bins: list[int]) -> dict[int, list[str]]:
        """prompt_id:sample_idx of the documents packed in each bin (from the pack stage's documents.parquet)."""
        if self._documents is None:
            import pyarrow.parquet as pq

            f = self.paths.packed / "documents.parquet"
            self._documents = pq.read_table(f, columns=["prompt_id", "sample_idx", "bin"]).to_pydict() if f.exists() else {}
        docs = self._documents
        if not docs:
            return {b: ["<documents.parquet missing>"] for b in bins}
        out: dict[int, list[str]] = {b: [] for b in bins}
        for pid, idx, b in zip(docs["prompt_id"], docs["sample_idx"], docs["bin"]):
            if b in out:
                out[b].append(f"{pid}:{idx}")
        return out

    # ------------------------------------------------------------------------------------------- loop
    def _save(self) -> None:
        with_optimizer = self.t.save_final_optimizer or self.iteration < self.t.train_iters
        path = self.checkpointer.save(self.iteration, self.chunks, self.optimizer, self.scheduler, self.data_state(),
                                      with_optimizer=with_optimizer)
        self.metrics.event("checkpoint", iteration=self.iteration, path=str(path), async_save=self.checkpointer.async_save)

    def fit(self) -> dict[str, Any]:
        t, d = self.t, self.dims
        if self.iteration >= t.train_iters and self.paths.summary.is_file():
            return json.loads(self.paths.summary.read_text())  # finished before; nothing to train
        dtype = PRECISION_DTYPES[t.precision]
        # On a CPU every rank measures its matmul rate at once, so the peak reflects the shared cores.
        peak, peak_source = peak_flops(dtype, fp8=bool(t.fp8))
        self.metrics = MetricsLogger(
            self.paths.metrics, enabled=d.rank == 0, resume_iteration=self.iteration,
            wandb_run=run_spec(self.cfg, STAGE, run_dir=self.paths.run_dir) if d.rank == 0 else None,
            total_iterations=t.train_iters, log_interval=t.log_interval,
        )
        n_params = num_parameters(self.chunks)
        self.metrics.event(
            "resume" if self.resumed_from else "start", iteration=self.iteration,
            checkpoint=str(self.resumed_from or self.base_info.path), rng_restored=self.rng_restored,
            parallel=d.as_dict(), thd=self.micro_batch.thd, micro_batches=self.num_microbatches, params_rank0=n_params,
            peak_flops_per_device=peak, peak_flops_source=peak_source, bins=len(self.dataset),
        )
        start_iteration, start = self.iteration, time.perf_counter()
        tokens_per_step = t.global_batch_size * t.seq_length
        last: dict[str, Any] = {}
        exit_code = 1
        stop = PreemptionWatch(self.paths.train_dir)  # SIGUSR1 or train/stop.request (training/preemption.py)
        try:
            while self.iteration < t.train_iters:
                step = self.train_step(self.iteration)
                self.iteration += 1
                self.checkpointer.finalize(blocking=False)
                if d.rank == 0:
                    segs = [np.diff(self.dataset.cu_seqlens(int(b))) for b in self.order.global_batch(self.iteration - 1)]
                    s_eff = effective_seq_length(segs)
                    flops = flops_per_token(self.info, self.padded_vocab_size, s_eff) * tokens_per_step
                    secs = step["step_time_s"]
                    step.update(
                        tokens=tokens_per_step, tokens_per_s=tokens_per_step / secs,
                        tflops_per_device=flops / secs / d.world / 1e12, mfu=mfu(flops, secs, d.world, peak),
                        s_eff=s_eff, consumed_bins=self.iteration * t.global_batch_size,
                        epoch=self.order.epoch_of(self.iteration),
                    )
                    self.metrics.step(self.iteration, step)
                last = step
                if self.iteration % t.save_interval == 0 or self.iteration == t.train_iters:
                    self._save()
                if self.iteration < t.train_iters and stop.requested():
                    if self.iteration % t.save_interval:
                        self._save()
                    self.checkpointer.close()  # an async save lands and `latest` points at it before the exit
                    self.metrics.event("preempted", iteration=self.iteration)
                    exit_code = EXIT_PREEMPTED
                    raise stop.preempted(self.iteration, t.train_iters, self.checkpointer.last_saved)
            self.checkpointer.close()
            exit_code = 0
        finally:
            stop.close()
            if exit_code not in (0, EXIT_PREEMPTED):
                self.metrics.event("error", iteration=self.iteration)
            self.metrics.close(exit_code)
        seconds = time.perf_counter() - start
        steps = self.iteration - start_iteration
        summary = {
            "iterations": self.iteration,
            "iterations_this_run": steps,
            "final_loss": last.get("loss"),
            "final_grad_norm": last.get("grad_norm"),
            "tokens": steps * tokens_per_step,
            "seconds": round(seconds, 3),
            "tokens_per_s": steps * tokens_per_step / seconds if steps else None,
            "checkpoint": str(self.checkpointer.last_saved) if self.checkpointer.last_saved else None,
            "resumed_from": str(self.resumed_from) if self.resumed_from else None,
            "layout": d.sharding(),
            "metrics": str(self.paths.metrics),
        }
        if d.rank == 0:
            atomic_write_json(self.paths.summary, summary)
        return summary
