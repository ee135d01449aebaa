"""Benchmark: evaluation at the server's speed (issue #17 item 7).

For one cell (the embedded SmolLM2-135M on one real vLLM-CPU server, set up as the default matrix serves its
reference), prints the prompt tokens per second the evaluate stage scores against the server's own maximum
prefill rate on the same prompts, and the evaluate stage's wall time under each transport variant.

- evaluate: `harness.evaluate.lmeval_worker.work` (the evaluate stage's worker, in this process so that every
  prompt it sends is recorded) with dqbench's `dq-local-completions` on a fixed task set and limits. Tokens
  scored = the prompt token ids lm-eval actually sent (echo + logprobs), checked against the server's own
  `vllm:prompt_tokens_total` counter.
- prefill ceiling: the same token-id prompts sent again as prefill-only requests (max_tokens 1, no echo, no
  logprobs), many at once, one per request and several per request; each request carries a unique
  `cache_salt`, so vLLM's prefix cache cannot skip work the evaluation had to do (it skips nothing for
  prompt-logprob requests: vllm/sampling_params.py sets skip_reading_prefix_cache for them).
- variants: `bB-cC` = lm-eval batch_size B (prompts per request) x num_concurrent C, run interleaved
  (A, B, A, B, ...) on the same server so that other load on a shared host hits them alike. Every variant's
  scores must equal the first's exactly (same items, same tokens): a transport change that moves a score is
  reported as a failure.

    ./dq python bench/eval_efficiency.py [--variants b1-c8 b4-c8] [--repeats 2] [--tasks arc_easy:30 ...]

Results: docs/results/2026-11-23-eval-efficiency-avx2.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.evaluate.lmeval_worker import LMEvalJob  # noqa: E402
from harness.hw.probe import host_line  # noqa: E402
from harness.serve.scoring import Scoring  # noqa: E402

# the default matrix's loglikelihood tasks at its limits (matrices/smollm2-cpu.yaml; gsm8k is generative:
# its time is decoding, not prompt scoring, so it is left out of the ratio)
DEFAULT_TASKS = ["dq_pydoc_ppl:1", "lambada_openai:30", "arc_easy:30", "arc_challenge:20", "hellaswag:20"]
_METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$")


def server_counters(base_url: str) -> dict[str, float]:
    """vLLM's Prometheus counters (summed over label sets): prompt tokens computed, requests, prefix hits."""
    root = base_url.rstrip("/").removesuffix("/v1")
    with urllib.request.urlopen(root + "/metrics", timeout=30) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m and m.group(1).endswith("_total"):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


class Recorder:
    """Records the prompts lm-eval's API model sends for scoring (token ids), by wrapping its payload builder."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.requests = 0

    def install(self) -> None:
        from harness.evaluate.api_lm import DQLocalCompletions

        orig = DQLocalCompletions._create_payload
        rec = self

        def payload(self_, messages, generate=False, *a, **kw):
            if not generate:
                rec.requests += 1
                rec.prompts += [list(m) for m in messages] if messages and isinstance(messages[0], list) else []
            return orig(self_, messages, generate, *a, **kw)

        DQLocalCompletions._create_payload = payload


def eval_job(
    settings, scoring: Scoring, tasks: list[tuple[str, int | None]], batch: int, conc: int, idx: bool, work: Path
) -> LMEvalJob:
    """The evaluate stage's worker job, built as harness/evaluate/lmeval.py builds it for a cell."""
    from harness.evaluate.data import TaskData
    from harness.evaluate.lmeval import _resolve
    from harness.spec.evaluation import LMEvalSpec, TaskSpec

    spec = LMEvalSpec(tasks=[TaskSpec(name=n, limit=lim) for n, lim in tasks])
    local, _, problems, needs = _resolve(spec, settings.offline)
    if problems or needs:
        raise SystemExit("; ".join(problems + needs))
    data = TaskData(settings)
    data.prepare(work / "prepare-data.log")
    return LMEvalJob(
        scoring=scoring,
        tasks=list(spec.tasks),
        include_path=str(data.task_dir()),
        offline_leaves=local,
        data_dir=str(data.dir),
        index_cache=str(settings.home / "lmeval-index") if idx else None,
        num_concurrent=conc,
        max_length=spec.max_length,
        batch_size=batch,
        seed=spec.seed,
        samples_dir=str(work / "samples"),
    )


def child(job_path: str, out_path: str) -> None:
    """In the evaluate worker's subprocess: the worker's own `work`, with the sent prompts recorded."""
    rec = Recorder()
    rec.install()
    from harness.evaluate.lmeval_worker import work

    out = work(LMEvalJob.model_validate_json(Path(job_path).read_text()))
    Path(out_path).write_text(
        json.dumps({"out": out.model_dump(mode="json"), "prompts": rec.prompts, "requests": rec.requests})
    )


CHILD = "import sys; sys.path.insert(0, sys.argv[3]); import eval_efficiency as e; e.child(sys.argv[1], sys.argv[2])"


def run_eval(settings, job: LMEvalJob, base_url: str, work: Path) -> dict:
    """One evaluate stage as the cell runs it: a fresh worker process (imports and task loading included)."""
    work.mkdir(parents=True, exist_ok=True)
    job_path, out_path = work / "evaluate-in.json", work / "evaluate-out.json"
    job_path.write_text(job.model_dump_json())
    env = {**os.environ, **({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if settings.offline else {})}
    before = server_counters(base_url)
    t0 = time.monotonic()
    with open(work / "evaluate.log", "w") as log:
        rc = subprocess.run(
            [settings.python, "-c", CHILD, str(job_path), str(out_path), str(REPO / "bench")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, **job.scoring.env},
        ).returncode
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"evaluate worker failed (exit {rc}): {work / 'evaluate.log'}")
    after = server_counters(base_url)
    res = json.loads(out_path.read_text())
    out, prompts = res["out"], res["prompts"]
    return {
        "wall_s": wall,
        "lm_eval_s": sum(v["wall_s"] for v in out["tasks"].values()),
        "task_wall_s": {k: v["wall_s"] for k, v in out["tasks"].items()},
        "tokens_sent": sum(len(p) for p in prompts),
        "prompts": len(prompts),
        "http_requests": res["requests"],
        "server_prompt_tokens": delta(after, before, "vllm:prompt_tokens_total"),
        "server_prefix_hits": delta(after, before, "vllm:prefix_cache_hits_total"),
        "scores": {k: {m: v["value"] for m, v in t["metrics"].items()} for k, t in out["tasks"].items()},
        "recorded": prompts,
    }


async def _prefill(url: str, model: str, prompts: list[list[int]], conc: int, per_req: int, echo: bool) -> float:
    import aiohttp

    sem = asyncio.Semaphore(conc)
    batches = [prompts[i : i + per_req] for i in range(0, len(prompts), per_req)]

    async def one(session, batch):
        body = {"model": model, "prompt": batch, "max_tokens": 1, "temperature": 0, "cache_salt": uuid.uuid4().hex}
        if echo:  # what lm-eval's loglikelihood asks (lm_eval/models/openai_completions.py)
            body.update(echo=True, logprobs=1)
        async with sem, session.post(url, json=body) as r:
            r.raise_for_status()
            await r.read()

    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1200)) as s:
        await asyncio.gather(*(one(s, b) for b in batches))
    return time.monotonic() - t0


def prefill_ceiling(
    base_url: str, model: str, prompts: list[list[int]], conc: int, per_req: int, echo: bool = False
) -> dict:
    """Prompt tokens/s of the same prompts as prefill-only requests (see the module docstring); with `echo`,
    the same requests lm-eval sent (echo + logprobs 1) without lm-eval around them: the server's share."""
    before = server_counters(base_url)
    wall = asyncio.run(_prefill(base_url.rstrip("/") + "/completions", model, prompts, conc, per_req, echo))
    after = server_counters(base_url)
    tokens = sum(len(p) for p in prompts)
    return {
        "wall_s": wall,
        "tokens": tokens,
        "tok_s": tokens / wall,
        "server_prompt_tokens": delta(after, before, "vllm:prompt_tokens_total"),
        "server_prefix_hits": delta(after, before, "vllm:prefix_cache_hits_total"),
    }


def parse_variant(v: str) -> tuple[int, int, bool]:
    m = re.fullmatch(r"b(\d+)-c(\d+)(-idx)?", v)
    if not m:
        raise SystemExit(
            f"--variants: {v!r} is not bB-cC[-idx] (lm-eval batch_size B, num_concurrent C, -idx: lm-eval's task "
            f"index from the cache, harness/evaluate/task_index.py), e.g. b1-c8 b1-c8-idx"
        )
    return int(m.group(1)), int(m.group(2)), bool(m.group(3))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["b1-c8", "b1-c8-idx", "b8-c8-idx", "b1-c32-idx"])
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the interleaved variants")
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="name:limit")
    ap.add_argument(
        "--ceiling",
        nargs="+",
        default=["1x32", "8x8", "1x8e"],
        help="prompts-per-request x concurrency; an `e` suffix sends lm-eval's echo+logprobs requests instead "
        "(not part of the ceiling: the server's own time for the evaluation's requests)",
    )
    ap.add_argument("--dtype", default=None, help="vLLM --dtype (default: this host's reference dtype)")
    ap.add_argument("--engine-arg", action="append", default=[], help="extra vLLM flag k=v (e.g. max_num_seqs=64)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    tasks = [(t.partition(":")[0], int(t.partition(":")[2] or 0) or None) for t in a.tasks]
    variants = [parse_variant(v) for v in a.variants]
    if all(k.endswith("e") for k in a.ceiling):
        raise SystemExit("--ceiling: name at least one prefill-only level (without the `e` suffix), e.g. 1x32")

    from harness.hw.probe import host_caps
    from harness.result import Artefact
    from harness.serve.vllm import VLLMServer
    from harness.settings import load_settings
    from harness.spec.serving import VLLMServing

    settings = load_settings()
    dtype = (
        a.dtype
        or {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[host_caps(settings).reference_dtype("cpu")]
    )
    engine_args: dict = {}
    for kv in a.engine_arg:
        k, _, v = kv.partition("=")
        engine_args[k] = True if v == "" else (int(v) if v.isdigit() else v)
    print(host_line(), flush=True)
    model_dir = str(settings.models_dir / "smollm2-135m-instruct")
    # the default matrix's serving block (matrices/smollm2-cpu.yaml)
    serving = VLLMServing(enforce_eager=True, cpu_reserved_cores=0, engine_args=engine_args)
    server = VLLMServer(serving, settings.python, "cpu")
    art = Artefact(model=model_dir, dtype=dtype, quantization=None, size_bytes=None, bits_per_weight=None)
    work = Path(tempfile.mkdtemp(prefix="dqbench-eval-eff-"))
    h = server.start(art, "bench", work / "server.log")
    print(f"vLLM-CPU up in {h.startup_s:.0f} s: {dtype}, eager, engine args {engine_args or 'none'}; work {work}")
    print(f"tasks: {', '.join(f'{n}:{lim}' for n, lim in tasks)}", flush=True)
    scoring = server.scoring(h, art)
    if any(idx for _, _, idx in variants):  # built once per lm-eval install; every later cell reads it
        from harness.evaluate.task_index import task_manager

        t0 = time.monotonic()
        task_manager([], settings.home / "lmeval-index")
        print(f"lm-eval task index cache ready ({time.monotonic() - t0:.1f} s)", flush=True)
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    ceilings: dict[str, list[dict]] = {c: [] for c in a.ceiling}
    try:
        for r in range(a.repeats):
            order = list(zip(a.variants, variants))
            for name, (b, c, idx) in order if r % 2 == 0 else order[::-1]:
                job = eval_job(settings, scoring, tasks, b, c, idx, work / name)
                res = run_eval(settings, job, h.base_url, work / name)
                prompts = res.pop("recorded")
                runs[name].append(res)
                print(
                    f"round {r + 1} {name}: evaluate {res['wall_s']:6.1f} s (lm-eval tasks {res['lm_eval_s']:.1f} s), "
                    f"{res['tokens_sent']} prompt tokens in "
                    f"{res['prompts']} prompts / {res['http_requests']} requests -> "
                    f"{res['tokens_sent'] / res['wall_s']:6.0f} tok/s (server counted "
                    f"{res['server_prompt_tokens']:.0f}, prefix hits {res['server_prefix_hits']:.0f})",
                    flush=True,
                )
            for cname in a.ceiling:
                per_req, _, conc = cname.removesuffix("e").partition("x")
                ce = prefill_ceiling(h.base_url, h.model_name, prompts, int(conc), int(per_req), cname.endswith("e"))
                ceilings[cname].append(ce)
                kind = "echo+logprobs" if cname.endswith("e") else "prefill-only"
                print(
                    f"round {r + 1} {kind} {cname}: {ce['tokens']} tokens in {ce['wall_s']:.1f} s -> "
                    f"{ce['tok_s']:.0f} tok/s (server counted {ce['server_prompt_tokens']:.0f}, "
                    f"prefix hits {ce['server_prefix_hits']:.0f})",
                    flush=True,
                )
    finally:
        h.stop()
    ceiling = max(sum(x["tok_s"] for x in v) / len(v) for k, v in ceilings.items() if not k.endswith("e"))
    for k in (k for k in ceilings if k.endswith("e")):
        e = sum(x["tok_s"] for x in ceilings[k]) / len(ceilings[k])
        print(
            f"the evaluation's own requests replayed without lm-eval ({k}): {e:.0f} tok/s = {e / ceiling * 100:.1f} %"
        )
    base = a.variants[0]
    ref_scores = runs[base][0]["scores"]
    print(f"\n{host_line()}")
    plain = [k for k in a.ceiling if not k.endswith("e")]
    print(f"server's prefill-only ceiling (best mean over {', '.join(plain)}): {ceiling:.0f} prompt tok/s")
    same_all = True
    for name in a.variants:
        rs = runs[name]
        wall = sum(x["wall_s"] for x in rs) / len(rs)
        tasks_s = {t: sum(x["task_wall_s"][t] for x in rs) / len(rs) for t in rs[0]["task_wall_s"]}
        tok_s = sum(x["tokens_sent"] / x["wall_s"] for x in rs) / len(rs)
        same = all(x["scores"] == ref_scores for x in rs)
        same_all &= same
        each = ", ".join(f"{x['wall_s']:.1f}" for x in rs)
        print(
            f"{name:>8}: evaluate wall {wall:6.1f} s (runs {each}), "
            f"{tok_s:6.0f} scored tok/s = {tok_s / ceiling * 100:5.1f} % of the ceiling; vs {base}: "
            f"{wall / (sum(x['wall_s'] for x in runs[base]) / len(runs[base])):.3f} x wall; scores "
            f"{'identical' if same else 'DIFFER'}",
            flush=True,
        )
        print("          per task: " + ", ".join(f"{t} {v:.1f} s" for t, v in tasks_s.items()))
    if a.json:
        a.json.write_text(json.dumps({"host": host_line(), "runs": runs, "ceilings": ceilings}, indent=1))
    sys.exit(0 if same_all else 1)


if __name__ == "__main__":
    main()
