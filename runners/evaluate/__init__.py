"""Evaluation: the study's tasks, prompts, answer scoring, backends, re-scoring and fidelity.

Modules (import what you need; this package imports nothing, so ``import runners.evaluate``
stays light and torch-free):

- :mod:`runners.evaluate.tasks` -- task specs from the task table ``data/tasks.yaml``
  (:class:`~runners.evaluate.tasks.TaskSpec`, :class:`~runners.evaluate.tasks.TaskRegistry`,
  ``bundled_tasks``, ``json_task``) and the loader of test sets in the published JSON format
  (``load_items``). A run's registry is ``EvalConfig.task_registry()`` (the table plus its
  ``custom_tasks``), passed explicitly to scoring, re-scoring and fidelity.
- :mod:`runners.evaluate.hub` -- the same test sets rebuilt from the HF hub (online only).
- :mod:`runners.evaluate.prompts` -- the published Alpaca prompt (``format_prompt``, ``prompt_hash``).
- :mod:`runners.evaluate.extract` -- answer extractors ``published`` and ``strict``
  (``extract_answer``, ``answers_match``); see ``docs/extraction.md``.
- :mod:`runners.evaluate.scoring` -- ``RunMeta`` (``run_meta.json``), ``score_outputs`` (per-item
  table + accuracy rows with Wilson CIs), ``rescore_items``, ``accuracy_results``.
- :mod:`runners.evaluate.rescore` -- ``rescore_run``: re-score a run folder without a model
  (``kdanalysis rescore RUN_DIR``).
- :mod:`runners.evaluate.fidelity` -- agreement, BLEU and teacher-forced KL between a student
  run and its teacher run (``fidelity_rows``).
- :mod:`runners.evaluate.extraction_audit` -- the extractor audit on the shipped rationales.
- backends, decoding, the evaluation config and ``run_eval`` (``python -m runners.evaluate``)
  live in :mod:`~runners.evaluate.backend`, :mod:`~runners.evaluate.hf_backend`,
  :mod:`~runners.evaluate.vllm_backend`, :mod:`~runners.evaluate.decoding`,
  :mod:`~runners.evaluate.config` and :mod:`~runners.evaluate.run`.

A run folder written by ``run_eval`` holds at its root ``items.parquet`` (per-item table),
``results.parquet`` (results rows) and ``run_meta.json`` (:class:`~runners.evaluate.scoring.RunMeta`).
"""

__all__: list[str] = []
