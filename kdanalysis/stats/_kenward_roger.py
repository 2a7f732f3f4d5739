"""Kenward-Roger adjusted covariance and degrees of freedom of a linear mixed model's
fixed effects, as pbkrtest's ``vcovAdj`` and ``Lb_ddf`` (used by lmerTest's
``summary(m, ddf="Kenward-Roger")``).

Written by hand (no Python library implements it), following pbkrtest 0.5 line by line on
dense matrices: the variance parameters are the entries of each random term's covariance
(lower triangle) and the residual variance, ``Sigma = sum_r gamma_r G_r``.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from kdanalysis.stats._reml import Structure

__all__ = ["kenward_roger"]


def kenward_roger(structure: Structure, theta: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The Kenward-Roger covariance of the fixed effects and each coefficient's df.

    With ``Phi = (X' Sigma^-1 X)^-1``, ``P_r = -X' Sigma^-1 G_r Sigma^-1 X``,
    ``Q_rs = X' Sigma^-1 G_r Sigma^-1 G_s Sigma^-1 X`` and ``W = 2 I^-1`` (``I`` the
    expected information of pbkrtest), the adjusted covariance is
    ``Phi + 2 Phi (sum_rs W_rs (Q_rs - P_r Phi P_s)) Phi``; the df of coefficient ``j``
    is pbkrtest's ``Lb_ddf`` for ``L = e_j`` (one restriction), computed from
    ``A1 = sum_rs W_rs tr(Theta Phi P_r Phi) tr(Theta Phi P_s Phi)`` and
    ``A2 = sum_rs W_rs tr(Theta Phi P_r Phi Theta Phi P_s Phi)``.

    Returns
    -------
    (ndarray, ndarray)
        The adjusted ``p x p`` covariance and the ``p`` degrees of freedom.
    """
    x = structure.x
    n, p = x.shape
    derivatives = [*_covariance_derivatives(structure), np.eye(n)]
    factor = structure.factor(theta)
    sigma_matrix = sigma**2 * (np.eye(n) + structure.z @ factor @ factor.T @ structure.z.T)
    sigma_inv = cho_solve(cho_factor(sigma_matrix, lower=True), np.eye(n))
    tt = sigma_inv @ x
    phi = np.linalg.inv(x.T @ tt)
    hh = [g @ sigma_inv for g in derivatives]
    oo = [h @ x for h in hh]
    pp = [-(o.T @ tt + tt.T @ o) / 2 for o in oo]  # forceSymmetric of -O' T
    k = len(derivatives)
    qq = {(r, s): oo[r].T @ sigma_inv @ oo[s] for r in range(k) for s in range(r, k)}
    info = np.empty((k, k))
    for r in range(k):
        for s in range(r, k):
            info[r, s] = info[s, r] = (
                np.sum(hh[r].T * hh[s]) - 2 * np.sum(phi * qq[r, s]) + np.sum((phi @ pp[r]) * (pp[s] @ phi))
            )
    if np.min(np.abs(np.linalg.eigvalsh(info))) > 1e-10:
        ww = 2 * np.linalg.inv(info)
    else:
        ww = 2 * np.linalg.pinv(info)
    ww = (ww + ww.T) / 2
    uu = np.zeros((p, p))
    for r in range(k - 1):
        for s in range(r + 1, k):
            uu += ww[r, s] * (qq[r, s] - pp[r] @ phi @ pp[s])
    uu = uu + uu.T
    for r in range(k):
        uu += ww[r, r] * (qq[r, r] - pp[r] @ phi @ pp[r])
    adjusted = phi + 2 * phi @ uu @ phi
    return adjusted, np.array([_lb_ddf(j, phi, pp, ww) for j in range(p)])


def _lb_ddf(j: int, phi: np.ndarray, pp: list[np.ndarray], ww: np.ndarray) -> float:
    """pbkrtest's ``Lb_ddf`` for the single restriction ``L = e_j``."""
    theta = np.zeros_like(phi)
    theta[j, j] = 1 / phi[j, j]
    theta_phi = theta @ phi
    uu = [theta_phi @ p_r @ phi for p_r in pp]
    a1 = a2 = 0.0
    k = len(pp)
    for r in range(k):
        for s in range(r, k):
            e = 1 if r == s else 2
            a1 += e * ww[r, s] * np.trace(uu[r]) * np.trace(uu[s])
            a2 += e * ww[r, s] * np.sum(uu[r] * uu[s].T)
    b = (a1 + 6 * a2) / 2
    g = (2 * a1 - 5 * a2) / (3 * a2)
    denominator = 3 + 2 * (1 - g)
    c1, c2, c3 = g / denominator, (1 - g) / denominator, (3 - g) / denominator
    v0 = 1 + c1 * b
    v1 = 1 - c2 * b
    v2 = 1 - c3 * b
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    ratio = 1.0 if abs(1 - a2) < 1e-14 and abs(v1) < 1e-14 else (1 - a2) / v1
    rho = ratio**2 * v0 / v2
    return 4 + 3 / (rho - 1)


def _covariance_derivatives(structure: Structure) -> list[np.ndarray]:
    """``d Sigma / d gamma_r`` for each random term's covariance entry (lower triangle, column by column)."""
    z = structure.z
    out = []
    for term in structure.terms:
        for i, j in term.pairs:
            block = np.zeros((term.k, term.k))
            block[i, j] = block[j, i] = 1.0
            zb = np.zeros((z.shape[1], z.shape[1]))
            zb[term.columns[:, :, None], term.columns[:, None, :]] = block
            out.append(z @ zb @ z.T)
    return out
