"""A spec-decoded cell's acceptance per load level (issue #28): the engine's own draft counters
(harness/serve/speculative.py) read from its /metrics before a level's first send and after its last answer.

acceptance rate = accepted / drafted tokens; mean accepted length = 1 + accepted / drafts, the tokens one target
verification step yields (the bonus token included: vLLM's definition, and what Leviathan et al. 2023 predict).
The warm-up's drafts fall before the first level's first reading, so no level counts them.
"""

from __future__ import annotations

from typing import Any

from harness.result import Level
from harness.result_engine import LevelSpeculative
from harness.serve.base import http_get
from harness.serve.speculative import SpecCounters, parse_counters


def read_counters(url: str) -> SpecCounters | None:
    """The draft counters at `url` (a /metrics page); None when it cannot be read or has none."""
    try:
        status, body = http_get(url, timeout=10.0)
    except OSError:
        return None
    return parse_counters(body.decode("utf-8", "replace")) if status == 200 else None


def level_speculative(delta: SpecCounters) -> LevelSpeculative:
    drafts, drafted, accepted = int(round(delta.drafts)), int(round(delta.draft_tokens)), int(round(delta.accepted))
    return LevelSpeculative(
        drafts=drafts,
        draft_tokens=drafted,
        accepted_tokens=accepted,
        acceptance_rate=accepted / drafted if drafted else None,
        mean_accepted_len=1.0 + accepted / drafts if drafts else None,
    )


class AcceptanceProbe:
    """Reads the counters around each level; a level whose readings failed gets no `speculative` figure (the
    cell's speculative step then says the engine did not report them)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._before: SpecCounters | None = None

    def begin(self) -> None:
        self._before = read_counters(self.url)

    def end(self, level: Level) -> dict[str, Any]:
        after = read_counters(self.url)
        if self._before is None or after is None:
            return {}
        return {"speculative": level_speculative(after - self._before)}
