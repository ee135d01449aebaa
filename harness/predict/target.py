"""The model a prediction is for, from what a user names: a size (`7B`), a config.json or checkpoint folder, or
a hub id. Hub ids resolve offline: the known-config table (harness/models/arch.KNOWN: Llama-3.1-8B/70B,
Llama-3.2-1B, SmolLM2-135M) or a copy in the local Hugging Face cache; nothing is downloaded. A folder with
safetensors gives its stored bytes from the files' headers (the 8-byte length and the JSON of dtypes and
shapes), read without loading a tensor. Pure apart from reading those files.
"""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from harness.models.arch import KNOWN, ArchInfo, arch_from_config, arch_from_dir, known_arch

DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "I32": 4}


@dataclass(frozen=True)
class Target:
    name: str
    arch: ArchInfo | None
    params: int
    source: str  # how it was resolved
    stored_bytes: int | None = None  # the checkpoint's tensor bytes, from safetensors headers


def parse_size(text: str) -> float | None:
    """'7B' -> 7e9, '135M' -> 1.35e8; None when `text` is not a size."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmbt])", text.strip().lower())
    if not m:
        return None
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}[m.group(2)]


def safetensors_bytes(folder: Path) -> int | None:
    """Total tensor bytes of the *.safetensors files in `folder`, from their headers; None without any."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for k, t in header.items():
            if k == "__metadata__":
                continue
            begin, end = t.get("data_offsets", (0, 0))
            total += int(end) - int(begin)
    return total


def _hf_cache(repo: str) -> Path | None:
    """The newest snapshot of `repo` in the local Hugging Face cache that holds a config.json."""
    root = Path(
        os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub"
    )
    snaps = root / f"models--{repo.replace('/', '--')}" / "snapshots"
    if not snaps.is_dir():
        return None
    found = sorted((p for p in snaps.iterdir() if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def resolve_target(text: str) -> Target:
    """A Target from a size, a path (config.json or a folder), or a hub id; a ValueError says what is accepted."""
    size = parse_size(text)
    if size is not None:
        return Target(text, None, int(size), "size only: no config facts, so no KV cache and no layer shapes")
    p = Path(text).expanduser()
    if p.is_file():
        cfg = arch_from_config(json.loads(p.read_text(encoding="utf-8")), str(p))
        return Target(text, cfg, cfg.params, f"config {p}", safetensors_bytes(p.parent))
    if p.is_dir():
        folder = arch_from_dir(p)
        if folder is None:
            raise ValueError(f"{p}: no config.json in that folder")
        return Target(text, folder, folder.params, f"folder {p}", safetensors_bytes(p))
    arch = known_arch(text)
    if arch is not None:
        return Target(text, arch, arch.params, "known config (harness/models/arch.KNOWN), offline")
    cached = _hf_cache(text) if "/" in text else None
    if cached is not None:
        arch = arch_from_dir(cached)
        if arch is not None:
            return Target(text, arch, arch.params, f"local Hugging Face cache {cached}", safetensors_bytes(cached))
    raise ValueError(
        f"model {text!r}: give a size (7B, 135M), a config.json or checkpoint folder, or a hub id known offline "
        f"({', '.join(k for k in KNOWN if '/' in k)}) or present in the local Hugging Face cache"
    )
