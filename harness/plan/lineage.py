"""A cell's reference: defined here once, for the harness, the store and the advisor.

The plan links each cell to its **parent** (harness/plan/planner.py): a compressed cell -> the uncompressed
cell of the same (student) model; a student's uncompressed cell -> its teacher's uncompressed cell; the
teacher's uncompressed cell has none. Parents are what a cell is derived from, and what the per-cell shift
measurements compare against (harness/evaluate/reference.py: KL, flips and the paired bootstrap of the
drop are taken against the parent's logprobs and items).

The **reference** of a cell is the root of that chain: the uncompressed teacher. It is what "quality drop"
means everywhere a drop is reported (the advisor's `drop`, its `--max-drop`): the loss against the model
one would deploy without any compression. So:

    teacher bf16              reference: itself (drop 0 by definition)
    teacher int4 (GPTQ)       parent: teacher bf16      reference: teacher bf16
    student bf16 (kd)         parent: teacher bf16      reference: teacher bf16
    student int8 (kd + RTN)   parent: student bf16      reference: teacher bf16 (not the student)
    teacher bf16, kv fp8      parent: teacher bf16      reference: teacher bf16 (axes.kv_cache: the `auto` cell)

A quantized student's drop therefore includes what distillation lost; its parent-relative measurements
(KL, flips, paired CI) describe the quantization step alone and are a statement about the reference only
when the parent *is* the reference (`parent_is_reference`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def reference_id(cell_id: str, parents: Mapping[str, str | None]) -> str:
    """The root of `cell_id`'s lineage among the cells in `parents` (cell id -> parent id).

    A parent that is not among the known cells ends the walk there (a family planned in part, or a
    results index holding only some of its cells): the last known ancestor is the reference. A cycle
    (a damaged index) ends the walk at the first repeat, never loops.
    """
    cur, seen = cell_id, {cell_id}
    while True:
        parent = parents.get(cur)
        if not parent or parent not in parents or parent in seen:
            return cur
        seen.add(parent)
        cur = parent


def reference_ids(cell_ids: Iterable[str], parents: Mapping[str, str | None]) -> dict[str, str]:
    """cell id -> reference id for every cell in `cell_ids`."""
    return {cid: reference_id(cid, parents) for cid in cell_ids}


def parent_is_reference(parent_id: str | None, ref_id: str | None) -> bool:
    """Whether parent-relative measurements (KL, flips, the paired bootstrap of the drop) are also
    measurements against the reference."""
    return bool(parent_id) and parent_id == ref_id
