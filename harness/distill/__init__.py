"""Distillation axis: students derived from a teacher (depth-pruned) or named, trained by logit KD, SFT on
teacher generations or on-policy GKD. Plugins here describe and cache; training runs in a worker subprocess
(harness/distill/distill_worker.py, a typed `DistillJob`) under the training environment's interpreter."""
