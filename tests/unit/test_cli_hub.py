"""`harness run` before it starts any cell: the plan's warnings printed, hub models prepared (here from a warm
HF cache, offline; tests/integration/test_hub_download.py downloads through a fake hub). The runner is a fake:
no cell runs."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from tests.unit.models.test_hub import COMMIT, snapshot


def test_run_prints_warnings_and_prepares_hub_models_before_the_first_cell(tmp_path, base_matrix, monkeypatch):
    import harness.cli as cli
    import harness.cli.run as run_command
    import harness.runner as runner
    from harness.models import hub
    from harness.settings import load_settings

    monkeypatch.setenv("DQBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DQBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv(hub.DOWNLOAD_ENV, "0")
    folder = snapshot(tmp_path, "HuggingFaceTB/SmolLM2-135M-Instruct", COMMIT, ref="v1")
    base_matrix["models"] = [
        {"name": "m", "source": {"kind": "hub", "id": "HuggingFaceTB/SmolLM2-135M-Instruct", "revision": "v1"}}
    ]
    f = tmp_path / "m.yaml"
    f.write_text(yaml.safe_dump(base_matrix))
    real_load, seen = run_command.load_plan, {}

    def load(path, memory_gib=None, grant=None):
        s, m, p = real_load(path, memory_gib, grant)
        return s, m, p.model_copy(update={"warnings": ["a warning the plan has"]})

    class FakeRunner:
        def __init__(self, *a, **k) -> None:
            pass

        def run(self, p, force=False, only=None):
            seen["record"] = hub.recorded(load_settings(), "HuggingFaceTB/SmolLM2-135M-Instruct", "v1")
            return {}

    monkeypatch.setattr(run_command, "load_plan", load)
    monkeypatch.setattr(runner, "Runner", FakeRunner)
    monkeypatch.setattr(run_command, "_answer", lambda *a: None)
    r = CliRunner().invoke(cli.app, ["run", str(f)])
    assert r.exit_code == 0, r.output
    assert "warning: a warning the plan has" in r.output
    assert f"model m: HuggingFaceTB/SmolLM2-135M-Instruct@v1 = {COMMIT}" in r.output
    assert seen["record"] and seen["record"].path == str(folder)  # prepared before the runner started
