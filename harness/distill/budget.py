"""A training budget in steps, and the size of the text it runs over: the facts the plan's epoch count
(harness/distill/data.py), its memory estimate (harness/distill/training_memory.py) and the training loop
(harness/distill/kd_train.py) all read, kept in one place so none of them imports another for them.

Pure arithmetic; imported by the orchestrator and by the training worker alike.
"""

from __future__ import annotations

from typing import Protocol

# Size of train-v1's corpus.jsonl (its stats.json): 1,817,201 characters in 3,992 documents, 460,668 tokens
# with SmolLM2's tokenizer (the `corpus_tokens` of a student's record); a larger vocabulary (Llama 3's
# 128K) cuts it into fewer. The plan counts epochs against it before anything is prepared.
CORPUS_CHARS = 1_817_201
CORPUS_TOKENS = 460_668
HELDOUT_WINDOWS = 8  # windows at the end of the token stream that training never sees (train_common.windows)


class Budget(Protocol):
    """What bounds a run in steps (a student spec, or the logit-KD loop's recipe)."""

    @property
    def batch_size(self) -> int: ...
    @property
    def seq_len(self) -> int: ...
    @property
    def max_steps(self) -> int | None: ...
    @property
    def max_tokens(self) -> int | None: ...


def planned_steps(spec: Budget) -> int | None:
    """Optimizer steps a budget allows: the first of max_steps and ceil(max_tokens / tokens per step) reached;
    None when only max_minutes bounds the run."""
    per_step = spec.batch_size * spec.seq_len
    bounds = [spec.max_steps] if spec.max_steps else []
    if spec.max_tokens:
        bounds.append(-(-spec.max_tokens // per_step))
    return min(bounds) if bounds else None
