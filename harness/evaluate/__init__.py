"""Evaluate stage: quality of a served cell (lm-eval against the same server) on offline task data."""
