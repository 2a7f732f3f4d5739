"""Gaussian linear mixed model algebra for :mod:`kdanalysis.stats.mixed`: the random-effects
design of a statsmodels ``MixedLM`` (:func:`structure_of`), lme4's profiled REML/ML
deviance and its bounded optimum (:func:`profiled_optimum`), and Satterthwaite degrees of
freedom as lmerTest's (:func:`satterthwaite`).

Written by hand: neither statsmodels nor any other Python library gives the curvature of
the REML deviance in the variance parameters or the gradient of ``Var(beta_hat)`` that
the Satterthwaite approximation needs, nor lme4's bounded parameterisation (in which a
variance of exactly 0 is reachable). All of it works in the random-effects space from the
cross-products of ``[Z X y]`` (Woodbury), with Cholesky factorisations, no inverses of
``n x n`` matrices. The model is ``y = X beta + Z b + e`` with
``b ~ N(0, sigma^2 Psi(theta))`` and ``e ~ N(0, sigma^2 I)``, so ``Var(y) = sigma^2 V`` with
``V = I + Z Psi Z'``. As in lme4, ``theta`` holds, per random term, the lower-triangular
entries (column by column) of the Cholesky factor ``T`` of the term's covariance relative to
``sigma^2`` (``Psi`` is ``I_levels (x) T T'`` on the term's columns); for a variance
component ``theta = sd / sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["RandomTerm", "Structure", "profiled_optimum", "satterthwaite", "structure_of", "theta_of"]

#: Eigenvalues of the deviance Hessian at or below this are dropped from its inverse
#: (lmerTest's ``tol``).
_HESSIAN_TOL = 1e-8

#: How far off a zero variance's boundary the profiled optimizer looks for a descent.
_BOUNDARY_PROBE = 1e-3


@dataclass(frozen=True)
class RandomTerm:
    """One random term: ``levels`` blocks of ``k`` columns of ``Z`` (level-major order)."""

    name: str
    columns: np.ndarray  # (levels, k) column indices into Z
    k: int

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The ``(row, column)`` of each Cholesky entry, lme4's order (column by column)."""
        return [(i, j) for j in range(self.k) for i in range(j, self.k)]


@dataclass(frozen=True)
class Structure:
    """Response, fixed- and random-effects designs of a mixed model, rows in data order."""

    y: np.ndarray
    x: np.ndarray
    z: np.ndarray
    terms: tuple[RandomTerm, ...]
    cross: np.ndarray  # [Z X y]' [Z X y]

    def factor(self, theta: np.ndarray) -> np.ndarray:
        """``Lambda``: the block-diagonal relative Cholesky factor (``Psi = Lambda Lambda'``)."""
        q = self.z.shape[1]
        out = np.zeros((q, q))
        values = iter(theta)
        for term in self.terms:
            block = np.zeros((term.k, term.k))
            for i, j in term.pairs:
                block[i, j] = next(values)
            out[term.columns[:, :, None], term.columns[:, None, :]] = block
        return out

    def second_derivatives(self) -> np.ndarray:
        """``d^2 Psi / d theta_a d theta_b`` as a ``(K, K, q, q)`` array (``Psi`` is quadratic in theta).

        Within a term ``T = sum_a theta_a E_a``, so the second derivative is
        ``E_a E_b' + E_b E_a'`` on every level's block.
        """
        pairs = [(term, ij) for term in self.terms for ij in term.pairs]
        q = self.z.shape[1]
        out = np.zeros((len(pairs), len(pairs), q, q))
        for a, (term_a, (i_a, j_a)) in enumerate(pairs):
            for b, (term_b, (i_b, j_b)) in enumerate(pairs):
                if term_a is not term_b or j_a != j_b:
                    continue
                block = np.zeros((term_a.k, term_a.k))
                block[i_a, i_b] += 1.0
                block[i_b, i_a] += 1.0
                cols = term_a.columns
                out[a, b][cols[:, :, None], cols[:, None, :]] = block
        return out


def structure_of(model: Any) -> Structure:
    """The :class:`Structure` of a statsmodels ``MixedLM`` (its groups' random effects, then
    its variance components, each with one block of columns per group)."""
    n = int(model.nobs)
    blocks: list[tuple[str, int, list[tuple[np.ndarray, np.ndarray]]]] = []
    members = [np.asarray(model.row_indices[label]) for label in model.group_labels]
    if model.k_re:
        re_name = str(model.data.param_names[model.k_fe]).removesuffix(" Var")
        blocks.append((re_name, model.k_re, list(zip(members, model.exog_re_li, strict=True))))
    for name, mats in zip(model.exog_vc.names, model.exog_vc.mats, strict=True):
        blocks.append((name, 1, list(zip(members, mats, strict=True))))
    widths = [sum(mat.shape[1] for _, mat in parts) for _, _, parts in blocks]
    z = np.zeros((n, sum(widths)))
    terms = []
    start = 0
    for (name, k, parts), width in zip(blocks, widths, strict=True):
        col = start
        for rows, mat in parts:
            z[np.ix_(rows, np.arange(col, col + mat.shape[1]))] = mat
            col += mat.shape[1]
        terms.append(RandomTerm(name, np.arange(start, start + width).reshape(-1, k), k))
        start += width
    x, y = np.asarray(model.exog, dtype=float), np.asarray(model.endog, dtype=float)
    stacked = np.column_stack([z, x, y])
    return Structure(y, x, z, tuple(terms), stacked.T @ stacked)


def theta_of(result: Any) -> tuple[np.ndarray, float]:
    """lme4's ``theta`` and ``sigma`` from a fitted statsmodels ``MixedLM`` result.

    A singular random-effects covariance gets a Cholesky factor with zero columns where
    its pivots vanish (lme4's boundary ``theta``).
    """
    scale = float(result.scale)
    theta: list[float] = []
    k_re = result.model.k_re
    if k_re:
        relative = np.asarray(result.cov_re, dtype=float) / scale
        factor = _cholesky_semidefinite((relative + relative.T) / 2)
        theta += [factor[i, j] for j in range(k_re) for i in range(j, k_re)]
    theta += list(np.sqrt(np.clip(np.atleast_1d(result.vcomp), 0, None) / scale))
    return np.asarray(theta, dtype=float), float(np.sqrt(scale))


def _cholesky_semidefinite(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix (zero columns where singular)."""
    k = len(matrix)
    factor = np.zeros_like(matrix)
    for j in range(k):
        pivot = matrix[j, j] - factor[j, :j] @ factor[j, :j]
        if pivot <= 1e-14 * max(1.0, float(np.max(np.diag(matrix)))):
            continue
        factor[j, j] = np.sqrt(pivot)
        factor[j + 1 :, j] = (matrix[j + 1 :, j] - factor[j + 1 :, :j] @ factor[j, :j]) / factor[j, j]
    return factor


def profiled_optimum(structure: Structure, reml: bool) -> np.ndarray:
    """``theta`` minimising lme4's profiled REML (or ML) deviance, by L-BFGS-B from lme4's start.

    The deviance, with ``beta`` and ``sigma`` profiled out, is ``log|V| + log|X' V^-1 X| +
    nu (1 + log(2 pi y' P y / nu))`` (REML, ``nu = n - p``) or ``log|V| + n (1 + log(2 pi
    y' P y / n))`` (ML); its gradient ``tr(G_a S) - nu u' G_a u / y' P y`` is exact (see
    :func:`satterthwaite` for the notation). Diagonal Cholesky entries are bounded below by
    0 (a variance of 0 is reached exactly); the start is lme4's (identity factors).
    """
    from scipy.optimize import minimize

    second = structure.second_derivatives()
    nu = len(structure.y) - structure.x.shape[1] if reml else len(structure.y)
    pairs = [ij for term in structure.terms for ij in term.pairs]

    def deviance(theta: np.ndarray) -> tuple[float, np.ndarray]:
        parts = _Parts.at(structure, structure.factor(theta))
        first = np.einsum("b,abij->aij", theta, second)
        s = parts.m if reml else parts.n_matrix
        value = parts.logdet_v + nu * (1 + np.log(2 * np.pi * parts.ypy / nu))
        gradient = (
            np.einsum("aij,ji->a", first, s)
            - nu * np.einsum("i,aij,j->a", parts.u, first, parts.u) / parts.ypy
        )
        return value + (parts.logdet_xvx if reml else 0.0), gradient

    def fit(start: np.ndarray) -> Any:
        return minimize(deviance, start, jac=True, method="L-BFGS-B", bounds=bounds)

    bounds = [(0.0, None) if i == j else (None, None) for i, j in pairs]
    diagonal = [a for a, (i, j) in enumerate(pairs) if i == j]
    found = fit(np.array([1.0 if i == j else 0.0 for i, j in pairs]))
    # theta_a = 0 is a stationary point of an even deviance: leave it where the deviance
    # falls off the boundary (lme4's derivative-free optimizer does not stop there).
    for _ in range(len(diagonal)):
        escapes = []
        for a in diagonal:
            if found.x[a] == 0.0:
                probe = found.x.copy()
                probe[a] = _BOUNDARY_PROBE
                if deviance(probe)[0] < found.fun:
                    escapes.append(fit(probe))
        better = [trial for trial in escapes if trial.fun < found.fun]
        if not better:
            break
        found = min(better, key=lambda trial: trial.fun)
    return np.asarray(found.x, dtype=float)


@dataclass(frozen=True)
class SatterthwaiteResult:
    """``vcov`` (``sigma^2 (X' V^-1 X)^-1``), per-coefficient ``df``, and the number of
    negative eigenvalues of the deviance Hessian (a fit not at a minimum)."""

    vcov: np.ndarray
    df: np.ndarray
    negative_eigenvalues: int


def satterthwaite(structure: Structure, theta: np.ndarray, sigma: float, reml: bool) -> SatterthwaiteResult:
    """Satterthwaite degrees of freedom of each fixed effect, as ``lmerTest``'s ``summary``.

    ``df_j = 2 Var_j^2 / (g_j' A g_j)`` where ``Var_j = [sigma^2 (X' V^-1 X)^-1]_jj``,
    ``g_j`` its gradient in ``(theta, sigma)`` and ``A = 2 H^+`` with ``H`` the Hessian of the
    REML (or ML) deviance in ``(theta, sigma)`` at the estimates, inverted on its positive
    eigenvalues (lmerTest's convention). lmerTest differentiates numerically
    (``numDeriv``); here ``H`` and ``g`` are in closed form, with ``P = V^-1 - V^-1 X C X' V^-1``,
    ``C = (X' V^-1 X)^-1``, ``M = Z' P Z``, ``u = Z' P y`` and ``G_a = d Psi / d theta_a``:

    - ``d2 dev / d theta_a d theta_b = -tr(G_a S G_b S) + tr(H_ab S)
      + (2 u' G_a M G_b u - u' H_ab u) / sigma^2`` with ``S = M`` (REML) or ``Z' V^-1 Z`` (ML),
    - ``d2 dev / d theta_a d sigma = 2 u' G_a u / sigma^3``,
    - ``d2 dev / d sigma^2 = 6 y' P y / sigma^4 - 2 nu / sigma^2``, ``nu = n - p`` (REML) or ``n``,
    - ``d Var(beta_hat) / d theta_a = sigma^2 W' G_a W`` with ``W = Z' V^-1 X C``, and
      ``d Var(beta_hat) / d sigma = 2 sigma C``.

    Everything is computed in the ``q``-dimensional random-effects space (Woodbury), from
    the cross-products of ``[Z X y]``.
    """
    second = structure.second_derivatives()
    first = np.einsum("b,abij->aij", theta, second)  # G_a = sum_b theta_b H_ab
    parts = _Parts.at(structure, structure.factor(theta))
    s = parts.m if reml else parts.n_matrix
    k = len(theta)
    hessian = np.empty((k + 1, k + 1))
    gs = first @ s
    gu = first @ parts.u  # G_a u
    for a in range(k):
        for b in range(a, k):
            value = (
                -np.sum(gs[a] * gs[b].T)
                + np.sum(second[a, b] * s)
                + (2 * gu[a] @ parts.m @ gu[b] - parts.u @ second[a, b] @ parts.u) / sigma**2
            )
            hessian[a, b] = hessian[b, a] = value
        hessian[a, k] = hessian[k, a] = 2 * parts.u @ gu[a] / sigma**3
    nu = len(structure.y) - structure.x.shape[1] if reml else len(structure.y)
    hessian[k, k] = 6 * parts.ypy / sigma**4 - 2 * nu / sigma**2
    values, vectors = np.linalg.eigh(hessian)
    keep = values > _HESSIAN_TOL
    a_matrix = 2 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    variance = sigma**2 * np.diag(parts.c)
    gradient = np.empty((k + 1, len(variance)))
    for a in range(k):
        gradient[a] = sigma**2 * np.einsum("ij,ik,kj->j", parts.w, first[a], parts.w)
    gradient[k] = 2 * sigma * np.diag(parts.c)
    denominator = np.einsum("aj,ab,bj->j", gradient, a_matrix, gradient)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(denominator > 0, 2 * variance**2 / denominator, np.nan)
    return SatterthwaiteResult(sigma**2 * parts.c, df, int(np.sum(values < -_HESSIAN_TOL)))


@dataclass(frozen=True)
class _Parts:
    """The pieces of the deviance's derivatives at ``theta`` (see :func:`satterthwaite`)."""

    c: np.ndarray
    w: np.ndarray
    m: np.ndarray
    n_matrix: np.ndarray
    u: np.ndarray
    ypy: float
    logdet_v: float  # log |V| = log |R|
    logdet_xvx: float  # log |X' V^-1 X|

    @classmethod
    def at(cls, structure: Structure, factor: np.ndarray) -> _Parts:
        """The pieces for ``Psi = Lambda Lambda'`` (``factor`` is ``Lambda``), all in the
        ``q + p + 1`` space: with ``R = I + Lambda' Z' Z Lambda``, ``A' V^-1 B = A' B -
        A' Z Lambda R^-1 Lambda' Z' B`` (Woodbury) for ``A, B`` among ``Z, X, y``."""
        q, p = structure.z.shape[1], structure.x.shape[1]
        cross = structure.cross
        lz = factor.T @ cross[:q]
        reduced = cho_factor(np.eye(q) + lz[:, :q] @ factor, lower=True)
        solved = cross - lz.T @ cho_solve(reduced, lz)
        n_matrix, zx, zy = solved[:q, :q], solved[:q, q : q + p], solved[:q, -1]
        xx, xy, yy = solved[q : q + p, q : q + p], solved[q : q + p, -1], solved[-1, -1]
        xx_factor = cho_factor(xx, lower=True)
        c = cho_solve(xx_factor, np.eye(p))
        w = zx @ c
        return cls(
            c=c,
            w=w,
            m=n_matrix - w @ zx.T,
            n_matrix=n_matrix,
            u=zy - w @ xy,
            ypy=float(yy - xy @ c @ xy),
            logdet_v=2 * float(np.sum(np.log(np.diag(reduced[0])))),
            logdet_xvx=2 * float(np.sum(np.log(np.diag(xx_factor[0])))),
        )
