"""What a model source says about the checkpoint a cell loads: its `fingerprint()` (harness/contracts.py
ModelSourceContract), one typed model per source kind.

Where the dump goes, and why it must not change by a byte: it is the result's `model` block (stored as
`fingerprint.model_dump(mode="json")`), and it is hashed into cache keys: the student cache and the teacher's
generations (harness/distill/base.py, from harness/cell/distill.py) and the sensitivity scan id
(harness/plan/sensitivity.py). Cell ids never read it (the plan knows the spec, not what is on disk). So each
model dumps exactly the dict its source returned before it was typed: the same keys, in the same order, a
`None` where there was one and no key where there was none. No heavy imports here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class ModelFingerprint(BaseModel):
    """What every source's fingerprint has: its `kind`. An out-of-tree source subclasses this."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str


class EmbeddedFingerprint(ModelFingerprint):
    """The embedded SmolLM2 (harness/models/embedded.py): the folder it was prepared into, the sha256 of the
    GGUF it came from and of the weights it became (None until prepared), and the Q4_1 caveat."""

    kind: Literal["embedded"] = "embedded"
    name: str
    path: str
    gguf_sha256: str | None
    weights_sha256: str | None
    caveat: str


class HubFingerprint(ModelFingerprint):
    """A hub id at a revision (harness/models/sources.HubSource). `commit` (what the revision resolved to) and
    `path` (its snapshot folder) are known once the model is on this machine; before that the dump has
    neither key, as it never had."""

    kind: Literal["hub"] = "hub"
    id: str
    revision: str | None
    commit: str | None = None
    path: str | None = None

    @model_serializer(mode="wrap")
    def _known_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in ("commit", "path"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class LocalFingerprint(ModelFingerprint):
    """A local folder (harness/models/sources.LocalSource): `kind` local and its `path`, then whatever its
    `dqbench-manifest.json` holds, spread over the top level as it always was (an embedded model's folder
    adds its sha256s). Provenance is the source's, never the manifest's: a manifest's own `kind` or `path`
    (a dqbench student's names its recipe) is kept as `manifest_kind` / `manifest_path` after the rest, so a
    folder cannot claim to be another kind of source or another place (issue #30). Dumps of folders whose
    manifest has neither key are unchanged."""

    model_config = ConfigDict(extra="allow", frozen=True)

    kind: Literal["local"] = "local"
    path: str

    @classmethod
    def of(cls, path: str, manifest: dict[str, Any]) -> LocalFingerprint:
        own = {"kind": "local", "path": path}
        rest = {k: v for k, v in manifest.items() if k not in own and not k.startswith("manifest_")}
        moved = {f"manifest_{k}": manifest[k] for k in own if k in manifest and manifest[k] != own[k]}
        return cls.model_validate({**own, **rest, **moved})
