"""The worker's changes to lm-eval (harness/evaluate/lmeval_quick.py): each split processed once per task
object, the same documents and requests as without, lm-eval's environment dump skipped, and each Jinja
template text compiled once with the same renderings."""

from __future__ import annotations

import json

import pytest

from harness.evaluate import lmeval_quick


class Split:
    """A task class with lm-eval's two evaluation splits, counting how often each is processed."""

    def __init__(self, docs):
        self.docs, self.calls = docs, 0

    def validation_docs(self):
        self.calls += 1
        return self.docs

    def test_docs(self):
        self.calls += 1  # a task without a test split: None


def test_each_split_is_processed_once_per_task_object():
    cls = type("T", (Split,), {})
    assert lmeval_quick.docs_once(cls)
    a, b = cls([1, 2]), cls([3])
    assert a.validation_docs() is a.validation_docs() is a.docs
    assert a.test_docs() is None and a.test_docs() is None  # None is remembered, not recomputed
    assert a.calls == 2  # once per split
    assert b.validation_docs() == [3] and b.calls == 1  # per object: another task's documents are its own


def test_installing_twice_wraps_once():
    cls = type("T", (Split,), {})
    assert lmeval_quick.docs_once(cls) and lmeval_quick.docs_once(cls)
    t = cls([1])
    t.validation_docs(), t.validation_docs()
    assert t.calls == 1


def as_installed(monkeypatch, cls) -> None:
    """`cls` as lm-eval ships it for the rest of the test, whether or not a worker earlier in this process
    changed it (`work` installs the changes process-wide); undone after the test."""
    for split in ("validation_docs", "test_docs"):
        method = getattr(cls, split)
        monkeypatch.setattr(cls, split, getattr(method, "__wrapped__", method))
    monkeypatch.setattr(cls, "_dq_docs_once", False, raising=False)


def test_the_original_method_stays_reachable():
    cls = type("T", (Split,), {})
    lmeval_quick.docs_once(cls)
    assert cls.validation_docs.__wrapped__ is Split.validation_docs


def test_a_class_without_the_splits_is_left_as_it_is():
    cls = type("T", (), {"validation_docs": lambda self: []})
    assert not lmeval_quick.docs_once(cls)
    assert not hasattr(cls, "_dq_docs_once")


@pytest.mark.slow
def test_a_real_task_processes_its_split_once_and_builds_the_same_requests(tmp_path, monkeypatch):
    """A ConfigurableTask over a local JSON split with a counting process_docs: building its requests and
    reading its documents again (as one simple_evaluate does) processes the split once, and every request's
    arguments are those lm-eval builds without the change."""
    lm_eval_task = pytest.importorskip("lm_eval.api.task")
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"q": f"question {i}?", "a": f"answer {i}"}) + "\n" for i in range(6)))
    calls = []

    def process_docs(ds):
        calls.append(len(ds))
        return ds.map(lambda d: {"q": d["q"].upper()})

    def task():
        return lm_eval_task.ConfigurableTask(
            config={
                "task": "dq_quick_probe",
                "dataset_path": "json",
                "dataset_kwargs": {"data_files": {"validation": str(data)}},
                "validation_split": "validation",
                "process_docs": process_docs,
                "output_type": "loglikelihood",
                "doc_to_text": "{{q}}",
                "doc_to_target": " {{a}}",
                "metric_list": [{"metric": "acc"}],
            }
        )

    def requests(t):
        t.build_all_requests(limit=4, rank=0, world_size=1)
        _ = [len(t.eval_docs), list(t.doc_iterator(limit=4))]  # read again, as results are collected
        return [inst.args for inst in t.instances]

    cls = lm_eval_task.ConfigurableTask
    as_installed(monkeypatch, cls)
    before = requests(task())
    assert len(calls) > 1  # lm-eval as installed processes the split on every access
    assert lmeval_quick.docs_once(cls)
    calls.clear()
    after = requests(task())
    assert calls == [6]
    assert after == before and after[0] == ("QUESTION 0?", " answer 0")


def test_the_environment_dump_is_skipped(monkeypatch):
    lm_eval_evaluator = pytest.importorskip("lm_eval.evaluator")
    lm_eval_task = pytest.importorskip("lm_eval.api.task")
    cls = lm_eval_task.ConfigurableTask
    lm_eval_utils = pytest.importorskip("lm_eval.utils")
    monkeypatch.setattr(lm_eval_evaluator, "add_env_info", lm_eval_evaluator.add_env_info)  # undone after
    monkeypatch.setattr(lm_eval_utils, "apply_template", lm_eval_utils.apply_template)
    as_installed(monkeypatch, cls)
    assert lmeval_quick.install() == ["docs_once", "no_env_info", "templates_once"]
    results: dict = {}
    lm_eval_evaluator.add_env_info(results)  # what simple_evaluate calls at its end
    assert list(results) == ["pretty_env_info"] and "host block" in results["pretty_env_info"]


class Env:
    """A Jinja-like environment that counts its compilations (`{{x}}` fields only)."""

    def __init__(self):
        self.compiled: list[str] = []

    def from_string(self, text):
        self.compiled.append(text)
        return Template(text)


class Template:
    def __init__(self, text):
        self.text = text

    def render(self, **doc):
        out = self.text
        for k, v in doc.items():
            out = out.replace("{{" + k + "}}", str(v))
        return out


def utils_module():
    """A module with lm-eval's `env` and `apply_template` (lm_eval/utils.py: compile, then render)."""
    import types

    env = Env()
    return types.SimpleNamespace(env=env, apply_template=lambda template, doc: env.from_string(template).render(**doc))


def test_each_template_text_is_compiled_once_and_renders_as_before():
    utils = utils_module()
    docs = [{"q": f"question {i}", "a": i} for i in range(5)]
    before = [utils.apply_template("Q: {{q}} A:", d) for d in docs]
    assert len(utils.env.compiled) == 5  # as lm-eval ships it: once per call
    utils.env.compiled.clear()
    assert lmeval_quick.templates_once(utils)
    after = [utils.apply_template("Q: {{q}} A:", d) for d in docs] + [utils.apply_template(" {{a}}", docs[2])]
    assert after == [*before, " 2"]
    assert utils.env.compiled == ["Q: {{q}} A:", " {{a}}"]  # once per distinct text
    assert lmeval_quick.templates_once(utils) and utils.apply_template("{{a}}", {"a": 7}) == "7"
    assert utils.env.compiled == ["Q: {{q}} A:", " {{a}}", "{{a}}"]  # installed twice: wrapped once


def test_templates_are_left_alone_where_lm_eval_has_no_environment():
    import types

    utils = types.SimpleNamespace(apply_template=lambda template, doc: template)
    assert not lmeval_quick.templates_once(utils)
    assert not hasattr(utils.apply_template, "_dq_templates_once")


@pytest.mark.slow
def test_real_templates_render_as_lm_eval_renders_them(monkeypatch):
    """lm-eval's own environment: plain fields, a loop, its `regex_replace` filter and its undefined-variable
    error give what lm-eval's own `apply_template` gives."""
    lm_eval_utils = pytest.importorskip("lm_eval.utils")
    original = getattr(lm_eval_utils.apply_template, "__wrapped__", lm_eval_utils.apply_template)
    monkeypatch.setattr(lm_eval_utils, "apply_template", original)  # lm-eval as shipped, restored after
    assert lmeval_quick.templates_once(lm_eval_utils)
    doc = {"q": "What is 2+2?", "choices": ["3", "4"], "ctx": "a  b   c"}
    for text in (
        "Question: {{q}}\nAnswer:",
        "{% for c in choices %}{{loop.index}}. {{c}}\n{% endfor %}",
        "{{ctx | regex_replace(' +', ' ')}}",
        "{{choices}}",
    ):
        assert lm_eval_utils.apply_template(text, doc) == original(text, doc)
        assert lm_eval_utils.apply_template(text, doc) == original(text, doc)  # the second, compiled one
    with pytest.raises(Exception) as mine:
        lm_eval_utils.apply_template("{{missing}}", doc)
    with pytest.raises(Exception) as theirs:
        original("{{missing}}", doc)
    assert type(mine.value) is type(theirs.value)
