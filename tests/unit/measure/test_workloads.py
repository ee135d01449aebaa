"""Request building per workload (harness/measure/workloads.py) on a small word-level tokenizer of the pydoc
corpus with a BOS, written to a temporary folder: shared prefixes shared at the token level, chat histories,
seeded lengths within their bounds."""

import json
from collections import Counter

import pytest

from harness.measure.level import by_turn
from harness.measure.prompts import corpus_text, decode, document_lengths, special_prefix, token_prompts
from harness.measure.workloads import Conversation, Request, build
from harness.spec.loadtest import LoadSpec

BOS = 0


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    words = Counter(corpus_text("pydoc").split())
    vocab = {"<s>": BOS, "[UNK]": 1} | {w: i + 2 for i, w in enumerate(sorted(words))}
    t = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    t.decoder = tokenizers.decoders.WordPiece(prefix="##")  # joins words with spaces
    t.post_processor = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    folder = tmp_path_factory.mktemp("tok")
    t.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({}))
    return str(folder)


def spec(**kw) -> LoadSpec:
    return LoadSpec(profiles=[{"kind": "synchronous", "requests": 2}], **kw)


def test_the_tokenizer_adds_a_bos(tok):
    assert special_prefix(tok) == (BOS,)


def test_fixed_is_todays_prompts(tok):
    assert build(spec(input_tokens=32), tok, 5) == token_prompts(tok, "pydoc", 5, 32, 0)


def test_shared_prefix_is_shared_at_the_token_level(tok):
    w = {"kind": "shared_prefix", "prefix_tokens": 24, "prefixes": 3}
    prompts = build(spec(input_tokens=40, workload=w), tok, 9)
    assert all(len(p) == 40 and p[0] == BOS for p in prompts)
    heads = [tuple(p[:24]) for p in prompts]
    assert len(set(heads)) == 3  # three distinct prefixes ...
    assert all(heads[i] == heads[i % 3] for i in range(9))  # ... given to requests in turn
    assert len({tuple(p[24:]) for p in prompts}) == 9  # every suffix its own
    assert BOS not in [t for p in prompts for t in p[1:]]  # the suffix continues the prompt: no second BOS
    # the prefixes do not depend on how many requests are built
    assert [p[:24] for p in build(spec(input_tokens=40, workload=w), tok, 3)] == [p[:24] for p in prompts[:3]]


def test_chat_history_accumulates(tok):
    convs = build(
        spec(input_tokens=12, output_tokens=6, workload={"kind": "chat", "turns": 3, "system_tokens": 5}), tok, 2
    )
    assert len(convs) == 2 and all(isinstance(c, Conversation) for c in convs)
    turns = convs[0].turns
    assert [t.turn for t in turns] == [1, 2, 3] and all(t.chat and t.max_tokens == 6 for t in turns)
    roles = [m["role"] for m in turns[2].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    # each turn's messages are the previous turn's, its fixed reply, then the new user message
    for a, b in zip(turns, turns[1:], strict=False):
        assert b.messages[: len(a.messages)] == a.messages
    assert [len(m["content"].split()) for m in turns[2].messages] == [5, 12, 6, 12, 6, 12]
    assert convs[0].turns[0].messages != convs[1].turns[0].messages
    # seeded: the same conversations every time
    again = build(
        spec(input_tokens=12, output_tokens=6, workload={"kind": "chat", "turns": 3, "system_tokens": 5}), tok, 2
    )
    assert again == convs


def _dist(shape_in: dict, shape_out: dict, seed: int = 0) -> LoadSpec:
    return spec(workload={"kind": "distribution", "input": shape_in, "output": shape_out, "seed": seed})


def test_distribution_lengths_are_seeded_and_within_bounds(tok):
    s = _dist(
        {"shape": "normal", "mean": 40, "stdev": 30, "min": 10, "max": 60}, {"shape": "uniform", "min": 3, "max": 9}
    )
    reqs = build(s, tok, 400)
    assert all(isinstance(r, Request) and not r.chat for r in reqs)
    ins, outs = [len(r.prompt) for r in reqs], [r.max_tokens for r in reqs]
    assert min(ins) == 10 and max(ins) == 60  # a stdev of 30 reaches both bounds: clipped there
    assert 35 < sum(ins) / len(ins) < 45
    assert set(outs) == set(range(3, 10))  # uniform: every value of [3, 9]
    assert all(r.prompt[0] == BOS for r in reqs)
    assert build(s, tok, 400) == reqs
    other = build(_dist(s.workload.input.model_dump(), s.workload.output.model_dump(), seed=1), tok, 400)
    assert [len(r.prompt) for r in other] != ins


def test_corpus_lengths_are_the_documents(tok):
    docs = document_lengths(tok, "pydoc")
    assert len(docs) > 50 and min(docs) < max(docs)
    reqs = build(_dist({"shape": "corpus", "min": 1, "max": 10**6}, {"shape": "corpus", "min": 4, "max": 100}), tok, 50)
    assert {len(r.prompt) for r in reqs} <= set(docs)  # unclipped: each prompt as long as a drawn document
    assert all(4 <= r.max_tokens <= 100 for r in reqs)
    assert len({len(r.prompt) for r in reqs}) > 10


def test_decode_gives_text(tok):
    ids = token_prompts(tok, "pydoc", 1, 8, 0)[0][1:]
    assert len(decode(tok, ids).split()) == 7


class _Rec:
    def __init__(self, turn, ttft, prompt_tokens):
        self.turn, self.ttft, self.prompt_tokens = turn, ttft, prompt_tokens


def test_by_turn_summarises_each_turn():
    recs = [_Rec(1, 0.1, 10), _Rec(2, 0.3, 30), _Rec(1, 0.2, 20), _Rec(2, 0.5, 50)]
    out = by_turn(recs)
    assert [t.turn for t in out] == [1, 2]
    assert out[0].prompt_tokens == 15 and out[1].requests == 2
    assert out[1].ttft_ms.p50 == pytest.approx(400)
    assert by_turn([_Rec(0, 0.1, 1)]) is None


def _events(*chunks: dict) -> list[bytes]:
    return [f"data: {json.dumps(c)}".encode() for c in chunks]


@pytest.mark.parametrize("opening", [{"role": "assistant", "content": ""}, {"role": "assistant", "content": None}])
def test_a_chat_streams_opening_chunk_is_no_token(opening):
    from harness.measure.loadgen import _handle_event
    from harness.measure.request import RequestRecord

    rec = RequestRecord(ok=False, start=0.0, end=0.0)
    usage = {"prompt_tokens": 40, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 32}}
    events = _events(
        {"choices": [{"index": 0, "delta": opening}]},
        {"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": None},
        {"choices": [{"index": 0, "delta": {"content": "b"}}]},
        {"choices": [], "usage": usage},
    )
    last = _handle_event(rec, events[0], 0.0, 0.0)
    assert rec.ttft is None and rec.chunks == 0
    for e in events[1:]:
        last = _handle_event(rec, e, 0.0, last)
    assert rec.chunks == 2 and len(rec.itl) == 1
    assert (rec.prompt_tokens, rec.output_tokens, rec.cached_tokens) == (40, 2, 32)
    # a first chunk carrying both the role and a token is a token
    rec2 = RequestRecord(ok=False, start=0.0, end=0.0)
    _handle_event(rec2, _events({"choices": [{"delta": {"role": "assistant", "content": "x"}}]})[0], 0.0, 0.0)
    assert rec2.chunks == 1
