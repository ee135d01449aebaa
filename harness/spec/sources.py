"""Where a model comes from (`models:`): embedded, hub or a local folder, and the model entry that names one."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from harness.spec.base import NAME_RE, Strict

# A git ref or commit as `revision`: it names a folder and a record file (harness/models/hub.py), so it must
# be a ref git itself accepts (git check-ref-format: no `..`, no `//`, no `@{`, no component starting with
# `.` or ending in `.lock`, none of ` ~^:?*[\`) or a commit sha; `refs/pr/1` (a hub pull request) is one.
_REF_CHAR = re.compile(r"[A-Za-z0-9._/+-]+")


class EmbeddedModel(Strict):
    """A model dqbench prepares offline from a registry package (no hub needed)."""

    kind: Literal["embedded"]
    name: Literal["smollm2-135m-instruct"] = "smollm2-135m-instruct"


class HubModel(Strict):
    """A hub id, loaded through the ordinary from_pretrained path (needs network or a warm HF cache)."""

    kind: Literal["hub"]
    id: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    revision: str | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        # the hub's own rule, and no `.`/`..` part: the id names folders (models--ORG--NAME) and files
        parts = v.split("/")
        if any(part.startswith((".", "-")) or part.endswith((".", "-")) for part in parts):
            raise ValueError(f"hub id {v!r}: an organisation or name may not start or end with `.` or `-`")
        if "--" in v or ".." in v:
            raise ValueError(f"hub id {v!r} may not hold `--` or `..` (the hub refuses them)")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None) -> str | None:
        if v is None:
            return v
        why = revision_problem(v)
        if why:
            raise ValueError(f"revision {v!r} {why}: use a branch, a tag or a full commit sha")
        return v


def revision_problem(rev: str) -> str | None:
    """Why `rev` is not a git ref or commit (None: it is)."""
    if not rev or len(rev) > 255:
        return "is empty or longer than 255 characters"
    if not _REF_CHAR.fullmatch(rev):
        return "holds a character git refuses in a ref (only letters, digits, `.`, `_`, `-`, `+`, `/` here)"
    if rev.startswith("/") or rev.endswith(("/", ".")) or "//" in rev or ".." in rev:
        return "is not a git ref (a leading or trailing `/`, a trailing `.`, `//` or `..`)"
    if any(part.startswith(".") or part.endswith(".lock") for part in rev.split("/")):
        return "is not a git ref (a part starts with `.` or ends with `.lock`)"
    return None


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
