"""Per-task chat templates through lm-eval itself (offline tasks, real prompts and requests; only the model is the
fake of tests/fakes/fake_lm.py, with a chat template): in the fixed-n path and in the sequential one, a templated
task's prompts are rendered by the model's template with its system message and a plain task's are not; the item
journal pins the template's text, so a reference scored under another template is never paired with."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from harness.decide.journal import JournalHeader, journal_path
from harness.decide.question import SequentialSpec
from harness.evaluate.catalog import leaves
from harness.evaluate.data import TaskData
from harness.result import PromptFormat
from harness.serve.scoring import Scoring
from harness.settings import load_settings
from harness.spec.chat import ChatFormat
from harness.spec.evaluation import TaskSpec

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval")

SYSTEM = "Answer with a number."
FORMATS = {"gsm8k": ChatFormat(apply_chat_template=True, system_instruction=SYSTEM)}  # arc_easy: plain
OTHER = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    td = TaskData(load_settings())
    td.prepare(tmp_path_factory.mktemp("prep") / "prepare.log")
    return td


def job(data, tmp, cell: str, *, template: str | None = None, seq: bool = False, ref: str | None = None):
    from harness.evaluate.lmeval_worker import LMEvalJob

    return LMEvalJob(
        scoring=Scoring(
            model="dq-fake-chat-lm",
            register_module="tests.fakes.fake_lm",
            model_args={"salt": "ref", **({"template": template} if template else {})},
        ),
        include_path=str(data.task_dir()),
        offline_leaves={lf.name: lf for n in ("arc_easy", "gsm8k") for lf in leaves(n) or []},
        data_dir=str(data.dir),
        index_cache=str(load_settings().home / "lmeval-index"),
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1234,
        samples_dir=str(tmp / cell / "samples"),
        # sequential: a population larger than the budget (the sequence ends where a task's documents do)
        tasks=[
            TaskSpec(name="gsm8k", num_fewshot=0, limit=20 if seq else 3),
            TaskSpec(name="arc_easy", limit=20 if seq else 3),
        ],
        formats=FORMATS,
        sequential=SequentialSpec(
            measure={"arc_easy": "acc_norm", "gsm8k": "exact_match,strict-match"},
            measure_name="aggregate",
            max_drop="5%",
            relative=True,
            limit=0.05,
            error_rate=0.05,
            method="group-sequential",
            max_items=6,
            batch_items=6,
            seed=0,
            journal_dir=str(tmp / cell / "items"),
            reference_dir=str(tmp / ref / "items") if ref else None,
            reference_id=ref,
            task_hashes={"arc_easy": "h", "gsm8k": "h"},
        )
        if seq
        else None,
    )


def run(j):
    from harness.evaluate.lmeval_worker import work
    from tests.fakes.fake_lm import FakeChatLM

    FakeChatLM.prompts.clear()
    return work(j), list(FakeChatLM.prompts)


def split(prompts: list[str]) -> tuple[list[str], list[str]]:
    """(templated, plain) prompts."""
    return [p for p in prompts if "<|im_start|>" in p], [p for p in prompts if "<|im_start|>" not in p]


def test_the_fixed_path_templates_only_the_task_that_asks(data, tmp_path):
    from tests.fakes.fake_lm import CHAT_TEMPLATE

    rec, prompts = run(job(data, tmp_path, "fixed"))
    templated, plain = split(prompts)
    assert len(templated) == 3  # gsm8k's 3 generations, each a chat: system message, question, assistant turn
    assert all(p.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n") for p in templated)
    assert all(p.endswith("<|im_start|>assistant\n") for p in templated)
    assert len(plain) == 3 * 4 and all(p.startswith("Question:") for p in plain)  # arc_easy: 4 choices an item
    sha = hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    assert rec.tasks["gsm8k"].prompt_format == PromptFormat(
        apply_chat_template=True, system_instruction=SYSTEM, template_sha256=sha
    )
    assert rec.tasks["arc_easy"].prompt_format == PromptFormat()
    # the logged samples hold the prompt as sent: what the result's reader can check the template in
    rows = [json.loads(line) for line in (tmp_path / "fixed" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    # and one document's requests as sent, per task: what shows a reader the format that was applied
    example = json.loads((tmp_path / "fixed" / "samples" / "prompts" / "gsm8k.json").read_text())
    assert example["doc_id"] == 0 and example["requests"][0][0] in templated
    arc = json.loads((tmp_path / "fixed" / "samples" / "prompts" / "arc_easy.json").read_text())
    assert len(arc["requests"]) == 4 and all(r[0] in plain and len(r) == 2 for r in arc["requests"])


def _header(folder, task: str) -> dict:
    return json.loads(journal_path(folder, task).read_text().splitlines()[0])


def test_the_sequential_path_scores_each_format_apart_and_pins_the_template(data, tmp_path):
    from tests.fakes.fake_lm import CHAT_TEMPLATE

    ref, prompts = run(job(data, tmp_path, "ref", seq=True))
    templated, plain = split(prompts)
    n = ref.decision.items
    assert ref.decision.items_used == 6 and templated and plain
    assert len(templated) == n["gsm8k"] and len(plain) == 4 * n["arc_easy"]
    assert all(p.startswith(f"<|im_start|>system\n{SYSTEM}") for p in templated)
    sha = hashlib.sha256(CHAT_TEMPLATE.encode()).hexdigest()
    assert ref.tasks["gsm8k"].prompt_format.template_sha256 == sha
    example = json.loads((tmp_path / "ref" / "samples" / "prompts" / "gsm8k.json").read_text())
    assert example["requests"][0][0] in templated
    items = tmp_path / "ref" / "items"
    assert _header(items, "gsm8k")["settings"]["chat_template_sha256"] == sha
    # a plain measured task's journal is pinned exactly as before per-task formats existed
    arc = _header(items, "arc_easy")
    assert "chat_template_sha256" not in arc["settings"]
    before = {
        **arc["settings"],
        "apply_chat_template": False,
        "fewshot_as_multiturn": False,
        "system_instruction": None,
    }
    assert arc["pin"] == JournalHeader.of("arc_easy", arc["lm_eval_version"], before).pin

    # a cell scored under the same template pairs with the reference's items ...
    same, _ = run(job(data, tmp_path, "same", seq=True, ref="ref"))
    assert same.decision.stop != "reference_missing"
    # ... one under another template does not: its gsm8k journal's pin differs, so no item is paired
    other, prompts = run(job(data, tmp_path, "other", template=OTHER, seq=True, ref="ref"))
    assert any(p.startswith(f"[system] {SYSTEM}\n[user] ") for p in prompts)
    assert other.decision.stop == "reference_missing" and "other settings" in other.decision.stop_reason
