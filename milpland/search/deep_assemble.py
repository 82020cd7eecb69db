"""The pattern-dependent part of a two-layer node's QP, compiled (DESIGN §6a).

`deep_relaxation.node_qp` builds a node's QP from its `NodeFrame` (what the knots, shares and signs
fix) and its layer-2 pattern P.  The arrays are a few dozen rows of about twenty columns, where
numpy's per-call cost was most of the time: a profile of the deep-scip suite spent 0.17 ms a node in
the assembly against 0.12 ms in Clarabel's solve.  `assemble` writes the same rows, in the same
order, in one compiled pass; tests/test_deep_assemble.py checks it against the numpy assembly it
replaced (`deep_relaxation.node_qp_numpy`) on the nodes of real searches.

Columns: the frame's p0 columns (c, b~, M, W), then one h column per undecided pair (p, k) in
row-major order.  With Z_pk the row of z_pk over the columns (the frame's Zb, 0 on the h columns) and
H_pk the row of the layer-2 output relu(z_pk) (Z_pk on a top pair, 0 on a bottom pair, the unit
vector of its h column on an undecided pair):

    fitted_p = sum_k s_k (alpha_0 Z_pk + (alpha_1 - alpha_0) H_pk),  its column 0 (c) set to 1;
    Phi = fitted at every sample's position;

rows (A z >= rhs, in this order):
    decided pairs:    side_pk Z_pk >= 0                     (side +1 top, -1 bottom)
    undecided pairs:  H_pk - Z_pk >= 0                      (h >= z)
    convexity:        lam_a V_ak + (1 - lam_a) V_(a+2)k - V_(a+1)k >= 0 over positions a < a+1 < a+2
                      touching an undecided pair, V = H where z_k is convex across both gaps (cvx),
                      else V = H - Z where it is concave (ccv); all cvx rows, then all ccv rows;
    McCormick:        the frame's rows (0 on the h columns);
    secant (opt.):    lam Z_pk - h_pk >= lam l,  lam = u / (u - l), z_pk in [l, u]
and the h columns' bounds [0, min(zmax_p, u)] (zmax_p without the secant).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def assemble(Zb, mcc, zlo, zhi, zmax, flower, fupper, convex, concave, P, signs, a0, a1, where, positions,
             secant):
    """(Phi, A, rhs, lower, upper, Z, fi, fk): see the module docstring."""
    G, m2, p0 = Zb.shape
    fi = np.empty(G * m2, np.int64)
    fk = np.empty(G * m2, np.int64)
    hcol = np.full((G, m2), -1, np.int64)
    F = 0
    for p in range(G):
        for k in range(m2):
            if P[p, k] < 0:
                fi[F], fk[F], hcol[p, k] = p, k, p0 + F
                F += 1
    fi, fk = fi[:F], fk[:F]
    N = p0 + F
    Z = np.zeros((G, m2, N))
    Z[:, :, :p0] = Zb
    H = np.zeros((G, m2, N))
    for p in range(G):
        for k in range(m2):
            if P[p, k] == 1:
                H[p, k, :] = Z[p, k, :]
            elif P[p, k] < 0:
                H[p, k, hcol[p, k]] = 1.0
    fitted = np.zeros((G, N))
    for p in range(G):
        for k in range(m2):
            fitted[p, :] += signs[k] * (a0 * Z[p, k, :] + (a1 - a0) * H[p, k, :])
        fitted[p, 0] = 1.0
    Phi = np.empty((where.shape[0], N))
    for i in range(where.shape[0]):
        Phi[i, :] = fitted[where[i], :]

    # which convexity rows (the numpy assembly's order: every cvx row, then every ccv row)
    n_tri = max(G - 2, 0)
    kind = np.zeros((n_tri, m2), np.int64)  # 1 cvx, 2 ccv
    n_cvx = n_ccv = 0
    for a in range(n_tri):
        for k in range(m2):
            touched = P[a, k] < 0 or P[a + 1, k] < 0 or P[a + 2, k] < 0
            if not touched:
                continue
            if convex[k, a] and convex[k, a + 1]:
                kind[a, k] = 1
                n_cvx += 1
            elif concave[k, a] and concave[k, a + 1]:
                kind[a, k] = 2
                n_ccv += 1
    n_dec = G * m2 - F
    n_sec = F if secant else 0
    R = n_dec + F + n_cvx + n_ccv + mcc.shape[0] + n_sec
    A = np.zeros((R, N))
    rhs = np.zeros(R)
    r = 0
    for p in range(G):
        for k in range(m2):
            if P[p, k] >= 0:
                side = 1.0 if P[p, k] == 1 else -1.0
                A[r, :] = side * Z[p, k, :]
                r += 1
    for f in range(F):
        A[r, :] = H[fi[f], fk[f], :] - Z[fi[f], fk[f], :]
        r += 1
    for want in (1, 2):
        for a in range(n_tri):
            lam = (positions[a + 2] - positions[a + 1]) / (positions[a + 2] - positions[a])
            for k in range(m2):
                if kind[a, k] != want:
                    continue
                for col in range(N):
                    v0, v1, v2 = H[a, k, col], H[a + 1, k, col], H[a + 2, k, col]
                    if want == 2:
                        v0 -= Z[a, k, col]
                        v1 -= Z[a + 1, k, col]
                        v2 -= Z[a + 2, k, col]
                    A[r, col] = lam * v0 + (1.0 - lam) * v2 - v1
                r += 1
    A[r:r + mcc.shape[0], :p0] = mcc
    r += mcc.shape[0]
    upper = np.empty(N)
    lower = np.zeros(N)
    lower[:p0] = flower
    upper[:p0] = fupper
    for f in range(F):
        p, k = fi[f], fk[f]
        lo, hi = zlo[p, k], zhi[p, k]
        upper[p0 + f] = min(zmax[p], hi) if secant else zmax[p]
        if secant:
            lam = hi / (hi - lo)
            A[r, :] = lam * Z[p, k, :]
            A[r, p0 + f] -= 1.0
            rhs[r] = lam * lo
            r += 1
    return Phi, A, rhs, lower, upper, Z, fi, fk


@numba.njit(cache=True)
def _features(positions, a0, a1, orientations, t):
    """phi[p, j] = sigma(s_j (x_p - t_j)), sigma(g) = alpha_0 g + (alpha_1 - alpha_0) relu(g)."""
    G, m1 = positions.shape[0], orientations.shape[0]
    phi = np.empty((G, m1))
    for p in range(G):
        for j in range(m1):
            g = orientations[j] * (positions[p] - t[j])
            phi[p, j] = a0 * g + (a1 - a0) * max(g, 0.0)
    return phi


@numba.njit(cache=True)
def frame(positions, a0, a1, orientations, gaps, sig, L, U, mlo, mhi, B, y_max, output_bias, conic):
    """(Zb, mcc, zlo, zhi, zmax, lower, upper): the pattern-free part of a node's QP (`NodeFrame`).

    Columns: c, b~_k (1 + k), then per layer-1 unit j the blocks M_.j (1 + m2 + 2 m2 j + k) and W_.j
    (M + m2); p0 = 1 + m2 + 2 m1 m2.  D_j = U_j - L_j.

    Zb: z_pk = b~_k + sum_j sigma_kj (M_kj phi_pj(L_j) + W_kj dphi_pj), dphi_pj = d phi_pj / d t_j
    = -s_j alpha(piece of p) inside the gap.

    mcc (``conic``): per unit j (a = sum_k M_kj, E = sum_k W_kj) the knot row E <= D a, then for
    m2 > 1 per (j, row, k) in that order: 0: M_kj >= mlo a (only when mlo > 0); 1: M_kj <= mhi a
    (only when mhi < 1); 2: W_kj >= mlo E (only when mlo > 0); 3: W_kj >= mhi E + D M_kj - mhi D a;
    4: W_kj <= mhi E; 5: W_kj <= mlo E + D M_kj - mlo D a (DESIGN §6a; all homogeneous).  Without
    ``conic``: W_kj <= D_j M_kj per (k, j), each layer-2 unit its own knot (the ablation).

    zlo, zhi (G, m2): z_pk = b~_k + sum_j sigma_kj |A_kj| phi_pj(t_j) with |b~_k|, |A_kj| <= B and
    phi_pj(t_j) between phi_pj(L_j) and phi_pj(U_j) (monotone in t_j).  phi is negative on the bottom
    piece of a leaky or two-slope unit, so with phi in [lo, hi] a unit of sign +1 adds between
    B min(0, lo) and B max(0, hi), one of sign -1 between -B max(0, hi) and -B min(0, lo).

    zmax (G,): |z_pk| <= B (1 + sum_j max_t |phi_pj(t)|); lower, upper (p0,): |c| <= max|y| +
    m2 (|alpha_0| + |alpha_1 - alpha_0|) max zmax + 1 (where c's optimum lies; 0 without output bias),
    |b~| <= B, 0 <= M <= B, 0 <= W <= B D."""
    G, m1, m2 = positions.shape[0], orientations.shape[0], sig.shape[0]
    p0 = 1 + m2 + 2 * m1 * m2
    phiL = _features(positions, a0, a1, orientations, L)
    phiU = _features(positions, a0, a1, orientations, U)
    D = U - L
    Zb = np.zeros((G, m2, p0))
    for p in range(G):
        for k in range(m2):
            Zb[p, k, 1 + k] = 1.0
            for j in range(m1):
                top = p > gaps[j] if orientations[j] > 0 else p <= gaps[j]
                M = 1 + m2 + 2 * m2 * j + k
                Zb[p, k, M] = sig[k, j] * phiL[p, j]
                Zb[p, k, M + m2] = sig[k, j] * (-orientations[j] * (a1 if top else a0))
    mcc = _mccormick(m1, m2, p0, D, mlo, mhi) if conic else _per_unit(m1, m2, p0, D)
    zlo = np.empty((G, m2))
    zhi = np.empty((G, m2))
    zmax = np.empty(G)
    for p in range(G):
        span = 0.0
        for j in range(m1):
            span += max(abs(phiL[p, j]), abs(phiU[p, j]))
        zmax[p] = B * (1.0 + span)
        for k in range(m2):
            lo, hi = -B, B
            for j in range(m1):
                up = max(max(phiL[p, j], phiU[p, j]), 0.0)
                down = max(-min(phiL[p, j], phiU[p, j]), 0.0)
                if sig[k, j] > 0:
                    lo -= B * down
                    hi += B * up
                elif sig[k, j] < 0:
                    lo -= B * up
                    hi += B * down
            zlo[p, k], zhi[p, k] = lo, hi
    lower = np.zeros(p0)
    upper = np.zeros(p0)
    if output_bias:
        reach = m2 * (abs(a0) + abs(a1 - a0)) * zmax.max()
        upper[0] = y_max + reach + 1.0
        lower[0] = -upper[0]
    for k in range(m2):
        lower[1 + k], upper[1 + k] = -B, B
        for j in range(m1):
            M = 1 + m2 + 2 * m2 * j + k
            upper[M] = B
            upper[M + m2] = B * D[j]
    return Zb, mcc, zlo, zhi, zmax, lower, upper


@numba.njit(cache=True)
def _mccormick(m1, m2, p0, D, mlo, mhi):
    """The conic McCormick rows of `frame` (its docstring), in its order."""
    n_rows = m1
    if m2 > 1:
        for j in range(m1):
            for k in range(m2):
                n_rows += 3 + (mlo[k, j] > 0) * 2 + (mhi[k, j] < 1)
    out = np.zeros((n_rows, p0))
    for j in range(m1):
        for k in range(m2):
            M = 1 + m2 + 2 * m2 * j + k
            out[j, M + m2] = -1.0
            out[j, M] = D[j]
    if m2 == 1:
        return out
    r = m1
    for j in range(m1):
        d = D[j]
        first = 1 + m2 + 2 * m2 * j  # M_0j; W_kj = first + m2 + k
        for row in range(6):
            for k in range(m2):
                lo, hi = mlo[k, j], mhi[k, j]
                if (row == 0 or row == 2) and not lo > 0 or row == 1 and not hi < 1:
                    continue
                M, W = first + k, first + m2 + k
                for kk in range(m2):  # the sums a (over M_.j) and E (over W_.j)
                    if row == 0:
                        out[r, first + kk] = -lo
                    elif row == 1:
                        out[r, first + kk] = hi
                    elif row == 2:
                        out[r, first + m2 + kk] = -lo
                    elif row == 3:
                        out[r, first + m2 + kk] = -hi
                        out[r, first + kk] = hi * d
                    elif row == 4:
                        out[r, first + m2 + kk] = hi
                    else:
                        out[r, first + m2 + kk] = lo
                        out[r, first + kk] = -lo * d
                if row == 0:
                    out[r, M] += 1.0
                elif row == 1:
                    out[r, M] -= 1.0
                elif row == 2:
                    out[r, W] += 1.0
                elif row == 3:
                    out[r, W] += 1.0
                    out[r, M] -= d
                elif row == 4:
                    out[r, W] -= 1.0
                else:
                    out[r, W] -= 1.0
                    out[r, M] += d
                r += 1
    return out


@numba.njit(cache=True)
def _per_unit(m1, m2, p0, D):
    """W_kj <= D_j M_kj for every (k, j), in (k, j) order."""
    out = np.zeros((m1 * m2, p0))
    for k in range(m2):
        for j in range(m1):
            M = 1 + m2 + 2 * m2 * j + k
            out[k * m1 + j, M + m2] = -1.0
            out[k * m1 + j, M] = D[j]
    return out
