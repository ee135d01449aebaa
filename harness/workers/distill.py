"""Worker: derive a student from its teacher and train it (runs in the training environment: torch, TRL).

Input: a JSON config written by harness/distill/base.py (kind, the student spec, teacher folder, corpus,
teacher generations, output paths). Output: the student checkpoint (bf16 safetensors + the teacher's
tokenizer) and a record JSON: loss curve, tokens seen, wall time, peak RSS, hyper-parameters, what
stopped training, and held-out cross-entropy / KL to the teacher before and after.

`untrained` and `logit_kd` run here (a plain loop: the loss is ours, harness/distill/loss.py);
`sft` and `gkd` run TRL's trainers (harness/workers/distill_trl.py). What the run holds in memory follows
the spec's weights_dtype, optimizer and gradient_checkpointing, and the plan estimates it from the same
rules (harness/distill/training_memory.py): keep the two in step.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch

from harness.distill.features import LayerTap, feature_loss, layer_map
from harness.distill.loss import kd_loss, kl_full, teacher_topk
from harness.models.arch import pruned_layers
from harness.proc import WorkerProgress, worker_main

HELDOUT_WINDOWS = 8  # windows at the end of the token stream, never trained on
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def bf16_is_native() -> bool:
    """bf16 matmuls run natively on a GPU and on CPUs with AVX512-BF16 or AMX; anywhere else torch emulates
    them (an AVX2 EPYC: bf16 linear 5.6x slower than fp32, `harness doctor`), so training there stays fp32."""
    if DEVICE == "cuda":
        return True
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


BF16 = bf16_is_native()


def compute_note(spec: dict) -> str:
    if spec.get("weights_dtype") == "bf16":
        return f"{DEVICE}, bf16 weights"
    return f"{DEVICE}, fp32 weights, " + ("bf16 autocast" if BF16 else "fp32 (bf16 is emulated on this CPU)")


def autocast():
    # fp32 master weights, bf16 matmuls: 1.5x faster per step on an AVX512-BF16 CPU (9.1 -> 5.9 s for
    # 4 x 256 tokens, pruned SmolLM2), and the usual mixed precision on a GPU; plain fp32 where bf16 is
    # emulated (the teacher cache for 24 x 4 x 256 tokens ran > 6 min in emulated bf16 on an AVX2 EPYC)
    return torch.autocast(DEVICE, dtype=torch.bfloat16) if BF16 else contextlib.nullcontext()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load_model(path: str, weights_dtype: str = "fp32"):
    from transformers import AutoModelForCausalLM

    # fp32 master weights by default: bf16 weights lose updates smaller than their resolution unless the
    # optimizer rounds stochastically (the spec pairs weights_dtype bf16 with adamw_8bit, which does)
    dtype = torch.bfloat16 if weights_dtype == "bf16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    # transformers wraps `to` in a decorator whose stub drops the device argument from the signature
    return model.to(DEVICE)  # type: ignore[arg-type]


def prune(model, keep_every: int) -> list[int]:
    """Depth-prune in place: keep the layers harness.models.arch.pruned_layers picks, renumbered."""
    layers = model.model.layers
    keep = pruned_layers(len(layers), keep_every)
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new, layer in enumerate(model.model.layers):
        # the KV cache is indexed by layer_idx: stale indices would read another layer's cache
        layer.self_attn.layer_idx = new
    cfg = model.config
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    cfg.num_hidden_layers = len(keep)
    return keep


def derive_student(spec: dict, teacher_dir: str):
    src, wdt = spec["student"], spec.get("weights_dtype", "fp32")
    if src["kind"] == "prune":
        model = load_model(teacher_dir, wdt)
        kept = prune(model, int(src["keep_every"]))
        return model, {"kind": "prune", "keep_every": src["keep_every"], "kept_layers": kept}, teacher_dir
    path = src.get("path") or src["id"]  # a hub student comes with its downloaded snapshot (distill/base.py)
    return load_model(path, wdt), {"kind": src["kind"], "source": path}, path


def make_optimizer(params: list, spec: dict):
    """AdamW, or torchao's AdamW8bit (block-wise int8 moments; stochastic rounding onto bf16 weights)."""
    kw = {"lr": spec["learning_rate"], "betas": (0.9, 0.95), "weight_decay": spec["weight_decay"]}
    if spec.get("optimizer", "adamw") == "adamw_8bit":
        from torchao.optim import AdamW8bit

        return AdamW8bit(params, bf16_stochastic_round=spec.get("weights_dtype") == "bf16", **kw)
    return torch.optim.AdamW(params, **kw)


def checkpointing(model, spec: dict) -> None:
    """Gradient checkpointing when the spec asks: each decoder layer's activations are recomputed in the
    backward pass (the non-reentrant variant: it needs no input that requires grad)."""
    if spec.get("gradient_checkpointing"):
        model.config.use_cache = False
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def memory_record(spec: dict, teacher_offloaded: bool, optimizer, model) -> dict:
    """What the run held, read from the objects that ran, to compare with the plan's estimate
    (harness/distill/training_memory.py)."""
    out = {
        "weights_dtype": {torch.bfloat16: "bf16", torch.float32: "fp32"}.get(model.dtype, str(model.dtype)),
        "optimizer": spec.get("optimizer", "adamw"),
        "optimizer_class": type(optimizer).__name__,
        "gradient_checkpointing": bool(getattr(model, "is_gradient_checkpointing", False)),
        "teacher_offloaded": teacher_offloaded,
    }
    if DEVICE == "cuda":
        out["peak_gpu_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out


def offload(model, where: str) -> None:
    """Move a model between the GPU and host RAM (the teacher while the loop does not call it)."""
    model.to(where)
    if DEVICE == "cuda" and where == "cpu":
        torch.cuda.empty_cache()


def token_stream(corpus: str, tokenizer) -> list[int]:
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    with open(corpus) as f:
        for line in f:
            ids.extend(tokenizer(json.loads(line)["text"], add_special_tokens=False)["input_ids"])
            ids.append(eos)
    return ids


def windows(ids: list[int], seq_len: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous non-overlapping windows: (training windows in seeded order, held-out windows)."""
    n = len(ids) // seq_len
    if n <= HELDOUT_WINDOWS:
        raise SystemExit(f"training corpus has {len(ids)} tokens: too few for windows of {seq_len}")
    w = torch.tensor(ids[: n * seq_len]).view(n, seq_len)
    train, held = w[:-HELDOUT_WINDOWS], w[-HELDOUT_WINDOWS:]
    g = torch.Generator().manual_seed(seed)
    return train[torch.randperm(len(train), generator=g)], held


def planned_steps(spec: dict) -> int | None:
    per_step = spec["batch_size"] * spec["seq_len"]
    bounds: list[int] = [int(spec["max_steps"])] if spec.get("max_steps") else []
    if spec.get("max_tokens"):
        bounds.append(math.ceil(spec["max_tokens"] / per_step))
    return min(bounds) if bounds else None


def lr_at(step: int, spec: dict, total: int | None) -> float:
    """Linear warm-up, then cosine to 10 % over the planned steps (constant when only time bounds the run)."""
    base, warm = spec["learning_rate"], spec.get("warmup_steps", 0)
    if step < warm:
        return base * (step + 1) / warm
    if not total:
        return base
    t = min(1.0, (step - warm) / max(1, total - warm))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def heldout(student, teacher, held: torch.Tensor, temperature: float) -> dict:
    """Cross-entropy of the student and KL(teacher || student) at T=1 on the held-out windows."""
    student.eval()
    ce, kl, tce = [], [], []
    for i in range(0, len(held), 2):
        x = held[i : i + 2].to(DEVICE)
        with autocast():
            s = student(input_ids=x).logits.float()
            t = teacher(input_ids=x).logits.float()
        y = x[:, 1:].reshape(-1)
        ce.append(torch.nn.functional.cross_entropy(s[:, :-1].reshape(-1, s.size(-1)), y).item())
        tce.append(torch.nn.functional.cross_entropy(t[:, :-1].reshape(-1, t.size(-1)), y).item())
        kl.append(kl_full(s[:, :-1], t[:, :-1], 1.0).mean().item())
    student.train()
    return {
        "ce": sum(ce) / len(ce),
        "kl_to_teacher": sum(kl) / len(kl),
        "teacher_ce": sum(tce) / len(tce),
        "tokens": int(held.numel()),
    }


def teacher_cache(cfg: dict, teacher, data: torch.Tensor, k: int, temperature: float) -> tuple:
    """Top-k teacher logits for `data`, computed once and kept on disk for every student and run that
    uses the same teacher, windows, k and T. Two trainers needing the same file: one computes it under the
    file's lock, the other waits and loads it; it is saved at a unique temporary name and renamed into
    place, and a file that does not load whole (with one row per window) is computed again."""
    import hashlib

    from harness.locks import build_once, wait_reporter

    h = hashlib.sha256(
        json.dumps({"teacher": cfg["teacher_fingerprint"], "k": k, "T": temperature}, sort_keys=True).encode()
    )
    h.update(data.numpy().tobytes())
    path = Path(cfg["teacher_cache"]) / f"{h.hexdigest()[:16]}.pt"
    loaded: dict = {}

    def valid(p: Path) -> bool:
        if not p.is_file():
            return False
        try:
            c = torch.load(p)
            ok = all(len(c[x]) == len(data) for x in ("values", "indices", "lse"))
        except Exception:  # noqa: BLE001 - a truncated or foreign file is recomputed, whatever torch raises
            return False
        if ok:
            loaded.update(c)
        return ok

    def build(tmp: Path) -> None:
        parts = []
        report = WorkerProgress("teacher top-k logits", "windows", total=len(data))
        with torch.no_grad():
            for i in range(0, len(data), 4):
                with autocast():
                    logits = teacher(input_ids=data[i : i + 4].to(DEVICE)).logits
                parts.append(tuple(x.cpu() for x in teacher_topk(logits, k, temperature)))
                report.update(min(i + 4, len(data)))
        values, indices, lse = (torch.cat(x) for x in zip(*parts))
        torch.save({"values": values, "indices": indices, "lse": lse}, tmp)

    t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    built = build_once(
        path, what=f"the teacher logit cache {path.name}", valid=valid, build=build, on_wait=wait_reporter(None)
    )
    c = loaded  # filled by the check that let build_once return
    info = {"path": str(path), "hit": not built, "build_s": round(time.monotonic() - t0, 2) if built else 0.0}
    if built:
        info["bytes"] = path.stat().st_size
    return (c["values"], c["indices"], c["lse"]), info


def _r(x) -> float:
    return float(f"{x.item():.6g}")


def train_logit_kd(
    cfg: dict,
    student,
    teacher,
    train: torch.Tensor,
    held: torch.Tensor,
    what: str = "training",
) -> dict:
    spec = cfg["spec"]
    alpha, T, k, bs = spec["alpha"], spec["temperature"], spec["top_k"], spec["batch_size"]
    total = planned_steps(spec)
    deadline = time.monotonic() + spec["max_minutes"] * 60 if spec.get("max_minutes") else None
    n_win = min(len(train), total * bs) if total else len(train)
    data = train[:n_win]
    cache_info = None
    topk = None
    if alpha > 0 and k > 0 and total:
        topk, cache_info = teacher_cache(cfg, teacher, data, k, T)
    feat = _feature_setup(cfg, student, teacher)
    params = list(student.parameters()) + (list(feat["proj"].parameters()) if feat else [])
    opt = make_optimizer(params, spec)
    checkpointing(student, spec)
    torch.manual_seed(spec["seed"])
    before = heldout(student, teacher, held, T)
    # on a GPU the teacher leaves it while the loop never calls it (cached top-k logits or the CE control)
    teacher_off = DEVICE == "cuda" and (topk is not None or alpha == 0) and not feat
    if teacher_off:
        offload(teacher, "cpu")
    curve, tokens, step, stopped_by = [], 0, 0, "data"
    report = WorkerProgress(what, "steps", total=total)
    t0 = time.monotonic()
    student.train()
    while True:
        if total and step >= total:
            stopped_by = "max_steps" if spec.get("max_steps") == total else "max_tokens"
            break
        if deadline and time.monotonic() >= deadline:
            stopped_by = "max_minutes"
            break
        idx = [(step * bs + j) % n_win for j in range(bs)]  # wraps (more epochs) only when time bounds the run
        x = data[idx].to(DEVICE)
        lr = lr_at(step, spec, total)
        for g in opt.param_groups:
            if isinstance(g["lr"], torch.Tensor):  # torchao's optimizers keep lr as a tensor (no recompile)
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr
        with autocast():
            logits = student(input_ids=x).logits
        f_loss = None
        if feat:
            with torch.no_grad(), autocast():
                teacher(input_ids=x)  # the taps keep the mapped layers' outputs
            f_loss = feature_loss(feat["s_tap"].out, feat["t_tap"].out, feat["map"], feat["proj"])
        if alpha == 0:
            parts = kd_loss(logits, x, alpha=0.0, temperature=T)
        elif topk is not None:
            parts = kd_loss(logits, x, alpha=alpha, temperature=T, topk=tuple(t[idx].to(DEVICE) for t in topk))
        else:
            with torch.no_grad(), autocast():
                t_logits = teacher(input_ids=x).logits
            parts = kd_loss(logits, x, alpha=alpha, temperature=T, teacher_logits=t_logits)
        loss = parts["loss"] + spec["feature_weight"] * f_loss if feat else parts["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        tokens += x.numel()
        curve.append(
            {
                "step": step,
                "loss": _r(loss),
                "ce": _r(parts["ce"]),
                "kd": _r(parts["kd"]),
                **({"feat": _r(f_loss)} if feat else {}),
                "lr": lr,
                "grad_norm": round(float(gnorm), 4),
                "tokens": tokens,
                "elapsed_s": round(time.monotonic() - t0, 2),
            }
        )
        print(json.dumps(curve[-1]), flush=True)
        # bounded by time only: the deadline is the ETA
        report.update(
            step,
            loss=curve[-1]["loss"],
            eta_s=None if total or not deadline else round(max(0.0, deadline - time.monotonic()), 1),
        )
    train_s = time.monotonic() - t0
    if feat:
        feat["s_tap"].remove()
        feat["t_tap"].remove()
    memory = memory_record(spec, teacher_off, opt, student)
    # the optimizer states and gradients are not needed for the held-out pass: free them before the
    # teacher comes back
    opt.zero_grad(set_to_none=True)
    del opt
    if teacher_off:
        offload(teacher, DEVICE)
    return {
        "loss_curve": curve,
        "steps": step,
        "compute": compute_note(spec),
        "memory": memory,
        "feature_kd": {
            "weight": spec["feature_weight"],
            "layers": feat["map"],
            "projection": sorted(feat["proj"].keys()) or "none (same width)",
        }
        if feat
        else None,
        "tokens_seen": tokens,
        "train_s": round(train_s, 2),
        "tokens_per_s": round(tokens / train_s, 1) if train_s else None,
        "stopped_by": stopped_by,
        "teacher_cache": cache_info,
        "heldout_before": before,
        "heldout_after": heldout(student, teacher, held, T),
        "loss": "alpha*T^2*KL(teacher_T||student_T) + (1-alpha)*CE"
        + (
            f"; teacher top-{k} + rest bucket (cached)"
            if topk is not None
            else "; cross-entropy only (no teacher)"
            if alpha == 0
            else "; full teacher logits"
        )
        + (f"; + {spec['feature_weight']} x normalised MSE of mapped layer outputs" if feat else ""),
    }


def _feature_setup(cfg: dict, student, teacher) -> dict | None:
    """Hooks on the mapped layers and the projections (trained with the student, not saved)."""
    spec = cfg["spec"]
    if not spec.get("feature_weight"):
        return None
    src = spec["student"]
    mapping = layer_map(
        spec.get("feature_layers"),
        src["kind"],
        src.get("keep_every"),
        len(teacher.model.layers),
        len(student.model.layers),
    )
    ds, dt = student.config.hidden_size, teacher.config.hidden_size
    proj = torch.nn.ModuleDict({str(i): torch.nn.Linear(ds, dt, bias=False) for i in mapping} if ds != dt else {})
    proj.to(DEVICE)
    return {
        "map": mapping,
        "proj": proj,
        "s_tap": LayerTap(student, sorted(mapping)),
        "t_tap": LayerTap(teacher, sorted(set(mapping.values()))),
    }


def save_student(model, tokenizer_dir: str, out: Path, manifest: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    model.save_pretrained(out, safe_serialization=True)
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "vocab.json",
        "merges.txt",
        "tokenizer.model",
    ):
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copy2(Path(tokenizer_dir) / name, out / name)
    (out / "dqbench-manifest.json").write_text(json.dumps(manifest, indent=2))


def work(cfg: dict) -> dict:
    torch.set_num_threads(os.cpu_count() or 1)
    spec, kind = cfg["spec"], cfg["kind"]
    t0 = time.monotonic()
    student, origin, tok_dir = derive_student(spec, cfg["teacher"])
    n_params = sum(p.numel() for p in student.parameters())
    record: dict = {
        "kind": kind,
        "student": origin,
        "student_params": n_params,
        "hyper_parameters": spec,
        "student_key": cfg["student_key"],
        "teacher": cfg["teacher"],
        "versions": {p: metadata.version(p) for p in ("torch", "transformers", "trl")},
    }
    if kind != "untrained":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        teacher = load_model(cfg["teacher"], spec.get("weights_dtype", "fp32")).eval()
        record["teacher_params"] = sum(p.numel() for p in teacher.parameters())
        ids = token_stream(cfg["corpus"], tokenizer)
        train, held = windows(ids, spec["seq_len"], spec["seed"])
        record["corpus_tokens"] = len(ids)
        if kind == "logit_kd":
            record.update(train_logit_kd(cfg, student, teacher, train, held))
        else:
            from harness.workers.distill_trl import train_trl

            record.update(train_trl(cfg, student, teacher, tokenizer, held, heldout))
    record["wall_s"] = round(time.monotonic() - t0, 2)
    record["peak_rss_gib"] = round(peak_rss_gib(), 3)
    save_student(
        student,
        tok_dir,
        Path(cfg["out"]),
        {"dqbench_student": cfg["student_key"], "kind": kind, "origin": origin, "teacher": cfg["teacher_fingerprint"]},
    )
    return record


if __name__ == "__main__":
    worker_main(work, result="record")
