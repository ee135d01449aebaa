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

    # never a repository's code here (harness/plan/trust.py): a tokenizer that needs it brings a tokenizer.json
    tok = AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=False)
    return tuple(tok.encode(text, add_special_tokens=False))


@lru_cache(maxsize=4)
def special_prefix(tokenizer_src: str) -> tuple[int, ...]:
    """The ids the model's tokenizer puts before any text by default ([BOS] for Llama-3 or Gemma, none for
    SmolLM2): every window starts with them, as the model's input does in use and in lm-eval's `hf` scoring
    (harness/evaluate/bos.py). tokenizer_config.json's `add_bos_token`, where set, decides as it does in
    transformers; otherwise the tokenizer's post-processor."""
    folder = Path(tokenizer_src)
    tok_file, cfg_file = folder / "tokenizer.json", folder / "tokenizer_config.json"
    if tok_file.is_file():
        import json

        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_file))
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        if isinstance(cfg.get("add_bos_token"), bool):
            bos = cfg.get("bos_token")
            bos = bos.get("content") if isinstance(bos, dict) else bos
            bos_id = tok.token_to_id(bos) if isinstance(bos, str) else None
            return (bos_id,) if cfg["add_bos_token"] and bos_id is not None else ()
        plain, full = tok.encode("a", add_special_tokens=False).ids, tok.encode("a", add_special_tokens=True).ids
    else:
        from transformers import AutoTokenizer

        t = AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=False)
        plain, full = t.encode("a", add_special_tokens=False), t.encode("a", add_special_tokens=True)
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return tuple(full[:i])
    return ()


def token_prompts(tokenizer_src: str, corpus: str, n: int, length: int, seed: int) -> list[list[int]]:
    """`n` windows of exactly `length` token ids: the tokenizer's special prefix (BOS, if it adds one),
    then consecutive corpus tokens from a seeded random start."""
    return token_windows(tokenizer_src, corpus, [length] * n, seed)


def token_windows(tokenizer_src: str, corpus: str, lengths: list[int], seed: int, head: bool = True) -> list[list[int]]:
    """One window per entry of `lengths`, of exactly that many token ids (the special prefix first unless
    `head` is False: a window that continues a prompt rather than starting one)."""
    ids = _encode_corpus(tokenizer_src, corpus)
    rng = random.Random(seed)
    out = []
    for length in lengths:
        start = list(special_prefix(tokenizer_src))[:length] if head else []
        body = length - len(start)
        if len(ids) <= body:
            raise ValueError(f"corpus {corpus!r} has {len(ids)} tokens, fewer than input_tokens={length}")
        s = rng.randrange(0, len(ids) - body)
        out.append(start + list(ids[s : s + body]))
    return out


def decode(tokenizer_src: str, ids: list[int]) -> str:
    """The text of `ids` (chat messages are text: the server applies the chat template and tokenizes)."""
    tok_file = Path(tokenizer_src) / "tokenizer.json"
    if tok_file.is_file():
        return _fast_tokenizer(str(tok_file)).decode(ids)
    from transformers import AutoTokenizer

    return str(AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=False).decode(ids))


@lru_cache(maxsize=4)
def _fast_tokenizer(path: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


@lru_cache(maxsize=4)
def document_lengths(tokenizer_src: str, corpus: str) -> tuple[int, ...]:
    """The token length of each document of the corpus (pydoc: one per help topic, 3 to ~20K tokens): the
    natural lengths a `corpus`-shaped length distribution draws from."""
    if corpus != "pydoc":
        raise ValueError(f"unknown corpus {corpus!r} (known: pydoc)")
    from pydoc_data import topics

    docs = [topics.topics[k] for k in sorted(topics.topics)]
    tok_file = Path(tokenizer_src) / "tokenizer.json"
    if tok_file.is_file():
        return tuple(len(e.ids) for e in _fast_tokenizer(str(tok_file)).encode_batch(docs, add_special_tokens=False))
    from transformers import AutoTokenizer

    t = AutoTokenizer.from_pretrained(tokenizer_src, trust_remote_code=False)
    return tuple(len(t.encode(d, add_special_tokens=False)) for d in docs)
