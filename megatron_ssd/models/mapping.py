"""HF <-> Megatron parameter mapping, one short declaration per architecture.

Ours rather than Megatron-Bridge's because Bridge cannot be installed on CPU (it requires Transformer
Engine, mamba-ssm and causal-conv1d); the declarations follow its style: a rule pairs a Megatron name
pattern with the HF name(s) it comes from, a fusion (QKV, gate/up) and a tensor-parallel kind
(`megatron_ssd.models.sharding`).

Megatron names here are the canonical local-spec names with *global* layer and expert numbers:
`decoder.layers.{layer}.mlp.experts.local_experts.{expert}.linear_fc1.weight`. `weights.canonical_name`
turns a rank's local names (pipeline-local layer numbers, EP-local experts, Transformer Engine names
such as `linear_qkv.layer_norm_weight` or grouped-GEMM `experts.linear_fc1.weight{j}`) into these.
HF names are those of the safetensors files (Qwen3-MoE: one tensor per expert), which vLLM also reads.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import torch

from .arch import ArchInfo


@dataclass(frozen=True)
class Rule:
    megatron: str
    hf: tuple[str, ...]
    kind: str
    fuse: str | None = None  # None | "qkv" | "gate_up"

    @cached_property
    def _regex(self) -> re.Pattern:
        pattern = re.escape(self.megatron).replace(r"\{layer\}", r"(?P<layer>\d+)").replace(
            r"\{expert\}", r"(?P<expert>\d+)")
        return re.compile(pattern + "$")

    def match(self, megatron_name: str) -> dict[str, str] | None:
        m = self._regex.match(megatron_name)
        return m.groupdict() if m else None

    def hf_names(self, bindings: dict[str, str]) -> list[str]:
        return [h.format(**bindings) for h in self.hf]


def direct(megatron: str, hf: str, kind: str) -> Rule:
    return Rule(megatron, (hf,), kind)


def qkv(megatron: str, q: str, k: str, v: str) -> Rule:
    return Rule(megatron, (q, k, v), "column", fuse="qkv")


def gate_up(megatron: str, gate: str, up: str) -> Rule:
    return Rule(megatron, (gate, up), "column_gated", fuse="gate_up")


# ------------------------------------------------------------------------------------------ declarations
L, H = "decoder.layers.{layer}.", "model.layers.{layer}."
EMBEDDING = direct("embedding.word_embeddings.weight", "model.embed_tokens.weight", "vocab")
OUTPUT = direct("output_layer.weight", "lm_head.weight", "vocab")
FINAL_NORM = direct("decoder.final_layernorm.weight", "model.norm.weight", "replicated")
ATTENTION = (
    direct(L + "input_layernorm.weight", H + "input_layernorm.weight", "replicated"),
    qkv(L + "self_attention.linear_qkv.weight",
        H + "self_attn.q_proj.weight", H + "self_attn.k_proj.weight", H + "self_attn.v_proj.weight"),
    direct(L + "self_attention.linear_proj.weight", H + "self_attn.o_proj.weight", "row"),
    direct(L + "pre_mlp_layernorm.weight", H + "post_attention_layernorm.weight", "replicated"),
)
QK_NORM = (
    direct(L + "self_attention.q_layernorm.weight", H + "self_attn.q_norm.weight", "replicated"),
    direct(L + "self_attention.k_layernorm.weight", H + "self_attn.k_norm.weight", "replicated"),
)
DENSE_MLP = (
    gate_up(L + "mlp.linear_fc1.weight", H + "mlp.gate_proj.weight", H + "mlp.up_proj.weight"),
    direct(L + "mlp.linear_fc2.weight", H + "mlp.down_proj.weight", "row"),
)
E, HE = L + "mlp.experts.local_experts.{expert}.", H + "mlp.experts.{expert}."
MOE_MLP = (
    direct(L + "mlp.router.weight", H + "mlp.gate.weight", "replicated"),
    gate_up(E + "linear_fc1.weight", HE + "gate_proj.weight", HE + "up_proj.weight"),
    direct(E + "linear_fc2.weight", HE + "down_proj.weight", "row"),
)

MAPPINGS: dict[str, tuple[Rule, ...]] = {
    "llama": (EMBEDDING, *ATTENTION, *DENSE_MLP, FINAL_NORM, OUTPUT),
    "qwen3": (EMBEDDING, *ATTENTION, *QK_NORM, *DENSE_MLP, FINAL_NORM, OUTPUT),
    "qwen3_moe": (EMBEDDING, *ATTENTION, *QK_NORM, *MOE_MLP, FINAL_NORM, OUTPUT),
}


class ArchMapping:
    """The rules of one model (architecture + tied/untied output), with both conversion directions."""

    def __init__(self, info: ArchInfo):
        self.info = info
        rules = list(MAPPINGS[info.arch])
        if info.tie_word_embeddings:
            # HF stores no lm_head; Megatron keeps a copy of the embedding as output_layer.weight on the last
            # pipeline stage when PP > 1 (synchronised with the embedding). Import it from the embedding;
            # never export it.
            rules[rules.index(OUTPUT)] = direct("output_layer.weight", "model.embed_tokens.weight", "vocab")
        self.rules = tuple(rules)

    def find(self, megatron_name: str) -> tuple[Rule, dict[str, str]]:
        for rule in self.rules:
            bindings = rule.match(megatron_name)
            if bindings is not None:
                return rule, bindings
        raise KeyError(f"no HF mapping for Megatron parameter {megatron_name!r} ({self.info.arch})")

    def exported(self, rule: Rule) -> bool:
        return not (self.info.tie_word_embeddings and rule.megatron == "output_layer.weight")

    # -- HF -> Megatron (global, unsharded, vocab padded)
    def to_megatron(self, rule: Rule, hf: list[torch.Tensor], padded_vocab: int) -> torch.Tensor:
        if rule.fuse == "qkv":
            t = self._fuse_qkv(*hf)
        elif rule.fuse == "gate_up":
            t = torch.cat(hf, dim=0)
        else:
            (t,) = hf
        if rule.kind == "vocab":
            t = _pad_rows(t, padded_vocab)
        return t

    # -- Megatron (global) -> HF
    def to_hf(self, rule: Rule, t: torch.Tensor) -> list[torch.Tensor]:
        if rule.kind == "vocab":
            t = t[: self.info.vocab_size]
        if rule.fuse == "qkv":
            return self._split_qkv(t)
        if rule.fuse == "gate_up":
            return list(t.chunk(2, dim=0))
        return [t]

    def _fuse_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Megatron's linear_qkv rows: for each query group, its q heads, then its k head, then its v head."""
        i = self.info
        g, d, hidden = i.num_query_groups, i.head_dim, q.shape[-1]
        per = i.num_attention_heads // g
        fused = torch.cat([q.reshape(g, per * d, hidden), k.reshape(g, d, hidden), v.reshape(g, d, hidden)], dim=1)
        return fused.reshape(g * (per + 2) * d, hidden)

    def _split_qkv(self, t: torch.Tensor) -> list[torch.Tensor]:
        i = self.info
        g, d, hidden = i.num_query_groups, i.head_dim, t.shape[-1]
        per = i.num_attention_heads // g
        q, k, v = t.reshape(g, (per + 2) * d, hidden).split([per * d, d, d], dim=1)
        return [q.reshape(-1, hidden), k.reshape(-1, hidden), v.reshape(-1, hidden)]


def _pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """Zero rows up to the padded vocabulary: padded tokens never occur, and their logits are 0."""
    if t.shape[0] == rows:
        return t
    if t.shape[0] > rows:
        raise ValueError(f"vocab tensor has {t.shape[0]} rows, more than the padded size {rows}")
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])], dim=0)
