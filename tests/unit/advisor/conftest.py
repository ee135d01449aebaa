"""The advisor's default `--host` is this host's id (harness.hw.probe.host_caps): tests pin it to the
synthetic results' host instead of probing the machine they run on."""

import pytest

from advisor.synthetic import SYNTHETIC_HOST


class FakeCaps:
    def __init__(self, host_id: str, label: str) -> None:
        self.host_id, self.label = host_id, label

    def host_block(self) -> dict:
        return {
            "host_id": self.host_id,
            "label": self.label,
            "fingerprint": {},
            "source": "override:test",
            "reference_dtype": "bf16",
        }


@pytest.fixture(autouse=True)
def this_host_is_synthetic(monkeypatch):
    import harness.hw.probe

    caps = FakeCaps(SYNTHETIC_HOST["host_id"], SYNTHETIC_HOST["host_label"])
    monkeypatch.setattr(harness.hw.probe, "host_caps", lambda settings, refresh=False: caps)
    return caps
