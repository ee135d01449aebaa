"""Stage entry points, each run as `python -m harness.stages.NAME` in a subprocess.

These are the only modules allowed to import torch / transformers / vllm / lm_eval.
"""
