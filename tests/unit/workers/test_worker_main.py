"""harness/proc.py worker_main / worker_config: the one entry point every worker (harness/workers/*.py) uses."""

import json
import re
from pathlib import Path

import pytest

from harness.proc import REQUIRED, worker_config, worker_main

WORKERS = Path(__file__).resolve().parents[3] / "harness" / "workers"


def test_config_file_and_out_become_one_dict(tmp_path):
    cfg_path = tmp_path / "in.json"
    cfg_path.write_text(json.dumps({"a": 1}))
    assert worker_config(argv=["--config", str(cfg_path)]) == {"a": 1}
    assert worker_config(argv=["--config", str(cfg_path), "--out", "o.json"]) == {"a": 1, "out": "o.json"}


def test_declared_flags_need_no_config_and_keep_their_defaults():
    flags = {"olmo-wheel": REQUIRED, "dtype": "bfloat16"}
    cfg = worker_config(flags, argv=["--olmo-wheel", "w.whl", "--out", "d"])
    assert cfg == {"olmo_wheel": "w.whl", "dtype": "bfloat16", "out": "d"}
    with pytest.raises(SystemExit):  # a required flag missing is an argparse error
        worker_config(flags, argv=["--out", "d"])
    with pytest.raises(SystemExit):  # a worker without flags needs --config
        worker_config(argv=[])


def test_the_result_is_written_atomically_where_the_config_says(tmp_path):
    cfg_path = tmp_path / "in.json"
    cfg_path.write_text(json.dumps({"record": str(tmp_path / "rec.json"), "x": 2}))
    worker_main(lambda cfg: {"twice": cfg["x"] * 2}, result="record", argv=["--config", str(cfg_path)])
    assert json.loads((tmp_path / "rec.json").read_text()) == {"twice": 4}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_worker_that_promised_a_result_and_returned_none_fails(tmp_path):
    cfg_path = tmp_path / "in.json"
    cfg_path.write_text(json.dumps({"out": str(tmp_path / "o.json")}))
    with pytest.raises(RuntimeError, match="no result"):
        worker_main(lambda cfg: None, result="out", argv=["--config", str(cfg_path)])
    assert not (tmp_path / "o.json").exists()


def test_every_worker_enters_through_worker_main():
    mains = {}
    for path in sorted(WORKERS.glob("*.py")):
        text = path.read_text()
        if path.name == "__init__.py" or "__main__" not in text:
            continue
        mains[path.stem] = re.search(r'if __name__ == "__main__":\n    (\w+)\(', text).group(1)
    # the typed workers left harness/workers/ (harness/compress/*_worker.py ...): those still here use worker_main
    assert mains and set(mains.values()) == {"worker_main"}, mains
    for path in WORKERS.glob("*.py"):
        assert "argparse" not in path.read_text(), path.name  # one parser: worker_config
