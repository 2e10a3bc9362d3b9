"""`parallel` group: the Megatron parallel layout, and the one object that validates it.

`ParallelConfig` is what the user writes (Hydra). `ParallelLayout` is the layout of one job: the degrees
plus the world size they partition (DP is what remains after TP x PP x CP). Every rule a layout must obey
is checked by `ParallelLayout.problems` and nowhere else: the config-only rules (the launcher runs them
before any stage starts) and, given the model's shape, the rules that decide whether Megatron can shard
that model (the trainer and the converter run them before any process group exists). Pure Python: the
process groups are built from a layout by `megatron_ssd.models.parallel.init_process_groups`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError
from .train import TrainConfig


@dataclass
class ParallelConfig:
    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: int | None = None
    context: int = 1
    expert: int = 1
    sequence_parallel: bool = False
    # Processes per node and nodes for training (torchrun --nproc-per-node / --nnodes).
    nproc_per_node: int = 1
    nnodes: int = 1
    # Distributed optimizer (ZeRO-1 style sharding of optimizer state over DP).
    distributed_optimizer: bool = True


class ModelShape(Protocol):
    """What the layout rules read from a model (`megatron_ssd.models.arch.ArchInfo` has it)."""

    arch: str
    vocab_size: int
    num_layers: int
    num_attention_heads: int
    num_query_groups: int
    ffn_hidden_size: int
    num_experts: int | None
    moe_ffn_hidden_size: int | None

    @property
    def is_moe(self) -> bool: ...


@dataclass(frozen=True)
class ParallelLayout:
    """The degrees of one job over `world` processes; DP = world / (tensor x pipeline x context).

    Build it with `from_config`, then `validate(...)` before relying on `data` or starting process groups.
    """

    world: int
    tensor: int = 1
    pipeline: int = 1
    virtual_pipeline: int | None = None
    context: int = 1
    expert: int = 1
    sequence_parallel: bool = False

    @classmethod
    def from_config(cls, parallel: ParallelConfig, world_size: int | None = None) -> ParallelLayout:
        """`world_size` defaults to parallel.nproc_per_node x parallel.nnodes (what the launcher starts)."""
        world = world_size if world_size is not None else parallel.nproc_per_node * parallel.nnodes
        return cls(world=world, tensor=parallel.tensor, pipeline=parallel.pipeline,
                   virtual_pipeline=parallel.virtual_pipeline, context=parallel.context, expert=parallel.expert,
                   sequence_parallel=parallel.sequence_parallel)

    @property
    def model_parallel(self) -> int:
        return self.tensor * self.pipeline * self.context

    @property
    def data(self) -> int:
        return self.world // self.model_parallel

    def micro_batches_per_step(self, train: TrainConfig) -> int:
        """Micro-batches each data-parallel rank runs per optimizer step."""
        return train.global_batch_size // (train.micro_batch_size * self.data)

    @property
    def _bad_virtual_pipeline(self) -> bool:
        return self.virtual_pipeline is not None and (self.virtual_pipeline < 1 or self.pipeline < 2)

    def sharding(self) -> dict:
        """The degrees that decide how checkpoints are sharded (saved with them, compared on resume)."""
        return {"tensor": self.tensor, "pipeline": self.pipeline, "virtual_pipeline": self.virtual_pipeline,
                "context": self.context, "expert": self.expert, "data": self.data}

    # ------------------------------------------------------------------------------------------ rules
    def problems(self, train: TrainConfig | None = None, model: ModelShape | None = None, *,
                 padded_vocab_size: int | None = None, cuda: bool | None = None) -> list[str]:
        """Every rule this layout breaks, one message each naming the config keys and the fix.

        `train`: check its batch sizes and sequence length. `model`: check that Megatron can shard it.
        `padded_vocab_size`: the vocabulary size a checkpoint was saved with, when loading one (a size
        padded for this TP always fits). `cuda`: whether the ranks have GPUs (None: not known yet, e.g. in
        the launcher; the GPU-only rules are then left to the ranks).
        """
        degrees = {"tensor": self.tensor, "pipeline": self.pipeline, "context": self.context, "expert": self.expert}
        e = [f"parallel.{key}={value}: must be at least 1." for key, value in degrees.items() if value < 1]
        if self.world < 1:
            e.append(f"world size {self.world}: must be at least 1.")
        if e:
            return e  # the rules below divide by these
        tp, pp, cp, ep, vpp = self.tensor, self.pipeline, self.context, self.expert, self.virtual_pipeline
        if self._bad_virtual_pipeline:
            e.append(f"parallel.virtual_pipeline={vpp} needs parallel.pipeline >= 2 (it is {pp}) and a value >= 1; "
                     "set parallel.virtual_pipeline=null to run without interleaving.")
        if self.sequence_parallel and tp == 1:
            e.append("parallel.sequence_parallel needs parallel.tensor > 1.")
        # Sequence parallelism runs on CPU ranks too: the local spec gets norms that accept it (models/cpu_sp_norm.py).
        if self.world % self.model_parallel:
            e.append(f"world size {self.world} (parallel.nproc_per_node x parallel.nnodes) is not divisible by "
                     f"parallel.tensor x parallel.pipeline x parallel.context = {self.model_parallel}.")
        else:
            dp = self.data
            if ep > 1 and (dp * cp) % ep:
                e.append(f"parallel.expert={ep} must divide data x context parallel size ({dp * cp}).")
            if train is not None:
                e += self._batch_problems(train, dp)
        if train is not None and cp > 1 and train.seq_length % (2 * cp):
            e.append(f"train.seq_length={train.seq_length} must be divisible by 2 x parallel.context ({2 * cp}).")
        if model is not None:
            e += self._model_problems(model, padded_vocab_size)
        return e

    def _batch_problems(self, train: TrainConfig, dp: int) -> list[str]:
        mb, gb = train.micro_batch_size, train.global_batch_size
        if mb < 1 or gb % (mb * dp):
            return [f"train.global_batch_size={gb} is not divisible by train.micro_batch_size={mb} x data-parallel "
                    f"size {dp} (world {self.world} / (tensor x pipeline x context))."]
        n = self.micro_batches_per_step(train)
        if self.virtual_pipeline and not self._bad_virtual_pipeline and n % self.pipeline:
            return [f"parallel.virtual_pipeline needs the number of micro-batches per step ({n} = "
                    f"train.global_batch_size / (train.micro_batch_size x data-parallel size {dp})) to be a "
                    f"multiple of parallel.pipeline={self.pipeline}; change train.global_batch_size or "
                    "train.micro_batch_size."]
        return []

    def _model_problems(self, m: ModelShape, padded_vocab_size: int | None) -> list[str]:
        tp, pp, ep, vpp = self.tensor, self.pipeline, self.expert, self.virtual_pipeline
        e = []
        if m.num_attention_heads % tp:
            e.append(f"parallel.tensor={tp} does not divide num_attention_heads={m.num_attention_heads} of "
                     f"the {m.arch} model; choose a divisor of it.")
        if m.num_query_groups % tp:
            e.append(f"parallel.tensor={tp} does not divide num_key_value_heads={m.num_query_groups} (query "
                     f"groups) of the {m.arch} model; Megatron does not replicate KV heads across TP ranks.")
        if m.ffn_hidden_size % tp and not m.is_moe:
            e.append(f"parallel.tensor={tp} does not divide intermediate_size={m.ffn_hidden_size}.")
        if m.is_moe and m.moe_ffn_hidden_size % tp:
            e.append(f"parallel.tensor={tp} does not divide moe_intermediate_size={m.moe_ffn_hidden_size} "
                     "(experts are tensor-parallel over the same ranks).")
        stages = pp * (vpp or 1)
        if not self._bad_virtual_pipeline and m.num_layers % stages:  # a bad vpp is reported on its own
            what = f"parallel.pipeline={pp}" + (f" x parallel.virtual_pipeline={vpp}" if vpp else "")
            e.append(f"{what} = {stages} does not divide num_hidden_layers={m.num_layers}.")
        if ep > 1 and not m.is_moe:
            e.append(f"parallel.expert={ep} needs a mixture-of-experts model; {m.arch} is dense (use 1).")
        if m.is_moe and m.num_experts % ep:
            e.append(f"parallel.expert={ep} does not divide num_experts={m.num_experts}.")
        if padded_vocab_size is not None:
            if padded_vocab_size < m.vocab_size:
                e.append(f"padded vocab size {padded_vocab_size} is smaller than the model's "
                         f"vocab_size={m.vocab_size}.")
            if padded_vocab_size % tp:
                e.append(f"parallel.tensor={tp} does not divide the checkpoint's padded vocab size "
                         f"{padded_vocab_size}; reconvert the base model with this TP (ssd-convert hf-to-megatron "
                         "--tp) or pick a divisor.")
        return e

    def validate(self, train: TrainConfig | None = None, model: ModelShape | None = None, *,
                 padded_vocab_size: int | None = None, cuda: bool | None = None) -> ParallelLayout:
        """`self` when `problems(...)` finds none; else a ConfigError listing all of them."""
        errors = self.problems(train, model, padded_vocab_size=padded_vocab_size, cuda=cuda)
        if errors:
            what = "Invalid parallel layout for this model" if model is not None else "Invalid parallel layout"
            raise ConfigError(f"{what}:\n  - " + "\n  - ".join(errors))
        return self
