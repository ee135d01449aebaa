"""A deterministic lm-eval model for the sequential evaluation's worker tests (registered as `dq-fake-lm` when this
module is imported, as Scoring.register_module does for dqbench's own models).

It reads the gold answer off the document lm-eval hands it with each request (ARC's `answerKey`, HellaSwag's
`label`, GSM8K's `#### N`, HumanEval's canonical solution) and answers an item right when a hash of the item falls
below `skill`, else at random:
two instances with the same `skill` agree item by item, one with a lower `skill` is worse on exactly the items
the difference covers, and `flip` re-decides a share of the items with the instance's own `salt` (a compressed
model that disagrees with its reference here and there). Every answer is a function of the request, so a cell
scored in two runs, or resumed from its journal, scores the same. Every request answered is counted in `calls`,
so a test can show that a resumed run scores nothing twice.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, ClassVar

# lm_eval.models' import registers lm-eval's own models (`dummy` among them): a registry that first saw the fakes
# below would know only them, and a later test in the same process asking for `dummy` would fail
import lm_eval.models  # noqa: F401
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model


def _unit(*parts: object) -> float:
    """A number in [0, 1) from its parts."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:6], "big") / 2**48


def gold_index(doc: dict) -> int | None:
    """The index of the right choice of a multiple-choice document, where the fields say it."""
    if "answerKey" in doc and isinstance(doc.get("choices"), dict):
        labels = list(doc["choices"].get("label") or [])
        return labels.index(doc["answerKey"]) if doc["answerKey"] in labels else None
    label = doc.get("label")
    return int(label) if isinstance(label, int | str) and str(label).isdigit() else None


@register_model("dq-fake-lm")
class FakeLM(LM):
    calls: ClassVar[list[str]] = []  # one entry per answered request, in order

    def __init__(self, salt: str = "ref", skill: float = 0.6, flip: float = 0.0, **_: Any) -> None:
        super().__init__()
        self.salt, self.skill, self.flip = salt, float(skill), float(flip)

    def _right(self, key: str) -> bool:
        if _unit("flip", self.salt, key) < self.flip:
            return _unit("own", self.salt, key) < self.skill
        return _unit("skill", key) < self.skill

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        out = []
        for r in requests:
            ctx, cont = r.args
            FakeLM.calls.append(f"ll|{ctx[-40:]}|{cont}")
            gold = gold_index(r.doc) if isinstance(r.doc, dict) else None
            if gold is not None and self._right(ctx):
                value = 0.0 if r.idx == gold else -5.0 - _unit("ll", ctx, cont)
            else:
                value = -10.0 * _unit("ll", self.salt, ctx, cont)
            out.append((value, False))
            self.cache_hook.add_partial("loglikelihood", r.args, out[-1])
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        out = []
        for r in requests:
            FakeLM.calls.append(f"roll|{r.args[0][:40]}")
            out.append(-100.0 * _unit("roll", r.args[0]))
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, out[-1])
        return out

    def generate_until(self, requests, disable_tqdm: bool = False):
        out = []
        for r in requests:
            ctx = r.args[0]
            FakeLM.calls.append(f"gen|{ctx[-40:]}")
            doc = r.doc or {}
            if "canonical_solution" in doc:  # HumanEval: the reference body, or one that returns None
                out.append(doc["canonical_solution"] if self._right(ctx) else "    pass\n")
            else:
                m = re.search(r"####\s*(\S+)", str(doc.get("answer", "")))
                answer = m.group(1) if m and self._right(ctx) else "0"
                out.append(f" The answer is {answer}.\n#### {answer}")
            self.cache_hook.add_partial("generate_until", r.args, out[-1])
        return out


# A ChatML template in the style of SmolLM2's: a chat-templated prompt is recognisable by its markers.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@register_model("dq-fake-chat-lm")
class FakeChatLM(FakeLM):
    """FakeLM with a chat template (rendered by jinja2, as transformers renders a tokenizer's): every prompt it
    is asked about is kept whole in `prompts`, so a test sees which were chat-templated."""

    prompts: ClassVar[list[str]] = []

    def __init__(self, template: str = CHAT_TEMPLATE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.template = template

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.template if chat_template else None

    @property
    def tokenizer_name(self) -> str:
        return "fake-chat"

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        import jinja2

        text = jinja2.Template(self.template).render(messages=chat_history, add_generation_prompt=add_generation_prompt)
        return str(text)

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        FakeChatLM.prompts.extend(r.args[0] for r in requests)
        return super().loglikelihood(requests, disable_tqdm)

    def generate_until(self, requests, disable_tqdm: bool = False):
        FakeChatLM.prompts.extend(r.args[0] for r in requests)
        return super().generate_until(requests, disable_tqdm)
