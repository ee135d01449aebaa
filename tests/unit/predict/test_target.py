"""The model a user names: a size, a config.json, a folder (its safetensors headers), a hub id offline."""

import json
import struct

import pytest

from harness.models.arch import KNOWN
from harness.predict.target import resolve_target, safetensors_bytes


def test_sizes_and_known_hub_ids_offline():
    t = resolve_target("7B")
    assert t.params == 7e9 and t.arch is None
    llama = resolve_target("meta-llama/Llama-3.1-8B-Instruct")
    assert llama.arch.num_layers == 32 and 8.0e9 < llama.params < 8.1e9 and "offline" in llama.source


def test_a_config_and_a_folder_with_safetensors(tmp_path):
    cfg = KNOWN["smollm2-135m-instruct"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    header = json.dumps({"a": {"dtype": "BF16", "shape": [4, 8], "data_offsets": [0, 64]}, "__metadata__": {}})
    blob = header.encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * 64)
    assert safetensors_bytes(tmp_path) == 64
    t = resolve_target(str(tmp_path))
    assert t.arch.hidden_size == 576 and t.stored_bytes == 64
    assert resolve_target(str(tmp_path / "config.json")).arch.num_layers == 30


def test_an_unknown_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="give a size .* hub id known offline"):
        resolve_target("org/unknown-model")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_target(str(tmp_path))
