"""A server's log read incrementally within a bound (harness/serve/log_window.py): a look reads only what the
file gained, the window keeps the last bytes of this server's part, an earlier attempt's part is never read."""

from __future__ import annotations

from harness.serve.log_window import LogWindow, head


def test_each_look_reads_only_what_the_log_gained(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"an earlier attempt's engine died\n" * 1000)  # appended log: not this server's
    offset = log.stat().st_size
    w = LogWindow(log, offset, keep=512)
    assert w.text() == "" and w.bytes_read == 0
    with open(log, "ab") as f:
        f.write(b"INFO starting\n")
    assert w.text() == "INFO starting\n" and w.bytes_read == 14
    for i in range(100):
        with open(log, "ab") as f:
            f.write(f"line {i:04d}\n".encode())
        w.text()
    assert w.bytes_read == 14 + 100 * 10  # never the same byte twice, never the earlier attempt's
    text = w.text()
    assert len(text) == 512 and text.endswith("line 0099\n") and "earlier" not in text
    assert w.text(max_bytes=10) == "line 0099\n"


def test_a_long_gap_reads_only_the_last_window_and_a_truncated_log_starts_again(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"")
    w = LogWindow(log, 0, keep=100)
    with open(log, "ab") as f:
        f.write(b"x" * 10_000 + b"END\n")
    assert w.text().endswith("END\n") and w.bytes_read == 100  # not the 10 KB it skipped
    log.write_bytes(b"new file\n")
    assert w.text() == "new file\n"


def test_head_reads_this_servers_first_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"old config: model=a\n")
    offset = log.stat().st_size
    with open(log, "ab") as f:
        f.write(b"with config: model=b\n" + b"." * 100)
    assert head(log, offset, max_bytes=21) == "with config: model=b\n"
