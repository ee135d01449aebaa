"""Methods that cannot run on this CPU host are infeasible in the plan with what they need -- never
skipped silently, never faked. The legacy AutoAWQ/AutoGPTQ plugins are refused wherever their worker's
environment lacks the torch and transformers they were built for (every env dqbench builds)."""

import pytest

from harness.plan import plan_matrix
from harness.spec import parse_matrix
from harness.workspace import CellPaths

# the host classes these plans are made for (harness/hw/presets): W4A16 runs on the AVX-512 one
PRESET = {"cpu": "cpu-avx512", "cuda": "cuda-h100"}


def plan_one(base_matrix, settings, kind: str, precision: str = "int4", host: str = "cpu", **method):
    base_matrix["axes"] = {"precision": ["bf16", precision], "method": ["none", "m"], "distill": ["none"]}
    base_matrix["methods"] = {"m": {"kind": kind, **method}}
    base_matrix["hardware"]["device"] = host
    return plan_matrix(parse_matrix(base_matrix), settings, host=PRESET[host]).cells[1]


@pytest.mark.parametrize(
    "kind,release,series,instead",
    [("autoawq", "AutoAWQ 0.2.9", "2.6", "awq"), ("autogptq", "AutoGPTQ 0.7.1", "2.2", "gptq")],
)
@pytest.mark.parametrize("host", ["cpu", "cuda"])
def test_legacy_plugins_are_refused_with_what_they_need(base_matrix, settings, kind, release, series, instead, host):
    """Their worker would run in the serving env (torch 2.13, transformers 5): refused on any host, with the
    versions they need, the installed ones and the maintained method; the plugin stays registered."""
    from importlib.metadata import version

    cell = plan_one(base_matrix, settings, kind, group_size=64, host=host)
    assert cell.status == "infeasible"
    (why,) = [r for r in cell.reasons if "is refused" in r]
    assert why.startswith(
        f"method 'm' ({kind}): {release} is refused: it was built for torch {series} and transformers < 5"
    )
    assert f"has torch {version('torch')} and transformers {version('transformers')}" in why
    assert f"use methods: {{kind: {instead}}} (llm-compressor's maintained {instead.upper()}" in why
    assert "pip install 'dqbench[legacy]'" not in cell.reason  # installing it here would not make it run


def test_legacy_refusal_reaches_a_direct_compress_call(base_matrix, settings, tmp_path):
    from harness.errors import StageError
    from harness.registry import compressors

    cell = plan_one(base_matrix, settings, "autogptq", group_size=64, host="cuda")
    with pytest.raises(StageError, match="AutoGPTQ 0.7.1 is refused"):
        compressors.get("autogptq")().compress(cell, tmp_path, CellPaths.in_folder(tmp_path, cell.cell_id), settings)


def test_legacy_plugins_run_where_an_env_has_their_versions(base_matrix, settings, monkeypatch):
    """In an env with torch 2.6 and transformers 4.51 (which dqbench does not build) AutoAWQ is planned like
    any method: its group size is checked against the model."""
    import harness.compress.legacy as legacy

    monkeypatch.setattr(legacy, "installed", {"torch": "2.6.0+cu124", "transformers": "4.51.3"}.get)
    cell = plan_one(base_matrix, settings, "autoawq", group_size=128, host="cuda")
    assert not any("is refused" in r for r in cell.reasons)
    assert "group_size 128 does not divide the input size 576" in cell.reason


def test_bnb_says_what_it_needs(base_matrix, settings):
    cell = plan_one(base_matrix, settings, "bnb")
    assert cell.status == "infeasible" and "bitsandbytes" in cell.reason and "CUDA" in cell.reason
