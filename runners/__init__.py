"""Execution layer of kdanalysis: KD training (``runners.distill``), evaluation
(``runners.evaluate``), grids (``runners.grid``) and tiny offline models (``runners.toy``).

Heavy dependencies (torch, transformers, peft, vllm) are imported inside the modules
that need them; install them with the ``train`` extra.
"""
