"""How many optimiser steps a run takes: the one count the trainer and the grid planner share.

A run trains on the items of its training file minus the validation split (none with
``data.val_file``), capped at ``data.max_train_items``. One optimiser step takes
``optim.batch_size`` examples; an epoch is the full batches of a seeded permutation (the
last partial batch is dropped, :func:`runners.distill.data.epoch_batches`), and the run
lasts ``optim.max_steps`` steps if set, else ``optim.epochs`` epochs.

Settings may be given as the validated config models or as plain mappings of their
fields (a grid's ``training`` section); missing fields take the models' defaults.
Torch-free, so the planner imports it without the training stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from kdanalysis.config import validation_error_message
from kdanalysis.errors import ConfigError
from runners.distill.config import DataConfig, OptimConfig

__all__ = ["n_train_items", "steps_per_epoch", "total_steps"]


def n_train_items(n_items: int, data: DataConfig | Mapping[str, Any]) -> int:
    """Training items of a run whose training file holds ``n_items`` items.

    Parameters
    ----------
    n_items : int
        Items in ``data.train``.
    data : DataConfig or mapping
        ``val_size``, ``val_file`` and ``max_train_items`` are read (defaults: :class:`DataConfig`'s).

    Returns
    -------
    int
        ``n_items - val_size`` (``n_items`` with a ``val_file``), at least 0, capped at
        ``max_train_items``. Items whose prompt alone fills ``max_length`` are dropped
        later, at tokenisation, and are not known here.
    """
    fields = DataConfig.model_fields
    settings = data.model_dump() if isinstance(data, DataConfig) else dict(data)
    val_file = settings.get("val_file", fields["val_file"].default)
    val_size = int(settings.get("val_size", fields["val_size"].default))
    cap = settings.get("max_train_items", fields["max_train_items"].default)
    n = n_items if val_file is not None else max(n_items - val_size, 0)
    return min(n, int(cap)) if cap else n


def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    """Full batches of ``batch_size`` in ``n_examples`` examples (the last partial batch is dropped)."""
    return n_examples // batch_size


def total_steps(n_examples: int, optim: OptimConfig | Mapping[str, Any]) -> int:
    """Optimiser steps of a run on ``n_examples`` training examples.

    Parameters
    ----------
    n_examples : int
        Training examples after the validation split and tokenisation.
    optim : OptimConfig or mapping
        ``max_steps``, ``epochs`` and ``batch_size`` are read (defaults: :class:`OptimConfig`'s).

    Returns
    -------
    int
        ``optim.max_steps`` if set, else ``optim.epochs * steps_per_epoch``.

    Raises
    ------
    ConfigError
        If ``optim`` is invalid or the examples do not fill one batch.
    """
    if not isinstance(optim, OptimConfig):
        try:
            optim = OptimConfig.model_validate(dict(optim))
        except ValidationError as err:
            raise ConfigError(validation_error_message(err, "invalid optim settings")) from None
    per_epoch = steps_per_epoch(n_examples, optim.batch_size)
    if per_epoch == 0:
        raise ConfigError(
            f"{n_examples} training examples are fewer than optim.batch_size={optim.batch_size}"
        )
    return optim.max_steps or optim.epochs * per_epoch
