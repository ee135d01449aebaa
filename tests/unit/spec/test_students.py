"""Student specs: one kind per plugin, fields that do not belong to a kind rejected, training bounded."""

import pytest

from harness.errors import SpecError
from harness.spec import parse_matrix


def with_student(base_matrix, **student):
    base_matrix["students"] = [{"name": "s", "student": {"kind": "prune", "keep_every": 2}, **student}]
    base_matrix["axes"]["distill"] = ["none", "s"]
    return base_matrix


def test_kinds_parse_with_their_own_defaults(base_matrix):
    kd = parse_matrix(with_student(base_matrix, kind="logit_kd", max_steps=10)).students[0]
    assert (kd.temperature, kd.alpha, kd.top_k) == (2.0, 0.5, 64)
    gkd = parse_matrix(with_student(base_matrix, kind="gkd", max_steps=10)).students[0]
    assert (gkd.lmbda, gkd.beta, gkd.prompts) == (0.5, 0.5, "open_qa")


def test_untrained_student_takes_no_training_fields(base_matrix):
    with pytest.raises(SpecError) as e:
        parse_matrix(with_student(base_matrix, kind="untrained", max_steps=10))
    assert "max_steps" in str(e.value) and "unknown field" in str(e.value)


def test_field_of_another_kind_is_rejected(base_matrix):
    with pytest.raises(SpecError) as e:
        parse_matrix(with_student(base_matrix, kind="logit_kd", max_steps=10, lmbda=0.5))
    assert "lmbda" in str(e.value)


def test_training_needs_a_bound(base_matrix):
    with pytest.raises(SpecError) as e:
        parse_matrix(with_student(base_matrix, kind="sft"))
    assert "needs a bound" in str(e.value) and "max_steps" in str(e.value)


def test_student_methods_must_exist(base_matrix):
    with pytest.raises(SpecError) as e:
        parse_matrix(with_student(base_matrix, kind="untrained", methods=["gguf", "w4a16_sq"]))
    assert "students[s].methods" in str(e.value) and "'w4a16_sq'" in str(e.value)


def test_alpha_and_temperature_ranges(base_matrix):
    with pytest.raises(SpecError):
        parse_matrix(with_student(base_matrix, kind="logit_kd", max_steps=1, alpha=1.5))
    with pytest.raises(SpecError):
        parse_matrix(with_student(base_matrix, kind="logit_kd", max_steps=1, temperature=0))
