"""The sensitivity scan's job (harness/plan/sensitivity_worker.py) crosses the process boundary as JSON: it
round-trips, a renamed or unknown field is refused, and its dump is what the scan id hashes (the same keys as
before it was typed, so a stored scan keeps its id)."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from harness.plan.sensitivity_worker import LayerDamage, SensitivityJob, SensitivityScan

BASE = {"source": "/m", "bits": 4, "symmetric": True, "corpus": "pydoc", "windows": 8, "tokens": 256, "seed": 7}


@pytest.mark.parametrize("group_size", [32, "channel", None])
def test_the_job_round_trips_and_refuses_an_unknown_field(group_size):
    job = SensitivityJob(**BASE, group_size=group_size)
    assert SensitivityJob.model_validate_json(job.model_dump_json()) == job
    with pytest.raises(ValidationError):
        SensitivityJob.model_validate({**job.model_dump(), "group": 32})


def test_the_scan_id_hashes_the_same_dict_as_before():
    job = SensitivityJob(**BASE, group_size=32)
    fp = {"kind": "local", "path": "/m"}
    before = {"model": fp, **BASE, "group_size": 32, "source": None}  # the config dict the parent hashed
    # as harness/plan/sensitivity.py hashes it: trust_remote_code (added later) is not part of the id
    now = {"model": fp, **job.model_dump(mode="json", exclude={"trust_remote_code"}), "source": None}
    assert json.dumps(now, sort_keys=True) == json.dumps(before, sort_keys=True)
    assert (
        hashlib.sha256(json.dumps(now, sort_keys=True).encode()).hexdigest()[:12] == "14beef76ca40"
    )  # computed the old way


def test_a_layer_row_keeps_its_stored_key_order():
    row = LayerDamage(layer=1, params=10, kld_mean=0.5, top1_agreement=0.9, ppl_ratio=1.01)
    assert list(row.model_dump()) == ["layer", "params", "kld_mean", "top1_agreement", "ppl_ratio"]
    scan = SensitivityScan(
        layers=[row], all_layers=dict(kld_mean=1, top1_agreement=0.5, ppl_ratio=2), wall_s=1, measure="m"
    )
    assert list(scan.model_dump()) == ["layers", "all_layers", "wall_s", "measure"]
