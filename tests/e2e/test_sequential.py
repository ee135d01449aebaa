"""The sequential evaluation on the real embedded model: the evaluate worker scores SmolLM2-135M (its bf16 GGUF,
in-process through llama.cpp, as a GGUF cell is scored) on ARC-Easy and HellaSwag item by item, as a reference and
as a cell paired with it. The same model against itself has no drop: the anytime-valid interval closes around 0 and
the cell is `within` a 30 % limit within its budget; a second run scores nothing again."""

from __future__ import annotations

import os

import pytest

from harness.decide.question import SequentialSpec
from harness.evaluate.catalog import leaves
from harness.evaluate.data import TaskData
from harness.serve.scoring import Scoring
from harness.settings import load_settings
from harness.spec.evaluation import TaskSpec

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
MEASURE = {"arc_easy": "acc_norm", "hellaswag": "acc_norm"}


def test_a_real_model_paired_with_itself_is_within_and_a_rerun_scores_nothing(tmp_path):
    pytest.importorskip("lm_eval")
    from harness.compress.gguf import bf16_gguf_path
    from harness.evaluate.lmeval_worker import LMEvalJob, work

    settings = load_settings()
    model = settings.models_dir / "smollm2-135m-instruct"
    gguf = bf16_gguf_path(model, settings)
    if not gguf.is_file() or settings.llamacpp_dir is None:
        pytest.skip("the embedded model's bf16 GGUF or llama.cpp is not built (a default run builds both)")
    tools = settings.llamacpp_dir
    os.environ.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        LLAMA_CPP_LIB_PATH=str(tools / "build" / "bin"),
    )
    import sys

    sys.path.insert(0, str(tools / "py"))
    data = TaskData(settings)
    data.prepare(tmp_path / "prepare.log")

    def job(cell: str, ref: str | None) -> LMEvalJob:
        return LMEvalJob(
            scoring=Scoring(
                model="dq-llamacpp",
                register_module="harness.evaluate.llamacpp_lm",
                model_args={"model_path": str(gguf), "tokenizer": str(model), "n_threads": os.cpu_count() or 1},
            ),
            include_path=str(data.task_dir()),
            offline_leaves={lf.name: lf for n in MEASURE for lf in leaves(n) or []},
            data_dir=str(data.dir),
            index_cache=str(settings.home / "lmeval-index"),
            num_concurrent=1,
            max_length=1024,
            batch_size=1,
            seed=1234,
            samples_dir=str(tmp_path / cell / "samples"),
            tasks=[TaskSpec(name="arc_easy"), TaskSpec(name="hellaswag")],
            sequential=SequentialSpec(
                measure=MEASURE,
                measure_name="aggregate",
                max_drop="30%",
                relative=True,
                limit=0.3,
                error_rate=0.05,
                max_items=200,
                batch_items=40,
                seed=0,
                journal_dir=str(tmp_path / cell / "items"),
                reference_dir=str(tmp_path / ref / "items") if ref else None,
                reference_id=ref,
            ),
        )

    ref = work(job("ref", None)).decision
    assert ref.stop == "reference" and ref.items_used == 200 and ref.scored == 200
    cell = work(job("cell", "ref")).decision
    assert cell.verdict == "within" and cell.items_used <= 200 and cell.point == 0.0
    assert cell.lo <= 0.0 <= cell.hi <= 0.3
    again = work(job("cell", "ref")).decision
    assert again.scored == 0 and (again.verdict, again.items_used) == (cell.verdict, cell.items_used)
