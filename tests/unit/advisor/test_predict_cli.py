"""`advisor predict` and the predicted section of the main advisor: answers for a model not measured anywhere
(Llama-3.1-8B on the cuda-h100 preset), for the default matrix's model on a CPU host with measured cells, what
to measure next, and one clear error for bad input."""

import json
import subprocess
import sys

import pytest

import harness.hw.probe
from advisor.cli import main
from harness.hw.probe import load_override
from tests.conftest import REPO
from tests.unit.predict.conftest import results_on


@pytest.fixture
def avx512(monkeypatch):
    """This host is the cpu-avx512 preset (with its figures), not the synthetic host of the other tests."""
    caps = load_override("cpu-avx512")
    monkeypatch.setattr(harness.hw.probe, "host_caps", lambda settings, refresh=False: caps)
    return caps


@pytest.fixture
def db(tmp_path, avx512, settings):
    from harness.store.db import ingest

    path = tmp_path / "r.duckdb"
    ingest(path, [(r.plan, r) for r in results_on(avx512.host_block())])
    return path


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_llama_8b_on_the_h100_preset_offline(capsys, tmp_path, avx512):
    code, out, _ = run(
        capsys, "predict", "meta-llama/Llama-3.1-8B-Instruct", "--host", "cuda-h100", "--db", str(tmp_path / "none"),
        "--concurrency", "1", "32", "--json",
    )  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["host"]["device"] == "cuda" and doc["measured_cells"] == 0 and doc["model"]["arch"]["num_layers"] == 32
    assert {p["scheme"] for p in doc["predictions"]} == {"bf16", "fp8", "w8a8", "w4a16-gptq", "w4a16-awq"}
    for p in doc["predictions"]:
        for k in ("memory_gib", "decode_tok_s", "ttft_ms", "drop"):
            e = p[k]
            assert e["label"] == "predicted" and e["lo"] <= e["value"] <= e["hi"], (p["scheme"], k)
    assert any("no measured cells" in n for n in doc["notes"])


def test_the_default_models_cells_on_this_host(capsys, db):
    code, out, _ = run(capsys, "predict", "smollm2-135m-instruct", "--db", str(db), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["measured_cells"] == 2 and doc["load"]["input_tokens"] == 128
    rows = {p["scheme"]: p for p in doc["predictions"]}
    assert rows["bf16"]["measured_cell"] and rows["bf16"]["decode_tok_s"]["label"] == "measured"
    assert rows["w4a16-gptq"]["decode_tok_s"]["label"] == "predicted"
    assert any("group 64 used" in n for n in doc["notes"])  # 576-wide layers: 128 does not divide them
    assert doc["errors"]["vllm"]["memory"].startswith("±")
    code, out, _ = run(capsys, "predict", "smollm2-135m-instruct", "--db", str(db), "--students", "2")
    assert code == 0 and "pruned-2" in out and "error of these predictions (vllm)" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["7B", "--concurrency", "0"], "--concurrency 0"),
        (["7B", "--schemes", "w3a7"], "scheme 'w3a7' unknown"),
        (["7B", "--host", "tpu-v9"], "--host 'tpu-v9'"),
        (["org/nothing"], "hub id known offline"),
        (["7B", "--students", "1"], "N >= 2"),
    ],
)
def test_bad_input_is_one_clear_error(capsys, tmp_path, avx512, args, needle):
    code, _, err = run(capsys, "predict", *args, "--db", str(tmp_path / "none"))
    assert code == 2 and needle in err and "Traceback" not in err


def test_the_advisor_ranks_predicted_cells_beside_measured_ones_and_names_what_to_measure_next(capsys, db, avx512):
    code, out, _ = run(
        capsys, "--db", str(db), "--host", avx512.host_id, "--vram", "23", "--device", "cpu", "--max-drop", "60%",
        "--json",
    )  # fmt: skip
    assert code == 0
    pred = json.loads(out)["predicted"]
    assert pred["rows"] and all(r["source"] == "predicted" for r in pred["rows"])
    assert {r["source"] for r in pred["combined"]} == {"measured", "predicted"}
    assert pred["next"]["text"].startswith("measure ") and "predicted" in pred["next"]["text"]
    assert pred["roofline"] is None  # the fixture's results carry no roofline block
    code, out, _ = run(capsys, "--db", str(db), "--host", avx512.host_id, "--vram", "23", "--device", "cpu")
    assert "predicted cells (not measured on this host" in out and "next:" in out
    code, out, _ = run(capsys, "--db", str(db), "--host", avx512.host_id, "--no-predict", "--json")
    assert json.loads(out)["predicted"] is None


def test_predicting_imports_no_backend_and_no_pipeline_stage():
    code = (
        "import sys, json\nfrom advisor.cli import main\n"
        "main(['predict', 'meta-llama/Llama-3.1-8B-Instruct', '--host', 'cuda-h100', '--db', '/nonexistent', "
        "'--json'])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'vllm', 'lm_eval', 'transformers') "
        "or m.startswith(('harness.serve', 'harness.runner', 'harness.workers', 'harness.evaluate', "
        "'harness.measure', 'harness.compress'))]\n"
        "print(json.dumps(bad), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []


def test_the_winners_roofline_is_among_the_reasons(capsys, tmp_path, avx512):
    from harness.predict.roofline import roofline_of
    from harness.store.db import ingest

    results = [
        r.model_copy(update={"roofline": roofline_of(r, avx512.figures)}) for r in results_on(avx512.host_block())
    ]
    path = tmp_path / "roof.duckdb"
    ingest(path, [(r.plan, r) for r in results])
    code, out, _ = run(capsys, "--db", str(path), "--host", avx512.host_id, "--device", "cpu", "--json")
    assert code == 0
    words = json.loads(out)["predicted"]["roofline"]
    assert (
        words.startswith("roofline: ")
        and "decode limit" in words
        and ("memory-bound" in words or "compute-bound" in words)
    )
