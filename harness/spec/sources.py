"""Where a model comes from (`models:`): embedded, hub or a local folder, and the model entry that names one."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from harness.spec.base import NAME_RE, Strict


class EmbeddedModel(Strict):
    """A model dqbench prepares offline from a registry package (no hub needed)."""

    kind: Literal["embedded"]
    name: Literal["smollm2-135m-instruct"] = "smollm2-135m-instruct"


class HubModel(Strict):
    """A hub id, loaded through the ordinary from_pretrained path (needs network or a warm HF cache)."""

    kind: Literal["hub"]
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str | None = None


class LocalModel(Strict):
    """A checkpoint folder on disk (config.json + weights)."""

    kind: Literal["local"]
    path: str


ModelSource = Annotated[EmbeddedModel | HubModel | LocalModel, Field(discriminator="kind")]


class ModelSpec(Strict):
    name: str = Field(pattern=NAME_RE)
    source: ModelSource
    trust_remote_code: bool = False
    # Not used to serve anything: the precision axis decides the dtype (`auto` = this host's fast one).
    # Kept, at its default only, because it is part of every existing cell id.
    dtype: Literal["bfloat16", "float16", "float32", "auto"] = "bfloat16"

    @field_validator("dtype")
    @classmethod
    def _dtype_is_the_axis(cls, v: str) -> str:
        if v != "bfloat16":
            raise ValueError(
                f"models[].dtype {v!r} is not used: set axes.precision instead (auto | bf16 | fp16 | fp32; "
                "auto = the dtype this host computes fastest)"
            )
        return v
