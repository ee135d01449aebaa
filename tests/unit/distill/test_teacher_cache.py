"""The teacher top-k logit cache (harness/distill/kd_train.py, teacher_cache) with two real processes: one
computes it, the other waits on its lock and loads the same file; a truncated file (a crash between two
writes of an earlier version, a full disk) is computed again instead of failing every later run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[3]

COMPUTE = """
import json, os, sys, time, torch
from harness.distill.kd_train import teacher_cache
from harness.distill.train_io import TeacherCacheRef

class Teacher:  # counts its forwards in a journal; slow, so the two processes overlap
    def __call__(self, input_ids):
        with open(sys.argv[2], "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(0.4)
        g = torch.Generator().manual_seed(int(input_ids.sum()))
        return type("Out", (), {"logits": torch.randn(*input_ids.shape, 32, generator=g)})()

data = torch.arange(8 * 6).view(8, 6) % 32
(v, i, lse), info = teacher_cache(TeacherCacheRef(fingerprint={"t": 1}, folder=sys.argv[1]), Teacher(), data, 4, 2.0)
print(json.dumps({"hit": info.hit, "sum": float(v.sum()), "rows": len(v)}), flush=True)
"""


def run(cache: Path, journal: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(COMPUTE), str(cache), str(journal)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def results(procs) -> list[dict]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out.splitlines()[-1]))
    return outs


def test_two_trainers_compute_the_teacher_logits_once(tmp_path):
    cache, journal = tmp_path / "teacher-cache", tmp_path / "journal"
    outs = results([run(cache, journal) for _ in range(2)])
    assert len(journal.read_text().split()) == 2  # 8 windows, 4 per forward: one computation
    assert sorted(o["hit"] for o in outs) == [False, True]
    assert outs[0]["sum"] == outs[1]["sum"] and all(o["rows"] == 8 for o in outs)
    assert sorted(p.suffix for p in cache.iterdir()) == [".lock", ".pt"]


class Teacher:
    def __init__(self) -> None:
        self.forwards = 0

    def __call__(self, input_ids):
        self.forwards += 1
        g = torch.Generator().manual_seed(int(input_ids.sum()))
        return type("Out", (), {"logits": torch.randn(*input_ids.shape, 32, generator=g)})()


def test_a_truncated_cache_file_is_computed_again(tmp_path):
    from harness.distill.kd_train import teacher_cache
    from harness.distill.train_io import TeacherCacheRef

    cfg = TeacherCacheRef(fingerprint={"t": 1}, folder=str(tmp_path))
    data, teacher = torch.arange(8 * 6).view(8, 6) % 32, Teacher()
    (v, _, _), info = teacher_cache(cfg, teacher, data, 4, 2.0)
    assert not info.hit and teacher.forwards == 2
    assert teacher_cache(cfg, teacher, data, 4, 2.0)[1].hit and teacher.forwards == 2
    pt = next(tmp_path.glob("*.pt"))
    pt.write_bytes(pt.read_bytes()[:100])
    (v2, _, _), info = teacher_cache(cfg, teacher, data, 4, 2.0)
    assert not info.hit and teacher.forwards == 4 and torch.equal(v, v2)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".pt"]
