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
