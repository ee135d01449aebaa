import pytest
from pydantic import ValidationError

from harness.errors import SpecError
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES


@pytest.mark.parametrize("name", ["smollm2-cpu.yaml", "smollm2-cpu-full.yaml", "llama8b.yaml"])
def test_shipped_matrices_validate(name):
    m = load_matrix(MATRICES / name)
    assert m.models and m.load.profiles and m.evaluation.tasks


def test_matrix_is_frozen(base_matrix):
    m = parse_matrix(base_matrix)
    with pytest.raises(ValidationError):
        m.name = "other"


def test_unknown_field_names_its_path(base_matrix):
    base_matrix["serving"]["max_model_length"] = 4096
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix, "m.yaml")
    assert "serving.max_model_length: unknown field" in str(e.value)
    assert str(e.value).startswith("m.yaml: ")


def test_bad_value_names_field_value_and_allowed(base_matrix):
    base_matrix["axes"]["precision"] = ["bf16", "int7"]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    msg = str(e.value)
    assert "axes.precision[1]" in msg and "'int7'" in msg and "'int4'" in msg


def test_bad_plugin_kind_lists_known_kinds(base_matrix):
    base_matrix["load"]["profiles"][0]["kind"] = "ramp"
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "load.profiles[0]" in str(e.value) and "'synchronous'" in str(e.value)


def test_all_problems_reported_at_once(base_matrix):
    base_matrix["load"]["input_tokens"] = 0
    base_matrix["evaluation"]["num_concurrent"] = -1
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert e.value.problems and len(e.value.problems) == 2
    assert any(p.startswith("load.input_tokens: got 0;") for p in e.value.problems)


def test_method_axis_must_reference_a_defined_method(base_matrix):
    base_matrix["axes"]["method"] = ["none", "gptq"]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "axes.method" in str(e.value) and "'gptq'" in str(e.value) and "methods:" in str(e.value)


def test_distill_axis_must_reference_a_student(base_matrix):
    base_matrix["axes"]["distill"] = ["none", "kd"]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "'kd'" in str(e.value) and "students:" in str(e.value)


def test_group_size_power_of_two(base_matrix):
    base_matrix["methods"] = {"rtn": {"kind": "rtn", "group_size": 48}}
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "methods.rtn.group_size" in str(e.value) and "power of two" in str(e.value)


def test_engine_args_cannot_override_managed_flags(base_matrix):
    base_matrix["serving"]["engine_args"] = {"port": 9000}
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "serving.engine_args" in str(e.value) and "set by dqbench" in str(e.value)


def test_duplicate_axis_entries_rejected(base_matrix):
    base_matrix["axes"]["precision"] = ["bf16", "bf16"]
    with pytest.raises(SpecError, match="duplicate"):
        parse_matrix(base_matrix)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_matrix(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_matrix(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_matrix(top)


def test_model_dtype_points_at_the_precision_axis(base_matrix):
    import pytest

    from harness.errors import SpecError
    from harness.spec import parse_matrix

    base_matrix["models"][0]["dtype"] = "float32"
    with pytest.raises(SpecError, match="set axes.precision instead"):
        parse_matrix(base_matrix)


def test_allow_code_execution_is_a_late_field_off_by_default():
    from harness.spec.evaluation import LMEvalSpec

    off = LMEvalSpec(tasks=[{"name": "humaneval"}])
    assert off.allow_code_execution is False and "allow_code_execution" not in off.model_dump()
    on = LMEvalSpec(tasks=[{"name": "humaneval"}], allow_code_execution=True)
    assert on.model_dump()["allow_code_execution"] is True
