"""The `drafts:` section and axes.draft (issue #28): one draft model each, references checked, one error each."""

import pytest
from pydantic import ValidationError

from harness.spec import parse_matrix
from harness.spec.serving import DraftSpec


def _with_drafts(base_matrix, drafts, axis):
    m = dict(base_matrix)
    m["axes"] = {**m["axes"], "draft": axis}
    m["drafts"] = drafts
    return m


def test_a_draft_names_exactly_one_model():
    DraftSpec(student="s")
    DraftSpec(source={"kind": "local", "path": "/m"})
    with pytest.raises(ValidationError, match="exactly one model"):
        DraftSpec()
    with pytest.raises(ValidationError, match="exactly one model"):
        DraftSpec(student="s", source={"kind": "local", "path": "/m"})
    with pytest.raises(ValidationError, match="served as it is"):
        DraftSpec(source={"kind": "local", "path": "/m"}, method="gguf")
    with pytest.raises(ValidationError, match="min_tokens 5 exceeds tokens 4"):
        DraftSpec(student="s", tokens=4, min_tokens=5)
    with pytest.raises(ValidationError):
        DraftSpec(student="s", tokens=0)


def test_draft_references_are_checked(base_matrix):
    students = [{"name": "kd", "kind": "untrained", "student": {"kind": "prune", "keep_every": 2}}]
    ok = _with_drafts(base_matrix, {"d": {"student": "kd", "method": "gguf", "targets": ["gguf"]}}, ["none", "d"])
    ok["students"] = students
    assert parse_matrix(ok).drafts["d"].method == "gguf"
    bad = _with_drafts(base_matrix, {}, ["none", "d"])
    with pytest.raises(Exception, match="axes.draft: 'd' has no entry under `drafts:`"):
        parse_matrix(bad)
    bad = _with_drafts(base_matrix, {"d": {"student": "nobody"}}, ["none", "d"])
    with pytest.raises(Exception, match="drafts.d.student: 'nobody' is not a student"):
        parse_matrix(bad)
    bad = _with_drafts(base_matrix, {"d": {"student": "kd", "method": "nope"}}, ["none", "d"])
    bad["students"] = students
    with pytest.raises(Exception, match="drafts.d.method: 'nope' has no entry under `methods:`"):
        parse_matrix(bad)
    bad = _with_drafts(base_matrix, {"d": {"student": "kd", "targets": ["gptq"]}}, ["none", "d"])
    bad["students"] = students
    with pytest.raises(Exception, match="drafts.d.targets: 'gptq' is not on axes.method"):
        parse_matrix(bad)


def test_a_matrix_without_drafts_dumps_as_before(base_matrix):
    m = parse_matrix(base_matrix)
    dumped = m.model_dump(mode="json")
    assert "drafts" not in dumped and "draft" not in dumped["axes"]
    assert "price_per_hour" not in dumped["hardware"]
