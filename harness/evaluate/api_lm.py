"""lm-eval model `dq-local-completions`: lm-eval's `local-completions` with the special-token rule of its
`hf` model (harness/evaluate/bos.py), so a server-scored cell equals what lm-eval's `hf` model reports.

`local-completions` adds no BOS by default (`add_bos_token=False`), and with `add_bos_token=True` adds it
even to a chat-templated prompt that already begins with it. Token ids are sent (`tokenized_requests`), so
the client alone decides the special tokens: vLLM and llama-server add none to token-id prompts.

Three departures from lm-eval's transport, all score-preserving (issue #31, bench/eval_efficiency.py):

- `logprobs_via="prompt_logprobs"` (what harness/serve/vllm.py asks for): a loglikelihood request asks vLLM
  for `prompt_logprobs: 1` instead of `echo` + `logprobs: 1`. The same engine computes the same numbers; the
  answer leaves out the echoed prompt text, its per-token strings and offsets, and the second copy of the
  prompt logprobs vLLM attaches to every echo answer (51 KB -> 30 KB for a 261-token prompt), which the API
  server spent its CPU on. A continuation's logprob and greedy flag are read as lm-eval reads them from the
  echo (`token_logprobs` summed, greedy = the token's logprob equals the best of the position's top
  logprobs), keyed by token id rather than by decoded string, so two tokens that decode alike (byte-fallback
  pieces) cannot collide. `echo` (lm-eval's own) stays for servers without vLLM's extension.
- `prompt_tail=True` (harness/serve/vllm.py, unless DQBENCH_PROMPT_LOGPROBS=all): each loglikelihood request
  also says how many of its prompts' last tokens it reads (`vllm_xargs`, the longest continuation of the
  batch), and a dqbench vLLM server computes the LM head at those positions only
  (harness/serve/prompt_tail.py). An earlier position comes back as a placeholder (a positive logprob);
  reading one is an error, never a score. A server without the plugin answers every position, as before.
- `loglikelihood_rolling` sends the windows of *all* documents in one batch (lm-eval's TemplateAPI sends one
  document's windows, waits, then the next's), so `num_concurrent` requests are in flight across documents.
  The windows and their sums are lm-eval's own.

Imported only inside the evaluate stage (it needs lm_eval).
"""

from __future__ import annotations

from operator import itemgetter

from lm_eval import utils
from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalCompletionsAPI

from harness.evaluate.bos import encode_kwargs, prefix_token_id
from harness.serve.prompt_tail import TAIL_ARG

LOGPROBS_VIA = ("echo", "prompt_logprobs")
# what vLLM's completions answer clamps a token logprob to (its -inf), applied alike to both transports
MIN_LOGPROB = -9999.0


def prompt_logprob_answers(
    outputs: dict | list[dict], tokens: list[list[int]], ctxlens: list[int]
) -> list[tuple[float, bool]]:
    """(continuation logprob, greedy) per prompt from vLLM's `prompt_logprobs` answers: entry j of a
    choice's `prompt_logprobs` is {token id: {"logprob", "rank", ...}} for prompt token j (entry 0 is None)
    and holds the token itself and the position's top-1."""
    res = []
    for out in outputs if isinstance(outputs, list) else [outputs]:
        for choice, toks, ctxlen in zip(sorted(out["choices"], key=itemgetter("index")), tokens, ctxlens, strict=True):
            assert ctxlen > 0, "Context length must be greater than 0"
            entries = choice["prompt_logprobs"]
            if len(entries) != len(toks):
                raise ValueError(f"server returned {len(entries)} prompt logprobs for a {len(toks)}-token prompt")
            total, greedy = 0.0, True
            for tok, entry in zip(toks[ctxlen:], entries[ctxlen:], strict=True):
                if any(float(v["logprob"]) > 0 for v in entry.values()):
                    raise ValueError("the server returned a placeholder for a prompt position this request reads")
                lps = {int(k): max(float(v["logprob"]), MIN_LOGPROB) for k, v in entry.items()}
                total += lps[tok]
                greedy = greedy and lps[tok] == max(lps.values())
            res.append((total, greedy))
    return res


def tail_of(prompts: list[list[int]], ctxlens: list[int]) -> int:
    """How many last prompt tokens a batch's answers read: its longest continuation (at least 1)."""
    return max([len(p) - c for p, c in zip(prompts, ctxlens, strict=True)] + [1])


@register_model("dq-local-completions")
class DQLocalCompletions(LocalCompletionsAPI):
    def __init__(
        self, *args, logprobs_via: str = "echo", rolling_batch: bool = True, prompt_tail: bool = False, **kwargs
    ) -> None:
        if logprobs_via not in LOGPROBS_VIA:
            raise ValueError(f"logprobs_via={logprobs_via!r}: one of {', '.join(LOGPROBS_VIA)}")
        self.logprobs_via = logprobs_via
        self.prompt_tail = prompt_tail and logprobs_via == "prompt_logprobs"
        self.rolling_batch = rolling_batch  # False: lm-eval's one document at a time (bench/eval_efficiency.py)
        super().__init__(*args, **kwargs)

    def tok_encode(self, string, left_truncate_len=None, add_special_tokens=None, truncation=False, **kwargs):
        if self.tokenizer_backend != "huggingface":
            return super().tok_encode(string, left_truncate_len, bool(add_special_tokens), truncation, **kwargs)
        # lm-eval's API passes add_special_tokens=self.add_bos_token (False by default) for generation and
        # nothing for loglikelihood: both mean "unset" here unless a caller forces True
        forced = True if add_special_tokens else None

        def one(s: str) -> list[int]:
            ids = self.tokenizer(
                s, truncation=truncation, return_attention_mask=False, **encode_kwargs(self.tokenizer, s, forced)
            ).input_ids
            return ids[-left_truncate_len:] if left_truncate_len else ids

        return one(string) if isinstance(string, str) else [one(s) for s in string]

    @property
    def prefix_token_id(self) -> int:
        if self.custom_prefix_token_id is not None:
            return self.custom_prefix_token_id
        return prefix_token_id(self.tokenizer)

    def _create_payload(
        self, messages, generate=False, gen_kwargs=None, seed=1234, eos=None, tail: int | None = None, **kwargs
    ) -> dict:
        payload = super()._create_payload(messages, generate, gen_kwargs, seed, eos, **kwargs)
        if not generate and self.logprobs_via == "prompt_logprobs":
            for key in ("echo", "logprobs"):
                payload.pop(key, None)
            payload["prompt_logprobs"] = 1
            if tail is not None:
                payload["vllm_xargs"] = {TAIL_ARG: tail}
        return payload

    async def amodel_call(self, session, sem, messages, *, generate=True, ctxlens=None, **kwargs):
        """lm-eval's call, with the batch's longest continuation handed to `_create_payload` (lm-eval passes
        the context lengths to the answer's parser only)."""
        if self.prompt_tail and not generate and ctxlens:
            kwargs["tail"] = tail_of(messages, ctxlens)
        return await super().amodel_call(session, sem, messages, generate=generate, ctxlens=ctxlens, **kwargs)

    def parse_logprobs(self, outputs, tokens=None, ctxlens=None, **kwargs) -> list[tuple[float, bool]]:
        if self.logprobs_via == "prompt_logprobs":
            return prompt_logprob_answers(outputs, tokens or [], ctxlens or [])
        return LocalCompletionsAPI.parse_logprobs(outputs, tokens, ctxlens, **kwargs)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """lm-eval's rolling loglikelihood (TemplateAPI.loglikelihood_rolling: the same windows, summed per
        document), every document's windows scored in one batch."""
        if not self.rolling_batch:
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        windows: list[tuple] = []
        owner: list[int] = []
        for i, (string,) in enumerate(r.args for r in requests):
            doc = [
                (None, *w)
                for w in map(
                    utils.make_disjoint_window,
                    utils.get_rolling_token_windows(
                        token_list=self.tok_encode(string),
                        prefix_token=self.prefix_token_id,
                        max_seq_len=self.max_length - 1,  # TemplateAPI's max_length is already max_length - 1
                        context_len=1,
                    ),
                )
            ]
            windows += doc
            owner += [i] * len(doc)
        nll = self._loglikelihood_tokens(windows, disable_tqdm=True) if windows else []
        totals = [0.0] * len(requests)
        for i, (lp, _greedy) in zip(owner, nll, strict=True):
            totals[i] += lp
        for r, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
        return totals
