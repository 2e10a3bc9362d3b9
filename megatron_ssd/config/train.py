"""`train` group: SFT optimisation (paper defaults: AdamW (0.9, 0.95), wd 0.1, cosine 5e-6 -> 1e-6)."""
from __future__ import annotations

from dataclasses import dataclass

PACKINGS = ("bins", "one_per_row")


@dataclass
class TrainConfig:
    seq_length: int = 65536
    # Samples longer than seq_length: "truncate" (cut and mark) or "drop" (count them).
    overlength_policy: str = "truncate"
    # What a row of the packed data holds, and so what train.global_batch_size counts:
    #   bins         first-fit-decreasing packing of many documents per seq_length row (a batch counts rows)
    #   one_per_row  one document per row, the rest padding (a batch counts sequences, as Megatron-LM's SFT data
    #                does with one conversation per sample: the paper presets' reading of "global batch size 32")
    packing: str = "bins"
    micro_batch_size: int = 1
    global_batch_size: int = 32
    train_iters: int = 2500
    lr: float = 5.0e-6
    min_lr: float = 1.0e-6
    lr_warmup_iters: int = 250
    lr_decay_style: str = "cosine"
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1.0e-8
    clip_grad: float = 1.0
    # bf16 (fp32 main params) | fp16 | fp32
    precision: str = "bf16"
    # FP8 through Transformer Engine (GPU only): null | hybrid | e4m3 | mxfp8
    fp8: str | None = None
    # null | selective | full
    recompute: str | None = None
    # megatron (vocab-parallel CE) | fused_linear_ce (our Triton kernel)
    loss_impl: str = "megatron"
    save_interval: int = 500
    # The checkpoint at train.train_iters holds the optimizer state only when true. That state (fp32 main params +
    # two Adam moments, 3x the fp32 weights) is needed only to train past train_iters; the SSD chain exports the
    # weights. Intermediate checkpoints always hold it, so an interrupted run still resumes exactly.
    save_final_optimizer: bool = True
    async_save: bool = False
    log_interval: int = 1
    seed: int = 1234
