"""harness/evaluate/api_lm.py: vLLM's prompt_logprobs read as lm-eval reads the echo (same continuation
logprob, same greedy flag), and every document's rolling windows sent in one batch with lm-eval's own
windows and sums."""

from types import SimpleNamespace

import pytest

pytest.importorskip("lm_eval")

from lm_eval.models.openai_completions import LocalCompletionsAPI

from harness.evaluate.api_lm import DQLocalCompletions, prompt_logprob_answers
from harness.settings import load_settings


def _answers(tokens, table, ctxlen):
    """The same numbers as vLLM answers them both ways: `table[j]` = {token id: logprob} at position j."""
    plp = [None] + [
        {str(t): {"logprob": lp, "rank": 1, "decoded_token": f"<{t}>"} for t, lp in row.items()} for row in table
    ]
    echo = {
        "token_logprobs": [None] + [row[t] for t, row in zip(tokens[1:], table)] + [-0.1],  # + the generated token
        "top_logprobs": [None] + [{f"<{t}>": lp for t, lp in row.items()} for row in table] + [{"x": -0.1}],
    }
    return {"choices": [{"index": 0, "prompt_logprobs": plp}]}, {"choices": [{"index": 0, "logprobs": echo}]}


@pytest.mark.parametrize(
    "table, greedy",
    [
        ([{5: -0.5}, {7: -0.25}, {9: -1.0, 3: -2.0}], True),  # the token is each position's best
        ([{5: -0.5}, {7: -2.0, 4: -0.125}, {9: -1.0}], False),  # position 2's best is another token
    ],
)
def test_prompt_logprobs_read_like_lm_evals_echo(table, greedy):
    tokens, ctxlen = [1, 5, 7, 9], 2
    plp, echo = _answers(tokens, table, ctxlen)
    got = prompt_logprob_answers(plp, [tokens], [ctxlen])
    want = LocalCompletionsAPI.parse_logprobs(echo, [tokens], [ctxlen])
    assert got == want and got[0][1] is greedy


def test_an_answer_of_another_length_is_refused():
    plp, _ = _answers([1, 5, 7], [{5: -0.5}, {7: -0.25}], 1)
    with pytest.raises(ValueError, match="3 prompt logprobs for a 4-token prompt"):
        prompt_logprob_answers(plp, [[1, 5, 7, 8]], [1])


def _model(**kw):
    tok = load_settings().models_dir / "smollm2-135m-instruct"
    if not (tok / "tokenizer.json").is_file():
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    return DQLocalCompletions(
        model="m",
        base_url="http://127.0.0.1:9/v1/completions",
        tokenizer=str(tok),
        tokenizer_backend="huggingface",
        max_length=64,
        num_concurrent=8,
        **kw,
    )


def test_rolling_windows_of_every_document_go_in_one_batch_with_lm_evals_sums():
    docs = ["word " * 150, "short text", "another " * 90]
    requests = [SimpleNamespace(args=(d,)) for d in docs]

    def fake_scores(lm):
        calls = []

        def score(windows, disable_tqdm=False):
            calls.append(len(windows))
            # a window's "logprob": a function of its tokens only, as a server's answer is
            return [(-0.001 * sum(ctx) - 0.01 * len(cont), False) for _, ctx, cont in windows]

        lm._loglikelihood_tokens = score
        lm.cache_hook = SimpleNamespace(add_partial=lambda *a: None)
        return calls

    batched, one_by_one = _model(), _model(rolling_batch=False)
    calls_b, calls_1 = fake_scores(batched), fake_scores(one_by_one)
    assert batched.loglikelihood_rolling(requests) == one_by_one.loglikelihood_rolling(requests)
    assert len(calls_b) == 1 and len(calls_1) == len(docs) and calls_b[0] == sum(calls_1) > len(docs)


def test_the_payload_asks_for_prompt_logprobs_instead_of_the_echo():
    lm = _model(logprobs_via="prompt_logprobs")
    body = lm._create_payload([[1, 2, 3]], generate=False)
    assert body["prompt_logprobs"] == 1 and "echo" not in body and "logprobs" not in body
    assert _model()._create_payload([[1, 2, 3]], generate=False)["echo"] is True  # lm-eval's own, unchanged
    with pytest.raises(ValueError, match="logprobs_via"):
        _model(logprobs_via="nope")


def test_a_tail_asks_for_the_batch_s_longest_continuation_and_a_placeholder_read_is_an_error():
    import asyncio

    from harness.evaluate.api_lm import tail_of
    from harness.serve.prompt_tail import PLACEHOLDER_LOGPROB, TAIL_ARG

    assert tail_of([[1, 2, 3, 4], [1, 2, 3, 4, 5]], [3, 2]) == 3 and tail_of([[1]], [1]) == 1
    lm = _model(logprobs_via="prompt_logprobs", prompt_tail=True)
    sent = {}

    async def post(self, session, sem, messages, *, generate=True, ctxlens=None, **kwargs):
        sent.update(self._create_payload(messages, generate=generate, **kwargs))
        return []

    from lm_eval.models.api_models import TemplateAPI

    orig, TemplateAPI.amodel_call = TemplateAPI.amodel_call, post
    try:
        asyncio.run(lm.amodel_call(None, None, [[1, 2, 3, 4], [1, 2, 3, 4, 5]], generate=False, ctxlens=[3, 2]))
        assert sent["vllm_xargs"] == {TAIL_ARG: 3} and sent["prompt_logprobs"] == 1
        sent.clear()
        asyncio.run(lm.amodel_call(None, None, [[1, 2, 3]], generate=True, gen_kwargs={"until": ["x"]}))
        assert "vllm_xargs" not in sent  # a generation asks for no prompt logprobs
        sent.clear()
        plain = _model(logprobs_via="prompt_logprobs")
        asyncio.run(plain.amodel_call(None, None, [[1, 2]], generate=False, ctxlens=[1]))
        assert "vllm_xargs" not in sent  # not asked for: every position, as before
    finally:
        TemplateAPI.amodel_call = orig
    # an answer whose placeholder lies where the request reads: refused, never scored
    tokens, table = [1, 5, 7, 9], [{5: PLACEHOLDER_LOGPROB}, {7: -0.25}, {9: -1.0}]
    plp, _ = _answers(tokens, table, 2)
    assert prompt_logprob_answers(plp, [tokens], [2]) == [(-1.25, True)]  # position 1 is before the tail
    with pytest.raises(ValueError, match="placeholder"):
        prompt_logprob_answers(plp, [tokens], [1])
