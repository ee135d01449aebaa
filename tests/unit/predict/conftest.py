"""Builders for the prediction tests: observations of a synthetic host whose figures follow a known model."""

from __future__ import annotations

import json

import pytest

from harness.hw.figures import HostFigures
from harness.models.arch import known_arch
from harness.predict.observe import Case, LevelObs, Observation
from harness.predict.schemes import parse_scheme
from harness.result import CellResult
from harness.serving_memory import GiB, weights
from tests.conftest import REPO

SMOL = known_arch("smollm2-135m-instruct")
FIGS = HostFigures(device="cpu", bandwidth_gb_s=10.0, tflops={"fp32": 0.1, "bf16": 0.4, "int8": 0.8}, basis="test")


def case(scheme: str = "bf16", model: str = "smol", host: str = "h1", arch=SMOL, **kw) -> Case:
    args = dict(
        model=model,
        arch=arch,
        scheme=parse_scheme(scheme),
        device="cpu",
        host_id=host,
        activation_dtype="bf16",
        input_tokens=128,
        output_tokens=32,
        concurrencies=(1.0, 16.0),
        kv_gib=1.0,
    )
    args.update(kw)
    return Case(**args)


def obs(
    cid: str,
    c: Case,
    peak: float | None = None,
    levels: list[tuple[float, float, float, float]] | None = None,
    drop: float | None = None,
    se: float | None = 0.01,
    parent: str | None = "ref",
) -> Observation:
    """levels: [(concurrency, output tok/s, tpot ms, ttft ms)]."""
    return Observation(
        cell_id=cid,
        label=cid,
        case=c,
        engine=c.scheme.engine,
        peak_gib=peak,
        levels=tuple(LevelObs("concurrency" if lv[0] > 1 else "synchronous", *lv) for lv in (levels or [])),
        drop=drop,
        drop_se=se if drop is not None else None,
        parent_id=parent,
        weights_gib=weights(c.arch, c.scheme.quant).bytes / GiB if c.arch else None,
    )


@pytest.fixture
def v3() -> CellResult:
    return CellResult.model_validate(json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text()))


def results_on(host: dict, v3_doc: dict | None = None) -> list[CellResult]:
    """Two measured cells of one host from the v3 fixture: its bf16 reference and a W8A8 child of it (with a
    paired drop and a KL against the reference), as the store keeps them."""
    doc = v3_doc or json.loads((REPO / "tests" / "fixtures" / "result-v3.json").read_text())
    ref = CellResult.model_validate({**doc, "host": host})
    plan = {
        **doc["plan"],
        "cell_id": "w8a8cell0001",
        "precision": "int8",
        "method": "w8a8",
        "method_spec": {"kind": "rtn", "precisions": ["int8"], "ignore": ["lm_head"], "options": {}},
        "parent_id": doc["cell_id"],
    }
    shift = {
        "reference": doc["cell_id"],
        "metrics": {"kld_mean": 0.03, "top1_agreement": 0.9},
        "flips": {"aggregate": {"drop_abs": 0.01, "drop_ci95": [-0.01, 0.03], "tasks": list(doc["quality"]["tasks"])}},
    }
    w8 = CellResult.model_validate(
        {
            **doc,
            "cell_id": "w8a8cell0001",
            "label": "w8a8",
            "plan": plan,
            "host": host,
            "shift": shift,
            "memory": {"peak_gib": 3.8},
            "artefact": {**doc["artefact"], "size_bytes": 166753600},
        }  # fmt: skip
    )
    return [ref, w8]
