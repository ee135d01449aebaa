"""dqbench harness: matrix spec -> plan -> compress -> serve -> measure -> evaluate -> store.

Importing this package must stay cheap: no torch, vllm, transformers or lm_eval at import time
(tests/unit/test_imports.py enforces it). Heavy work runs in worker subprocesses: `*_worker.py` modules beside
each stage's plugin, run as typed jobs (harness/jobs.py).
"""

__version__ = "0.1.0"
