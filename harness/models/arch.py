"""Architecture facts (parameter count, KV-cache shape) read from a config.json, never from weights.

The planner uses these to estimate memory before anything is loaded. Known public models have their
config facts here so `harness plan` works offline for hub ids (llama8b.yaml on a CPU laptop).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class ArchInfo:
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool

    @property
    def params(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        attn = h * self.num_heads * self.head_dim * 2 + h * kv * 2  # q, o + k, v
        mlp = 3 * h * self.intermediate_size  # gate, up, down
        per_layer = attn + mlp + 2 * h  # two RMSNorms
        embed = self.vocab_size * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return embed + self.num_layers * per_layer + h + head

    @property
    def linear_input_sizes(self) -> dict[str, int]:
        """Input width of each quantizable linear kind: group sizes must divide these."""
        return {"q/k/v/gate/up_proj": self.hidden_size, "o_proj": self.num_heads * self.head_dim,
                "down_proj": self.intermediate_size}

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_elem

    def pruned(self, keep_every: int) -> "ArchInfo":
        """The depth-pruned student that keeps every `keep_every`-th layer (see pruned_layers)."""
        from dataclasses import replace

        return replace(self, num_layers=len(pruned_layers(self.num_layers, keep_every)))

    def to_dict(self) -> dict:
        return asdict(self) | {"params": self.params}


def pruned_layers(num_layers: int, keep_every: int) -> list[int]:
    """Indices of the layers a depth-pruned student keeps: ceil(n / k) of them, evenly spread so that the
    first and the last layer are both kept (the last one writes the space the LM head reads; dropping it
    costs far more than dropping a middle layer)."""
    m = max(1, -(-num_layers // keep_every))
    if m == 1:
        return [num_layers - 1]
    return sorted({round(i * (num_layers - 1) / (m - 1)) for i in range(m)})


def arch_from_config(cfg: dict) -> ArchInfo:
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    return ArchInfo(
        architecture=(cfg.get("architectures") or [cfg.get("model_type", "unknown")])[0],
        hidden_size=hidden,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=heads,
        num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
        head_dim=int(cfg.get("head_dim") or hidden // heads),
        vocab_size=int(cfg["vocab_size"]),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )


def arch_from_dir(path: Path) -> ArchInfo | None:
    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    return arch_from_config(json.loads(cfg.read_text()))


# config.json facts of public checkpoints (copied from their published configs).
KNOWN: dict[str, dict] = {
    "smollm2-135m-instruct": dict(architectures=["LlamaForCausalLM"], hidden_size=576, intermediate_size=1536,
                                  num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                  head_dim=64, vocab_size=49152, tie_word_embeddings=True),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(architectures=["LlamaForCausalLM"], hidden_size=576,
                                                intermediate_size=1536, num_hidden_layers=30,
                                                num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                                                vocab_size=49152, tie_word_embeddings=True),
    "meta-llama/Llama-3.1-8B-Instruct": dict(architectures=["LlamaForCausalLM"], hidden_size=4096,
                                             intermediate_size=14336, num_hidden_layers=32,
                                             num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                             vocab_size=128256, tie_word_embeddings=False),
    "meta-llama/Llama-3.1-70B-Instruct": dict(architectures=["LlamaForCausalLM"], hidden_size=8192,
                                              intermediate_size=28672, num_hidden_layers=80,
                                              num_attention_heads=64, num_key_value_heads=8, head_dim=128,
                                              vocab_size=128256, tie_word_embeddings=False),
    "meta-llama/Llama-3.2-1B-Instruct": dict(architectures=["LlamaForCausalLM"], hidden_size=2048,
                                             intermediate_size=8192, num_hidden_layers=16,
                                             num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                             vocab_size=128256, tie_word_embeddings=True),
}


def known_arch(key: str) -> ArchInfo | None:
    cfg = KNOWN.get(key)
    return arch_from_config(cfg) if cfg else None
