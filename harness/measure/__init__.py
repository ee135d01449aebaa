"""Measure stage: load generation against a running server, latency/throughput maths, memory sampling."""
