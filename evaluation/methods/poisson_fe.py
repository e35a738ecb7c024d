"""Poisson regression with person fixed effects, fitted by conditional (multinomial) likelihood.

For y_it ~ Poisson(exposure_it * exp(alpha_i + x_it'b)), conditioning on each person's total
Y_i = sum_t y_it removes alpha_i: (y_i1..y_iT) | Y_i is multinomial with cell probabilities
p_it = exposure_it exp(x_it'b) / sum_s exposure_is exp(x_is'b). The conditional MLE of b equals
the Poisson MLE with a dummy per person (Hausman, Hall and Griliches 1984), and it is consistent
when only the conditional mean is right, whatever the dispersion or serial correlation
(Wooldridge 1999), provided standard errors come from the sandwich. We cluster the sandwich on
the matched set (the unit of sampling in a matched design; it also covers within-person
correlation over months).

Person weights (ATT weights for unequal set sizes) multiply each person's log-likelihood
contribution. People with no events contribute nothing to b (their cell probabilities are
irrelevant) and are dropped from the fit.

The fitter returns the per-cluster influence values of b (b_hat - b ~= sum_c IF_c), so other
quantities that are smooth functions of b and of cluster-level sums can be given delta-method
intervals that respect correlation between them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse


@dataclass(frozen=True, eq=False)
class PoissonFEFit:
    params: pd.Series  # NaN for dropped (not estimable) regressors
    cov: pd.DataFrame  # cluster-robust, with the G/(G-1) small-sample factor
    influence: pd.DataFrame  # clusters x params, b_hat - b ~= sum over rows
    dropped: tuple[str, ...]  # not estimable (no events where the regressor is 1, or constant)
    n_obs: int
    n_persons: int
    n_clusters: int
    converged: bool
    iterations: int

    @property
    def bse(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self.cov.to_numpy())), index=self.params.index)


def fit_poisson_fe(
    y: np.ndarray,
    X: pd.DataFrame | sparse.spmatrix,
    exposure: np.ndarray,
    person: "np.ndarray | SortedCodes",
    cluster: "np.ndarray | SortedCodes",
    weight: np.ndarray | None = None,
    max_iter: int = 100,
    tol: float = 1e-10,
    names: list[str] | None = None,
    like_frame: bool = False,
) -> PoissonFEFit:
    """Fit by Newton-Raphson on the conditional log-likelihood (concave in b). ``X``: a frame,
    or a scipy sparse matrix with its column ``names`` (a design of indicators, e.g. the event
    study's: never held dense). ``person`` and ``cluster``: a value per row, or their
    `SortedCodes` made once for several fits of the same rows (the same fit either way).

    ``like_frame``: fit a sparse ``X`` exactly as the frame of it is fitted (to the last bit):
    sparse when at most ``_SPARSE_DENSITY`` of the entries kept are non-zero, else dense. Without
    it a sparse design is always fitted sparse."""
    y = np.asarray(y, dtype=float)
    if sparse.issparse(X):
        if names is None or len(names) != X.shape[1]:
            raise ValueError("a sparse design needs one name per column (names)")
        Xc, Xa, names_all = sparse.csc_matrix(X, dtype=float), None, list(names)
        Xc.sort_indices()
    else:
        Xc, Xa, names_all = None, np.asarray(X, dtype=float), list(X.columns)
    exposure = np.asarray(exposure, dtype=float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    if np.any(exposure <= 0):
        raise ValueError("exposure must be positive (drop rows not at risk first)")
    person_idx = (person if isinstance(person, SortedCodes) else SortedCodes.of(person)).codes
    # Separation: a 0/1 regressor whose rows all have y = 0 (e.g. a month with no treated
    # events) has MLE -inf. As in ppmlhdfe, drop those rows and that column: the remaining
    # estimates equal the limit of the MLE; the dropped coefficient is reported as NaN.
    # Also drop people with no events (no information on b) and columns without variation.
    active = np.ones(len(names_all), dtype=bool)
    keep = np.ones(len(y), dtype=bool)
    while True:
        totals = np.bincount(person_idx[keep], weights=y[keep], minlength=person_idx.max() + 1)
        new_keep = keep & (totals[person_idx] > 0)
        kept_rows = None  # np.flatnonzero(new_keep), found again only after new_keep changes
        for j in np.flatnonzero(active):
            if Xc is None:
                if kept_rows is None:
                    kept_rows = np.flatnonzero(new_keep)
                rows, vals = kept_rows, Xa[kept_rows, j]
            else:  # the column's stored entries; the rows not stored are 0
                lo, hi = Xc.indptr[j], Xc.indptr[j + 1]
                stored, values = Xc.indices[lo:hi], Xc.data[lo:hi]
                kept = new_keep[stored]
                rows, vals = stored[kept], values[kept]
            if not np.any(vals != 0):
                active[j] = False
                continue
            binary = np.all((vals == 0) | (vals == 1))
            if binary and y[rows[vals == 1]].sum() == 0:
                active[j] = False
                new_keep[np.flatnonzero(Xa[:, j] != 0) if Xc is None else stored[values != 0]] = False
                kept_rows = None
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    dropped = [n for n, a in zip(names_all, active) if not a]
    if keep.sum() == 0 or not active.any():
        nan = np.full(len(names_all), np.nan)
        return PoissonFEFit(
            params=pd.Series(nan, index=names_all),
            cov=pd.DataFrame(np.nan, index=names_all, columns=names_all),
            influence=pd.DataFrame(columns=names_all, dtype=float),
            dropped=tuple(names_all), n_obs=0, n_persons=0, n_clusters=0, converged=False,
            iterations=0,
        )
    names = [n for n, a in zip(names_all, active) if a]
    if Xc is None:
        Xa = Xa[:, active][keep]
    else:
        Xc = Xc[:, np.flatnonzero(active)][np.flatnonzero(keep)]
        if like_frame and Xc.count_nonzero() > _SPARSE_DENSITY * Xc.shape[0] * Xc.shape[1]:
            # the frame's dense path, on the array np.asarray(frame) gives (column-major)
            Xa, Xc = X.toarray(order="F")[:, active][keep], None
    y, exposure, w = y[keep], exposure[keep], w[keep]
    # the clusters of the rows kept, numbered as sorted_codes numbers them
    cluster = cluster.take(keep) if isinstance(cluster, SortedCodes) else SortedCodes.of(np.asarray(cluster)[keep])
    _, person_idx = np.unique(person_idx[keep], return_inverse=True)
    n_p = int(person_idx.max()) + 1 if len(person_idx) else 0
    G = sparse.csr_matrix((np.ones(len(y)), (np.arange(len(y)), person_idx)), shape=(len(y), n_p))
    Y = np.bincount(person_idx, weights=y, minlength=n_p)
    w_p = np.bincount(person_idx, weights=w, minlength=n_p) / np.bincount(person_idx, minlength=n_p)
    log_e = np.log(exposure)
    k = len(names)
    # an event-study design is indicators, one per row at most: as a sparse matrix the score,
    # Hessian and cluster sums cost its non-zeros, not rows x columns squared
    if Xc is not None:
        Xs = Xc.tocsr()  # with like_frame: the matrix csr_matrix gives of the frame's rows and columns kept
    else:
        Xs = sparse.csr_matrix(Xa) if np.count_nonzero(Xa) <= _SPARSE_DENSITY * Xa.size else None
    xs_rows = None if Xs is None else np.repeat(np.arange(Xs.shape[0]), np.diff(Xs.indptr))

    def pieces(b: np.ndarray):
        eta = (Xa @ b if Xs is None else Xs @ b) + log_e
        m = np.exp(eta - _group_max(eta, person_idx, n_p)[person_idx])
        s = np.bincount(person_idx, weights=m, minlength=n_p)
        p = m / s[person_idx]
        ll = float(np.sum(w_p[person_idx] * y * np.log(np.where(p > 0, p, 1.0))))
        return p, ll

    # rows taken a block at a time: the score and Hessian need no n x k temporary (at 2
    # million people an event-study design is 3 million rows x 25 columns, 0.6 GB per copy)
    blocks = [slice(lo, min(lo + _ROWS_PER_BLOCK, len(y))) for lo in range(0, len(y), _ROWS_PER_BLOCK)]

    def grad_hess(p: np.ndarray):
        wy = w_p * Y  # person weight x total
        resid_w = w_p[person_idx] * (y - Y[person_idx] * p)  # row score = Xa row x this
        c = wy[person_idx] * p
        if Xs is not None:
            xbar = G.T @ scale_rows(Xs, p, xs_rows)  # per person: sum of Xa x p
            H1 = (Xs.T @ scale_rows(Xs, c, xs_rows)).toarray()
            H = -(H1 - (xbar.T @ scale_rows(xbar.tocsr(), wy)).toarray())
            return np.asarray(Xs.T @ resid_w).ravel(), H, resid_w
        g = Xa.T @ resid_w
        xbar = np.zeros((n_p, k))  # per person: sum of Xa x p
        H1 = np.zeros((k, k))
        for r in blocks:
            xp = Xa[r] * p[r, None]
            xbar += np.asarray(G[r].T @ xp)
            H1 += Xa[r].T @ (Xa[r] * c[r, None])
        H = -(H1 - xbar.T @ (xbar * wy[:, None]))
        return g, H, resid_w

    b = np.zeros(k)
    p, ll = pieces(b)
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        g, H, _ = grad_hess(p)
        step = np.linalg.lstsq(H, g, rcond=None)[0]  # = solve(H, g) unless H is singular
        t = 1.0
        while True:
            b_new = b - t * step
            p_new, ll_new = pieces(b_new)
            if ll_new >= ll - 1e-12 or t < 1e-8:
                break
            t /= 2
        b, p, ll_old, ll = b_new, p_new, ll, ll_new
        if np.max(np.abs(t * step)) < tol or abs(ll - ll_old) < tol * (1 + abs(ll)):
            converged = True
            break
    _, H, resid_w = grad_hess(p)
    Hinv = np.linalg.pinv(H)
    clusters, c_idx = cluster.uniques, cluster.codes
    n_c = len(clusters)
    # each cluster's score: the sum of its rows' Xa x resid_w, a block of rows at a time
    C = sparse.csc_matrix((resid_w, (c_idx, np.arange(len(y)))), shape=(n_c, len(y)))
    if Xs is not None:
        uc = (C @ Xs).toarray()
    else:
        uc = np.zeros((n_c, k))
        for r in blocks:
            uc += np.asarray(C[:, r] @ Xa[r])
    infl = -uc @ Hinv.T  # b_hat - b ~= -H^{-1} sum_c u_c
    cov = infl.T @ infl * (n_c / (n_c - 1) if n_c > 1 else 1.0)
    params = pd.Series(b, index=names).reindex(names_all)
    cov_df = pd.DataFrame(cov, index=names, columns=names).reindex(index=names_all,
                                                                   columns=names_all)
    infl_df = pd.DataFrame(infl, index=pd.Index(clusters, name="cluster"), columns=names)
    return PoissonFEFit(
        params=params,
        cov=cov_df,
        influence=infl_df.reindex(columns=names_all),
        dropped=tuple(dropped),
        n_obs=int(len(y)),
        n_persons=n_p,
        n_clusters=n_c,
        converged=converged,
        iterations=it,
    )


_ROWS_PER_BLOCK = 1 << 18
_SPARSE_DENSITY = 0.1  # a design with at most this share of non-zeros is fitted as a sparse matrix


def sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)``, by hashing and then sorting the distinct values
    only: np.unique sorts every value, and text ids sort slowly (a third of the sensitivity
    analysis at 200,000 people)."""
    values = np.asarray(values)
    # a missing value is a value of its own, as in np.unique (the default sentinel -1 would
    # index the last rank)
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    uniques = np.asarray(uniques, dtype=values.dtype)
    order = np.argsort(uniques, kind="stable")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    return uniques[order], rank[codes]


def scale_rows(m: sparse.csr_matrix, v: np.ndarray, rows: np.ndarray | None = None) -> sparse.csr_matrix:
    """``m.multiply(v[:, None]).tocsr()`` for a CSR matrix with sorted indices: the same arrays
    (each stored entry times its row's value, in the same place), made directly (scipy went
    through a COO copy and back: a fifth of a sparse fit). ``rows``: the row of each stored
    entry, when known."""
    if rows is None:
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return sparse.csr_matrix((m.data * v[rows], m.indices, m.indptr), shape=m.shape)


@dataclass(frozen=True, eq=False)
class SortedCodes:
    """``sorted_codes(values)`` kept: the distinct values sorted, and each value's index into
    them. Made once from a panel's text ids, it serves every fit on those rows or a subset of
    them (`take`): hashing the ids again took a fifth of each fit of the sensitivity analyses."""

    uniques: np.ndarray | pd.Index
    codes: np.ndarray

    @classmethod
    def of(cls, values) -> "SortedCodes":
        """``sorted_codes(np.asarray(values))``; for a text column held by Arrow (pandas' str),
        the same from Arrow's own hashing and sorting of its distinct values (UTF-8 sorts by
        bytes as Python sorts text, by code point): no Python string per row, and the
        distinct values stay an Index of the column's type."""
        if isinstance(values, pd.Series) and isinstance(values.array, pd.arrays.ArrowStringArray):
            codes, uniques = pd.factorize(values)
            if len(codes) and codes.min() >= 0:  # no missing id (sorted_codes keeps them as values)
                order = np.asarray(uniques.argsort())
                rank = np.empty(len(order), dtype=np.intp)
                rank[order] = np.arange(len(order))
                return cls(uniques.take(order), rank[codes])
        return cls(*sorted_codes(np.asarray(values)))

    def take(self, rows: np.ndarray) -> "SortedCodes":
        """The codes of the values at ``rows`` (a boolean mask or positions): what
        ``SortedCodes.of`` gives for those values, since sorting a subset keeps the order of
        the whole."""
        sub = self.codes[rows]
        present = np.zeros(len(self.uniques), dtype=bool)
        present[sub] = True
        rank = np.cumsum(present) - 1
        return SortedCodes(self.uniques[present], rank[sub])

    def __len__(self) -> int:
        return len(self.codes)


def _group_max(values: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, -np.inf)
    np.maximum.at(out, idx, values)
    return out
