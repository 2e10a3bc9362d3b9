"""SFT of the base model on its own samples, on megatron-core (DESIGN.md §5).

Modules, each small: `parallel` (process groups from the validated layout), `batches` (data order, document
masking / THD), `model` (GPTModel chunks + DDP + Float16Module), `optim` (AdamW, LR schedule), `loss` (forward
step, global per-token loss, the two loss heads), `checkpoint` (dist_checkpointing save/resume/reshard),
`flops` (FLOPs, MFU), `metrics` (jsonl, wandb, progress), `trainer` (the Trainer), `entry` (the rank entry
point torchrun starts), `paths` (files in the run directory), `launch` (the torchrun/srun command),
`synthetic` (seeded random models and packed data for tests and benchmarks).
Importing this package imports none of megatron-core.
"""
