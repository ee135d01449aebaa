"""render_caps(): `harness doctor`'s human-readable view of a HostCaps, and which schemes run here."""

from __future__ import annotations

from harness.hw.caps import HostCaps


def scheme_table(caps: HostCaps) -> list[tuple[str, str, str]]:
    """(scheme, engine, 'runs' or the reason) for every row of the support table, on this host's device."""
    from harness.plan.support import SUPPORT, support_problem

    rows = []
    for scheme, engine in SUPPORT:
        why = support_problem(scheme, engine, caps.device, caps)
        rows.append((scheme, engine, "runs" if why is None else why.split(": ", 1)[-1]))
    return rows


def render_caps(caps: HostCaps) -> str:
    c = caps.cpu
    lines = [
        f"host {caps.host_id}: {caps.label}  [{caps.source}{', probed ' + caps.probed_at if caps.probed_at else ''}]",
        f"  cpu     {c.model} ({c.arch}), {c.cores} cores, {c.memory_gib:.1f} GiB; ISA class {c.isa_class}: "
        f"{' '.join(c.flags) or '-'}",
    ]
    for g in caps.gpus:
        lines.append(
            f"  gpu     {g.name}, compute capability {g.compute_capability}, {g.memory_gib} GiB, driver {g.driver}"
        )
    if not caps.gpus:
        lines.append("  gpu     none")
    v = caps.vllm
    if v:
        lines.append(
            f"  vllm    {v.package} {v.version} ({v.device}); kernel library {v.kernel_lib}; "
            f"ops: {', '.join(v.ops) or '-'}" + (f"; ERROR {v.error}" if v.error else "")
        )
    else:
        lines.append("  vllm    not found in the serving env")
    lc = caps.llamacpp
    if lc:
        lines.append(
            f"  llama   {lc.version or '?'}; ggml features: {', '.join(lc.features) or '-'}"
            + (f"; ERROR {lc.error}" if lc.error else "")
        )
    else:
        lines.append("  llama   not built (DQBENCH_LLAMACPP unset)")
    if caps.dtype_speed:
        lines.append(f"  dtype   {caps.dtype_note(caps.device)}")
    figs = caps.roofline_figures()
    if figs is not None:
        lines.append(f"  roofline {figs.line()}")
        if figs.basis:
            lines.append(f"           {figs.basis}")
        if figs.load_average is not None and figs.load_average > c.cores:
            lines.append(
                f"           WARNING: measured while busy (load average {figs.load_average:g} on {c.cores} cores): "
                "the figures read low; `harness doctor --refresh` on an idle host measures them again"
            )
    else:
        lines.append("  roofline no figures (run `harness doctor` to measure bandwidth and matmul throughput)")
    if caps.probe_error:
        lines.append(f"  probe   FAILED: {caps.probe_error}")
    lines.append("  schemes on this host (harness/plan/support.py):")
    for scheme, engine, verdict in scheme_table(caps):
        lines.append(f"    {scheme:<12} {engine:<9} {verdict}")
    return "\n".join(lines)
