"""Offline teacher-logit cache: one teacher pass, reused by every student of that teacher.

:func:`build_teacher_cache` runs the teacher once over every item of the training
file(s) and stores, for every token position, the top-k logits and their token ids.
A student run points ``DistillConfig.teacher_cache`` at the folder and never loads the
teacher; the grid builds one cache per (teacher, data) and shares it across cells.

Layout of a cache folder (format 3)::

    index.json                  written last: its presence means the cache is complete (or refused)
    shard_00000.safetensors     values [N, k] (float32/bfloat16/float16), indices [N, k] int32,
                                rest_tau_<τ> [N] float32 for each cached temperature τ
    shard_00001.safetensors     ...

``values``/``indices`` are the teacher's top-k raw logits and token ids over the
tokenizer's vocabulary (embedding padding rows excluded); ``rest_tau_<τ>`` is the log of
the un-normalised mass of all other tokens at temperature τ. The top-k set does not depend
on τ, so one pass serves every temperature listed at build time (default 1, 2, 5).

What is exact and what is not
-----------------------------
*Exact* (up to the storage dtype of ``values``): the teacher's top-k probabilities and its
probability mass outside the top-k, ``R_T(τ)``, at every cached τ — ``rest_tau_<τ>`` is the
log-sum-exp of ``logits / τ`` over the tail, computed from the full logits. With k at least
the vocabulary size the cached loss equals the live teacher's.

*Approximated*: the loss (:class:`~runners.distill.losses.TopKTeacher`) is the divergence
between the teacher and student distributions each collapsed to k + 1 buckets (top-k and
one tail bucket). That is the full divergence with the teacher's *tail distribution taken
equal to the student's*; it misses exactly the within-tail divergence, so apart from
rounding it is never larger than the full loss (data processing). With ``t̃``, ``s̃`` the
teacher/student distributions renormalised over the tail and ``R_S`` the student's tail mass:

- forward KL (``fkl``): full − cached = ``τ²·R_T·KL(t̃ ‖ s̃)``; the gradient is exact on the
  top-k logits, on a tail logit it uses ``R_T·s̃`` for the teacher's probability;
- skew forward KL (``skl``, α > 0): full − cached = ``τ²·R_T·KL(t̃ ‖ m̃)`` with ``m̃`` the
  tail of the mixture, at most ``τ²·R_T·log(1/α)``;
- reverse KL (``rkl``): full − cached = ``τ²·R_S·KL(s̃ ‖ t̃)`` — set by the *student's* tail
  mass, which nothing stored about the teacher bounds; likewise for the other losses whose
  divergence weighs the student's distribution (``jsd``, ``srkl``, ``tvd``).

No per-τ summary of the teacher's tail makes these exact: the forward-KL tail term
``Σ_tail p_T·log p_S`` is a dot product of the teacher's tail probabilities with the student's
logits, and the reverse-KL term needs ``log p_T`` at every tail token the student puts mass
on, so both need the tail token by token. Spreading ``R_T`` uniformly over the tail, or in
proportion to the student as here, is an assumption about the tail's shape, not a record of
it. The error of ``fkl``/``skl`` is therefore *bounded through* ``R_T``: its relative size
is ``R_T·KL(t̃‖s̃) / KL(p_T‖p_S)``, which ``bench/cache_error.py`` measures at one to a few
times ``R_T`` on synthetic teachers and on SmolLM2-135M; for ``rkl`` the same bench finds
errors of tens of per cent even where ``R_T`` is far below the bound. An adaptive k per
position covering a target mass is not used either: at τ = 2 and 5 an LM teacher's tail
holds tens of per cent of the mass even outside its top few thousand tokens (same bench),
so such a cache would approach the size of the full logits, and the live teacher is then
the cheaper signal. Storage rounding matters too: bfloat16 top-k values alone move a small
forward KL by about 1 %, hence the float32 default.

Hence the rule (:meth:`TeacherCache.bound_problem`): a cache serves a run only for a method
of :data:`SERVED_METHODS` and only when the teacher's mean tail mass at the run's τ over all
cached positions, measured when the cache is built and recorded in ``index.json``, is at
most :data:`TAIL_MASS_BOUND` (``DistillConfig.teacher_cache_max_tail_mass`` overrides it),
or when k covers the vocabulary; otherwise the run uses the live teacher (the trainer logs
why). A grid plans the cache only for those methods at the temperatures of
:data:`PLANNED_TEMPERATURES` and the live teacher elsewhere (:func:`planned_teacher_signal`,
shown per cell by ``kdanalysis run-grid --dry-run``).

Refused builds
--------------
Whether a teacher's tail is light enough is known only once the teacher has run, but not
only once it has run over *all* positions. With ``refuse_above`` (the grid passes the
bound its KD cells use), :func:`build_teacher_cache` stops as soon as the positions already
run carry more tail mass, at the smallest cached τ, than ``refuse_above`` times the number
of positions of the whole cache (counted from the tokenised data before the teacher runs).
That is exact, not an estimate: tail masses are non-negative, so the mean over all
positions can only be larger; and at a fixed top-k set a position's tail mass grows with τ
(``d/dβ log`` of the top-k mass at β = 1/τ is the top-k mean logit minus the overall mean
logit, ≥ 0), so no cached τ could serve a run with that bound. The folder then holds only
an ``index.json`` with a ``refused`` record and no logits; :meth:`TeacherCache.bound_problem`
turns every run away with the reason, and the run uses the live teacher. A teacher whose
tail lies near the bound is run over all positions and decided by the full mean, as before.

Moving the folders
------------------
A cache records where its teacher was twice: ``teacher`` (the path as given, absolute for
a local folder, or the hub id) and, for a local teacher, ``teacher_from_cache`` (that
folder relative to the cache folder). A run's teacher matches when it is either folder:
the one the cache was built from where it was then, or the one at the same place relative
to the cache folder now — so a runs folder holding both the teacher and its cache can be
moved or copied elsewhere (:meth:`CacheKey.mismatches`). Data files are matched by
SHA-256 only; their recorded paths are for people.

``index.json`` holds ``format``, the ``fingerprint`` (the fields of :class:`CacheKey` —
teacher, teacher_gguf_file, tokenizer hash, data files and their SHA-256, max_length,
prompt_style, temperatures — plus ``teacher_from_cache``, k, vocab_size and dtype),
``n_examples``, ``n_tokens``, ``shards``, ``tail_mass`` (per cached τ, the ``mean`` and
``max`` over positions of the teacher's mass outside the top-k), ``examples``: content key
of the token sequence (:func:`runners.distill.data.example_key`) → ``[shard, start,
length]``, and for a refused build ``refused`` (``bound``, ``temperature``,
``mean_at_least``: the tail mass seen divided by all positions, ``seen_tokens``,
``n_tokens``; its ``shards`` and ``examples`` are empty).
Examples are found by content, so the validation split and the epoch order of a
student run do not matter; a sequence that is not in the cache is a clear error.
Format 1 caches (no ``tail_mass``) and format 2 caches (no ``teacher_from_cache``: found by
the teacher's absolute path only) are still read; a format-1 cache's tail mass is computed
from the shards when first needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kdanalysis.errors import ConfigError
from kdanalysis.io import atomic_write_json, file_sha256, read_json
from runners.distill.data import encode_items, example_key, load_items
from runners.evaluate.prompts import PromptStyle
from runners.models import looks_like_local_path

__all__ = [
    "CACHE_FORMAT",
    "PLANNED_TEMPERATURES",
    "SERVED_METHODS",
    "TAIL_MASS_BOUND",
    "CacheKey",
    "tokenizer_fingerprint",
    "build_teacher_cache",
    "build_teacher_cache_for",
    "TeacherCache",
    "planned_teacher_signal",
    "tail_mass",
]

log = logging.getLogger(__name__)

#: Version of the folder layout; bumped when it changes (2: ``tail_mass`` in ``index.json``;
#: 3: ``teacher_from_cache`` and refused builds).
CACHE_FORMAT = 3
#: Formats this version reads.
_READABLE_FORMATS = (1, 2, 3)
#: Largest mean teacher probability mass outside the top-k at which a cache serves a run.
TAIL_MASS_BOUND = 0.002
#: Temperatures at which a grid plans the cache (elsewhere the tail mass of LM teachers is
#: far above :data:`TAIL_MASS_BOUND` for any practical k).
PLANNED_TEMPERATURES = (1.0,)
#: KD methods a cache serves: those whose cache error is the teacher's tail mass times a
#: within-tail divergence (forward and skew-forward KL); the others' error scales with the
#: *student's* tail mass, which no teacher-side record bounds.
SERVED_METHODS = ("fkl", "skl")
_DTYPES = ("float32", "bfloat16", "float16")


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 (16 hex) of a tokenizer's vocabulary and special-token ids."""
    payload = {
        "vocab": sorted(tokenizer.get_vocab().items()),
        "special": [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id],
    }
    return hashlib.sha256(json.dumps(payload).encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class CacheKey:
    """The settings a cache's logits depend on, which a student run must share.

    One key describes what a cache holds (``TeacherCache.key``, written into ``index.json``
    by :meth:`fingerprint`) and what a run needs (:meth:`for_run`); :meth:`TeacherCache.check`
    compares the two.

    Attributes
    ----------
    teacher, teacher_gguf_file : str, str or None
        The teacher model (hub id or resolved local path) and its GGUF file.
    tokenizer : str
        :func:`tokenizer_fingerprint` of the tokenizer the sequences were encoded with.
    data : tuple of (str, str)
        ``(path, sha256)`` of each data file.
    max_length : int
        Token budget of the encoded sequences.
    prompt_style : str
        Prompt template of the encoded sequences.
    temperatures : tuple of float
        KD temperatures served (a cache) or needed (a run).
    teacher_here : str or None
        A cache's key only: the absolute path its local teacher has now, found from the path
        recorded relative to the cache folder (``teacher_from_cache``); None for a hub id, a
        run's key, or a format-1/2 cache.
    """

    teacher: str
    teacher_gguf_file: str | None
    tokenizer: str
    data: tuple[tuple[str, str], ...]
    max_length: int
    prompt_style: str
    temperatures: tuple[float, ...]
    teacher_here: str | None = None

    @classmethod
    def build(
        cls,
        *,
        teacher: str,
        teacher_gguf_file: str | None,
        tokenizer: Any,
        data: Sequence[Path],
        max_length: int,
        prompt_style: str,
        temperatures: Sequence[float],
    ) -> CacheKey:
        """The key of settings, hashing the tokenizer and the data files."""
        return cls(
            teacher=teacher,
            teacher_gguf_file=teacher_gguf_file,
            tokenizer=tokenizer_fingerprint(tokenizer),
            data=tuple((str(p), file_sha256(p)) for p in data),
            max_length=max_length,
            prompt_style=prompt_style,
            temperatures=tuple(float(t) for t in temperatures),
        )

    @classmethod
    def for_run(cls, config: Any, tokenizer: Any) -> CacheKey:
        """What the run of a :class:`~runners.distill.config.DistillConfig` needs from a cache."""
        if config.teacher is None:
            raise ConfigError(f"method {config.method!r} has no teacher to cache")
        return cls.build(
            teacher=config.teacher,
            teacher_gguf_file=config.teacher_gguf_file,
            tokenizer=tokenizer,
            data=_data_files(config),
            max_length=config.max_length,
            prompt_style=config.prompt_style,
            temperatures=(config.temperature,),
        )

    @classmethod
    def from_fingerprint(cls, fingerprint: Mapping[str, Any], root: Path | None = None) -> CacheKey:
        """The key stored in an ``index.json`` fingerprint (inverse of :meth:`fingerprint`).

        With the cache folder ``root``, a recorded ``teacher_from_cache`` is resolved against
        it into :attr:`teacher_here`.
        """
        relative = fingerprint.get("teacher_from_cache")
        here = str((root / relative).resolve()) if root is not None and relative is not None else None
        return cls(
            teacher=fingerprint["teacher"],
            teacher_gguf_file=fingerprint["teacher_gguf_file"],
            tokenizer=fingerprint["tokenizer"],
            data=tuple((d["path"], d["sha256"]) for d in fingerprint["data"]),
            max_length=int(fingerprint["max_length"]),
            prompt_style=fingerprint["prompt_style"],
            temperatures=tuple(float(t) for t in fingerprint["temperatures"]),
            teacher_here=here,
        )

    def fingerprint(self, *, k: int, vocab_size: int, dtype: str, root: Path | None = None) -> dict[str, Any]:
        """The ``index.json`` fingerprint of a cache with this key and storage settings.

        With the cache folder ``root`` it also records ``teacher_from_cache``: a local
        teacher's folder relative to ``root`` (None for a hub id).
        """
        fingerprint: dict[str, Any] = {
            "teacher": self.teacher,
            "teacher_gguf_file": self.teacher_gguf_file,
            "tokenizer": self.tokenizer,
            "data": [{"path": path, "sha256": sha} for path, sha in self.data],
            "max_length": self.max_length,
            "prompt_style": self.prompt_style,
            "k": k,
            "vocab_size": vocab_size,
            "dtype": dtype,
            "temperatures": list(self.temperatures),
        }
        if root is not None:
            local = looks_like_local_path(self.teacher)
            fingerprint["teacher_from_cache"] = (
                os.path.relpath(Path(self.teacher).expanduser().resolve(), Path(root).resolve())
                if local
                else None
            )
        return fingerprint

    def serves_teacher(self, teacher: str) -> bool:
        """Whether ``teacher`` (a run's) is this cache's teacher: the recorded path or hub id, or
        the folder at the recorded place relative to the cache folder (:attr:`teacher_here`)."""
        if teacher == self.teacher:
            return True
        return self.teacher_here is not None and (
            str(Path(teacher).expanduser().resolve()) == self.teacher_here
        )

    def mismatches(self, run: CacheKey) -> list[str]:
        """Where a run's key ``run`` is not served by this (a cache's) key, one phrase each.

        The teacher must be the cache's (:meth:`serves_teacher`); its GGUF file, tokenizer,
        ``max_length`` and ``prompt_style`` must be equal; each of the run's temperatures
        must be cached and each of its data files (by SHA-256) too.
        """
        problems = []
        if not self.serves_teacher(run.teacher):
            here = f" or {self.teacher_here!r} (its place relative to the cache)" if self.teacher_here else ""
            problems.append(f"teacher: run {run.teacher!r} vs cache {self.teacher!r}{here}")
        problems += [
            f"{name}: run {getattr(run, name)!r} vs cache {getattr(self, name)!r}"
            for name in ("teacher_gguf_file", "max_length", "prompt_style", "tokenizer")
            if getattr(run, name) != getattr(self, name)
        ]
        problems += [
            f"temperature {t} is not cached (cached: {list(self.temperatures)})"
            for t in run.temperatures
            if t not in self.temperatures
        ]
        cached = {sha for _, sha in self.data}
        problems += [
            f"data file {path} is not one of the cached files ({', '.join(p for p, _ in self.data)})"
            for path, sha in run.data
            if sha not in cached
        ]
        return problems


def _data_files(config: Any) -> list[Path]:
    """The data files of a run whose teacher logits a cache holds: training (and validation) file."""
    return [config.data.train] + ([config.data.val_file] if config.data.val_file else [])


def _rest_key(temperature: float) -> str:
    return f"rest_tau_{float(temperature):g}"


def tail_mass(values: Any, rest: Any, temperature: float) -> Any:
    """The teacher's probability mass outside its top-k at ``temperature``, per position.

    Parameters
    ----------
    values : Tensor
        ``[..., k]`` top-k raw logits (τ = 1 scale).
    rest : Tensor
        ``[...]`` log-sum-exp of ``logits / temperature`` over the other tokens.
    temperature : float
        The temperature ``rest`` was computed at.

    Returns
    -------
    Tensor
        ``[...]`` float32 ``exp(rest − logsumexp(values / τ, rest))``.
    """
    import torch

    logits = torch.cat([values.float() / temperature, rest.float().unsqueeze(-1)], dim=-1)
    return (rest.float() - logits.logsumexp(-1)).exp()


def planned_teacher_signal(
    method: str, temperature: float, top_k: int | None, max_tail_mass: float | None = None
) -> tuple[str, str]:
    """Which teacher signal a grid plans for a token-level KD cell, and why.

    Parameters
    ----------
    method : str
        Method id of the cell (a token-level KD method).
    temperature : float
        The cell's KD temperature.
    top_k : int or None
        The grid's cache k (None: the builder's default).
    max_tail_mass : float or None
        The cell's ``teacher_cache_max_tail_mass`` (None: :data:`TAIL_MASS_BOUND`).

    Returns
    -------
    tuple of (str, str)
        ``("cache", why)`` or ``("live", why)``. A cache-planned cell still uses the live
        teacher when the trained teacher's tail is too heavy, which only the cache cell can
        measure: ``why`` says so ("cache if ..., else live").
    """
    k = f"top-{top_k}" if top_k is not None else "top-k"
    bound = TAIL_MASS_BOUND if max_tail_mass is None else max_tail_mass
    if method not in SERVED_METHODS:
        return "live", (
            f"{method}: its cache error grows with the student's mass outside the teacher's {k}, "
            f"which the cache cannot bound (cached: {', '.join(SERVED_METHODS)})"
        )
    if float(temperature) in PLANNED_TEMPERATURES:
        return "cache", (
            f"cache if the teacher's mean mass outside its {k} at τ={temperature:g} is ≤ {bound:.1%}, "
            "else live: measured by the cache cell, which stops building as soon as the mass "
            "it has seen exceeds that"
        )
    return "live", (
        f"{method} at τ={temperature:g}: an LM teacher's mass outside its {k} is far above "
        f"{bound:.1%} at τ > 1, and the cached loss misses about that share "
        "(bench/cache_error.py)"
    )


def build_teacher_cache(
    teacher: str,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    k: int = 64,
    max_length: int = 256,
    prompt_style: PromptStyle = "published_train",
    teacher_gguf_file: str | None = None,
    batch_size: int = 8,
    shard_tokens: int = 1 << 20,
    dtype: Literal["float32", "bfloat16", "float16"] = "float32",
    temperatures: Sequence[float] = (1.0, 2.0, 5.0),
    device: str | None = None,
    refuse_above: float | None = None,
) -> Path:
    """Run the teacher once over the data and store its top-k logits per token.

    Parameters
    ----------
    teacher : str
        Hub id or local folder of the teacher (loaded with ``runners.models.load_causal_lm``).
    data : path or list of paths
        Training file(s) in the published JSON format; every item is cached (the
        validation split of a student run is taken from these items too).
    out_dir : path
        Cache folder. If it already holds a complete cache of the same teacher (at either
        recorded place, see the module docstring), data (by SHA-256) and settings it is
        returned as is; anything else is an error.
    k : int
        Logits kept per token (k >= the vocabulary size keeps all of them; then KD from
        the cache equals KD from the live teacher).
    max_length, prompt_style
        Must equal the student runs' settings (they define the token sequences).
    teacher_gguf_file : str or None
        GGUF file of the teacher.
    batch_size : int
        Sequences per teacher forward pass.
    shard_tokens : int
        Token positions per shard file.
    dtype : {"float32", "bfloat16", "float16"}
        Storage type of the logit values. float32 keeps them exactly; bfloat16 rounds a logit
        near 20 by up to 0.06, which alone moves a forward KL near 0.2 by about 1 %
        (``bench/cache_error.py --dtype bfloat16``).
    temperatures : sequence of float
        KD temperatures the cache serves (the rest mass is stored for each; 1 is always
        added, for the KL to the teacher that runs log).
    device : str or None
        Where the teacher runs (default: CUDA if available, else CPU).
    refuse_above : float or None
        Stop, and record the build as refused, as soon as the positions already run prove
        that the teacher's mean mass outside the top-k exceeds this at every cached
        temperature (module docstring, "Refused builds"); None: always build everything.
        Never refuses when k covers the vocabulary.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ConfigError
        Bad ``k``/``dtype``/``refuse_above``, missing data, or an existing cache of another
        teacher, data or settings.
    """
    import torch
    from safetensors.torch import save_file

    from runners.distill.losses import TopKTeacher
    from runners.models import load_causal_lm

    if k < 1:
        raise ConfigError(f"cache k must be >= 1, got {k}")
    if not temperatures or any(not t > 0 for t in temperatures):
        raise ConfigError(f"cache temperatures must be positive numbers, got {list(temperatures)}")
    if refuse_above is not None and not 0 < refuse_above <= 1:
        raise ConfigError(f"cache refuse_above must be in (0, 1], got {refuse_above}")
    temperatures = sorted({1.0, *map(float, temperatures)})  # tau = 1 also serves the logged KL
    if dtype not in _DTYPES:
        raise ConfigError(f"cache dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    paths = [Path(data)] if isinstance(data, (str, os.PathLike)) else [Path(p) for p in data]
    paths = [p.expanduser().resolve() for p in paths]
    for p in paths:
        if not p.is_file():
            raise ConfigError(f"cache data file not found: {p}")
    out_dir = Path(out_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_causal_lm(teacher, dtype="auto", device=device, gguf_file=teacher_gguf_file)
    model.eval()
    vocab_size = len(tokenizer)  # logits beyond it are embedding padding rows
    k = min(k, vocab_size)
    key = CacheKey.build(
        teacher=teacher,
        teacher_gguf_file=teacher_gguf_file,
        tokenizer=tokenizer,
        data=paths,
        max_length=max_length,
        prompt_style=prompt_style,
        temperatures=temperatures,
    )
    fingerprint = key.fingerprint(k=k, vocab_size=vocab_size, dtype=dtype, root=out_dir)
    if (out_dir / "index.json").is_file():
        return _reuse(TeacherCache.open(out_dir), key, fingerprint, refuse_above)

    items = [it for p in paths for it in load_items(p)]
    examples = encode_items(
        tokenizer, items, max_length=max_length, train_on_inputs=True, prompt_style=prompt_style
    )
    unique = list({example_key(ex.input_ids): ex for ex in examples}.items())
    total_tokens = sum(len(ex.input_ids) for _, ex in unique)
    bound = None if k >= vocab_size else refuse_above  # the mean over all positions is then exact: 0
    store_dtype = getattr(torch, dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[str] = []
    index: dict[str, list[int]] = {}
    keys = ["values", "indices", *(_rest_key(t) for t in temperatures)]
    pending: dict[str, list[torch.Tensor]] = {key: [] for key in keys}
    pending_rows = 0
    n_tokens = 0
    tail_sum = dict.fromkeys(temperatures, 0.0)
    tail_max = dict.fromkeys(temperatures, 0.0)

    def flush() -> None:
        nonlocal pending, pending_rows
        if not pending_rows:
            return
        name = f"shard_{len(shards):05d}.safetensors"
        tmp = out_dir / f".{name}.tmp"
        save_file({key: torch.cat(parts) for key, parts in pending.items()}, str(tmp))
        os.replace(tmp, out_dir / name)
        shards.append(name)
        pending, pending_rows = {key: [] for key in keys}, 0

    pad = tokenizer.pad_token_id
    with torch.no_grad():
        for start in range(0, len(unique), batch_size):
            chunk = unique[start : start + batch_size]
            width = max(len(ex.input_ids) for _, ex in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, (_, ex) in enumerate(chunk):
                ids[row, : len(ex.input_ids)] = torch.tensor(ex.input_ids)
                mask[row, : len(ex.input_ids)] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            logits = logits[..., :vocab_size].float()
            tops = [TopKTeacher.from_logits(logits, k, temperature=t) for t in temperatures]
            for row, (seq_key, ex) in enumerate(chunk):
                n = len(ex.input_ids)
                if pending_rows + n > shard_tokens:
                    flush()
                index[seq_key] = [len(shards), pending_rows, n]
                pending["values"].append(tops[0].values[row, :n].to(store_dtype).cpu())
                pending["indices"].append(tops[0].indices[row, :n].to(torch.int32).cpu())
                for t, top in zip(temperatures, tops, strict=True):
                    pending[_rest_key(t)].append(top.rest[row, :n].cpu())  # type: ignore[index]
                    mass = tail_mass(top.values[row, :n], top.rest[row, :n], t)  # type: ignore[index]
                    tail_sum[t] += float(mass.sum())
                    tail_max[t] = max(tail_max[t], float(mass.max()))
                pending_rows += n
                n_tokens += n
            # the tail mass seen at the smallest tau already exceeds the bound times all positions
            if (
                bound is not None
                and n_tokens < total_tokens
                and tail_sum[temperatures[0]] > bound * total_tokens
            ):
                return _refuse(
                    out_dir, shards, fingerprint, bound, temperatures, tail_sum, n_tokens, total_tokens
                )
    flush()
    atomic_write_json(
        out_dir / "index.json",
        {
            "format": CACHE_FORMAT,
            "fingerprint": fingerprint,
            "n_examples": len(index),
            "n_tokens": n_tokens,
            "shards": shards,
            "tail_mass": {
                f"{t:g}": {"mean": tail_sum[t] / max(n_tokens, 1), "max": tail_max[t]} for t in temperatures
            },
            "examples": index,
        },
    )
    log.info(
        "teacher cache %s: %d sequences, %d tokens, k=%d, %d shards",
        out_dir,
        len(index),
        n_tokens,
        k,
        len(shards),
    )
    return out_dir


def _refuse(
    out_dir: Path,
    shards: list[str],
    fingerprint: dict[str, Any],
    bound: float,
    temperatures: list[float],
    tail_sum: dict[float, float],
    seen: int,
    total: int,
) -> Path:
    """Drop the shards written so far and record the build as refused (module docstring)."""
    for name in shards:
        (out_dir / name).unlink()
    refused = {
        "bound": bound,
        "temperature": temperatures[0],
        "mean_at_least": tail_sum[temperatures[0]] / total,
        "seen_tokens": seen,
        "n_tokens": total,
        "seen_mean": {f"{t:g}": tail_sum[t] / seen for t in temperatures},
    }
    atomic_write_json(
        out_dir / "index.json",
        {
            "format": CACHE_FORMAT,
            "fingerprint": fingerprint,
            "n_examples": 0,
            "n_tokens": 0,
            "shards": [],
            "examples": {},
            "refused": refused,
        },
    )
    log.warning("teacher cache %s refused: %s", out_dir, TeacherCache.open(out_dir).refusal())
    return out_dir


#: Fingerprint fields that say where things were, not what the cache holds.
_LOCATION_FIELDS = ("teacher", "teacher_from_cache", "data")


def _reuse(
    existing: TeacherCache, key: CacheKey, fingerprint: dict[str, Any], refuse_above: float | None
) -> Path:
    """``existing.root`` when it holds what this build would (wherever it was built), else ConfigError."""
    settings = {name: v for name, v in fingerprint.items() if name not in _LOCATION_FIELDS}
    held = {name: v for name, v in existing.fingerprint.items() if name not in _LOCATION_FIELDS}
    problems = [_diff(held, settings)] if held != settings else []
    if not existing.key.serves_teacher(key.teacher):
        problems.append(f"teacher: {existing.key.teacher!r} vs {key.teacher!r}")
    if [sha for _, sha in existing.key.data] != [sha for _, sha in key.data]:
        problems.append("data: other files (SHA-256)")
    if problems:
        raise ConfigError(
            f"{existing.root} already holds a teacher cache with another fingerprint "
            f"({'; '.join(problems)}); use a new folder"
        )
    refused = existing.refused
    if refused is not None and (refuse_above is None or refuse_above >= refused["mean_at_least"]):
        raise ConfigError(
            f"{existing.root} holds a refused teacher cache ({existing.refusal()}), which does not "
            f"decide a build with refuse_above={refuse_above}; use a new folder"
        )
    log.info("teacher cache %s is complete; reusing it", existing.root)
    return existing.root


def build_teacher_cache_for(
    config: Any, out_dir: str | os.PathLike[str], *, k: int = 64, **kwargs: Any
) -> Path:
    """Build the cache a :class:`~runners.distill.config.DistillConfig` needs.

    Uses the config's teacher, training (and validation) files, ``max_length``,
    ``prompt_style`` and ``temperature``; ``kwargs`` go to :func:`build_teacher_cache`.
    """
    if config.teacher is None:
        raise ConfigError(f"method {config.method!r} has no teacher to cache")
    kwargs.setdefault("temperatures", sorted({1.0, 2.0, 5.0, config.temperature}))
    return build_teacher_cache(
        config.teacher,
        _data_files(config),
        out_dir,
        k=k,
        max_length=config.max_length,
        prompt_style=config.prompt_style,
        teacher_gguf_file=config.teacher_gguf_file,
        **kwargs,
    )


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    return "; ".join(
        f"{key}: {a.get(key)!r} vs {b.get(key)!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key) != b.get(key)
    )


class TeacherCache:
    """Read access to a cache folder written by :func:`build_teacher_cache`.

    Use :meth:`open`; :meth:`check` compares the cache's :class:`CacheKey` (``key``, read
    from the ``fingerprint`` of ``index.json``) with a run's and :meth:`lookup` returns padded
    top-k tensors for a batch of sequences.
    """

    def __init__(self, root: Path, index: dict[str, Any]) -> None:
        self.root = root
        self.fingerprint: dict[str, Any] = index["fingerprint"]
        self.key = CacheKey.from_fingerprint(self.fingerprint, root)
        self.k: int = int(self.fingerprint["k"])
        self.vocab_size: int = int(self.fingerprint["vocab_size"])
        #: The ``refused`` record of a build stopped by ``refuse_above`` (no logits), else None.
        self.refused: dict[str, Any] | None = index.get("refused")
        self._examples: dict[str, list[int]] = index["examples"]
        self._shard_names: list[str] = index["shards"]
        self._shards: dict[int, Any] = {}
        self._tail_mass: dict[str, dict[str, float]] | None = index.get("tail_mass")

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> TeacherCache:
        """Open a complete cache folder.

        Raises
        ------
        ConfigError
            If the folder has no ``index.json`` (missing or unfinished cache) or another format.
        """
        root = Path(root)
        if not (root / "index.json").is_file():
            raise ConfigError(f"teacher cache {root} is missing or unfinished (no index.json)")
        index = read_json(root / "index.json")
        if index.get("format") not in _READABLE_FORMATS:
            raise ConfigError(
                f"teacher cache {root} has format {index.get('format')!r}; this version reads formats "
                f"{', '.join(map(str, _READABLE_FORMATS))}; rebuild it with build_teacher_cache "
                "in a new folder"
            )
        return cls(root, index)

    def __len__(self) -> int:
        return len(self._examples)

    def check(self, run: CacheKey) -> None:
        """Raise ConfigError naming every field where the cache does not serve a run's key.

        The run's data files must each be one of the cached files (same SHA-256) and its
        temperatures cached ones (see :meth:`CacheKey.mismatches`).
        """
        problems = self.key.mismatches(run)
        if problems:
            raise ConfigError(f"teacher cache {self.root} does not match this run: " + "; ".join(problems))

    def tail_mass(self, temperature: float) -> dict[str, float]:
        """Mean and max over cached positions of the teacher's mass outside the top-k at τ.

        Read from ``index.json`` (format 2 and 3) or, for a format-1 cache, computed from its
        shards once (the stored, possibly rounded, top-k values with the exact rest mass).

        Raises
        ------
        ConfigError
            If ``temperature`` is not cached, or the build was refused (:meth:`refusal`).
        """
        self._check_temperature(temperature)
        self._check_not_refused()
        if self._tail_mass is None:
            self._tail_mass = {f"{t:g}": self._tail_mass_from_shards(t) for t in self.key.temperatures}
        return self._tail_mass[f"{float(temperature):g}"]

    def _tail_mass_from_shards(self, temperature: float) -> dict[str, float]:
        total, largest, count = 0.0, 0.0, 0
        for i in range(len(self._shard_names)):
            handle = self._shard(i)
            mass = tail_mass(
                handle.get_tensor("values"), handle.get_tensor(_rest_key(temperature)), temperature
            )
            total, count = total + float(mass.sum()), count + mass.numel()
            largest = max(largest, float(mass.max())) if mass.numel() else largest
        return {"mean": total / max(count, 1), "max": largest}

    def bound_problem(
        self, method: str, temperature: float, max_tail_mass: float | None = None
    ) -> str | None:
        """Why this cache does not serve a ``method`` run at ``temperature`` within the error bound.

        None when it does: k covers the vocabulary (exact), or ``method`` is one of
        :data:`SERVED_METHODS` and the teacher's mean mass outside the top-k at τ is at most
        ``max_tail_mass`` (None: :data:`TAIL_MASS_BOUND`; see the module docstring). A refused
        build (:attr:`refused`) serves no run: the reason says whether its recorded lower
        bound on the mean tail mass exceeds ``max_tail_mass`` too, or the run's looser bound
        would need the full cache.
        """
        max_tail_mass = TAIL_MASS_BOUND if max_tail_mass is None else max_tail_mass
        if self.k >= self.vocab_size:
            return None
        if method not in SERVED_METHODS:
            return (
                f"{method} from a top-{self.k} cache has an error set by the student's mass outside "
                f"the top-k, which the cache cannot bound (cached: {', '.join(SERVED_METHODS)})"
            )
        if self.refused is not None:
            self._check_temperature(temperature)
            if self.refused["mean_at_least"] > max_tail_mass:
                return f"{self.refusal()}, so > {max_tail_mass:.1%} at τ={float(temperature):g} too"
            return (
                f"{self.refusal()}; it holds no logits, and this run's bound {max_tail_mass:.1%} "
                "would need them all (build it without refuse_above)"
            )
        mean = self.tail_mass(temperature)["mean"]
        if mean <= max_tail_mass:
            return None
        return (
            f"the teacher's mean mass outside its top-{self.k} at τ={float(temperature):g} is {mean:.2%} "
            f"> {max_tail_mass:.1%}: the cached loss would be about that much too small"
        )

    def refusal(self) -> str | None:
        """Why the build was refused, in one phrase (None for a built cache)."""
        if self.refused is None:
            return None
        r = self.refused
        seen = r["seen_mean"][f"{r['temperature']:g}"]
        return (
            f"the cache build stopped after {r['seen_tokens']} of {r['n_tokens']} positions: the teacher's "
            f"mean mass outside its top-{self.k} at τ={r['temperature']:g} is at least "
            f"{r['mean_at_least']:.2%} > {r['bound']:.1%} (refused, tail mass "
            f"{seen:.2%} on the positions seen)"
        )

    def _check_not_refused(self) -> None:
        if self.refused is not None:
            raise ConfigError(f"teacher cache {self.root} holds no logits: {self.refusal()}")

    def _check_temperature(self, temperature: float) -> None:
        if float(temperature) not in self.key.temperatures:
            raise ConfigError(
                f"teacher cache {self.root} holds temperatures {list(self.key.temperatures)}, "
                f"not {temperature}"
            )

    def _shard(self, i: int) -> Any:
        from safetensors import safe_open

        if i not in self._shards:
            self._shards[i] = safe_open(str(self.root / self._shard_names[i]), framework="pt")
        return self._shards[i]

    def lookup(self, keys: Sequence[str], width: int, temperature: float = 1.0) -> Any:
        """Top-k teacher of a batch of sequences, right-padded to ``width`` positions.

        Returns
        -------
        TopKTeacher
            ``values`` [B, width, k] float32 raw logits, ``indices`` [B, width, k] int64,
            ``rest`` [B, width] float32 at ``temperature``; 0 at padding positions.

        Raises
        ------
        ConfigError
            If a sequence or the temperature is not in the cache, or the build was refused.
        """
        import torch

        from runners.distill.losses import TopKTeacher

        self._check_temperature(temperature)
        self._check_not_refused()
        rest_key = _rest_key(temperature)
        values = torch.zeros((len(keys), width, self.k), dtype=torch.float32)
        indices = torch.zeros((len(keys), width, self.k), dtype=torch.long)
        rest = torch.zeros((len(keys), width), dtype=torch.float32)
        for row, key in enumerate(keys):
            try:
                shard, start, n = self._examples[key]
            except KeyError:
                raise ConfigError(
                    f"teacher cache {self.root} has no logits for a training sequence "
                    f"(key {key}); was it built from the same data and settings?"
                ) from None
            handle = self._shard(shard)
            n = min(n, width)
            values[row, :n] = handle.get_slice("values")[start : start + n].float()
            indices[row, :n] = handle.get_slice("indices")[start : start + n].long()
            rest[row, :n] = handle.get_slice(rest_key)[start : start + n]
        return TopKTeacher(values, indices, rest, float(temperature))
