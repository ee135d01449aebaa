"""Chat-template scoring per task, with fakes in place of lm-eval's calls: each lm-eval call carries one prompt
format (the fixed-n path: one `simple_evaluate` per task; the sequential path: one `evaluate` per format of a
batch), the result records each task's format and the template's sha256, a tokenizer without a template is refused
before scoring, and flips refuse to pair a task scored under two formats."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
from types import SimpleNamespace
from typing import Any

import pytest

from harness.evaluate import reference
from harness.evaluate.lmeval import scored_task_hash, template_problem
from harness.evaluate.lmeval_worker import LMEvalJob, prompt_format, template_sha256
from harness.result import PromptFormat, Quality, TaskScore
from harness.serve.scoring import Scoring
from harness.settings import load_settings
from harness.spec.chat import ChatFormat
from harness.spec.evaluation import LMEvalSpec, TaskSpec
from tests.conftest import REPO

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['content'] }}{% endfor %}"
CHAT = ChatFormat(apply_chat_template=True)


def job(tmp_path, formats: dict[str, ChatFormat], names=("gsm8k", "arc_easy"), **kw) -> LMEvalJob:
    return LMEvalJob(
        scoring=Scoring(model="fake", model_args={"tokenizer": "/models/x"}),
        tasks=[TaskSpec(name=n, limit=2) for n in names],
        include_path=str(tmp_path),
        data_dir=str(tmp_path),
        samples_dir=str(tmp_path / "samples"),
        num_concurrent=1,
        max_length=512,
        batch_size=1,
        seed=1,
        formats=formats,
        **kw,
    )


class TemplatedLM:
    def __init__(self, template: str | None = TEMPLATE):
        self.template = template

    def chat_template(self, chat_template=False):
        return self.template if chat_template else None


def fake_results(name: str, docs: list[int]) -> dict[str, Any]:
    return {
        "results": {name: {"acc,none": 0.5, "acc_stderr,none": 0.1}},
        "samples": {name: [{"doc_id": d, "filter": "none", "metrics": ["acc"], "acc": 1.0} for d in docs]},
        "n-samples": {name: {"effective": len(docs), "original": 10}},
        "n-shot": {name: 0},
        "versions": {name: 1},
        "config": {},
    }


def test_the_fixed_path_scores_each_task_in_its_own_call_with_its_own_format(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import lm_eval

    from harness.evaluate import lmeval_worker, task_index

    calls: list[dict] = []

    def simple_evaluate(**kw):
        calls.append(kw)
        return fake_results(kw["tasks"][0], [0, 1])

    monkeypatch.setattr(lm_eval, "simple_evaluate", simple_evaluate)
    monkeypatch.setattr(lmeval_worker, "build_lm", lambda job: TemplatedLM())
    monkeypatch.setattr(task_index, "task_manager", lambda include, cache: None)
    fmt = ChatFormat(apply_chat_template=True, fewshot_as_multiturn=True, system_instruction="Be brief.")
    rec = lmeval_worker.work(job(tmp_path, {"gsm8k": fmt}))
    keys = ("apply_chat_template", "fewshot_as_multiturn", "system_instruction")
    asked = {c["tasks"][0]: tuple(c[k] for k in keys) for c in calls}
    assert [c["tasks"] for c in calls] == [["gsm8k"], ["arc_easy"]]
    assert asked == {"gsm8k": (True, True, "Be brief."), "arc_easy": (False, False, None)}
    sha = hashlib.sha256(TEMPLATE.encode()).hexdigest()
    assert rec.tasks["gsm8k"].prompt_format == PromptFormat(**fmt.model_dump(), template_sha256=sha)
    assert rec.tasks["arc_easy"].prompt_format == PromptFormat()  # plain, recorded as plain


def test_a_tokenizer_without_a_template_is_refused_before_any_task_is_scored(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import lm_eval

    from harness.evaluate import lmeval_worker, task_index

    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: pytest.fail("a task was scored"))
    monkeypatch.setattr(lmeval_worker, "build_lm", lambda job: TemplatedLM(None))
    monkeypatch.setattr(task_index, "task_manager", lambda include, cache: None)
    with pytest.raises(RuntimeError, match=r"gsm8k ask\(s\) for the chat template.*/models/x.*has none"):
        lmeval_worker.work(job(tmp_path, {"gsm8k": CHAT}, names=("arc_easy", "gsm8k")))


def test_the_template_hash_is_taken_only_when_a_task_is_templated(tmp_path):
    assert template_sha256(TemplatedLM(None), job(tmp_path, {})) is None  # plain: the template is never read
    sha = template_sha256(TemplatedLM(), job(tmp_path, {"arc_easy": CHAT}))
    assert sha == hashlib.sha256(TEMPLATE.encode()).hexdigest()
    j = job(tmp_path, {"arc_easy": CHAT})
    assert prompt_format(j, "gsm8k", sha).template_sha256 is None  # the plain task records no template
    assert prompt_format(j, "arc_easy", sha).template_sha256 == sha


def test_format_groups_keep_one_call_per_format():
    from harness.evaluate.sequential import format_groups

    sys_ = ChatFormat(system_instruction="x")
    got = format_groups({"a::a": ChatFormat(), "b::b1": CHAT, "c::c": ChatFormat(), "b::b2": CHAT, "d::d": sys_})
    assert got == [(ChatFormat(), ["a::a", "c::c"]), (CHAT, ["b::b1", "b::b2"]), (sys_, ["d::d"])]


class FakeJournal:
    def __init__(self):
        self.rows: dict = {}

    def append(self, rows):
        for r in rows:
            self.rows[(r.get("task"), int(r["doc_id"]))] = r


def test_a_sequential_batch_of_two_formats_is_two_evaluate_calls(tmp_path, monkeypatch):
    pytest.importorskip("lm_eval")
    import lm_eval.evaluator

    from harness.evaluate.sequential import _score_batch

    calls: list[dict] = []

    def evaluate(**kw):
        calls.append(kw)
        out: dict = {"samples": {}}
        for name, docs in kw["samples"].items():
            out["samples"][name] = fake_results(name, docs)["samples"][name]
        return out

    monkeypatch.setattr(lm_eval.evaluator, "evaluate", evaluate)

    def measured(name: str, fmt: ChatFormat):
        return SimpleNamespace(
            name=name, tasks={name: object()}, format=fmt, journal=FakeJournal(), leaf_of=lambda key, n=name: n
        )

    m = {"arc_easy": measured("arc_easy", ChatFormat()), "gsm8k": measured("gsm8k", CHAT)}
    steps = [("arc_easy", (None, 3)), ("gsm8k", (None, 1)), ("arc_easy", (None, 0)), ("gsm8k", (None, 4))]
    assert _score_batch(object(), m, steps, job(tmp_path, {"gsm8k": CHAT})) == 4  # type: ignore[arg-type]
    assert [(sorted(c["samples"]), c["apply_chat_template"]) for c in calls] == [
        (["arc_easy::arc_easy"], False),
        (["gsm8k::gsm8k"], True),
    ]
    assert calls[0]["samples"] == {"arc_easy::arc_easy": [0, 3]}  # sorted, as the module docstring says
    assert set(m["gsm8k"].journal.rows) == {(None, 1), (None, 4)} and len(m["arc_easy"].journal.rows) == 2


def test_template_problem_reads_the_tokenizer_folder(tmp_path):
    s = LMEvalSpec.model_validate({"tasks": [{"name": "gsm8k", "apply_chat_template": True}, {"name": "arc_easy"}]})
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
    why = template_problem(s, str(tmp_path))
    assert why and "gsm8k" in why and str(tmp_path) in why and "apply_chat_template: false" in why
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    assert template_problem(s, str(tmp_path)) is None
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "chat_template.jinja").write_text(TEMPLATE)
    assert template_problem(s, str(tmp_path)) is None
    plain = LMEvalSpec.model_validate({"tasks": [{"name": "gsm8k"}]})
    assert template_problem(plain, str(tmp_path / "nowhere")) is None


def test_the_stored_task_hash_moves_only_for_a_chat_formatted_task():
    assert scored_task_hash("abc", None) == scored_task_hash("abc", PromptFormat()) == "abc"
    a = scored_task_hash("abc", PromptFormat(apply_chat_template=True, template_sha256="1"))
    b = scored_task_hash("abc", PromptFormat(apply_chat_template=True, template_sha256="2"))
    c = scored_task_hash("abc", PromptFormat(system_instruction="Be brief."))
    assert len({"abc", a, b, c}) == 4


def test_a_task_score_dumps_its_format_only_when_recorded():
    assert "prompt_format" not in TaskScore().model_dump()
    dumped = TaskScore(prompt_format=PromptFormat(apply_chat_template=True, template_sha256="s")).model_dump()
    assert dumped["prompt_format"]["template_sha256"] == "s"
    assert TaskScore.model_validate(dumped).prompt_format == PromptFormat(apply_chat_template=True, template_sha256="s")


REF = json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())


def _with_format(q: dict, task: str, fmt: PromptFormat) -> dict:
    q = copy.deepcopy(q)
    q["tasks"][task]["prompt_format"] = fmt.model_dump()
    return q


def test_flips_refuse_a_task_scored_under_another_template_and_pair_the_rest():
    tasks = sorted(REF["quality"]["tasks"])
    assert len(tasks) >= 2
    t0 = tasks[0]
    one = PromptFormat(apply_chat_template=True, template_sha256="a" * 64)
    other = one.model_copy(update={"template_sha256": "b" * 64})
    ref_q = Quality.model_validate(_with_format(REF["quality"], t0, one))
    same = reference.item_flips(ref_q, Quality.model_validate(_with_format(REF["quality"], t0, one)), iters=50)
    assert t0 in same["tasks"] and "refused" not in same
    out = reference.item_flips(ref_q, Quality.model_validate(_with_format(REF["quality"], t0, other)), iters=50)
    assert t0 not in out["tasks"] and "template_sha256" in out["refused"][t0]
    assert set(out["tasks"]) == set(same["tasks"]) - {t0}  # the other tasks still pair
    assert t0 not in out.get("aggregate", {}).get("tasks", [])
    # a reference from before formats were recorded pairs with a plain score, never with a templated one
    old = Quality.model_validate(REF["quality"])
    assert "refused" not in reference.item_flips(old, Quality.model_validate(REF["quality"]), iters=50)
    new = reference.item_flips(old, Quality.model_validate(_with_format(REF["quality"], t0, one)), iters=50)
    assert "not recorded" in new["refused"][t0]
    plain = reference.item_flips(old, Quality.model_validate(_with_format(REF["quality"], t0, PromptFormat())), 50)
    assert "refused" not in plain


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    src = load_settings().models_dir / "smollm2-135m-instruct"
    if not (src / "chat_template.jinja").is_file():
        pytest.skip("the embedded model is not prepared (./dq harness prepare)")
    d = tmp_path_factory.mktemp("tok")
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(src / f, d / f)
    return d


def test_every_model_adapter_hashes_the_template_of_the_cells_own_tokenizer(tok_dir, tmp_path):
    """dq-local-completions (vLLM's server) and dq-llamacpp (GGUF) render with the tokenizer folder the cell's
    artefact names; the hash the result records is that folder's template text."""
    pytest.importorskip("lm_eval")
    transformers = pytest.importorskip("transformers")
    from harness.evaluate.api_lm import DQLocalCompletions
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    api = DQLocalCompletions(
        base_url="http://127.0.0.1:9/v1/completions",
        model="m",
        tokenizer=str(tok_dir),
        tokenizer_backend="huggingface",
        tokenized_requests=True,
    )
    cpp = LlamaCppLM.__new__(LlamaCppLM)
    cpp.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    want = hashlib.sha256((tok_dir / "chat_template.jinja").read_text().encode()).hexdigest()
    j = job(tmp_path, {"gsm8k": CHAT})
    assert template_sha256(api, j) == template_sha256(cpp, j) == want
    chat = [{"role": "user", "content": "2+2?"}]
    assert api.apply_chat_template(chat) == cpp.apply_chat_template(chat)
    assert api.apply_chat_template(chat).endswith("<|im_start|>assistant\n")


def test_a_gguf_whose_own_template_differs_from_its_tokenizers_is_refused(tok_dir):
    """llama-server renders chats with the template in the GGUF file; scoring with another would not measure the
    served model."""
    pytest.importorskip("lm_eval")
    transformers = pytest.importorskip("transformers")
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    cpp = LlamaCppLM.__new__(LlamaCppLM)
    cpp.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    text = (tok_dir / "chat_template.jinja").read_text()
    cpp.llm = SimpleNamespace(metadata={"tokenizer.chat_template": text})
    assert cpp.chat_template(True) == text
    cpp.llm = SimpleNamespace(metadata={})  # a GGUF without a template: the tokenizer's stands
    assert cpp.chat_template(True) == text
    cpp.llm = SimpleNamespace(metadata={"tokenizer.chat_template": TEMPLATE})
    with pytest.raises(ValueError, match="GGUF file's .* differs from its tokenizer's"):
        cpp.chat_template(True)


@pytest.mark.slow
def test_the_in_process_vllm_model_hashes_and_renders_the_same_template(tok_dir, tmp_path):
    """dq-vllm (DQBENCH_EVAL_VIA=in-process) renders with the same tokenizer folder as dq-local-completions."""
    pytest.importorskip("vllm")
    transformers = pytest.importorskip("transformers")
    from harness.evaluate.llamacpp_lm import LlamaCppLM
    from harness.evaluate.vllm_lm import DQVLLM

    vl = DQVLLM.__new__(DQVLLM)  # its tokenizer only: no engine
    vl.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    cpp = LlamaCppLM.__new__(LlamaCppLM)
    cpp.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    j = job(tmp_path, {"gsm8k": CHAT})
    want = hashlib.sha256((tok_dir / "chat_template.jinja").read_text().encode()).hexdigest()
    assert template_sha256(vl, j) == want
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert vl.apply_chat_template(chat) == cpp.apply_chat_template(chat)
