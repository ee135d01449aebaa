"""Architecture facts (parameter count, KV-cache shape) read from a config.json, never from weights.

The planner uses these to estimate memory before anything is loaded. Known public models have their
config facts here so `harness plan` works offline for hub ids (llama8b.yaml on a CPU laptop).
Multimodal checkpoints (Llava, Gemma 3, Mistral 3 ...) keep the language model's fields under
`text_config`; they are read from there. A config without them is a PlanError naming the file and the
field, never a KeyError.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import PlanError


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
        return {
            "q/k/v/gate/up_proj": self.hidden_size,
            "o_proj": self.num_heads * self.head_dim,
            "down_proj": self.intermediate_size,
        }

    def kv_bytes_per_token(self, bytes_per_elem: float = 2.0) -> float:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * bytes_per_elem

    def pruned(self, keep_every: int) -> "ArchInfo":
        """The depth-pruned student that keeps every `keep_every`-th layer (see pruned_layers)."""
        from dataclasses import replace

        return replace(self, num_layers=len(pruned_layers(self.num_layers, keep_every)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"params": self.params}


def pruned_layers(num_layers: int, keep_every: int) -> list[int]:
    """Indices of the layers a depth-pruned student keeps: ceil(n / k) of them, evenly spread so that the
    first and the last layer are both kept (the last one writes the space the LM head reads; dropping it
    costs far more than dropping a middle layer)."""
    m = max(1, -(-num_layers // keep_every))
    if m == 1:
        return [num_layers - 1]
    return sorted({round(i * (num_layers - 1) / (m - 1)) for i in range(m)})


REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def arch_from_config(cfg: dict[str, Any], source: str = "config.json") -> ArchInfo:
    """Config facts of a causal LM; `source` names the file in errors."""
    if not isinstance(cfg, dict):
        raise PlanError(f"{source}: expected a JSON object, got {type(cfg).__name__}")
    text = cfg.get("text_config")
    text = text if isinstance(text, dict) else {}

    def get(key: str, required: bool = True):
        # the language model's own field wins: a multimodal config's top level may describe the vision tower
        value = text.get(key, cfg.get(key))
        if value is None and required:
            where = " (nor under text_config)" if text else ""
            raise PlanError(
                f"{source}: no `{key}`{where}; dqbench reads {', '.join(REQUIRED)} from a causal LM's "
                "config.json to plan memory and group sizes: point the model at a checkpoint of one"
            )
        return value

    def integer(key: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
            raise PlanError(f"{source}: `{key}` is {value!r}; expected a positive integer")
        return int(value)

    heads = integer("num_attention_heads", get("num_attention_heads"))
    hidden = integer("hidden_size", get("hidden_size"))
    kv = get("num_key_value_heads", required=False)
    head_dim = get("head_dim", required=False)
    tie = cfg.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    return ArchInfo(
        architecture=(cfg.get("architectures") or [cfg.get("model_type", "unknown")])[0],
        hidden_size=hidden,
        intermediate_size=integer("intermediate_size", get("intermediate_size")),
        num_layers=integer("num_hidden_layers", get("num_hidden_layers")),
        num_heads=heads,
        num_kv_heads=integer("num_key_value_heads", kv) if kv else heads,
        head_dim=integer("head_dim", head_dim) if head_dim else hidden // heads,
        vocab_size=integer("vocab_size", get("vocab_size")),
        tie_word_embeddings=bool(tie),
    )


def arch_from_dir(path: Path) -> ArchInfo | None:
    cfg = path / "config.json"
    if not cfg.is_file():
        return None
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PlanError(f"{cfg}: not a readable JSON config ({exc.__class__.__name__}: {exc})") from None
    return arch_from_config(doc, str(cfg))


# config.json facts of public checkpoints (copied from their published configs).
KNOWN: dict[str, dict[str, Any]] = {
    "smollm2-135m-instruct": dict(
        architectures=["LlamaForCausalLM"],
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "meta-llama/Llama-3.1-8B-Instruct": dict(
        architectures=["LlamaForCausalLM"],
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "meta-llama/Llama-3.1-70B-Instruct": dict(
        architectures=["LlamaForCausalLM"],
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "meta-llama/Llama-3.2-1B-Instruct": dict(
        architectures=["LlamaForCausalLM"],
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        tie_word_embeddings=True,
    ),
}


def known_arch(key: str) -> ArchInfo | None:
    cfg = KNOWN.get(key)
    return arch_from_config(cfg) if cfg else None


KNOWN["HuggingFaceTB/SmolLM2-135M-Instruct"] = KNOWN["smollm2-135m-instruct"]  # the hub name of the embedded model
