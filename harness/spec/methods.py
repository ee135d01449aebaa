"""The method axis (`methods:`): options of one compression method; which precisions it supports is the plugin's to
say (harness/compress/)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from harness.spec.base import Precision, Strict


class MethodSpec(Strict):
    """Options of one compression method; which precisions it supports is the plugin's to say."""

    kind: str = Field(pattern=r"^[a-z0-9_]+$")
    group_size: int | Literal["channel"] | None = None
    calibration_samples: int = Field(default=64, ge=1, le=100_000)
    calibration_seq_len: int = Field(default=256, ge=16, le=32768)
    calibration_source: str = "pydoc"
    seed: int = 0
    # Pair this method only with these precisions (others are not cells): lets one matrix hold
    # "int8 via SmoothQuant" and "int4 via GPTQ" without a grid of meaningless combinations.
    precisions: list[Precision] | None = None
    # Modules kept in full precision (mixed precision): llm-compressor `ignore` patterns.
    ignore: list[str] = Field(default_factory=lambda: ["lm_head"])
    options: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)

    @field_validator("group_size")
    @classmethod
    def _group(cls, v):
        if isinstance(v, int) and (v <= 0 or v & (v - 1)):
            raise ValueError(f"group_size must be a power of two or 'channel', got {v}")
        return v
