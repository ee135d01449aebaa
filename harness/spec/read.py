"""YAML -> Matrix, with every validation problem rendered as `path: got VALUE; WHAT IS ALLOWED`.

Owns reading the file too: it must be UTF-8 text, and a key written twice in one mapping is refused
(plain YAML loaders keep the last one silently, so a second `methods: {w8a8: ...}` entry would replace
the first without a word).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from harness.errors import SpecError
from harness.spec.matrix import Matrix


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # discriminated unions add the chosen tag to the location; it is noise for a user
            if (
                part
                in (
                    "embedded",
                    "hub",
                    "local",
                    "prune",
                    "vllm",
                    "lm_eval",
                    "synchronous",
                    "concurrency",
                    "poisson",
                    "sweep",
                )
                and out
            ):
                continue
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(err: ErrorDetails) -> str:
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
        msg = msg[len("Value error, ") :]
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


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice."""


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (the safe loader keeps the last one).

    Keys brought in by a merge (`<<: *anchor`) may be overridden on purpose, so only keys written in the
    mapping itself are compared.
    """

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if first is not None:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line "
                        f"{first + 1}); a YAML mapping keeps only one value per key: merge the two entries or "
                        f"rename one",
                        key_node.start_mark,
                    )
                seen[key] = key_node.start_mark.line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def load_matrix(path: str | Path) -> Matrix:
    p = Path(path)
    if not p.is_file():
        raise SpecError([f"file not found: {p}"], str(p))
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [
                f"not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset {exc.start}): a matrix is "
                "YAML text; check the path, or re-save the file as UTF-8"
            ],
            str(p),
        ) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as exc:
        raise SpecError([exc.problem], str(p)) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"not valid YAML: {exc}"], str(p)) from None
    return parse_matrix(data, str(p))
