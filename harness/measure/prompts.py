"""Prompts of an exact token length, cut from a real text corpus and sent as token ids.

Sending token ids (the OpenAI completions API accepts them) fixes the input length exactly without
the client and server disagreeing on tokenization. Windows are drawn with a seed so every cell of a
matrix sees the same prompts; distinct windows keep prefix caching from flattering TTFT.
"""

from __future__ import annotations

import random
from functools import lru_cache
from pathlib import Path


def corpus_text(name: str) -> str:
    if name != "pydoc":
        raise ValueError(f"unknown corpus {name!r} (known: pydoc)")
    from pydoc_data import topics  # CPython ships it: 465K characters of plain English technical prose

    return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))


@lru_cache(maxsize=4)
def _encode_corpus(tokenizer_src: str, corpus: str) -> tuple[int, ...]:
    text = corpus_text(corpus)
    tok_file = Path(tokenizer_src) / "tokenizer.json"
    if tok_file.is_file():
        from tokenizers import Tokenizer  # light Rust tokenizer; no transformers import needed

        return tuple(Tokenizer.from_file(str(tok_file)).encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer  # hub ids: the ordinary path (slow import, only here)

    return tuple(AutoTokenizer.from_pretrained(tokenizer_src).encode(text, add_special_tokens=False))


def token_prompts(tokenizer_src: str, corpus: str, n: int, length: int, seed: int) -> list[list[int]]:
    ids = _encode_corpus(tokenizer_src, corpus)
    if len(ids) <= length:
        raise ValueError(f"corpus {corpus!r} has {len(ids)} tokens, fewer than input_tokens={length}")
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - length) for _ in range(n)]
    return [list(ids[s : s + length]) for s in starts]
