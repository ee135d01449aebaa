"""dq_niah's documents and tasks: prompts sized to their context length with the cell's tokenizer, the needle in
them, documents independent of how many are asked for (so cells pair by document id), the lm-eval YAML and its
scorer, and the per-length keys the worker scores under. A word-level tokenizer built here stands in for a model's;
the embedded model's own tokenizer is checked too where the set-up prepared it."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from harness.evaluate import niah
from harness.evaluate.niah_score import process_results
from harness.spec.evaluation import TaskSpec

EMBEDDED = Path.home() / ".cache" / "dqbench" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory) -> str:
    """A tokenizer.json with one token per word or punctuation mark over the pydoc corpus (and the template)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from harness.measure.prompts import corpus_text

    words = set(" ".join([corpus_text("pydoc"), niah.HEAD, niah.TAIL, niah.NEEDLE, *niah.ADJECTIVES]).split())
    pre = pre_tokenizers.Whitespace()
    vocab = {"[UNK]": 0}
    for w in sorted(words):
        for piece, _ in pre.pre_tokenize_str(w):
            vocab.setdefault(piece, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre
    out = tmp_path_factory.mktemp("tok")
    tok.save(str(out / "tokenizer.json"))
    return str(out)


@pytest.mark.parametrize("length", [256, 1024, 4096])
def test_prompts_fill_their_length_and_hold_the_needle(word_tokenizer, length):
    docs = niah.build_docs(word_tokenizer, length, 6, seed=1)
    budget = length - niah.GEN_TOKENS - 1
    sizer = niah.Sizer(word_tokenizer)
    for d in docs:
        assert d["prompt_tokens"] == sizer.count(d["input"])
        assert budget - 0.02 * length <= d["prompt_tokens"] <= budget  # near the target, never over it
        assert niah.NEEDLE.format(key=d["key"], value=d["value"]) in d["input"]
        assert d["input"].startswith(niah.HEAD) and d["input"].endswith(niah.TAIL.format(key=d["key"]))
        assert d["context_length"] == length and len(d["value"]) == 7
    assert [d["doc_id"] for d in docs] == list(range(6))
    assert len({d["value"] for d in docs}) == 6  # each document its own needle


def test_needle_depth_is_where_the_document_says(word_tokenizer):
    docs = niah.build_docs(word_tokenizer, 2048, 12, seed=3)
    for d in docs:
        body = d["input"][len(niah.HEAD) : -len(niah.TAIL.format(key=d["key"]))]
        at = body.index(niah.NEEDLE.format(key=d["key"], value=d["value"])) / len(body)
        assert abs(at - d["depth"]) < 0.05
    assert len({d["depth"] for d in docs}) > 3


def test_documents_depend_on_seed_length_and_index_only(word_tokenizer):
    few = niah.build_docs(word_tokenizer, 1024, 2, seed=7)
    more = niah.build_docs(word_tokenizer, 1024, 5, seed=7)
    assert more[:2] == few  # `limit` picks the first documents: the reference and a cell pair by doc id
    assert niah.build_docs(word_tokenizer, 1024, 2, seed=8) != few
    assert [d["value"] for d in niah.build_docs(word_tokenizer, 2048, 2, seed=7)] != [d["value"] for d in few]


def test_a_larger_answer_budget_shortens_the_prompt(word_tokenizer):
    (d,) = niah.build_docs(word_tokenizer, 1024, 1, seed=1, gen_tokens=200)
    assert d["prompt_tokens"] <= 1024 - 200 - 1
    assert niah.answer_budget({"max_gen_toks": 200}) == 200 and niah.answer_budget({}) == niah.GEN_TOKENS


def test_no_tokenizer_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="has none"):
        niah.Sizer(str(tmp_path))


@pytest.mark.skipif(not (EMBEDDED / "tokenizer.json").is_file(), reason="the embedded model is prepared by ./dq setup")
def test_embedded_model_prompts_are_within_a_percent_of_their_length():
    for length in (1024, 8191):
        for d in niah.build_docs(str(EMBEDDED), length, 3, seed=1234):
            assert 0.99 * (length - niah.GEN_TOKENS - 1) <= d["prompt_tokens"] <= length - niah.GEN_TOKENS - 1


def test_scorer_is_ruler_string_match():
    doc = {"value": "1234567"}
    assert process_results(doc, [" 1234567.\nThe special"]) == {"acc": 1.0}
    assert process_results(doc, [' "1234567".']) == {"acc": 1.0}
    assert process_results(doc, [" 1234568."]) == {"acc": 0.0}
    assert process_results(doc, [""]) == {"acc": 0.0}


def test_prepare_writes_one_task_per_length_with_its_documents(word_tokenizer, tmp_path):
    job = SimpleNamespace(
        tasks=[TaskSpec(name="dq_niah", context_lengths=[512, 1024], limit=3), TaskSpec(name="dq_arc_easy")],
        scoring=SimpleNamespace(model_args={"tokenizer": word_tokenizer}),
        gen_kwargs={},
        seed=5,
    )
    tasks, folder = niah.prepare_length_tasks(job, tmp_path)
    assert [k for k, _ in tasks] == ["dq_niah@512", "dq_niah@1024", "dq_arc_easy"]
    out = Path(folder or "")
    assert (out / "niah_score.py").read_text() == niah.SCORER.read_text()
    for key, length in (("dq_niah@512", 512), ("dq_niah@1024", 1024)):
        text = (out / f"{key}.yaml").read_text()
        assert text.endswith("process_results: !function niah_score.process_results\n")
        cfg = yaml.safe_load(text.replace("!function ", ""))
        assert cfg["task"] == key and cfg["output_type"] == "generate_until"
        assert cfg["generation_kwargs"]["max_gen_toks"] == niah.GEN_TOKENS and not cfg["generation_kwargs"]["do_sample"]
        rows = [json.loads(x) for x in Path(cfg["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
        assert [r["doc_id"] for r in rows] == [0, 1, 2] and {r["context_length"] for r in rows} == {length}


def test_prepare_without_length_tasks_touches_nothing(tmp_path):
    job = SimpleNamespace(tasks=[TaskSpec(name="dq_arc_easy")], scoring=None, gen_kwargs={}, seed=1)
    assert niah.prepare_length_tasks(job, tmp_path) == ([("dq_arc_easy", TaskSpec(name="dq_arc_easy"))], None)
    assert not any(tmp_path.iterdir())


def _quality(per_length: dict[int, list[float]]):
    from harness.result import Item, Metric, Quality, TaskScore

    return Quality(
        tasks={
            f"dq_niah@{n}": TaskScore(
                metrics={"acc": Metric(value=sum(v) / len(v))},
                n=len(v),
                items=[Item(doc_id=i, scores={"acc": x}) for i, x in enumerate(v)],
            )
            for n, v in per_length.items()
        }
    )


def test_each_length_pairs_with_the_reference_on_its_own():
    from harness.evaluate.reference import item_flips
    from harness.result_facts import primary_metric

    assert primary_metric("dq_niah@8191") == "acc" == primary_metric("dq_niah")
    ref = _quality({1024: [1, 1, 1, 1], 4096: [1, 1, 1, 0]})
    cell = _quality({1024: [1, 1, 1, 1], 4096: [0, 0, 1, 0]})
    out = item_flips(ref, cell, iters=200)
    short, long = out["tasks"]["dq_niah@1024"]["acc"], out["tasks"]["dq_niah@4096"]["acc"]
    assert short["drop_abs"] == 0 and short["ref_correct_cell_wrong"] == 0
    assert long["drop_abs"] == 0.5 and long["ref_correct_cell_wrong"] == 2 and long["lost_doc_ids"] == [0, 1]
    assert long["drop_ci95"][0] <= 0.5 <= long["drop_ci95"][1]
    # the aggregate stratifies by task: each length one stratum, the mean of their drops
    assert out["aggregate"]["tasks"] == ["dq_niah@1024", "dq_niah@4096"]
    assert out["aggregate"]["drop_abs"] == pytest.approx(0.25)
