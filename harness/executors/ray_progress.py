"""Workers' progress on the driver: a cell on a Ray worker reports its stages, notes and live stage lines
to a relay actor, and the driver prints them, each line prefixed with the cell and its node.

`RelayProgress` is the cell's display on the worker: the same `Progress` the local executor uses (so stage
lines, live rates and ETAs are rendered alike), with its printing sent to the relay instead of a console.
A stage's live line goes out at most once every `every` seconds. Sending never blocks the cell: the relay's
reply is not awaited, and a relay that is gone loses the lines, not the cell.
"""

from __future__ import annotations

from typing import Any

from harness.progress import Progress

LIVE_EVERY_S = 15.0  # a long stage's live line on the driver, one per cell this often


class ProgressRelay:
    """The Ray actor between the workers and the driver: lines in, the lines since the last drain out."""

    def __init__(self) -> None:
        self._lines: list[tuple[str, str, str]] = []

    def push(self, cell_id: str, where: str, msg: str) -> None:
        self._lines.append((cell_id, where, msg))

    def drain(self) -> list[tuple[str, str, str]]:
        out, self._lines = self._lines, []
        return out


class RelayProgress(Progress):
    """A cell's progress on a Ray worker, printed on the driver through the relay."""

    def __init__(self, relay: Any, cell_id: str, where: str, every: float = LIVE_EVERY_S) -> None:
        super().__init__(quiet=False, every=every)
        self.relay, self.cell_id, self.where = relay, cell_id, where

    def _print(self, msg: str) -> None:
        try:
            self.relay.push.remote(self.cell_id, self.where, msg.strip())
        except Exception:  # noqa: BLE001 - the driver's display must never fail the cell
            pass


def print_lines(progress: Progress, lines: list[tuple[str, str, str]]) -> None:
    """The workers' lines on the driver's display."""
    for cell_id, where, msg in lines:
        progress.note(f"[{cell_id} on {where}] {msg}")
