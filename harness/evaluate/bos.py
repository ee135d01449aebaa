"""Special tokens as lm-eval's `hf` model adds them: the one rule every scoring path follows.

lm-eval's `hf` model (the reference a published score comes from) encodes with the tokenizer's own default
(`add_special_tokens=True`: BOS where the tokenizer adds one, as Llama-3's and Gemma's do; nothing where it
does not, as SmolLM2's), except when the text already starts with the BOS text (a chat template rendered
it): then nothing is added, so BOS never appears twice. Its prefix token (an empty context's, and the first
rolling window's conditioning token) is BOS, else EOS. lm-eval's API models default to no special tokens
at all, which scores a BOS-trained model without BOS (issue #20: perplexity 3,210 instead of 22.8).
No heavy imports: the tokenizer is passed in.
"""

from __future__ import annotations


def encode_kwargs(tokenizer, string: str, add_special_tokens: bool | None) -> dict:
    """The `add_special_tokens` keyword hf's `tok_encode` would use for `string` ({}: the tokenizer's default)."""
    if add_special_tokens is not None:
        return {"add_special_tokens": add_special_tokens}
    bos = getattr(tokenizer, "bos_token", None)
    if bos and string.startswith(bos):
        return {"add_special_tokens": False}
    return {}


def prefix_token_id(tokenizer) -> int:
    """hf's prefix token: BOS, else EOS."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos if bos is not None else tokenizer.eos_token_id


def special_prefix(tokenizer) -> list[int]:
    """The ids the tokenizer puts before any text by default ([BOS] or []): what a token-id prompt built
    from raw text (load prompts, shift windows, calibration) starts with, so the model sees what it does in use."""
    plain = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a", add_special_tokens=True)
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return list(full[:i])
    return []
