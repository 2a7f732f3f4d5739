"""The one loader of causal language models used by training and evaluation.

:func:`load_causal_lm` resolves a hub id or a local folder (optionally a GGUF file inside
it, e.g. the SmolLM2 GGUF checkpoints), loads a peft adapter on top when asked, picks
the dtype and device, and makes sure the tokenizer has a pad token. Arguments are checked
(and missing local paths reported) before transformers is imported.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kdanalysis.errors import BackendUnavailableError, ConfigError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["DTYPES", "DtypeName", "looks_like_local_path", "resolve_dtype", "load_causal_lm"]

logger = logging.getLogger(__name__)

DtypeName = Literal["auto", "bfloat16", "float16", "float32"]
DTYPES: tuple[str, ...] = ("auto", "bfloat16", "float16", "float32")


def looks_like_local_path(name_or_path: str | Path) -> bool:
    """Tell a local folder from a hub id.

    A :class:`~pathlib.Path`, an existing path, or a string that is absolute, starts with
    ``.`` or ``~``, or has more than one ``/`` is local; ``"org/name"`` and ``"name"`` are
    hub ids.

    Parameters
    ----------
    name_or_path : str or Path
        What the user wrote.

    Returns
    -------
    bool
    """
    if isinstance(name_or_path, Path):
        return True
    text = str(name_or_path)
    if Path(text).expanduser().exists():
        return True
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def resolve_dtype(dtype: DtypeName, device: str) -> Any:
    """The torch dtype for a dtype name on a device.

    Parameters
    ----------
    dtype : {"auto", "bfloat16", "float16", "float32"}
        ``"auto"`` means bfloat16 on CUDA and float32 elsewhere.
    device : str
        A torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...).

    Returns
    -------
    torch.dtype
    """
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _ensure_pad_token(tokenizer: Any, model: Any, source: str) -> None:
    """Give the tokenizer (and the model's configs) a pad token, falling back to eos."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"tokenizer of {source} has neither a pad nor an eos token; cannot pad batches")
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("tokenizer of %s has no pad token; using eos %r", source, tokenizer.eos_token)
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def _relative_adapter_base(folder: Path) -> Path | None:
    """The base model of a peft adapter folder whose ``adapter_config.json`` names it by a path
    relative to the folder (``../``, ``./``: written so that moving both keeps them together);
    None for any other folder or base (transformers resolves those itself)."""
    config = folder / "adapter_config.json"
    if not config.is_file():
        return None
    base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not isinstance(base, str) or not base.startswith(("./", "../")):
        return None
    return (folder / base).resolve()


def load_causal_lm(
    name_or_path: str | Path,
    *,
    dtype: DtypeName = "auto",
    device: str | None = None,
    adapter: str | Path | None = None,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer.

    Parameters
    ----------
    name_or_path : str or Path
        Hub id (``"Qwen/Qwen2.5-0.5B"``) or local folder written by ``save_pretrained``
        (see :func:`looks_like_local_path`). A peft adapter folder whose
        ``adapter_config.json`` names its base model by a path starting with ``./`` or
        ``../`` is loaded as that base (resolved against the adapter folder, tokenizer
        included) with the adapter on top.
    dtype : {"auto", "bfloat16", "float16", "float32"}
        Weight dtype; ``"auto"``: bfloat16 on CUDA, float32 on CPU.
    device : str or None
        Torch device; ``None``: ``"cuda"`` when available, else ``"cpu"``.
    adapter : str or Path or None
        Folder of a peft adapter (e.g. LoRA) loaded on top of the model (not merged).
    gguf_file : str or None
        Name of a GGUF file inside ``name_or_path``; the weights are de-quantised by
        transformers (needs the ``gguf`` package).
    trust_remote_code : bool
        Passed to transformers.

    Returns
    -------
    model : transformers.PreTrainedModel or peft.PeftModel
        On ``device``, in eval mode (call ``.train()`` to train).
    tokenizer : transformers.PreTrainedTokenizerBase
        With ``pad_token`` set (eos when the tokenizer has none); the model's config and
        generation config carry the same ``pad_token_id``.

    Raises
    ------
    ConfigError
        Unknown dtype, a local model or adapter folder that does not exist, or a model that
        transformers cannot load (the message names it).
    BackendUnavailableError
        ``gguf_file`` given but the ``gguf`` package is not installed.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    source = str(name_or_path)
    if looks_like_local_path(name_or_path) and not Path(source).expanduser().is_dir():
        raise ConfigError(f"model folder not found: {source}")
    if adapter is not None and not Path(adapter).expanduser().is_dir():
        raise ConfigError(f"adapter folder not found: {adapter}")
    if gguf_file is not None and importlib.util.find_spec("gguf") is None:
        raise BackendUnavailableError(
            f"loading {source} from GGUF file {gguf_file!r} needs the gguf package (pip install gguf)"
        )
    if looks_like_local_path(name_or_path):
        source = str(Path(source).expanduser())
        base = _relative_adapter_base(Path(source)) if adapter is None else None
        if base is not None:
            return load_causal_lm(
                base, dtype=dtype, device=device, adapter=source, trust_remote_code=trust_remote_code
            )

    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or _default_device()
    torch_dtype = resolve_dtype(dtype, device)
    extra: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if gguf_file is not None:
        extra["gguf_file"] = gguf_file
    model: Any
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **extra)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **extra)
    except OSError as error:
        raise ConfigError(f"cannot load model {source}: {error}") from error
    _ensure_pad_token(tokenizer, model, source)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(Path(adapter).expanduser()))
    model.to(device)
    model.eval()
    logger.info("loaded %s (%s on %s, adapter: %s)", source, torch_dtype, device, adapter)
    return model, tokenizer
