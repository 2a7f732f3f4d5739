"""Knowledge-distillation training: one (teacher, student, method, tau, seed) cell → a trained student.

Modules
-------
config    :class:`~runners.distill.config.DistillConfig`, the validated run config (YAML-loadable)
data      items → token examples → batches, in a resumable order
schedule  the number of optimiser steps of a run (shared with the grid planner)
losses    pure KD losses (forward/reverse KL, JSD, TVD, skew KLs; top-k teachers)
vocab     tokenizer identity check and logit alignment
methods   the loss of a micro-batch per method (sft, token KD, gkd, seqkd, teacher noise)
cache     offline top-k teacher-logit cache shared by every student of a teacher
trainer   the training loop (LoRA or full, AdamW, accumulation, checkpoints, resume)
run       :func:`~runners.distill.run.run_distill`: the run folder

Entry point: ``python -m runners.distill CONFIG.yaml [--out RUN_DIR]`` (multi-GPU:
``accelerate launch -m runners.distill CONFIG.yaml``). Importing this package does not
import torch; the trainer, methods and cache modules do.
"""
