"""lm-eval model `dq-llamacpp`: scores a GGUF file in-process through llama.cpp's C API (llama-cpp-python).

Why not the server: llama-server ignores `echo` on /v1/completions (it answers with the generated token's
logprobs only, no prompt logprobs), and llama-cpp-python's own server
returns them shifted by one position (the value at token i belongs to token i+1), which would corrupt
every loglikelihood silently. Here the logits come straight from llama_get_logits for every position,
and the scoring follows lm-eval's `local-completions` exactly: same HF tokenizer and token ids, same
left truncation to `max_length`, sum of log p(token_j | tokens_<j) over the continuation, greedy flag
= every continuation token is the argmax. tests/e2e/test_logprobs.py checks it against transformers.

`context_once` (issue #31; on for GGUF cells): each loglikelihood request's context is evaluated on its own and its
continuation on top of that KV cache, and a context just evaluated alone is kept for the next request with the
same context (a multiple-choice question's choices): ~2x fewer tokens evaluated on HellaSwag / ARC. With a bf16
GGUF the answers are bit-identical to one pass over the whole prompt; with quantized weights llama.cpp's CPU
kernels give other last bits for a row computed in a small batch, so the answers differ by a little (measured
in docs/results/2026-12-07-default-time-avx512.md) but never depend on which request came before.

`prefix_reuse` (issue #31, off): a request that begins with the tokens the context already holds (a multiple-choice
question's choices follow each other, each after the same question) keeps that prefix's KV cache and logits
and evaluates only the rest, as llama.cpp's own server reuses a slot's prompt. Each position's logits depend
only on the tokens up to it; whether llama.cpp's kernels also give the same bits for a row computed in another
batch is measured, not assumed (bench/eval_efficiency.py's GGUF variants, docs/results/).

Imported only inside the evaluate stage (it needs llama_cpp and LLAMA_CPP_LIB_PATH).
"""

from __future__ import annotations

import atexit
from hashlib import sha256

import numpy as np
from lm_eval import utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from harness.evaluate.bos import encode_kwargs, prefix_token_id
from harness.spec.kv_cache import llama_kv_kwargs


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


@register_model("dq-llamacpp")
class LlamaCppLM(TemplateLM):
    def __init__(
        self,
        model_path: str,
        tokenizer: str,
        max_length: int = 1024,
        n_threads: int | None = None,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        max_gen_toks: int = 256,
        base_url: str | None = None,
        model: str | None = None,
        num_concurrent: int = 1,
        prefix_reuse: bool = False,
        context_once: bool = False,
        type_k: str | None = None,
        type_v: str | None = None,
        flash_attn: bool | str = False,
        **_ignored,
    ) -> None:
        super().__init__()
        # generation goes to the cell's llama-server when given (its /v1/completions), so a generative task
        # is scored by the served engine; loglikelihoods stay in-process (the server has no prompt logprobs)
        self.base_url, self.server_model, self.num_concurrent = base_url, model, max(1, int(num_concurrent))
        from llama_cpp import Llama
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=False)  # a GGUF's tokenizer
        self.max_length = int(max_length)
        self.max_gen_toks = int(max_gen_toks)
        self.prefix_reuse = bool(prefix_reuse)
        self.context_once = bool(context_once) and not self.prefix_reuse
        self.reused = 0  # prompt tokens not evaluated again (their prefix was in the context)
        self._context: list[int] | None = None  # the context last evaluated on its own (context_once)
        self.llm = Llama(
            model_path=model_path,
            n_ctx=self.max_length,
            n_batch=min(int(n_batch), self.max_length),
            **({"n_ubatch": int(n_ubatch)} if n_ubatch else {}),
            logits_all=True,
            n_threads=n_threads,
            verbose=False,
            seed=0,
            # axes.kv_cache: the served cell's cache types (and the flash attention a quantized V cache needs)
            **llama_kv_kwargs({"type_k": type_k, "type_v": type_v, "flash_attn": flash_attn}),
        )
        # free the model before interpreter teardown (llama-cpp-python's __del__ fails once ctypes is gone)
        atexit.register(self.llm.close)
        if self.llm.n_vocab() < len(self.tokenizer):
            raise ValueError(
                f"GGUF vocabulary {self.llm.n_vocab()} < tokenizer {len(self.tokenizer)}: not the same model"
            )

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "")).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The model's chat template as lm-eval's `hf` model applies it (`evaluation.apply_chat_template`)."""
        return str(
            self.tokenizer.apply_chat_template(
                chat_history,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
                continue_final_message=not add_generation_prompt,
            )
        )

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The template `apply_chat_template` renders with (the tokenizer's, as lm-eval selects it), checked
        against the one the GGUF file carries (`tokenizer.chat_template`, what llama-server's chat endpoint
        renders with): a GGUF converted with another template would be scored on prompts it is not served with."""
        text = super().chat_template(chat_template)
        llm = getattr(self, "llm", None)
        served = (getattr(llm, "metadata", None) or {}).get("tokenizer.chat_template")
        if text and served and served != text:
            raise ValueError(
                f"chat template: the GGUF file's (sha256 {sha256(served.encode()).hexdigest()[:12]}) differs from its "
                f"tokenizer's (sha256 {sha256(text.encode()).hexdigest()[:12]}, {self.tokenizer_name}): the prompts "
                f"would not be those the served model gets; convert the GGUF from that tokenizer's model, or set "
                f"`apply_chat_template: false`"
            )
        return text

    @property
    def prefix_token_id(self) -> int:
        # hf's (BOS, else EOS); TemplateLM's default is EOS, which conditioned SmolLM2's first rolling
        # window on <|im_end|> where hf uses <|im_start|>
        return prefix_token_id(self.tokenizer)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        # hf's rule: the tokenizer's own special tokens (BOS where it adds one), never a second BOS
        return self.tokenizer(
            string, return_attention_mask=False, **encode_kwargs(self.tokenizer, string, add_special_tokens)
        ).input_ids

    def _common_prefix(self, tokens: list[int]) -> int:
        """How many leading tokens of `tokens` the context holds already (at most all but the last: at least
        one token is evaluated, so the context ends where `tokens` ends)."""
        held = self.llm.input_ids[: min(self.llm.n_tokens, len(tokens) - 1)]
        differ = np.nonzero(held != np.asarray(tokens[: len(held)]))[0]
        return int(differ[0]) if len(differ) else len(held)

    def token_logprobs(self, tokens: list[int], first: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """log p(tokens[j] | tokens[:j]) for j > `first`, and whether each token was the argmax. Only those
        rows of the logits are normalised: a continuation of 5 tokens after a 200-token context needs 5 rows
        of [vocabulary] float64, not 200 (log-softmax is row by row: the same numbers either way)."""
        self._context = None  # the context is overwritten from `keep` on
        keep = self._common_prefix(tokens) if self.prefix_reuse else 0
        # drop the context's KV cache past the shared prefix; a model whose cache cannot be cut there
        # (recurrent layers) starts again from nothing
        if keep and not self.llm._ctx.kv_cache_seq_rm(-1, keep, -1):
            keep = 0
        if keep:
            self.llm.n_tokens = keep
            self.reused += keep
        else:
            self.llm.reset()
        self.llm.eval(tokens[keep:])
        scores = np.asarray(self.llm.scores[first : len(tokens) - 1])  # row i predicts token i+1
        lp = log_softmax(scores)
        nxt = np.asarray(tokens[first + 1 :])
        return lp[np.arange(len(nxt)), nxt], lp.argmax(axis=-1) == nxt

    def context_then_continuation(self, inp: list[int], ctxlen: int) -> tuple[np.ndarray, np.ndarray]:
        """`context_once`: the context evaluated on its own, then the continuation on top of its KV cache, so a
        multiple-choice item's question is computed once for all its choices. Every answer is still a function
        of its own request only: the context is reused only where it was evaluated alone, as exactly these
        tokens (never a prefix that happened to be computed inside another request's batch), so the numbers
        do not depend on which request came before (llama.cpp's rows can differ in the last bits with the
        batch they were computed in)."""
        ctx = inp[:ctxlen]
        held = self._context == ctx and self.llm.n_tokens >= ctxlen
        if held and self.llm._ctx.kv_cache_seq_rm(-1, ctxlen, -1):
            self.llm.n_tokens = ctxlen
            self.reused += ctxlen
        else:
            self.llm.reset()
            self._context = None
            self.llm.eval(ctx)
            self._context = ctx
        self.llm.eval(inp[ctxlen:])
        scores = np.asarray(self.llm.scores[ctxlen - 1 : len(inp) - 1])  # row ctxlen-1 is the context's last
        lp = log_softmax(scores)
        nxt = np.asarray(inp[ctxlen:])
        return lp[np.arange(len(nxt)), nxt], lp.argmax(axis=-1) == nxt

    def _loglikelihood_tokens(
        self, requests, disable_tqdm: bool = False, rolling: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        res = []
        # a rolling window's "context" is one token: nothing to share, so it stays one pass
        split = self.context_once and not rolling
        for cache_key, context_enc, continuation_enc in tqdm(requests, disable=disable_tqdm):
            inp = (context_enc + continuation_enc)[-self.max_length :]
            ctxlen = len(context_enc) - max(0, len(context_enc) + len(continuation_enc) - self.max_length)
            # position j of `inp` is predicted by logits row j-1: the continuation by rows ctxlen-1 ..
            if split and 0 < ctxlen < len(inp):
                lp, greedy = self.context_then_continuation(inp, ctxlen)
            else:
                lp, greedy = self.token_logprobs(inp, first=max(ctxlen - 1, 0))
            answer = (float(lp.sum()), bool(greedy.all()))
            res.append(answer)
            if cache_key is not None:
                self.cache_hook.add_partial("loglikelihood", cache_key, answer)
        return res

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for (string,) in tqdm([r.args for r in requests], disable=disable_tqdm):
            windows = [
                (None,) + w
                for w in map(
                    utils.make_disjoint_window,
                    utils.get_rolling_token_windows(
                        token_list=self.tok_encode(string),
                        prefix_token=self.prefix_token_id,
                        max_seq_len=self.max_length - 1,
                        context_len=1,
                    ),
                )
            ]
            total = sum(x[0] for x in self._loglikelihood_tokens(windows, disable_tqdm=True, rolling=True))
            out.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (string,), total)
        return out

    def _generate_local(self, ids: list[int], until: list[str], max_new: int) -> str:
        gen: list[int] = []
        self._context = None
        for tok in self.llm.generate(ids, temp=0.0, top_k=1, reset=True):
            if tok == self.eot_token_id or len(gen) >= max_new:
                break
            gen.append(tok)
            if any(u in self.tokenizer.decode(gen) for u in until):
                break
        return str(self.tokenizer.decode(gen))  # one sequence of ids decodes to one string

    def _generate_server(self, ids: list[int], until: list[str], max_new: int) -> str:
        import json
        import urllib.request

        # greedy, a token-id prompt (llama-server adds no BOS to one), lm-eval's stop strings; the server
        # cuts the text before a stop string, as hf's generate_until does
        body = {"model": self.server_model, "prompt": ids, "max_tokens": max_new, "temperature": 0.0, "stop": until}
        req = urllib.request.Request(
            str(self.base_url), data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=600) as r:
            return str(json.loads(r.read())["choices"][0]["text"])

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from concurrent.futures import ThreadPoolExecutor

        eos = str(self.tokenizer.decode([self.eot_token_id]))

        def one(args) -> str:
            context, gen_kwargs = args
            stops = gen_kwargs.get("until") or [eos]
            until: list[str] = [stops] if isinstance(stops, str) else list(stops)
            max_new = int(gen_kwargs.get("max_gen_toks", self.max_gen_toks))
            ids = self.tok_encode(context)[-(self.max_length - max_new) :]
            if self.base_url:
                text = self._generate_server(ids, [*until, eos][:16], max_new)
            else:
                text = self._generate_local(ids, until, max_new)
            for u in until:
                text = text.split(u)[0]
            self.cache_hook.add_partial("generate_until", args, text)
            return text

        todo = [r.args for r in requests]
        if not self.base_url:  # one llama.cpp context in-process: one request at a time
            return [one(a) for a in tqdm(todo, disable=disable_tqdm)]
        with ThreadPoolExecutor(self.num_concurrent) as pool:
            return list(tqdm(pool.map(one, todo), total=len(todo), disable=disable_tqdm))
