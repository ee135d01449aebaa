"""The GPU e2e set's matrix (tests/e2e/test_gpu_chain.py) planned against the H100 preset, on every run: CI has no
GPU, so this is where a change that would make one of its cells infeasible on a GPU host shows up. The same
matrix on this (CPU) host plans its GPU-only cells as infeasible with what they need, before any model loads."""

from harness.plan import plan_matrix
from harness.spec import parse_matrix
from tests.e2e.test_gpu_chain import EXPECTED, gpu_matrix


def _plan(settings, host):
    return plan_matrix(parse_matrix(gpu_matrix()), settings, host=host)


def test_every_cell_of_the_gpu_chain_is_planned_on_an_h100(settings):
    p = _plan(settings, "cuda-h100")
    planned = {(c.precision, c.method, c.distill): c for c in p.cells if c.status == "planned"}
    assert set(planned) == set(EXPECTED), [(c.label, c.reason) for c in p.cells if c.status != "planned"]
    assert planned[("int4", "gguf", "none")].serving.kind == "llamacpp"
    assert all(c.serving.kind == "vllm" for k, c in planned.items() if k[1] != "gguf")
    # the quantized cells and the student compare with the bf16 reference
    ref = planned[("bf16", "none", "none")].cell_id
    assert all(c.parent_id == ref for k, c in planned.items() if k != ("bf16", "none", "none"))


def test_on_a_cpu_host_the_gpu_only_cells_say_what_they_need(settings):
    p = _plan(settings, "cpu-avx2")
    infeasible = {(c.precision, c.method): c.reason for c in p.cells if c.status == "infeasible"}
    # the matrix asks for `device: cuda`: every cell needs the GPU and says so
    assert infeasible and all("cuda" in r.lower() or "gpu" in r.lower() for r in infeasible.values()), infeasible


def test_gguf_on_a_gpu_host_needs_a_gpu_build_of_llamacpp(settings):
    """The set-up builds llama.cpp for CPU: on a GPU host the GGUF cell of a `device: cuda` matrix would be
    measured on the CPU under a CUDA label, so it is infeasible, naming the build flag that fixes it."""
    from harness.hw.caps import LlamaCppCaps
    from harness.hw.probe import load_override

    h100 = load_override("cuda-h100")
    cpu_only = h100.model_copy(update={"llamacpp": LlamaCppCaps(dir="/x", gpu_backend=False)})
    cell = next(c for c in _plan(settings, cpu_only).cells if c.method == "gguf")
    assert cell.status == "infeasible" and "builds llama.cpp for CPU only" in cell.reason and "GGML_CUDA" in cell.reason
    cuda_build = h100.model_copy(update={"llamacpp": LlamaCppCaps(dir="/x", gpu_backend=True)})
    assert next(c for c in _plan(settings, cuda_build).cells if c.method == "gguf").status == "planned"
