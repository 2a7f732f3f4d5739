"""Linear-algebra pieces of the cluster-robust OLS fits: the rank test of a design, the
Bell–McCaffrey CR2 sandwich with its Satterthwaite degrees of freedom, and the
positive-semi-definite repair of a two-way covariance.

Written by hand because no maintained Python library computes clubSandwich's CR2 and its
per-coefficient Satterthwaite df (statsmodels has CR1 and the CR3 jackknife, pyfixest and
wildboottest neither); the values are pinned against R clubSandwich in
``tests/stats/golden/ols_*`` (see ``tests/stats/test_cluster_robust.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["RANK_TOL", "cr2", "identified_columns", "psd_repair"]

#: Relative tolerance of the rank test, R's ``lm`` default (``qr(tol = 1e-7)``): a column is
#: not identified when the part of it orthogonal to the earlier identified columns has a
#: norm at most ``RANK_TOL`` times the column's own norm.
RANK_TOL = 1e-7

#: Eigenvalues of ``I - H_gg`` at most this are treated as 0 in the generalised inverse
#: square root (clubSandwich's ``Sym_power`` uses the same absolute cut-off).
_EIGEN_TOL = 1e-12


def identified_columns(exog: np.ndarray) -> np.ndarray:
    """Boolean mask of the columns of ``exog`` that are identified, R ``lm``'s way.

    Columns are taken in order; a column is dropped when it lies (to :data:`RANK_TOL`,
    relative to its norm) in the span of the earlier identified ones, so the later of two
    collinear columns is the one reported as not identified, as R reports ``NA``. The
    diagonal of an unpivoted Householder QR (``numpy.linalg.qr``) holds each column's
    distance from the span of the columns before it, exactly up to the first deficient
    column; that column is dropped and the QR repeated (once per dropped column).
    """
    keep = np.ones(exog.shape[1], dtype=bool)
    norms = np.linalg.norm(exog, axis=0)
    while True:
        columns = np.flatnonzero(keep)
        diag = np.zeros(len(columns))  # columns beyond the number of rows stay 0: not identified
        if len(columns):
            r_diag = np.abs(np.diag(np.linalg.qr(exog[:, columns], mode="r")))
            diag[: len(r_diag)] = r_diag
        # the QR's diagonal is exact for the columns before the first deficient one
        bad = np.flatnonzero(diag <= RANK_TOL * norms[columns])
        if not len(bad):
            return keep
        keep[columns[bad[0]]] = False


def cr2(
    exog: np.ndarray, resid: np.ndarray, codes: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """CR2 covariance of OLS coefficients and the Satterthwaite df of each coefficient.

    The Bell–McCaffrey bias-reduced sandwich with clubSandwich's defaults for ``lm``
    (working model: independent errors of equal variance), Pustejovsky & Tipton (2018)::

        V = M (sum_g X_g' A_g e_g e_g' A_g X_g) M,   M = (X'X)^-1,
        A_g = (I - H_gg)^(-1/2)   (symmetric; a generalised inverse root when singular).

    The df of coefficient j is ``tr(Q_j)^2 / ||Q_j||_F^2`` with ``Q_j = P_j' P_j``, column g
    of ``P_j`` being ``(I - H)`` applied to the n-vector holding ``A_g X_g M e_j`` in cluster
    g's rows and zeros elsewhere (clubSandwich ``coef_test(test = "Satterthwaite")``).

    Parameters
    ----------
    exog : ndarray
        Full-rank design, n x k.
    resid : ndarray
        OLS residuals.
    codes : ndarray
        Cluster code per row, ``0 .. n_clusters - 1``.
    n_clusters : int

    Returns
    -------
    (ndarray, ndarray)
        The k x k covariance and the k degrees of freedom.
    """
    from scipy import linalg

    q, r = np.linalg.qr(exog)
    r_inv = linalg.solve_triangular(r, np.eye(r.shape[0]))
    xm = q @ r_inv.T  # X M, since X M = Q R R^-1 R^-T
    k = exog.shape[1]
    z = np.empty_like(exog)  # row block g holds A_g X_g M
    cross = np.empty((n_clusters, k, k))  # X_g' A_g X_g M per cluster
    for g, rows in enumerate(_cluster_rows(codes, n_clusters)):
        q_g = q[rows]
        values, vectors = np.linalg.eigh(np.eye(len(rows)) - q_g @ q_g.T)
        power = np.where(values > _EIGEN_TOL, np.abs(values) ** -0.5, 0.0)
        z[rows] = (vectors * power) @ (vectors.T @ xm[rows])
        cross[g] = exog[rows].T @ z[rows]
    indicator = np.zeros((len(codes), n_clusters))
    indicator[np.arange(len(codes)), codes] = 1.0
    scores = indicator.T @ (z * resid[:, None])  # G x k: X_g' A_g e_g, times M
    cov = scores.T @ scores
    # Q_j = diag(sum_g z_gj^2) - F_j M F_j' with F_j[g] = (X_g' A_g X_g M)[:, j]
    factor = cross.transpose(2, 0, 1) @ r_inv  # F_j R^-1 per j, so F_j M F_j' = factor factor'
    q_mat = -factor @ factor.transpose(0, 2, 1)
    q_mat[:, np.arange(n_clusters), np.arange(n_clusters)] += (indicator.T @ z**2).T
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.trace(q_mat, axis1=1, axis2=2) ** 2 / np.sum(q_mat**2, axis=(1, 2))
    return cov, df


def psd_repair(cov: np.ndarray) -> tuple[np.ndarray, bool]:
    """Set the negative eigenvalues of a symmetric covariance to 0 (Cameron, Gelbach & Miller 2011).

    Returns the covariance, as R ``sandwich::vcovCL(fix = TRUE)``, and whether it was
    repaired; it is unchanged when no eigenvalue is below ``-1e-12`` times the largest
    (rounding, not a negative variance).
    """
    values, vectors = np.linalg.eigh(cov)
    if values.min() >= -1e-12 * max(values.max(), 0.0):
        return cov, False
    return (vectors * np.clip(values, 0.0, None)) @ vectors.T, True


def _cluster_rows(codes: np.ndarray, n_clusters: int) -> list[np.ndarray]:
    """Row indices of each cluster, in code order."""
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=n_clusters))[:-1])
