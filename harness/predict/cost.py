"""ModelCost: what serving one token costs a model in bytes and FLOPs, from its architecture (config facts,
harness/models/arch.py) and how its weights are stored (harness/serving_memory.py, module by module).

- bytes a decode step streams: every weight once (a step multiplies each weight matrix by the batch), except
  an untied input embedding table (only the batch's rows are read); a tied table is the LM head and is read
  whole. Plus each sequence's KV cache up to its context.
- FLOPs a token costs: 2 per weight of every matmul (layer linears and the LM head) plus attention over the
  context: QK^T and AV, 2 x head_dim each per head per context token, in every layer.
Pure arithmetic: the advisor imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.models.arch import ArchInfo
from harness.serving_memory import KV_DTYPE_BYTES, Quant, arch_kv_bytes_per_token, module_bits, modules, weights


@dataclass(frozen=True)
class ModelCost:
    params: int
    weight_bytes: float  # as served
    embed_bytes: float  # the input embedding table as served
    tied: bool
    matmul_flops_per_token: float
    attn_flops_per_context_token: float
    kv_bytes_per_token: float

    @property
    def streamed_bytes(self) -> float:
        """Weight bytes one decode step reads."""
        return self.weight_bytes - (0.0 if self.tied else self.embed_bytes)

    def flops_per_token(self, context: float) -> float:
        return self.matmul_flops_per_token + self.attn_flops_per_context_token * context

    def scaled_to(self, weight_bytes: float) -> ModelCost:
        """The same model with a measured weight size (an artefact's bytes on disk): the embedding table keeps
        its share of it."""
        share = self.embed_bytes / self.weight_bytes if self.weight_bytes else 0.0
        return ModelCost(
            self.params,
            weight_bytes,
            weight_bytes * share,
            self.tied,
            self.matmul_flops_per_token,
            self.attn_flops_per_context_token,
            self.kv_bytes_per_token,
        )


def kv_bytes(arch: ArchInfo, kv_dtype: str) -> float:
    return arch_kv_bytes_per_token(arch, kv_dtype if kv_dtype in KV_DTYPE_BYTES else "bf16")


def model_cost(arch: ArchInfo, quant: Quant, kv_bytes_per_token: float) -> ModelCost:
    w = weights(arch, quant)
    embed = next(m for m in modules(arch) if m.kind == "embed")
    embed_bytes = embed.params * module_bits(embed, arch, quant) / 8
    matmul_params = sum(m.params for m in modules(arch) if m.kind != "embed")
    if arch.tie_word_embeddings:
        matmul_params += embed.params  # the tied table is the LM head's matmul
    attn = 4.0 * arch.num_layers * arch.num_heads * arch.head_dim
    return ModelCost(
        params=arch.params,
        weight_bytes=w.bytes,
        embed_bytes=embed_bytes,
        tied=arch.tie_word_embeddings,
        matmul_flops_per_token=2.0 * matmul_params,
        attn_flops_per_context_token=attn,
        kv_bytes_per_token=kv_bytes_per_token,
    )
