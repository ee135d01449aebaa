"""Special tokens: every scoring path sends the token ids lm-eval's `hf` model would score (issue #20).

Compared without loading a model: lm-eval's own HFLM tokenization (its `tok_encode`, `_encode_pair`,
`tok_batch_encode`, `prefix_token_id`) against dqbench's `dq-local-completions` (vLLM cells), `dq-llamacpp`
(GGUF cells) and the token-id windows of load prompts and shift dumps, on the embedded SmolLM2 tokenizer
(adds no BOS) and on the same tokenizer saved as a BOS-adding one (as Llama-3's and Gemma's behave).
"""

from __future__ import annotations

import shutil

import pytest

from harness.evaluate.bos import special_prefix
from harness.measure import prompts
from harness.settings import load_settings

pytest.importorskip("lm_eval")
transformers = pytest.importorskip("transformers")

CTX, CONT = "Question: What is 2+2?\nAnswer:", " 4"
DOC = "The capital of France is Paris. It lies on the Seine."


@pytest.fixture(scope="module", params=["no-bos", "bos"])
def tok_dir(request, tmp_path_factory):
    src = load_settings().models_dir / "smollm2-135m-instruct"
    if not (src / "tokenizer.json").is_file():
        pytest.skip("the embedded model is not prepared (./dq harness prepare)")
    d = tmp_path_factory.mktemp(request.param)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / f).is_file():
            shutil.copy(src / f, d / f)
    if request.param == "bos":
        transformers.AutoTokenizer.from_pretrained(d, add_bos_token=True).save_pretrained(d)
    return request.param, d


def _hf(d):
    from lm_eval.models.huggingface import HFLM

    lm = HFLM.__new__(HFLM)  # lm-eval's own tokenization path, without loading weights
    lm.tokenizer = transformers.AutoTokenizer.from_pretrained(d)
    lm.add_bos_token, lm.backend, lm.custom_prefix_token_id = None, "causal", None
    return lm


def _api(d):
    from harness.evaluate.api_lm import DQLocalCompletions

    return DQLocalCompletions(
        base_url="http://127.0.0.1:9/v1/completions",
        model="m",
        tokenizer=str(d),
        tokenizer_backend="huggingface",
        tokenized_requests=True,
    )


def _llamacpp(d):
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    lm = LlamaCppLM.__new__(LlamaCppLM)
    lm.tokenizer = transformers.AutoTokenizer.from_pretrained(d)
    return lm


def test_requests_are_hfs_token_for_token(tok_dir):
    kind, d = tok_dir
    hf = _hf(d)
    bos = hf.tokenizer.bos_token_id
    want_ll = hf._encode_pair(CTX, CONT)
    want_roll = (hf.tok_encode(DOC), hf.prefix_token_id)
    want_gen = hf.tok_batch_encode([CTX])[0][0].tolist()
    assert (want_ll[0][0] == bos) == (kind == "bos")  # the fixture is what it claims to be
    api, cpp = _api(d), _llamacpp(d)
    for lm in (api, cpp):
        assert lm._encode_pair(CTX, CONT) == want_ll
        assert (lm.tok_encode(DOC), lm.prefix_token_id) == want_roll
    assert api.tok_encode([CTX], add_special_tokens=api.add_bos_token)[0] == want_gen  # generate_until's call
    assert cpp.tok_encode(CTX) == want_gen
    # lm-eval's plain local-completions (what dqbench used before) drops BOS on a BOS-adding tokenizer
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    plain = LocalCompletionsAPI(
        base_url="http://127.0.0.1:9/v1/completions", model="m", tokenizer=str(d), tokenizer_backend="huggingface"
    )
    assert (plain._encode_pair(CTX, CONT) == want_ll) == (kind == "no-bos")


def test_a_chat_templated_prompt_gets_one_bos(tok_dir):
    _, d = tok_dir
    hf, api, cpp = _hf(d), _api(d), _llamacpp(d)
    text = hf.tokenizer.bos_token + "user\nHi"  # a template that renders the BOS text itself
    want = hf.tok_encode(text)
    assert want.count(hf.tokenizer.bos_token_id) == 1
    assert api.tok_encode(text) == cpp.tok_encode(text) == want


def test_token_id_windows_start_as_the_model_sees_text(tok_dir):
    kind, d = tok_dir
    tok = transformers.AutoTokenizer.from_pretrained(d)
    head = list(prompts.special_prefix(str(d)))
    assert head == special_prefix(tok) == ([tok.bos_token_id] if kind == "bos" else [])
    windows = prompts.token_prompts(str(d), "pydoc", 3, 16, seed=0)
    assert all(len(w) == 16 and w[: len(head)] == head for w in windows)
    if kind == "bos":
        assert all(w[1] != tok.bos_token_id for w in windows)


def test_chat_templated_requests_equal_hfs(tok_dir):
    _, d = tok_dir
    hf, api, cpp = _hf(d), _api(d), _llamacpp(d)
    if not hf.tokenizer.chat_template:
        pytest.skip("this tokenizer copy has no chat template")
    hf.chat_template_args = {}
    chat = [{"role": "user", "content": CTX}]
    text = hf.apply_chat_template(chat)
    assert api.apply_chat_template(chat) == cpp.apply_chat_template(chat) == text
    assert api.tok_encode(text) == cpp.tok_encode(text) == hf.tok_encode(text)
