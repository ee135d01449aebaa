"""Answers before measuring: the roofline of a cell on a host, and predicted memory, speed and quality for cells
not yet run, each with an interval and the error it has had on measured cells (leave-one-out).

- schemes.py: a served format (precision x method x engine) from a plan or a typed name;
- cost.py: bytes and FLOPs per token of a model under a scheme;
- roofline.py: the decode/prefill limits on a host's figures (harness/hw/figures.py), and a result's block;
- observe.py: what a measured cell contributes (memory, speed per level, drop, KL);
- fit.py: overheads and speed efficiencies fitted per host x engine x kernel, with prediction intervals;
- quality.py: the prior drop per scheme family from published evidence, refined by measured cells and by a
  KL -> drop relation fitted on them;
- target.py: the model a user names (a size, a config.json or folder, a known hub id);
- predict.py: the predictions; accuracy.py: leave-one-out over measured cells.

Pure: no torch, no engine, no store writes. The advisor imports it; the harness's plan and status show it.
"""
