"""YAML -> Matrix, with every validation problem rendered as `path: got VALUE; WHAT IS ALLOWED`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import SpecError
from harness.spec.models import Matrix


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # discriminated unions add the chosen tag to the location; it is noise for a user
            if part in ("embedded", "hub", "local", "prune", "vllm", "lm_eval", "synchronous",
                        "concurrency", "poisson") and out:
                continue
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: dict[str, Any]) -> str:
    path = _path(err["loc"])
    kind = err["type"]
    value = err.get("input")
    if kind == "extra_forbidden":
        return f"{path}: unknown field (remove it or check its spelling)"
    if kind == "missing":
        return f"{path}: required field is missing"
    msg = err["msg"]
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        msg = f"must be one of {expected}"
    elif kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        msg = f"`kind` {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
        value = None
    elif kind == "union_tag_not_found":
        msg = f"needs a `kind` field ({err.get('ctx', {}).get('discriminator', 'kind')})"
        value = None
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    shown = "" if value is None or isinstance(value, dict) else f" got {value!r};"
    return f"{path}:{shown} {msg}"


def parse_matrix(data: Any, source: str = "") -> Matrix:
    if not isinstance(data, dict):
        raise SpecError([f"(top level): expected a mapping, got {type(data).__name__}"], source)
    try:
        return Matrix.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors(include_url=False)]
        raise SpecError(problems, source) from None


def load_matrix(path: str | Path) -> Matrix:
    p = Path(path)
    if not p.is_file():
        raise SpecError([f"file not found: {p}"], str(p))
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML: {exc}"], str(p)) from None
    return parse_matrix(data, str(p))
