"""What every matrix section shares: the strict frozen base model (`Strict`, unknown fields refused, late fields left
out of dumps so no cell id moves), names and the precision vocabulary."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, model_serializer

NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"

# Precision = the numeric format the served weights end up in. Full precisions pair with method
# "none"; lower ones need a compression method (harness/plan/rules.py holds the pairing table).
Precision = Literal["fp32", "bf16", "fp16", "fp8", "int8", "int6", "int5", "int4", "int3", "int2"]
FULL_PRECISIONS = ("fp32", "bf16", "fp16")
# On the precision axis only: `auto` = the uncompressed dtype this host computes fastest (measured by the
# probe, harness/hw); the plan resolves it per host, so each cell records the dtype it really ran in.
AxisPrecision = Literal["auto", "fp32", "bf16", "fp16", "fp8", "int8", "int6", "int5", "int4", "int3", "int2"]
BITS = {"fp32": 32, "bf16": 16, "fp16": 16, "fp8": 8, "int8": 8, "int6": 6, "int5": 5, "int4": 4, "int3": 3, "int2": 2}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields added after cell ids existed: every spec dump is hashed into a cell id (harness/plan), so these
    # are left out of dumps while at their default, and adding one re-keys no cell planned before it.
    late_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _drop_late_defaults(self, handler):
        out = handler(self)
        if self.late_fields and isinstance(out, dict):
            for name in self.late_fields:
                if getattr(self, name) == type(self).model_fields[name].get_default(call_default_factory=True):
                    out.pop(name, None)
        return out
