"""A tiny randomly initialised Llama with SmolLM2's tokenizer (vocab 49152), saved as a bf16 checkpoint:
the model the stage tests train, quantize and scan in seconds. Skips the test when torch/transformers or
the prepared embedded model (for its tokenizer) are missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def make_tiny_llama(out: Path, layers: int = 2, peaked: bool = False, **config) -> Path:
    """`peaked`: scale the (tied) embeddings so logits are far from uniform; at init every KL is ~0."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from harness.settings import load_settings

    src = load_settings().models_dir / "smollm2-135m-instruct"
    if not (src / "tokenizer.json").is_file():
        pytest.skip("embedded model not prepared")
    cfg = transformers.LlamaConfig(
        **{
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "vocab_size": 49152,
            "max_position_embeddings": 512,
            "tie_word_embeddings": True,
            **config,
        }
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    if peaked:
        with torch.no_grad():
            model.model.embed_tokens.weight.mul_(30)
    model.to(torch.bfloat16).save_pretrained(out)
    for f in TOKENIZER_FILES:
        if (src / f).is_file():
            shutil.copy(src / f, out / f)
    return out
