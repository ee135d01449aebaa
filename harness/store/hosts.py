"""Which host a result belongs to: the `host` block a result carries, its id, and this host's block.

Results are keyed by (cell id, host id): the cell id hashes the cell's config only, the host id
(harness/hw/caps.py) hashes what changes figures on a machine. Two placeholder ids exist besides real
ones: `unknown` for results written before results carried a host (schema 1), and `unprobed` for a
result whose host could not be probed (the probe failed; the cell still ran). Neither ever matches a
probed host, so such results are kept and shown but never count as done for a probed host.

Imports nothing heavy: the probe is imported lazily and itself runs the engine probe as a subprocess.
"""

from __future__ import annotations

from harness.hw.caps import UNPROBED_HOST_ID

UNKNOWN_HOST_ID = "unknown"
UNKNOWN_LABEL = "unknown host (result from before host fingerprints, schema 1)"


def legacy_host_block() -> dict:
    """The host of a schema-1 result: nothing was recorded, so nothing is claimed."""
    return {
        "host_id": UNKNOWN_HOST_ID,
        "label": UNKNOWN_LABEL,
        "fingerprint": {},
        "source": "schema-1",
        "reference_dtype": None,
    }


def unprobed_host_block(error: str | None = None) -> dict:
    return {
        "host_id": UNPROBED_HOST_ID,
        "label": "unprobed host (the hardware probe failed)",
        "fingerprint": {},
        "source": "none",
        "reference_dtype": None,
        **({"error": error} if error else {}),
    }


def host_id_of(doc: dict) -> str:
    """The host id a result is stored under (`unprobed` when its host block has no id)."""
    return (doc.get("host") or {}).get("host_id") or UNPROBED_HOST_ID


def normalized_host(doc: dict) -> dict:
    """The doc's host block with an id and a label filled in (a failed probe records `host_id: None`)."""
    h = doc.get("host") or {}
    if h.get("host_id"):
        return {**h, "label": h.get("label") or h["host_id"]}
    return {**unprobed_host_block(h.get("error")), **{k: v for k, v in h.items() if v is not None}}


def this_host(settings) -> dict:
    """This host's block (harness.hw.probe.host_caps, cached per env), or the `unprobed` block when the
    probe cannot run here; harness/cell/ records the same fallback, so resume still matches."""
    from harness.errors import DQError
    from harness.hw.probe import host_caps

    try:
        return host_caps(settings).host_block()
    except DQError as exc:
        return unprobed_host_block(str(exc))
