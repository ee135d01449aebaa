"""BOS: what lm-eval's `hf` model and `local-completions` send, for a tokenizer that adds BOS and one that
doesn't. No model or server is loaded: both LMs are built without their heavy parts and only their
tokenization paths (_encode_pair / rolling token_list / generate encodings) are compared."""
import os, shutil, json, tempfile
os.environ.update(HF_HUB_OFFLINE="1")
import transformers
from lm_eval.models.huggingface import HFLM
from lm_eval.models.openai_completions import LocalCompletionsAPI

SRC = "/root/.cache/dqbench/models/smollm2-135m-instruct"
tmp = tempfile.mkdtemp(prefix="bos", dir="/tmp/research20")
nobos = os.path.join(tmp, "nobos"); bos = os.path.join(tmp, "bos")
for d in (nobos, bos):
    os.makedirs(d)
    for f in os.listdir(SRC):
        if f.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
            shutil.copy(os.path.join(SRC, f), d)
# a BOS-adding variant of the same tokenizer (as Llama/Gemma tokenizers behave)
t = transformers.AutoTokenizer.from_pretrained(bos, add_bos_token=True)
t.save_pretrained(bos)

def hf_lm(tok_dir, add_bos_token=None):
    lm = HFLM.__new__(HFLM)
    lm.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_dir)
    lm.add_bos_token = add_bos_token; lm.backend = "causal"; lm.custom_prefix_token_id = None
    return lm

def api_lm(tok_dir, **kw):
    return LocalCompletionsAPI(base_url="http://127.0.0.1:9/v1/completions", model="m", tokenizer=tok_dir,
                               tokenizer_backend="huggingface", tokenized_requests=True, **kw)

ctx, cont, doc = "Question: What is 2+2?\nAnswer:", " 4", "The capital of France is Paris."
for name, d in (("no-BOS tokenizer (SmolLM2)", nobos), ("BOS-adding tokenizer", bos)):
    tk = transformers.AutoTokenizer.from_pretrained(d)
    print(f"== {name}: bos_token={tk.bos_token!r} id={tk.bos_token_id}, encode('Hi')={tk('Hi').input_ids}")
    h = hf_lm(d)
    rows = {"hf (default add_bos_token=None)": h}
    for ab in (False, True):
        rows[f"local-completions add_bos_token={ab}"] = api_lm(d, add_bos_token=ab)
    for k, lm in rows.items():
        c_enc, x_enc = lm._encode_pair(ctx, cont)
        roll = lm.tok_encode(doc)
        gen = lm.tok_encode([ctx], add_special_tokens=lm.add_bos_token)[0] if isinstance(lm, LocalCompletionsAPI) \
            else lm.tokenizer([ctx], **({} if lm.add_bos_token is None else {"add_special_tokens": lm.add_bos_token})).input_ids[0]
        print(f"  {k:40s} ll ctx[:3]={c_enc[:3]} cont={x_enc}  rolling[:3]={roll[:3]} prefix={lm.prefix_token_id}  gen[:3]={gen[:3]}")

print("== chat-templated text that already starts with the BOS string (BOS-adding tokenizer):")
s = "<|im_start|>user\nHi<|im_end|>\n"
h = hf_lm(bos); a = api_lm(bos, add_bos_token=True)
print("  hf tok_encode          ", h.tok_encode(s)[:4])
print("  local-completions True ", a.tok_encode(s)[:4], " <- BOS twice (hf checks has_bos_prefix, the API model does not)")
