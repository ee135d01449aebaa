"""`streamlit run dashboard.py` and `./dq dashboard` listen on this machine only (.streamlit/config.toml)."""

import tomllib

from tests.conftest import REPO


def test_dashboard_binds_loopback_by_default():
    cfg = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] == "127.0.0.1" and cfg["server"]["headless"] is True
    assert "streamlit run dashboard.py" in (REPO / "dq").read_text()
