"""Megatron-core models for SSD: HF config -> GPTModel, HF <-> Megatron weights, checkpoints.

  arch        HF config -> ArchInfo (supported families, vocab padding)
  provider    TransformerConfig, layer spec (TE or local), build_gpt_model / model_provider
  cpu_compat  apply_cpu_compat: megatron-core on CPU-only torch (gloo)
  parallel    process groups from a ParallelLayout (init_process_groups; megatron_world, spawn)
  mapping     the declarative HF <-> Megatron name mapping per architecture
  sharding    TP split/merge per parameter kind
  weights     load_hf_weights / export_hf_tensors between a GPTModel and HF tensors
  checkpoint  the dist-checkpoint layout (iter_XXXXXXX + latest), save/load/inspect
  hf_io       safetensors reader and HF folder writer
  convert     hf_to_megatron / megatron_to_hf (`ssd-convert`, see convert_cli)

Submodules are imported on demand (megatron-core and transformers are heavy imports).
"""
