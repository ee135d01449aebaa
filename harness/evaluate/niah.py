"""dqbench's needle-in-a-haystack task, `dq_niah`, scored per context length (`dq_niah@4096`): its documents are
generated offline, sized with the cell's own tokenizer, and written with their lm-eval task YAMLs into a folder the
evaluate worker adds to lm-eval's include path (harness/evaluate/lmeval_worker.py calls `prepare_length_tasks`).

Why not lm-eval's RULER `niah_*`: its prepare_niah imports `wonderwords` (not installed here) and downloads nltk's
punkt_tab when imported, and most variants read Paul Graham's essays from the hub. This follows RULER's single-needle
design (niah_single: one 7-digit number under a word key, greedy generation, scored 1 when the number appears in
the answer: harness/evaluate/niah_score.py) with CPython's pydoc topics as the haystack, the plain English technical
prose the shift analysis and load prompts use (harness/measure/prompts.py).

Each document depends only on (seed, length, its index) and the tokenizer: the reference and a compressed cell of the
same model get the same documents, so their per-item scores pair by document id, and `limit: N` scores the first N
documents of each length. A document's prompt (instruction, haystack with the needle at a seeded depth, question and
the answer's opening words) is at most `length - max_gen_toks - 1` tokens, so prompt + answer fit `length`.

Runs in the evaluate worker; needs `tokenizers` (the cell's tokenizer.json), no transformers, no network.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.spec.context_lengths import expand, split_length_task

TASK = "dq_niah"
SOURCE = "generated: CPython pydoc_data haystack, sized with the cell's tokenizer"
DOCS = 100  # documents per length (harness/evaluate/catalog.DQ_DOCS)
GEN_TOKENS = 32  # the answer budget: a 7-digit number and a few words around it
SCORER = Path(__file__).with_name("niah_score.py")
HEAD = (
    "A special magic number is hidden within the following text. Make sure to memorize it. "
    "I will quiz you about the number afterwards.\n"
)
TAIL = (
    "\nWhat is the special magic number for {key} mentioned in the provided text? "
    "The special magic number for {key} mentioned in the provided text is"
)
NEEDLE = "One of the special magic numbers for {key} is: {value}."
# keys as RULER's adjective-noun words; none occurs in the haystack
ADJECTIVES = (
    "amber",
    "brave",
    "calm",
    "dusty",
    "eager",
    "fancy",
    "gentle",
    "hollow",
    "icy",
    "jolly",
    "keen",
    "lively",
    "mellow",
    "nimble",
    "odd",
    "proud",
    "quiet",
    "rapid",
    "shiny",
    "tidy",
    "vivid",
    "wary",
    "young",
    "zesty",
)
NOUNS = (
    "anchor",
    "badger",
    "candle",
    "dolphin",
    "engine",
    "falcon",
    "garden",
    "harbor",
    "island",
    "jacket",
    "kettle",
    "lantern",
    "meadow",
    "needle",
    "orchard",
    "pepper",
    "quarry",
    "river",
    "saddle",
    "tunnel",
    "valley",
    "walnut",
    "yarrow",
    "zebra",
)


@lru_cache(maxsize=1)
def haystack_sentences() -> tuple[str, ...]:
    """The pydoc corpus as sentences (whitespace folded, split after . ! ?): the units a haystack is cut from."""
    from harness.measure.prompts import corpus_text

    text = re.sub(r"\s+", " ", corpus_text("pydoc")).strip()
    return tuple(s for s in re.split(r"(?<=[.!?]) ", text) if s)


class Sizer:
    """Token counts with the cell's tokenizer (its tokenizer.json), special prefix included, as the prompt is sent
    (harness/evaluate/bos.py's rule: what the tokenizer adds by default)."""

    def __init__(self, tokenizer_src: str) -> None:
        from tokenizers import Tokenizer

        from harness.measure.prompts import special_prefix

        path = Path(tokenizer_src) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"dq_niah sizes its prompts with the cell's tokenizer.json, and {tokenizer_src} has none"
            )
        self.tok = Tokenizer.from_file(str(path))
        self.prefix = len(special_prefix(tokenizer_src))

    def count(self, text: str) -> int:
        return self.prefix + len(self.tok.encode(text, add_special_tokens=False).ids)

    def counts(self, texts: list[str]) -> list[int]:
        return [len(e.ids) for e in self.tok.encode_batch(texts, add_special_tokens=False)]


def make_doc(
    sizer: Sizer, sentences: tuple[str, ...], counts: list[int], length: int, index: int, seed: int, gen_tokens: int
) -> dict:
    """Document `index` at `length`: the needle at a seeded depth in a haystack from a seeded start, grown to fill the
    prompt budget (`length - gen_tokens - 1` tokens) and trimmed until the exact count fits."""
    rng = random.Random(f"dq_niah|{seed}|{length}|{index}")
    key = f"{rng.choice(ADJECTIVES)}-{rng.choice(NOUNS)}"
    value = str(rng.randint(1_000_000, 9_999_999))
    depth = rng.randint(0, 10) / 10  # where the needle sits in the haystack: 0 (start) .. 1 (end)
    start = rng.randrange(len(sentences))
    budget = length - gen_tokens - 1
    needle = NEEDLE.format(key=key, value=value)
    tail = TAIL.format(key=key)
    room = budget - sizer.count(HEAD + needle + tail) - 2
    if room < 1:
        raise ValueError(f"dq_niah at {length} tokens leaves no room for a haystack (answer budget {gen_tokens})")
    picked: list[int] = []
    used = 0
    while len(picked) < len(sentences):  # each sentence's tokens with its joining space
        i = (start + len(picked)) % len(sentences)
        if used + counts[i] > room:
            break
        picked.append(i)
        used += counts[i]

    def render(hay: list[str], at: int) -> str:
        return HEAD + " ".join([*hay[:at], needle, *hay[at:]]) + tail

    def depth_at(n: int) -> int:
        """The sentence boundary nearest `depth` of the first `n` picked sentences' tokens."""
        cum = [0, *itertools.accumulate(counts[i] for i in picked[:n])]
        return min(range(n + 1), key=lambda k: abs(cum[k] - depth * cum[-1]))

    hay = [sentences[i] for i in picked]
    while sizer.count(render(hay, depth_at(len(hay)))) > budget and hay:
        hay.pop()  # token merges across the joins can add a few: trim from the end
    at = depth_at(len(hay))
    # the next sentence, cut at the most words that still fit: long sentences (pydoc's tables) would otherwise
    # leave the prompt well short of its length
    words = sentences[(start + len(hay)) % len(sentences)].split(" ")
    lo, hi = 0, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sizer.count(render([*hay, " ".join(words[:mid])], at)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    if lo:
        hay.append(" ".join(words[:lo]))
    prompt = render(hay, at)
    n = sizer.count(prompt)
    return {
        "doc_id": index,
        "input": prompt,
        "value": value,
        "key": key,
        "depth": depth,
        "context_length": length,
        "prompt_tokens": n,
    }


def build_docs(tokenizer_src: str, length: int, n: int, seed: int, gen_tokens: int = GEN_TOKENS) -> list[dict]:
    """The first `n` documents at `length` tokens (each independent of `n`)."""
    sizer = Sizer(tokenizer_src)
    sentences = haystack_sentences()
    counts = sizer.counts([" " + s for s in sentences])  # as joined: the space merges into the first word
    return [make_doc(sizer, sentences, counts, length, i, seed, gen_tokens) for i in range(n)]


def task_yaml(key: str, data_file: Path, gen_tokens: int) -> str:
    """lm-eval's config of one length's task: greedy generation, scored by niah_score.process_results."""
    cfg: dict[str, Any] = {
        "task": key,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{input}}",
        "doc_to_target": "{{value}}",
        "generation_kwargs": {"do_sample": False, "temperature": 0.0, "max_gen_toks": gen_tokens, "until": []},
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0},
    }
    import yaml

    # the !function tag (resolved by lm-eval beside this file) is no plain YAML value: a line of its own
    return yaml.safe_dump(cfg, sort_keys=False) + "process_results: !function niah_score.process_results\n"


def source_hash() -> str:
    """What generates and scores the documents (this module and the scorer): part of each length's task hash."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(SCORER.read_bytes())
    return h.hexdigest()[:16]


def answer_budget(gen_kwargs: dict) -> int:
    """The tokens the answer may take: the evaluation's `gen_kwargs.max_gen_toks` when set (it overrides the
    task's own), else GEN_TOKENS."""
    return int(gen_kwargs.get("max_gen_toks", GEN_TOKENS))


def prepare_length_tasks(job: Any, workdir: Path) -> tuple[list[tuple[str, Any]], str | None]:
    """The job's tasks as (result key, task spec), a task with context lengths once per length, and the folder with
    the generated per-length tasks (None when there are none): their documents, YAMLs and scorer."""
    tasks = [pair for t in job.tasks for pair in expand(t)]
    todo = [(key, t) for key, t in tasks if split_length_task(key)[1] is not None]
    if not todo:
        return tasks, None
    out = workdir / "niah-tasks"
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SCORER, out / SCORER.name)
    tokenizer = str(job.scoring.model_args["tokenizer"])
    gen = answer_budget(job.gen_kwargs or {})
    for key, t in todo:
        length = split_length_task(key)[1]
        assert length is not None
        docs = build_docs(tokenizer, length, t.limit or DOCS, job.seed, gen)
        data = out / f"{key}.jsonl"
        data.write_text("".join(json.dumps(d) + "\n" for d in docs))
        (out / f"{key}.yaml").write_text(task_yaml(key, data, gen))
        sizes = [d["prompt_tokens"] for d in docs]
        print(f"{key}: {len(docs)} documents, prompts {min(sizes)}-{max(sizes)} tokens (+ {gen} generated)", flush=True)
    return tasks, str(out)
