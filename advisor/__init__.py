"""dqbench advisor: from constraints (memory, quality drop, latency, throughput, cost) to a ranked,
explained recommendation over measured cells. Reads the results index read-only; never imports a
serving or evaluation backend (tests/unit/test_imports.py checks it)."""
