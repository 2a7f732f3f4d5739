"""The PDF's garbage-collector settings are restored, also when the renderer fails.

Private names on purpose: the collector settings are an internal detail of ``write_pdf`` that
no public call exposes, and the test must see them to prove they are restored.
"""

from __future__ import annotations

import gc

import pytest

from kdanalysis.report.render import _PDF_GC_THRESHOLD, _fewer_collections


def test_collector_settings_restored_after_the_block() -> None:
    before = gc.get_threshold()
    with _fewer_collections():
        assert gc.get_threshold()[0] == _PDF_GC_THRESHOLD
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_collector_settings_restored_after_a_failure() -> None:
    before = gc.get_threshold()
    with pytest.raises(RuntimeError, match="layout failed"), _fewer_collections():
        raise RuntimeError("layout failed")
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_objects_the_caller_froze_stay_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with _fewer_collections():
            pass
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
