"""The requests of a load test, built from its `load.workload` (harness/spec/workload.py).

`fixed` keeps the plain token-id prompts of harness/measure/prompts.token_prompts (the same prompts as before
workloads existed, so old cells measure what they did). The other kinds build `Request`s (a prompt of token
ids or chat messages, and its own output length) or `Conversation`s (chat turns sent one after another).
Everything is drawn from the corpus with seeds, so every cell of a matrix sends the same requests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from harness.measure.prompts import decode, document_lengths, special_prefix, token_prompts, token_windows
from harness.spec.loadtest import LoadSpec
from harness.spec.workload import ChatWorkload, DistributionWorkload, Lengths, SharedPrefixWorkload


@dataclass(frozen=True)
class Request:
    """One request: token ids for /v1/completions or messages for /v1/chat/completions."""

    prompt: list[int] | None = None
    messages: list[dict] | None = None
    max_tokens: int | None = None  # None: the load's output_tokens
    turn: int = 0  # 1-based turn of a conversation; 0 outside one

    @property
    def chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True)
class Conversation:
    """Chat turns sent in order, each once the previous reply ended; each turn's messages hold the history."""

    turns: list[Request] = field(default_factory=list)


Item = list[int] | Request | Conversation


def build(load: LoadSpec, tokenizer_src: str, n: int) -> list:
    """`n` request items of `load.workload` (conversations for chat: each counts as one of `n`)."""
    w = load.workload
    if isinstance(w, SharedPrefixWorkload):
        return shared_prefix(tokenizer_src, load.corpus, n, load.input_tokens, w, load.seed)
    if isinstance(w, ChatWorkload):
        return conversations(tokenizer_src, load.corpus, n, load.input_tokens, load.output_tokens, w, load.seed)
    if isinstance(w, DistributionWorkload):
        return drawn(tokenizer_src, load.corpus, n, w, load.seed)
    return token_prompts(tokenizer_src, load.corpus, n, load.input_tokens, load.seed)


def shared_prefix(
    tokenizer_src: str, corpus: str, n: int, input_tokens: int, w: SharedPrefixWorkload, seed: int
) -> list[list[int]]:
    """Prompt i: prefix i mod `prefixes` (K tokens, the tokenizer's BOS included) then its own suffix window,
    `input_tokens` in all. The prefixes are drawn from a seed of their own, so adding requests keeps them."""
    prefixes = token_windows(tokenizer_src, corpus, [w.prefix_tokens] * w.prefixes, seed + 7919)
    suffixes = token_windows(tokenizer_src, corpus, [input_tokens - w.prefix_tokens] * n, seed, head=False)
    return [prefixes[i % w.prefixes] + s for i, s in enumerate(suffixes)]


def _text(tokenizer_src: str, corpus: str, lengths: list[int], seed: int) -> list[str]:
    # message text: corpus windows decoded (the server's template adds the special tokens), trimmed of the
    # partial-word edges' spaces
    return [decode(tokenizer_src, ids).strip() for ids in token_windows(tokenizer_src, corpus, lengths, seed, False)]


def conversations(
    tokenizer_src: str, corpus: str, n: int, input_tokens: int, output_tokens: int, w: ChatWorkload, seed: int
) -> list[Conversation]:
    """`n` conversations of `w.turns` turns: user messages of ~input_tokens tokens of corpus text, replies in
    the history of ~output_tokens tokens (fixed text, not the model's: see harness/spec/workload.py)."""
    per = [input_tokens, output_tokens] * w.turns
    texts = _text(tokenizer_src, corpus, per * n, seed)
    systems = _text(tokenizer_src, corpus, [w.system_tokens] * n, seed + 1) if w.system_tokens else []
    out = []
    for c in range(n):
        msgs = [{"role": "system", "content": systems[c]}] if systems else []
        turns = []
        for t in range(w.turns):
            user, reply = texts[c * len(per) + 2 * t], texts[c * len(per) + 2 * t + 1]
            msgs = [*msgs, {"role": "user", "content": user}]
            turns.append(Request(messages=msgs, max_tokens=output_tokens, turn=t + 1))
            msgs = [*msgs, {"role": "assistant", "content": reply}]
        out.append(Conversation(turns))
    return out


def draw_lengths(d: Lengths, n: int, rng: random.Random, tokenizer_src: str, corpus: str) -> list[int]:
    """`n` lengths of distribution `d`, each clipped to [d.min, d.max]."""
    if d.shape == "uniform":
        raw = [rng.randint(d.min, d.max) for _ in range(n)]
    elif d.shape == "normal":
        assert d.mean is not None and d.stdev is not None  # the spec's validator requires them
        raw = [round(rng.gauss(d.mean, d.stdev)) for _ in range(n)]
    else:
        docs = document_lengths(tokenizer_src, corpus)
        raw = [rng.choice(docs) for _ in range(n)]
    return [min(max(x, d.min), d.max) for x in raw]


def drawn(tokenizer_src: str, corpus: str, n: int, w: DistributionWorkload, seed: int) -> list[Request]:
    """Requests with prompt and output lengths drawn from `w` (seeded by `w.seed`; windows by `seed`)."""
    rng = random.Random(w.seed)
    ins = draw_lengths(w.input, n, rng, tokenizer_src, corpus)
    outs = draw_lengths(w.output, n, rng, tokenizer_src, corpus)
    head = len(special_prefix(tokenizer_src))
    prompts = token_windows(tokenizer_src, corpus, [max(x, head + 1) for x in ins], seed)
    return [Request(prompt=p, max_tokens=o) for p, o in zip(prompts, outs, strict=True)]


def describe(load: LoadSpec) -> dict:
    """What the load test sent, stored with its figures (so results of different workloads are not mixed)."""
    return load.workload.model_dump()
