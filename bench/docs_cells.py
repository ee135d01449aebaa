"""The whole cells of docs/results tables as Observations, for bench/predict_accuracy.py --docs.

Two pages report whole cells of the SmolLM2 matrices (each row: speed at c1 and c16, TTFT, peak memory where
measured, the avg_acc drop with its paired CI, KL against the parent): the AVX-512 study of 2026-11-22 and the
AVX2 default matrix of 2026-11-23. Their result JSONs are gone, so what the tables do not say is taken from the
matrices as they ran (PAGES: load shape, activation dtype, KV the engines held) and the hosts' figures from the
presets of those host classes (within one host the figures cancel between fit and prediction, except which
regime binds). Each page is a host of its own. Rows repeated from another table ("(above)") are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.hw.figures import HostFigures
from harness.hw.probe import load_override
from harness.models.arch import known_arch
from harness.predict.observe import Case, LevelObs, Observation
from harness.predict.schemes import Scheme, parse_scheme
from harness.serving_memory import GiB, arch_kv_bytes_per_token, weights

Z95 = 1.959964


@dataclass(frozen=True)
class Page:
    file: str
    host: str
    preset: str
    input_tokens: int
    output_tokens: int
    activation: str
    vllm_kv_gib: float  # serving.cpu_kvcache_gib
    llama_slots: int  # llama-server: parallel x max_model_len 2048


PAGES = (
    Page("2026-11-22-smollm2-cpu-avx512.md", "docs:avx512-2026-11-22", "cpu-avx512", 128, 64, "bf16", 1.0, 16),
    Page("2026-11-23-avx2-host.md", "docs:avx2-2026-11-23", "cpu-avx2", 128, 32, "fp32", 1.0, 16),
)

# (page, row name prefix) -> (scheme, distill, parent row prefix or None for the reference)
ROWS: dict[tuple[str, str], tuple[str, str, str | None]] = {
    ("avx512", "bf16 (reference)"): ("bf16", "none", None),
    ("avx512", "int8 W8A8 SmoothQuant+GPTQ"): ("w8a8-sq", "none", "bf16 (reference)"),
    ("avx512", "int8 GGUF Q8_0"): ("gguf-q8_0", "none", "bf16 (reference)"),
    ("avx512", "int4 GGUF Q4_K_M"): ("gguf-q4_k_m", "none", "bf16 (reference)"),
    ("avx512", "int4 W4A16 AWQ g64"): ("w4a16-awq-g64", "none", "bf16 (reference)"),
    ("avx512", "int4 W4A16 RTN g64"): ("w4a16-rtn-g64", "none", "bf16 (reference)"),
    ("avx512", "int4 W4A16 GPTQ g64"): ("w4a16-gptq-g64", "none", "bf16 (reference)"),
    ("avx512", "pruned, untrained"): ("bf16", "pruned", "bf16 (reference)"),
    ("avx512", "pruned + CE only"): ("bf16", "pruned-ce", "bf16 (reference)"),
    ("avx512", "pruned + logit KD"): ("bf16", "pruned-kd", "bf16 (reference)"),
    ("avx512", "KD student, W8A8"): ("w8a8-sq", "pruned-kd", "pruned + logit KD"),
    ("avx512", "RTN g32, uniform"): ("w4a16-rtn-g32", "none", "bf16 (reference)"),
    ("avx512", "RTN g64, layers 11 + 29"): ("w4a16-rtn-g64 mixed", "none", "bf16 (reference)"),
    ("avx512", "**QAT g64**"): ("w4a16-qat-g64", "none", "bf16 (reference)"),
    ("avx512", "**feature + logit KD student**"): ("bf16", "pruned-kd-feat", "bf16 (reference)"),
    ("avx2", "fp32 reference"): ("fp32", "none", None),
    ("avx2", "W8A8 RTN"): ("w8a8-rtn", "none", "fp32 reference"),
    ("avx2", "GGUF Q4_K_M"): ("gguf-q4_k_m", "none", "fp32 reference"),
    ("avx2", "KD student, 15 layers"): ("fp32", "pruned-kd", "fp32 reference"),
    ("avx2", "KD student W8A8"): ("w8a8-rtn", "pruned-kd", "KD student, 15 layers"),
}
MIXED_IGNORE = ("lm_head", "re:model\\.layers\\.(11|29)\\.")


def _num(text: str) -> float | None:
    m = re.search(r"[-−+]?\d[\d,]*(?:\.\d+)?", text.replace("*", ""))
    return float(m.group(0).replace("−", "-").replace(",", "")) if m else None


def _nums(text: str) -> list[float]:
    return [float(x.replace("−", "-").replace(",", "")) for x in re.findall(r"[-−+]?\d[\d,]*(?:\.\d+)?", text)]


def tables(md: str) -> list[list[dict[str, str]]]:
    """Every markdown table of a page as rows keyed by header."""
    out, header, rows = [], None, []
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not set("".join(cells)) <= set("-: "):
                rows.append(dict(zip(header, cells)))
        elif header is not None:
            out.append(rows)
            header, rows = None, []
    return out


def _col(row: dict[str, str], *names: str) -> str | None:
    for n in names:
        for k, v in row.items():
            if k.startswith(n):
                return v
    return None


def _avg_acc(row: dict[str, str]) -> float | None:
    lam = _col(row, "LAMBADA")
    arc = _col(row, "ARC-E")
    hs = _col(row, "HS")
    if lam is None or arc is None or hs is None:
        return None
    lam_acc = _nums(lam)[-1]
    return (lam_acc + float(_num(arc) or 0) + float(_num(hs) or 0)) / 3


def docs_observations(folder: Path) -> tuple[list[Observation], dict[str, HostFigures | None]]:
    smol = known_arch("smollm2-135m-instruct")
    assert smol is not None
    obs: list[Observation] = []
    figures: dict[str, HostFigures | None] = {}
    for page in PAGES:
        path = folder / page.file
        if not path.is_file():
            continue
        figures[page.host] = load_override(page.preset).figures
        tag = "avx512" if "avx512" in page.file else "avx2"
        rows: dict[str, dict[str, str]] = {}
        for t in tables(path.read_text()):
            for r in t:
                name = r.get("cell", "")
                key = next((k for (p, k) in ROWS if p == tag and name.startswith(k)), None)
                if key is not None and "(above)" not in name and key not in rows:
                    rows[key] = r
        for key, r in rows.items():
            scheme_name, distill, parent = ROWS[(tag, key)]
            mixed = scheme_name.endswith(" mixed")
            scheme: Scheme = parse_scheme(scheme_name.removesuffix(" mixed"))
            if mixed:
                scheme = scheme.model_copy(update={"ignore": MIXED_IGNORE})
            arch = smol.pruned(2) if distill != "none" else smol
            act = page.activation
            if scheme.engine == "llamacpp":
                kv = arch_kv_bytes_per_token(arch, "f16") * 2048 * page.llama_slots / GiB
            else:
                kv = page.vllm_kv_gib
            kld = None
            kcol = _col(r, "KLD")
            if parent is not None and kcol:
                kld = _num(kcol)
            case = Case("smollm2-135m", arch, scheme, "cpu", page.host, act, page.input_tokens, page.output_tokens,
                        (1.0, 16.0), kv, distill, 2 if distill != "none" else None, kld)  # fmt: skip
            c1 = _col(r, "tok/s c1")
            c16 = _col(r, "tok/s c16")
            if c1 is not None and "/" in c1 and c16 is None:  # "tok/s c1 / c16"
                c1, c16 = c1.split("/")
            ttft = _num(_col(r, "TTFT p50") or "")
            levels = []
            if c1 and _num(c1):
                levels.append(LevelObs("synchronous", 1.0, float(_num(c1) or 0), None, ttft))
            if c16 and _num(c16):
                levels.append(LevelObs("concurrency", 16.0, float(_num(c16) or 0), None, None))
            drop = se = None
            dcol = _col(r, "avg_acc drop")
            pref = rows.get(parent) if parent else None
            if parent and dcol and pref is not None and _nums(dcol):
                ref = _avg_acc(pref)
                d, lo, hi = (_nums(dcol) + [None, None])[:3]
                if ref:
                    drop = d / 100 / ref
                    se = (hi - lo) / (2 * Z95) / 100 / ref if lo is not None and hi is not None else None
            peak = _num(_col(r, "peak GiB") or "")
            obs.append(
                Observation(
                    cell_id=f"{tag}:{key}",
                    label=f"{tag}: {key}",
                    case=case,
                    engine=scheme.engine,
                    peak_gib=peak,
                    levels=tuple(levels),
                    drop=drop,
                    drop_se=se,
                    parent_id=None if parent is None else f"{tag}:{parent}",
                    weights_gib=weights(arch, scheme.quant).bytes / GiB,
                )
            )
    return obs, figures
