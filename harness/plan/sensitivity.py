"""The mixed-precision planning helper: which layers a quantization method hurts most.

`scan` measures, for each decoder layer alone, what rounding it to the method's grid does to the
model's next-token distribution (harness/plan/sensitivity_worker.py: exact KL against the unquantized model
on fixed pydoc windows), stores the result (results/sensitivity/<id>.json, and the DuckDB table
`sensitivity`), and suggests an `ignore:` list that keeps the most sensitive layers in bf16 -- the
override a mixed-precision method entry then carries. Planning only: nothing here changes a cell.
"""

from __future__ import annotations

import hashlib
import json

from harness.errors import PlanError
from harness.models.sources import source_for
from harness.plan.sensitivity_worker import SensitivityJob
from harness.proc import run_worker, write_json_atomic
from harness.registry import compressors
from harness.settings import Settings
from harness.spec.base import BITS
from harness.spec.matrix import Matrix


def ignore_for(layers: list[int], base: list[str]) -> list[str]:
    """llm-compressor `ignore` patterns that keep whole decoder layers (and `base`) unquantized."""
    if not layers:
        return list(base)
    alt = "|".join(str(i) for i in sorted(layers))
    return [*base, f"re:model\\.layers\\.({alt})\\."]


def scan(
    m: Matrix,
    method: str,
    settings: Settings,
    *,
    precision: str | None = None,
    model: str | None = None,
    windows: int = 8,
    tokens: int = 256,
    seed: int = 7,
    top: int = 2,
) -> dict:
    if method not in m.methods:
        raise PlanError(f"--method: {method!r} is not under `methods:` (defined: {sorted(m.methods)})")
    spec = m.methods[method]
    precision = precision or (spec.precisions or ["int4"])[0]
    if precision not in ("int8", "int4", "int6", "int5", "int3", "int2"):
        raise PlanError(
            f"--precision {precision}: the scan rounds to an integer grid (int2..int8); "
            f"FP8 sensitivity is not measured here"
        )
    plugin = compressors.get(spec.kind)()
    mspec = next((x for x in m.models if x.name == model), None) if model else m.models[0]
    if mspec is None:
        raise PlanError(f"--model: {model!r} is not in the matrix (models: {[x.name for x in m.models]})")
    source = source_for(mspec, settings)
    log = settings.results_dir / "logs" / "sensitivity.log"
    source.prepare(log)
    job = SensitivityJob(
        source=str(source.resolve()),
        trust_remote_code=mspec.trust_remote_code,
        bits=BITS[precision],
        group_size=spec.group_size,
        symmetric=bool(getattr(plugin, "symmetric", True)),
        corpus="pydoc",
        windows=windows,
        tokens=tokens,
        seed=seed,
    )
    # the scan's identity: what was measured (the model's fingerprint, not the folder it sits in) and how
    ident = {
        "model": source.fingerprint().model_dump(mode="json"),
        **job.model_dump(mode="json", exclude={"trust_remote_code"}),
        "source": None,
    }
    scan_id = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    folder = settings.results_dir / "sensitivity"
    final = folder / f"{scan_id}.json"
    if not final.is_file():
        result = run_worker(job, log, settings, stage="sensitivity", timeout=6 * 3600)
        ranked = sorted(result.layers, key=lambda r: -r.kld_mean)
        keep = [r.layer for r in ranked[:top]]
        doc = {
            "scan_id": scan_id,
            "model": mspec.name,
            "method": method,
            "method_kind": spec.kind,
            "precision": precision,
            "scheme": {"bits": job.bits, "group_size": job.group_size, "symmetric": job.symmetric},
            "windows": windows,
            "tokens": tokens,
            "seed": seed,
            **result.model_dump(mode="json"),
            "ranked": [r.layer for r in ranked],
            "suggested": {"top": top, "layers": keep, "ignore": ignore_for(keep, list(spec.ignore))},
        }
        write_json_atomic(final, doc)  # under a unique temporary name: two scans of one id may run at once
    doc = json.loads(final.read_text())
    from harness.store.db import ingest_sensitivity

    ingest_sensitivity(settings.db_path, [doc])
    return doc
