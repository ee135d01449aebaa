"""lm-eval model `dq-local-completions`: lm-eval's `local-completions` with the special-token rule of its
`hf` model (harness/evaluate/bos.py), so a server-scored cell equals what lm-eval's `hf` model reports.

`local-completions` adds no BOS by default (`add_bos_token=False`), and with `add_bos_token=True` adds it
even to a chat-templated prompt that already begins with it. Everything else (payloads, echo logprobs,
retries, concurrency) is lm-eval's own. Token ids are sent (`tokenized_requests`), so the client alone
decides the special tokens: vLLM and llama-server add none to token-id prompts.
Imported only inside the evaluate stage (it needs lm_eval).
"""

from __future__ import annotations

from lm_eval.api.registry import register_model
from lm_eval.models.openai_completions import LocalCompletionsAPI

from harness.evaluate.bos import encode_kwargs, prefix_token_id


@register_model("dq-local-completions")
class DQLocalCompletions(LocalCompletionsAPI):
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
