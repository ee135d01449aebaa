"""Bad inputs get one clear SpecError (file, field, value, fix) when the matrix is read: non-UTF-8 files,
keys written twice, duplicate students, unbounded load parameters, abbreviated managed engine flags, and
the `limits:` block."""

import pytest
import yaml

from harness.errors import SpecError
from harness.spec import load_matrix, parse_matrix
from harness.spec.matrix import Limits, Matrix
from harness.spec.serving import LlamaCppServing, VLLMServing
from tests.conftest import MATRICES


def test_binary_file_is_one_error_naming_the_file(tmp_path):
    path = tmp_path / "weights.yaml"
    path.write_bytes(b"name: x\n\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(SpecError) as e:
        load_matrix(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "not a UTF-8 text file" in msg and "0x89 at offset 8" in msg


def test_duplicate_key_under_methods_is_refused_with_its_lines(tmp_path):
    text = (
        (MATRICES / "smollm2-cpu.yaml")
        .read_text()
        .replace(
            "  gguf: {kind: gguf, precisions: [int4]}",
            "  gguf: {kind: gguf, precisions: [int4]}\n  w8a8: {kind: gptq, precisions: [int8]}",
        )
    )
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    lines = text.splitlines()
    first = next(i for i, x in enumerate(lines) if x.startswith("  w8a8:")) + 1
    second = next(i for i, x in enumerate(lines) if x.startswith("  w8a8: {kind: gptq")) + 1
    with pytest.raises(SpecError) as e:
        load_matrix(path)
    assert str(e.value) == (
        f"{path}: line {second}: duplicate key 'w8a8' (first at line {first}); a YAML mapping "
        "keeps only one value per key: merge the two entries or rename one"
    )


def test_duplicate_top_level_and_nested_keys(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nload: {input_tokens: 8, input_tokens: 9}\n")
    with pytest.raises(SpecError, match=r"line 2: duplicate key 'input_tokens' \(first at line 2\)"):
        load_matrix(path)
    path.write_text("name: a\ndescription: x\nname: b\n")
    with pytest.raises(SpecError, match=r"line 3: duplicate key 'name' \(first at line 1\)"):
        load_matrix(path)


def test_merge_keys_may_be_overridden(tmp_path):
    """`<<: *anchor` then an explicit key is YAML's way to override a default, not a duplicate."""
    m = yaml.safe_load((MATRICES / "smollm2-cpu.yaml").read_text())
    m.pop("methods")
    m["axes"]["method"] = ["none", "a", "b"]
    m["axes"]["distill"] = ["none"]
    m.pop("students")
    m.pop("drafts")  # the default's draft is its student
    m["axes"].pop("draft")
    text = yaml.safe_dump(m) + (
        "methods:\n  a: &base {kind: rtn, precisions: [int8]}\n"
        "  b:\n    <<: *base\n    precisions: [int4]\n    group_size: 64\n"
    )
    path = tmp_path / "merge.yaml"
    path.write_text(text)
    got = load_matrix(path)
    assert got.methods["b"].precisions == ["int4"] and got.methods["a"].precisions == ["int8"]


def test_duplicate_student_names_are_refused(base_matrix):
    student = {"name": "kd", "kind": "logit_kd", "student": {"kind": "prune"}, "max_steps": 2}
    base_matrix["students"] = [student, {**student, "alpha": 0.0}]
    base_matrix["axes"]["distill"] = ["none", "kd"]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "students: duplicate names ['kd']" in str(e.value)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        (
            "rate",
            0.0001,
            "rate: got 0.0001; 32 requests at 0.0001/s arrive over 88.9 h, more than the 24 h a level "
            "may take: set rate >= 0.0003704 or fewer requests",
        ),
        ("rate", 1e9, "less than or equal to 100000"),
    ],
)
def test_poisson_rate_is_bounded(base_matrix, field, value, expected):
    base_matrix["load"]["profiles"] = [{"kind": "poisson", "requests": 32, field: value}]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "load.profiles[0]" in str(e.value) and expected in str(e.value)
    base_matrix["load"]["profiles"] = [{"kind": "poisson", "requests": 32, "rate": 0.001}]  # 8.9 h: allowed
    assert parse_matrix(base_matrix).load.profiles[0].rate == 0.001


def test_concurrency_levels_are_bounded(base_matrix):
    base_matrix["load"]["profiles"] = [{"kind": "concurrency", "levels": [16, 100_000], "requests": 16}]
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert "load.profiles[0].levels" in str(e.value) and "1..4096" in str(e.value) and "[100000]" in str(e.value)
    base_matrix["load"]["profiles"][0]["levels"] = [1, 4096]
    assert parse_matrix(base_matrix).load.profiles[0].levels == [1, 4096]


@pytest.mark.parametrize(
    "field, value",
    [
        ("request_timeout_s", 90_000),
        ("input_tokens", 2_000_000),
        ("output_tokens", 2_000_000),
        ("warmup_requests", 5000),
    ],
)
def test_load_lengths_and_timeout_are_bounded(base_matrix, field, value):
    base_matrix["load"][field] = value
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    assert f"load.{field}: got {value};" in str(e.value) and "less than or equal to" in str(e.value)


@pytest.mark.parametrize(
    "key, flag",
    [
        ("hos", "host"),
        ("trust_remote", "trust-remote-code"),
        ("max_model", "max-model-len"),
        ("--served-model", "served-model-name"),
        ("quant", "quantization"),
        ("dtype", "dtype"),
    ],
)
def test_vllm_engine_args_refuse_abbreviations_of_managed_flags(base_matrix, key, flag):
    base_matrix["serving"]["engine_args"] = {key: "x", "max_num_seqs": 4}
    with pytest.raises(SpecError) as e:
        parse_matrix(base_matrix)
    msg = str(e.value)
    assert msg.startswith("serving.engine_args:") and f"{key!r}" in msg and f"--{flag}" in msg
    assert "set by dqbench itself" in msg and "'max_num_seqs'" not in msg
    assert VLLMServing(engine_args={"max_num_seqs": 4, "swap_space": 0}).engine_args["max_num_seqs"] == 4


def test_llamacpp_extra_args_refuse_managed_flags_exactly():
    """llama.cpp's parser matches flags exactly: `thread` is no way to --threads (llama-server refuses it)."""
    for key in ("batch_size", "b", "ctx-size", "no_webui"):
        with pytest.raises(ValueError, match="set by dqbench itself"):
            LlamaCppServing(extra_args={key: 1})
    assert LlamaCppServing(extra_args={"thread": 2, "flash_attn": "on"}).extra_args["thread"] == 2


def test_limits_block_is_parsed_bounded_and_left_out_of_dumps_at_its_default(base_matrix):
    assert "limits" not in parse_matrix(base_matrix).model_dump(mode="json")
    base_matrix["limits"] = {"cell_deadline_s": 3600, "evaluate_timeout_s": 1800}
    m = parse_matrix(base_matrix)
    assert m.limits == Limits(cell_deadline_s=3600, evaluate_timeout_s=1800, shift_timeout_s=7200)
    assert m.model_dump(mode="json")["limits"]["cell_deadline_s"] == 3600
    for bad in ({"cell_deadline_s": 0}, {"shift_timeout_s": -1}, {"evaluate_timeout_s": 8 * 86400}, {"deadline": 1}):
        base_matrix["limits"] = bad
        with pytest.raises(SpecError) as e:
            parse_matrix(base_matrix)
        assert str(e.value).startswith(f"limits.{next(iter(bad))}:")
    assert Limits().cell_deadline_s is None and Matrix.model_fields["limits"].default_factory() == Limits()
