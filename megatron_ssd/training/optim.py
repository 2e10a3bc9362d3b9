"""Optimizer and LR schedule: megatron-core's (distributed) AdamW and OptimizerParamScheduler.

AdamW (decoupled weight decay; biases and norm weights excluded from decay by megatron-core's default param
groups), betas/eps/weight decay/clipping from `cfg.train`; with bf16/fp16 the optimizer keeps fp32 main
params and grads (Float16 / Distributed optimizer). `parallel.distributed_optimizer` shards the optimizer state
over data-parallel ranks (ZeRO-1). LR: linear warmup from 0 over `train.lr_warmup_iters`, then cosine (or the
configured style) decay from `train.lr` to `train.min_lr` at `train.train_iters`, stepped once per iteration,
exactly as Megatron-LM does it (so the first iteration of a warmup runs at lr 0).
"""
from __future__ import annotations

import torch

from ..config.train import TrainConfig
from ..errors import ConfigError
from .model import fp8_settings

DECAY_STYLES = ("cosine", "linear", "constant", "inverse-square-root")


def optimizer_config(train: TrainConfig, *, distributed: bool):
    from megatron.core.optimizer import OptimizerConfig

    fp8_recipe = None
    if train.fp8:
        fp8_recipe = fp8_settings(train.fp8)["fp8_recipe"]
    return OptimizerConfig(
        optimizer="adam",
        lr=train.lr,
        min_lr=train.min_lr,
        weight_decay=train.weight_decay,
        adam_beta1=train.adam_beta1,
        adam_beta2=train.adam_beta2,
        adam_eps=train.adam_eps,
        decoupled_weight_decay=True,  # AdamW
        clip_grad=train.clip_grad,
        bf16=train.precision == "bf16",
        fp16=train.precision == "fp16",
        params_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(train.precision, torch.float32),
        fp8_recipe=fp8_recipe,
        use_distributed_optimizer=distributed,
    )


def build_optimizer(train: TrainConfig, model_chunks: list, *, distributed: bool):
    from megatron.core.optimizer import get_megatron_optimizer

    return get_megatron_optimizer(optimizer_config(train, distributed=distributed), model_chunks)


def build_scheduler(train: TrainConfig, optimizer):
    from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

    if train.lr_decay_style not in DECAY_STYLES:
        raise ConfigError(f"train.lr_decay_style={train.lr_decay_style!r}: choose one of {', '.join(DECAY_STYLES)}.")
    if not 0 <= train.lr_warmup_iters < train.train_iters:
        raise ConfigError(f"train.lr_warmup_iters={train.lr_warmup_iters} must be below train.train_iters="
                          f"{train.train_iters} (the LR must decay after the warmup).")
    return OptimizerParamScheduler(
        optimizer,
        init_lr=0.0,
        max_lr=train.lr,
        min_lr=train.min_lr,
        lr_warmup_steps=train.lr_warmup_iters,
        lr_decay_steps=train.train_iters,
        lr_decay_style=train.lr_decay_style,
        start_wd=train.weight_decay,
        end_wd=train.weight_decay,
        wd_incr_steps=train.train_iters,
        wd_incr_style="constant",
    )


def current_lr(optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])


def materialize_adam_state(optimizer) -> None:
    """Give a fresh torch AdamW (the optimizer megatron-core uses without TE/Apex, i.e. on CPU) its state
    tensors before a checkpoint is loaded into it.

    Why: megatron-core 0.16.1's DistributedOptimizer builds its *loading* state dict from `self.state_dict()`,
    which reads `state["step"]` of every parameter - absent until the first `step()`. The tensors created here
    are placeholders that the load overwrites. Not needed with TE/Apex FusedAdam (step kept per group).
    """
    from megatron.core.optimizer.distrib_optimizer import HAVE_APEX_OR_TE, DistributedOptimizer

    if HAVE_APEX_OR_TE:
        return
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if not isinstance(opt, DistributedOptimizer):
            continue
        inner = opt.optimizer
        for group in inner.param_groups:
            for p in group["params"]:
                state = inner.state[p]
                if not state:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)


@torch.no_grad()
def load_optimizer_state(optimizer, state) -> None:
    """`optimizer.load_state_dict(state)`, working around two megatron-core 0.16.1 bugs of the torch-AdamW path
    (the optimizer used without TE/Apex, i.e. on CPU); with TE/Apex FusedAdam megatron-core's path runs as is.

    1. With the `fully_reshardable` distributed-optimizer format, `load_state_dict` first puts the common `step`
       into every parameter's state (torch AdamW keeps it there), then `load_parameter_state_from_fully_
       reshardable` copies every state key from the checkpoint - which deliberately has no per-parameter
       `step` -> KeyError. The common part is loaded first here, the `step` entries are set aside while the
       parameter state is copied, then put back.
    2. `DistributedOptimizer.load_state_dict` gives every parameter the *same* `step` tensor, and torch AdamW
       increments each parameter's step in place: after one resumed iteration the shared step has advanced once
       per parameter and Adam's bias correction is wrong (the resumed loss curve drifts from the uninterrupted
       one). Every parameter gets its own copy.
    Runs under no_grad (DESIGN.md §5: loading optimizer state with autograd on fails).
    """
    from megatron.core.optimizer.distrib_optimizer import HAVE_APEX_OR_TE, DistributedOptimizer

    chained = getattr(optimizer, "chained_optimizers", [optimizer])
    if HAVE_APEX_OR_TE or not any(isinstance(o, DistributedOptimizer) for o in chained):
        optimizer.load_state_dict(state)
        return
    states = [state] if len(chained) == 1 else [v for _, v in sorted(state.items())]
    for opt, st in zip(chained, states):
        if not isinstance(opt, DistributedOptimizer):
            opt.load_state_dict(st)
            continue
        if st.get("param_state_sharding_type") == "fully_reshardable":
            st = dict(st)
            param_state = st.pop("param_state")
            st.pop("param_state_sharding_type")
            opt.load_state_dict(st)
            inner = opt.optimizer.state  # (torch's load_state_dict replaces the state dict)
            steps = {p: s.pop("step") for p, s in inner.items() if "step" in s}
            try:
                opt.load_parameter_state_from_fully_reshardable(param_state)
            finally:
                for p, step in steps.items():
                    inner[p]["step"] = step
        else:
            opt.load_state_dict(st)
        for s in opt.optimizer.state.values():
            if isinstance(s.get("step"), torch.Tensor):
                s["step"] = s["step"].clone()
    if len(chained) > 1 and hasattr(optimizer, "_synchronize_steps"):
        optimizer._synchronize_steps()
