"""Gradient descent from many seeded random starts at once: the descent behind the census.

**Starts.**  ``initial_points(spec, starts, seed)``: numpy's ``default_rng(seed)`` draws, in this
order, W1 ~ N(0, 1/d) of shape (S, m, d), b1 ~ N(0, 1) of shape (S, m) and v ~ N(0, 1/m) of
shape (S, m); c = 0.  (The distribution of milpland 0.1's sampler, kept so that basin fractions
stay comparable; the inputs are used as given, not rescaled.)

**Descent.**  Full-batch gradient descent on the ordinary weights theta = (W1, b1, v, c), one
start at a time inside a compiled kernel, the starts spread over the cores.  Gradients of
R = w sum_i loss(f_i, y_i):  dR/df_i = w loss'(f_i, y_i) (2 r_i, sign(r_i), or -y_i [y_i f_i < 1]),
dR/dv_j = sum_i dR/df_i sigma(z_ij), dR/dc = sum_i dR/df_i (0 without an output bias), and with
D_ij = dR/df_i v_j sigma'(z_ij):  dR/dW1_j = sum_i D_ij x_i, dR/db1_j = sum_i D_ij, where sigma'
is the slope of the piece `Activation.piece` picks (a breakpoint gets the lower piece's slope).
Each start has its own step size eta (first ETA0): a step theta - eta g is accepted when it
satisfies the Armijo condition R(theta - eta g) <= R(theta) - ARMIJO eta |g|^2, after which eta
grows by 1.5; a rejected step halves eta and leaves theta alone.  A start stops when |g| <= gtol
(*converged*), when eta < ETA_MIN (*stalled*: at a kink of R -- a boundary between cells, or a
kink of a non-smooth loss -- no step along -g decreases R), or after ``max_iter`` steps (accepted
or rejected; *iteration limit*).  The risk never increases.

The kernel is compiled by numba on first use (cached on disk: `jit_seconds` measures the load or
compilation, kept out of the descent's own time).  tests/test_census.py holds the same algorithm
in plain numpy, one start at a time, and checks that both end at the same points.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np

import milpland.interrupt as interrupt
from milpland.instance.network import OneHiddenParams
from milpland.instance.spec import InstanceSpec

MAX_ITER = 3000
GTOL = 1e-8  # gradient norm (risk units per unit weight) at which a start has converged
ARMIJO = 1e-4
ETA0 = 0.1
ETA_MIN = 1e-14
LOSS_CODES = {"squared": 0, "absolute": 1, "hinge": 2}
ITERATION_LIMIT, CONVERGED, STALLED = 0, 1, 2  # Descent.status
STATUS_NAMES = ("iteration_limit", "converged", "stalled")
CHUNK = 256  # starts per kernel call: Ctrl-C is seen between calls (a chunk takes about a second at n = 40)


@dataclass(frozen=True, eq=False)
class Descent:
    """End points of the descent, one row per start; theta rows are (W1 row-major, b1, v, c)."""

    theta: np.ndarray  # (S, p), p = m d + 2 m + 1
    width: int
    dim: int
    risk: np.ndarray  # (S,) risk of the end point
    grad_norm: np.ndarray  # (S,)
    iterations: np.ndarray  # (S,) accepted + rejected steps
    status: np.ndarray  # (S,) ITERATION_LIMIT | CONVERGED | STALLED
    seconds: float
    jit_seconds: float = 0.0

    @property
    def converged(self) -> np.ndarray:
        return self.status == CONVERGED

    @property
    def stalled(self) -> np.ndarray:
        return self.status == STALLED

    @property
    def W1(self) -> np.ndarray:
        return self.theta[:, : self.width * self.dim].reshape(-1, self.width, self.dim)

    @property
    def b1(self) -> np.ndarray:
        return self.theta[:, self.width * self.dim: self.width * (self.dim + 1)]

    @property
    def v(self) -> np.ndarray:
        return self.theta[:, self.width * (self.dim + 1): self.width * (self.dim + 2)]

    @property
    def c(self) -> np.ndarray:
        return self.theta[:, -1]

    def params(self, s: int) -> OneHiddenParams:
        return params_of(self.theta[s], self.width, self.dim)

    def status_counts(self) -> dict[str, int]:
        return {name: int(np.sum(self.status == k)) for k, name in enumerate(STATUS_NAMES)}


def params_of(row: np.ndarray, m: int, d: int) -> OneHiddenParams:
    """Ordinary weights of one theta row (W1 row-major, b1, v, c)."""
    row = np.asarray(row, dtype=float)
    return OneHiddenParams(W1=row[: m * d].reshape(m, d).copy(), b1=row[m * d: m * (d + 1)].copy(),
                           v=row[m * (d + 1): m * (d + 2)].copy(), c=float(row[-1]))


def row_of(params: OneHiddenParams) -> np.ndarray:
    return np.concatenate([np.asarray(params.W1, float).ravel(), params.b1, params.v, [params.c]])


def initial_points(spec: InstanceSpec, starts: int, seed: int) -> np.ndarray:
    """The seeded starts as theta rows (see the module docstring for the distribution)."""
    rng = np.random.default_rng(seed)
    S, m, d = starts, spec.width, spec.d
    W = rng.normal(scale=1.0 / np.sqrt(d), size=(S, m, d))
    b = rng.normal(size=(S, m))
    v = rng.normal(scale=1.0 / np.sqrt(m), size=(S, m))
    return np.concatenate([W.reshape(S, m * d), b, v, np.zeros((S, 1))], axis=1)


def descend(spec: InstanceSpec, *, starts: int, seed: int, max_iter: int = MAX_ITER, gtol: float = GTOL) -> Descent:
    """Armijo gradient descent from ``starts`` seeded random points (`initial_points`)."""
    return descend_from(spec, initial_points(spec, starts, seed), max_iter=max_iter, gtol=gtol)


def descend_from(spec: InstanceSpec, points: np.ndarray, *, max_iter: int = MAX_ITER, gtol: float = GTOL) -> Descent:
    """Armijo gradient descent from the given theta rows (not modified), CHUNK starts per kernel call.

    Ctrl-C (`milpland.interrupt`'s stop flag) ends the descent between two chunks: the Descent
    then holds the starts finished so far, in order (fewer rows than points)."""
    theta = np.array(points, dtype=float, order="C", copy=True)
    X, y = np.ascontiguousarray(spec.X, dtype=float), np.ascontiguousarray(spec.y, dtype=float)
    args = _kernel_args(spec)
    t0 = time.perf_counter()
    _descend_all(X[:1], y[:1], theta[:1].copy(), *args, 0, float(gtol))  # compile, or load from the cache
    t1 = time.perf_counter()
    parts, done = [], 0
    # polling: a Ctrl-C inside a compiled call must only set the flag (raised there, numba turns
    # the KeyboardInterrupt into a SystemError)
    with interrupt.polling():
        while done < len(theta) and not (done and interrupt.requested()):
            chunk = theta[done:done + CHUNK]  # a view: the kernel writes the end points into theta
            parts.append(_descend_all(X, y, chunk, *args, int(max_iter), float(gtol)))
            done += len(chunk)
    risk, gnorm, iters, status = (np.concatenate(column) for column in zip(*parts)) if parts else \
        (np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return Descent(theta=theta[:done], width=spec.width, dim=spec.d, risk=risk, grad_norm=gnorm, iterations=iters,
                   status=status, seconds=time.perf_counter() - t1, jit_seconds=t1 - t0)


def _kernel_args(spec: InstanceSpec) -> tuple:
    act = spec.network.activation
    return (spec.width, spec.d, np.asarray(act.breakpoints, dtype=float), np.asarray(act.slopes, dtype=float),
            np.asarray(act.intercepts, dtype=float), LOSS_CODES[spec.loss.kind], float(spec.loss.weight(spec.n)),
            bool(spec.network.output_bias))


# ----------------------------------------------------------------------------------------------
# The compiled kernel
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _risk(X, y, theta, m, d, t, slopes, icepts, loss, w, A, Sl, gf):  # pragma: no cover (compiled)
    """R(theta); keeps sigma(z_ij) in A, sigma'(z_ij) in Sl and dR/df_i in gf for `_gradient`."""
    ob, ov = m * d, m * (d + 1)
    total = 0.0
    for i in range(X.shape[0]):
        f = theta[ov + m]
        for j in range(m):
            z = theta[ob + j]
            for q in range(d):
                z += theta[j * d + q] * X[i, q]
            k = 0
            while k < t.shape[0] and t[k] < z:  # piece: number of breakpoints below z
                k += 1
            Sl[i, j] = slopes[k]
            A[i, j] = slopes[k] * z + icepts[k]
            f += theta[ov + j] * A[i, j]
        r = f - y[i]
        if loss == 0:
            total += r * r
            gf[i] = 2.0 * w * r
        elif loss == 1:
            total += abs(r)
            gf[i] = w * np.sign(r)
        else:
            margin = 1.0 - y[i] * f
            gf[i] = 0.0
            if margin > 0.0:
                total += margin
                gf[i] = -w * y[i]
    return w * total


@numba.njit(cache=True)
def _gradient(X, theta, m, d, bias, A, Sl, gf, g):  # pragma: no cover (compiled)
    """dR/dtheta into g from `_risk`'s A, Sl, gf (module docstring); returns |g|^2."""
    ob, ov = m * d, m * (d + 1)
    for k in range(g.shape[0]):
        g[k] = 0.0
    for i in range(X.shape[0]):
        if bias:
            g[ov + m] += gf[i]
        for j in range(m):
            g[ov + j] += gf[i] * A[i, j]
            D = gf[i] * theta[ov + j] * Sl[i, j]
            g[ob + j] += D
            for q in range(d):
                g[j * d + q] += D * X[i, q]
    g2 = 0.0
    for k in range(g.shape[0]):
        g2 += g[k] * g[k]
    return g2


@numba.njit(cache=True)
def _descend_one(X, y, theta, m, d, t, slopes, icepts, loss, w, bias, max_iter, gtol):  # pragma: no cover
    """One start, in place: (risk, |g|, steps, status).  A rejected step costs one risk evaluation
    (no gradient)."""
    n, p = X.shape[0], theta.shape[0]
    g, trial = np.empty(p), np.empty(p)
    A, Sl, gf = np.empty((n, m)), np.empty((n, m)), np.empty(n)
    risk = _risk(X, y, theta, m, d, t, slopes, icepts, loss, w, A, Sl, gf)
    g2 = _gradient(X, theta, m, d, bias, A, Sl, gf, g)
    eta = ETA0
    steps = 0
    status = 0  # ITERATION_LIMIT
    while True:
        if np.sqrt(g2) <= gtol:
            status = 1  # CONVERGED
            break
        if eta < ETA_MIN:
            status = 2  # STALLED
            break
        if steps >= max_iter:
            break
        for k in range(p):
            trial[k] = theta[k] - eta * g[k]
        trial_risk = _risk(X, y, trial, m, d, t, slopes, icepts, loss, w, A, Sl, gf)
        if trial_risk <= risk - ARMIJO * eta * g2:
            risk = trial_risk
            theta[:] = trial
            g2 = _gradient(X, theta, m, d, bias, A, Sl, gf, g)
            eta *= 1.5
        else:
            eta *= 0.5
        steps += 1
    return risk, np.sqrt(g2), steps, status


@numba.njit(cache=True, parallel=True)
def _descend_all(X, y, thetas, m, d, t, slopes, icepts, loss, w, bias, max_iter, gtol):  # pragma: no cover
    S = thetas.shape[0]
    risk = np.empty(S)
    gnorm = np.empty(S)
    steps = np.empty(S, dtype=np.int64)
    status = np.empty(S, dtype=np.int64)
    for s in numba.prange(S):
        risk[s], gnorm[s], steps[s], status[s] = _descend_one(X, y, thetas[s], m, d, t, slopes, icepts, loss, w,
                                                              bias, max_iter, gtol)
    return risk, gnorm, steps, status
