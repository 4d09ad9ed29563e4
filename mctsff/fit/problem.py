"""Residuals, Jacobians and solves of one expression (:class:`Problem`).

Predicted force on atom i: F_i = −Σ_j U'(r_ij)·(x_i − x_j)/r_ij over the dataset's pairs
(intermolecular ones within the cutoff), of the potential shifted by the cutoff scheme;
the residual is ``w ⊙ (F_pred − F_ref)`` (plus optional energy rows), so ``Σ res²`` is
the weighted mean square force error.  Linear prefactors are solved exactly
(:meth:`Problem.solve_linear`); :meth:`Problem.scan_starts` scans the nonlinear constants
on physical grids with the prefactors solved at every point (per-type prefactors relaxed
to one per type pair, then factored back); :meth:`Problem.solve` meets the constraints by
linearising them in every Levenberg–Marquardt step, and falls back to the augmented
Lagrangian (λ ← λ + μc, ν ← max(0, ν + μg), μ grown while the violation does not shrink)
where that leaves one unmet.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np

from mctsff.data.projection import ForceProjection
from mctsff.expr import ops
from mctsff.expr.params import (
    Parameterization,
)
from mctsff.expr.program import Program
from mctsff.fit import scan
from mctsff.fit.constraints import (
    MET,
    constraint_values,
    point_values,
    potential_at,
    scheme_shift,
)
from mctsff.fit.optim import (
    al_jac,
    al_rows,
    constrained_levenberg_marquardt,
    levenberg_marquardt,
    lstsq,
    violation_of,
)

if TYPE_CHECKING:
    from mctsff.fit.forces import Fitter


#: Largest augmented-Lagrangian penalty before a constraint is declared infeasible.
MU_MAX = 1e10


#: The augmented Lagrangian gives up when the violation at a growth of μ is above this
#: share of the violation two growths (a 100-fold μ) before.
AL_STALL = 0.5


#: Errors of the numerics that make a start (or a refinement) fail rather than the fit.
NUMERIC_ERRORS = (ValueError, np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError)


#: Relative decrease of the loss at which the relaxed fit of :meth:`Problem._typed_start`
#: stops (it only gives a start; 1e-12 was no better on 600 candidates, and slower).
RELAXED_FTOL = 1e-9


#: Local minima of the scan polished briefly on the scan's frames (when the scan runs on
#: a subset of them), best first.
SCAN_POLISH = 8


#: Evaluations each of those polishes may take.
SCAN_POLISH_NFEV = 40


#: Relative decrease of the loss at which every start of the default fit stops before
#: the best is solved to convergence.
LOOSE_FTOL = 1e-6


#: Weight of the constraint rows in the scan's prefactor solve: a violation of
#: ``constraint_tol`` costs this share of the zero model's loss.
PENALTY_SHARE = 1e-4


#: Band of the constrained LM's linearised rows, as a multiple of ``constraint_tol``.
BAND = 0.1


def is_feasible(sol, tol) -> bool:
    return sol[2] <= tol * MET  # the level at which a fit flags a constraint


def rank_key(sol, tol) -> tuple[int, float]:
    """Sort key of ``is_better``: feasible first, by loss; the others by violation."""
    return (0, sol[1]) if is_feasible(sol, tol) else (1, sol[2])


def is_better(a, b, tol) -> bool:
    """Prefer feasible solutions, then lower loss (infeasible ones: lower violation)."""
    return rank_key(a, tol) < rank_key(b, tol)


def _diagonal_factors(par: Parameterization, theta, values) -> np.ndarray | None:
    """θ with product-rule slots factored from the diagonal of their per-pair values.

    ``q[A] = sqrt(|k[A-A]|)``, the sign of each type relative to the first type taken from
    ``k[first-A]``: a second factorisation next to the leading eigenvector's, which is
    pulled by the off-diagonal values (and their errors) when the per-pair optimum is
    far from rank one.  ``None`` when no slot is a product.
    """
    theta = np.array(theta, dtype=float)
    done = False
    sp = {s: i for i, s in enumerate(par.species)}
    for k, vals in values.items():
        name = par.program.constants[k]
        if ops.constant_rule(name) != "product":
            continue
        S = len(par.species)
        M = np.zeros((S, S))
        for p, (a, b) in enumerate(par.type_pairs):
            M[sp[a], sp[b]] = M[sp[b], sp[a]] = vals[p]
        q = np.sqrt(np.abs(np.diag(M)))
        sign = np.where(M[0] < 0, -1.0, 1.0)
        sign[0] = 1.0
        for s_i, s_name in enumerate(par.species):
            theta[par.names.index(f"{name}[{s_name}]")] = sign[s_i] * q[s_i]
        done = True
    return theta if done else None


def projected_rows(proj: ForceProjection, prog, consts, T, shift):
    """A projection's residual ``R g − z`` and (with ``T``) its Jacobian, for ``g = U'`` at
    its grid nodes shifted by ``shift`` (:func:`scheme_shift`; ``None``: unshifted)."""
    if shift is None:
        return proj.residual(prog, consts, T)
    g, dg = proj.grid_values(prog, consts, T)
    grp = proj.group_nodes
    res = proj.R @ (g - shift[1][grp]) - proj.z
    return res, (None if dg is None else proj.R @ (dg - shift[3][grp]))


class Problem:
    """Residuals/Jacobians of one expression, and the augmented-Lagrangian loop."""

    def __init__(self, fitter: Fitter, prog: Program, par: Parameterization, data=None):
        self.f = fitter
        self.prog = prog
        self.par = par
        self.data = fitter._data if data is None else data
        self.nfev = 0
        self.relaxed_nfev = 0  # evaluations of the relaxed fit (_typed_start)
        self.lin = par.linear_mask()
        # per-type prefactors for the extra start (read only when the option asks for it)
        o = fitter.options
        self._typed = par.typed_prefactors() if (o.pair_start or o.scan) else ()
        self._relaxed = None  # see _relaxation
        self._key = None
        self._table = None
        self._shift_cache = None
        # built-in constraints: evaluation points of every type pair, fixed per expression
        self.constraints = list(fitter.constraints)
        self._points = [self._points_of(c) for c in self.constraints]

    def _points_of(self, c):
        return None if c.r_points is None else c.points(len(self.par.type_pairs))

    def replace_constraint(self, index: int, c) -> None:
        """Impose ``c`` instead of this problem's constraint ``index`` (the wall's exchange
        of points, :meth:`~mctsff.fit.forces.Fitter._wall_exchange`)."""
        self.constraints[index] = c
        self._points[index] = self._points_of(c)

    def shift(self, theta, jac: bool = True):
        """The cutoff scheme's shift at θ (:func:`scheme_shift`), or ``None``; cached for the
        last θ (one with Jacobians also serves a call without)."""
        key = theta.tobytes()
        cached = self._shift_cache
        if cached is not None and cached[0] == key and (cached[1] or not jac):
            return cached[2]
        consts, T = self.table(theta)
        out = scheme_shift(self.prog, consts, T if jac else None, self.f.cutoff, self.f.scheme)
        self._shift_cache = (key, jac, out)
        return out

    def table(self, theta):
        """Constant table and derivative tensor, cached for the last θ."""
        key = theta.tobytes()
        if key != self._key:
            self._table = self.par.table(theta)
            self._key = key
        return self._table

    # force (+energy) rows
    def _rows(self, theta, jac: bool):
        f = self.f
        t, w, ew, proj = self.data
        consts, T = self.table(theta)
        shift = self.shift(theta, jac)
        if proj is not None:
            self.nfev += 1
            return projected_rows(proj, self.prog, consts, T if jac else None, shift)
        if jac:
            F, J, E, EJ = t.predict_jac(self.prog, consts, T, f._use_energy)
        else:
            F, E = t.predict(self.prog, consts, f._use_energy)
            J = EJ = None
        F, J, E, EJ = t.shifted(shift, F, J, E, EJ)
        self.nfev += 1
        res = w * (F - t.forces)
        if jac:
            J = w[:, None] * J
        if t.rigid is not None:  # match="rigid": the molecules' net forces and torques
            res = t.rigid(res)
            J = t.rigid(J) if jac else None
        if f._use_energy:
            dE = E - t.energies
            if f.options.energy_offset:
                dE = dE - dE.mean()
                if jac:
                    EJ = EJ - EJ.mean(axis=0)
            res = np.concatenate([res, ew * dE])
            if jac:
                J = np.vstack([J, ew * EJ])
        return res, J

    def residual_plain(self, theta):
        res, _ = self._rows(theta, False)
        return res if np.all(np.isfinite(res)) else None

    def _cons(self, theta, jac: bool = True):
        """Constraint values and (with ``jac``, else ``None``) Jacobians at θ."""
        pot = None
        vals, jacs = [], []
        for c, pts in zip(self.constraints, self._points, strict=True):
            if pts is not None:
                consts, T = self.table(theta)
                shift = self.shift(theta, jac)
                v, J = point_values(c, self.prog, consts, T, *pts, jac=jac, shift=shift)
                vals.append(v)
                jacs.append(J)
                continue
            if pot is None:
                pot = potential_at(self.par, theta, self.f.cutoff, self.f.scheme)
            v, J = constraint_values(c, pot, self.par, theta)
            vals.append(v)
            jacs.append(J)
        return vals, jacs

    def _linear_start(self, x0, lo, hi):
        """``x0`` with the linear prefactors solved exactly (``None`` if not finite there)."""
        res0, J0 = self._rows(x0, True)
        if not (np.all(np.isfinite(res0)) and np.all(np.isfinite(J0))):
            return None
        x = x0.copy()
        if self.lin.any():
            # F is linear in these parameters: one exact linear solve from the start
            step = lstsq(J0[:, self.lin], -res0)
            x[self.lin] = np.clip(x[self.lin] + step, lo[self.lin], hi[self.lin])
            if not np.all(np.isfinite(self._rows(x, False)[0])):
                x = x0.copy()
        return x

    def _relaxation(self):
        """The same expression with each per-type prefactor made one constant per type
        pair (``prod_q`` → ``pair_prod_q``), its problem, and how its parameters map back."""
        par = self.par
        consts = self.prog.constants
        text = self.prog.expression
        taken = set(consts)
        renamed = {}
        for k in self._typed:
            name = f"pair_{consts[k]}"
            while name in taken:  # the user's expression already has a constant so named
                name += "_"
            taken.add(name)
            renamed[k] = name
            text = re.sub(rf"\b{consts[k]}\b", name, text)
        prog = self.f.compile(text)
        rpar = Parameterization(prog, par.species, par.type_pairs)
        index = {n: m for m, n in enumerate(rpar.names)}
        common = [(m, index[n]) for m, n in enumerate(par.names) if n in index]
        pairs = {
            k: [index[f"{renamed[k]}[{a}-{b}]"] for a, b in par.type_pairs] for k in self._typed
        }
        return Problem(self.f, prog, rpar), rpar.default_bounds(), common, pairs

    def _typed_start(self, x0, lo, hi):
        """A start within ``[lo, hi]`` whose per-type prefactors (``q[A]·q[B]``, …) are
        factored from a fit with one prefactor per type pair, begun at ``x0`` (``None``
        when that fails).

        The forces are linear in each per-pair value, so the relaxed fit starts from the
        exact per-pair values at ``x0``'s other constants and has none of the sign
        ambiguity of per-type values; the per-type values closest to its per-pair
        values (:meth:`~mctsff.expr.params.Parameterization.factored`) then start this fit
        near its optimum when the combining rule can represent it.  From random
        per-type starts the exact ``prod_c1*exp(-r/c1) - prod_c2/r**6`` on Buckingham
        forces ended at 7e-2 of the force RMS (3 or 8 starts; ``q[H]`` and ``q[O]`` of
        opposite sign, so the repulsion could not be ``q[A]·q[B] > 0``).
        """
        if self._relaxed is None:
            self._relaxed = self._relaxation()
        relaxed, (rlo, rhi), common, pairs = self._relaxed
        C, _ = self.table(x0)
        xr = np.zeros(relaxed.par.n_params)
        rlo, rhi = rlo.copy(), rhi.copy()
        for m, j in common:  # the shared constants keep this fit's (the user's) bounds
            xr[j] = x0[m]
            rlo[j], rhi[j] = lo[m], hi[m]
        for k, idx in pairs.items():
            xr[idx] = C[:, k]
        sol = relaxed.explore(np.clip(xr, rlo, rhi), rlo, rhi, tol=RELAXED_FTOL)
        self.relaxed_nfev += relaxed.nfev  # reported, not counted against max_fit_nfev
        relaxed.nfev = 0
        if sol is None:
            return None
        xr = sol[0]
        x = x0.copy()
        for m, j in common:
            x[m] = xr[j]
        x = self.par.factored(x, {k: xr[idx] for k, idx in pairs.items()})
        return None if x is None else np.clip(x, lo, hi)

    def solve_linear(self, x0, lo, hi):
        """``x0`` with every linear prefactor solved exactly, and the loss there.

        The forces are affine in the linear prefactors, so one Jacobian at ``x0`` gives
        the exact least-squares prefactors; built-in equality constraints (``force0``,
        ``energy0``), affine in them too, enter as penalty rows weighted so that a
        violation of ``constraint_tol`` costs :data:`PENALTY_SHARE` of the zero model's
        loss.  Returns ``(x, loss)``, or ``None`` where the residual is not finite.
        """
        res0, J0 = self._rows(x0, True)
        if not (np.all(np.isfinite(res0)) and np.all(np.isfinite(J0))):
            return None
        lin = self.lin
        x = x0.copy()
        if not lin.any():
            return x, float(res0 @ res0)
        A = J0[:, lin]
        rows, offs = [], []
        for c, pts in zip(self.constraints, self._points, strict=True):
            if pts is not None and c.kind == "eq":
                consts, T = self.table(x0)
                v, Jc = point_values(c, self.prog, consts, T, *pts, shift=self.shift(x0))
                rows.append(Jc[:, lin])
                offs.append(v - Jc[:, lin] @ x0[lin])
        b = -res0 + A @ x0[lin]  # the prefactors solve A·a ≈ b
        if rows:
            # the constraint is |c| <= tol, not c = 0: penalty rows cost (|c|/tol)² x 1e-4
            # of the zero model's loss, so a term that has died out before the cutoff
            # (c ~ 1e-100 per unit prefactor) keeps its prefactor
            w = math.sqrt(PENALTY_SHARE * self.f.loss_zero) / self.f.options.constraint_tol
            C = np.vstack(rows)
            c0 = np.concatenate(offs)
            if not (np.all(np.isfinite(C)) and np.all(np.isfinite(c0))):
                return None
            a = lstsq(np.vstack([A, w * C]), np.concatenate([b, -w * c0]))
        else:
            a = lstsq(A, b)
        x[lin] = np.clip(a, lo[lin], hi[lin])
        d = res0 + A @ (x[lin] - x0[lin])
        loss = float(d @ d)
        return (x, loss) if math.isfinite(loss) else None

    def scan_starts(self, x0, lo, hi) -> list[np.ndarray]:
        """Starts from a scan of the nonlinear constants with exact prefactors (best first).

        Per-type prefactors (``q[A]·q[B]``) are relaxed to one value per type pair, in
        which U is linear; the nonlinear constants are laid on physical grids
        (:func:`mctsff.fit.scan.grid`), on the scan's frames
        (:data:`~mctsff.fit.forces.SCAN_PAIRS`); at each grid point the prefactors are solved
        exactly (:meth:`solve_linear`); the local minima of that reduced loss, and the
        points of basins narrower than the grid's step found between grid points
        (:func:`mctsff.fit.scan.needles`), are ranked by it; up to
        :data:`SCAN_POLISH` of them are polished briefly there
        and ranked (on a small training set, where the scan uses all of it, the picks are
        refined by the relaxed problem's local solver instead); the per-pair prefactors of
        the best are factored back into per-type values
        (:meth:`~mctsff.expr.params.Parameterization.factored` and :func:`_diagonal_factors`,
        the sign of each type chosen by the factorisation).  At most ``n_starts`` starts.
        """
        n_keep = self.f.options.n_starts
        if self._typed:
            if self._relaxed is None:
                self._relaxed = self._relaxation()
            relaxed, (rlo, rhi), common, pairs = self._relaxed
            rlo, rhi = rlo.copy(), rhi.copy()
            xr0 = np.ones(relaxed.par.n_params)
            for m, j in common:
                xr0[j] = x0[m]
                rlo[j], rhi[j] = lo[m], hi[m]
        else:
            relaxed, rlo, rhi, xr0 = self, lo, hi, x0
        mask = ~relaxed.lin
        axes = scan.axes_for(relaxed.par.names, relaxed.par.base_name, mask, relaxed.prog)
        points = scan.grid(axes, np.clip(xr0, rlo, rhi), rlo, rhi, self.f.cutoff, self.f.r_min)
        solved, losses = [], []
        scanner = relaxed
        if self.f._scan_data is not self.f._data and len(points) > 1:
            scanner = Problem(self.f, relaxed.prog, relaxed.par, data=self.f._scan_data)

        def reduced(p):
            """``p`` with exact prefactors, and the reduced loss there (inf: not finite)."""
            try:
                with np.errstate(all="ignore"):
                    sol = scanner.solve_linear(p, rlo, rhi)
            except NUMERIC_ERRORS:
                sol = None
            return (p, math.inf) if sol is None else sol

        for p in points:
            x, loss = reduced(p)
            solved.append(x)
            losses.append(loss)
        picks = scan.local_minima(points, losses, mask)
        # basins narrower than the grid's step, found between its points beside the
        # lowest line minima, join the local minima (by their loss)
        needles = []
        for _, x, loss in scan.needles(points, losses, axes, reduced, rlo, rhi):
            needles.append(len(solved))
            solved.append(x)
            losses.append(loss)
        if needles:
            picks = sorted(picks + needles, key=losses.__getitem__)
        polished = scanner is not relaxed and mask.any()
        if polished:
            # a short polish on the scan's frames ranks the local minima (a narrow basin's
            # grid neighbour can sit above a broad basin's)
            ranked = []
            for i in picks[:SCAN_POLISH]:
                try:
                    with np.errstate(all="ignore"):
                        sol = scanner.explore(
                            solved[i], rlo, rhi, tol=LOOSE_FTOL, max_iter=SCAN_POLISH_NFEV
                        )
                except NUMERIC_ERRORS:
                    sol = None
                if sol is not None:
                    solved[i] = sol[0]
                    ranked.append((sol[1], i))
            picks = [i for _, i in sorted(ranked)] or picks
        picks = picks[:n_keep]
        if scanner is not relaxed:
            self.relaxed_nfev += scanner.nfev
            # the picks' prefactors, solved again on the whole training set
            for i in picks:
                try:
                    with np.errstate(all="ignore"):
                        sol = relaxed.solve_linear(solved[i], rlo, rhi)
                except NUMERIC_ERRORS:
                    sol = None
                if sol is not None:
                    solved[i] = sol[0]
        if relaxed is not self:
            relaxed_nfev = relaxed.nfev
        # a user's function constraint names per-type parameters the relaxed problem lacks
        cons = self.constraints
        pointwise = bool(cons) and all(c.r_points is not None for c in cons)
        starts = []
        for i in picks:
            x = solved[i]
            if relaxed is not self:
                sol = None
                try:
                    with np.errstate(all="ignore"):
                        if not polished:  # (a polish on the scan's frames is enough to factor)
                            sol = (
                                relaxed.solve(x, rlo, rhi, ftol=RELAXED_FTOL)
                                if pointwise
                                else relaxed.explore(x, rlo, rhi, tol=RELAXED_FTOL)
                            )
                except NUMERIC_ERRORS:
                    sol = None
                xr = x if sol is None else sol[0]
                x = x0.copy()
                for m, j in common:
                    x[m] = xr[j]
                values = {k: xr[idx] for k, idx in pairs.items()}
                for xf in (self.par.factored(x, values), _diagonal_factors(self.par, x, values)):
                    if xf is not None and not any(np.array_equal(xf, y) for y in starts):
                        starts.append(np.clip(xf, lo, hi))
                continue
            starts.append(x)
        if relaxed is not self:
            self.relaxed_nfev += relaxed.nfev - relaxed_nfev
            relaxed.nfev = relaxed_nfev
        return starts[:n_keep]

    def explore(self, x0, lo, hi, tol: float | None = None, max_iter: int | None = None):
        """One start without constraints: exact linear prefactors, then a loose solve."""
        x = self._linear_start(x0, lo, hi)
        if x is None:
            return None
        if tol is None:
            tol = 1e-12 if not self.constraints else 1e-7
        x, res, _ = levenberg_marquardt(
            lambda th: self._rows(th, False)[0],
            lambda th: self._rows(th, True),
            x,
            lo,
            hi,
            max_iter=self.f.options.max_nfev if max_iter is None else max_iter,
            ftol=tol,
        )
        loss = float(res @ res)
        return (x, loss) if math.isfinite(loss) else None

    def solve(self, x0, lo, hi, ftol: float = 1e-15, max_iter: int | None = None):
        """Constrained solve from ``x0``. Returns (θ, loss, violation, multipliers).

        Every constraint (equalities and inequalities) is linearised in each step of
        :func:`constrained_levenberg_marquardt`: no penalty parameter and no outer loop.
        Where that leaves a constraint unmet (an ill-conditioned one), the
        augmented-Lagrangian outer loop takes them all, from where the first pass ended.
        """
        cons = self.constraints
        if not cons:
            x = x0.copy()
            res, _ = self._rows(x, False)
            return x, float(res @ res), 0.0, {}
        sol = self._solve(x0, lo, hi, list(range(len(cons))), ftol, max_iter)
        if sol is not None and sol[2] > self.f.options.constraint_tol:
            again = self._solve(sol[0], lo, hi, [], ftol, max_iter)
            # feasible here means within constraint_tol itself (not the 10x reported as met)
            if again is not None and is_better(again, sol, BAND * self.f.options.constraint_tol):
                sol = again
        return sol

    def _solve(self, x0, lo, hi, inner, ftol, max_iter=None):
        """:meth:`solve` with the constraints ``inner`` (indices) kept by the inner
        solver, the others by the augmented Lagrangian."""
        o = self.f.options
        x = x0.copy()
        cons = self.constraints
        kinds = [c.kind for c in cons]
        al = [i for i in range(len(cons)) if i not in inner]
        vals, jacs = self._cons(x)
        if not all(np.all(np.isfinite(v)) for v in vals):
            return None
        # scale each AL constraint by its gradient norm at the start, so that one
        # insensitive to θ (e.g. 6C/rc^7) is not lost in the loss
        scales = {
            i: np.maximum(np.linalg.norm(jacs[i], axis=1), 1e-8 * (1.0 + np.abs(vals[i])))
            for i in al
        }

        def inner_cons(th, jac=True):
            vs, Js = self._cons(th, jac)
            v = np.concatenate([vs[i] for i in inner])
            return v, (np.vstack([Js[i] for i in inner]) if jac else None)

        ineq_rows = np.concatenate(
            [np.full(vals[i].size, kinds[i] == "ineq") for i in inner] or [np.zeros(0, bool)]
        )

        def solver(fun, fun_jac, x):
            if inner:
                return constrained_levenberg_marquardt(
                    fun,
                    fun_jac,
                    inner_cons,
                    x,
                    lo,
                    hi,
                    max_iter=o.max_nfev if max_iter is None else max_iter,
                    ftol=ftol,
                    ctol=BAND * o.constraint_tol,
                    ineq=ineq_rows,
                )
            n = o.max_nfev if max_iter is None else max_iter
            return levenberg_marquardt(fun, fun_jac, x, lo, hi, max_iter=n, ftol=ftol)

        lam = {i: np.zeros_like(vals[i]) for i in al}
        mu = o.mu0
        prev_viol = math.inf
        raised = []  # the violation at each growth of μ
        for _outer in range(max(1, o.max_outer) if al else 1):

            def fun(th, lam=lam, mu=mu):
                r, _ = self._rows(th, False)
                if not al:
                    return r
                vs, _ = self._cons(th, jac=False)
                extra = [al_rows(vs[i] / scales[i], lam[i], mu, kinds[i]) for i in al]
                return np.concatenate([r, *extra])

            def fun_jac(th, lam=lam, mu=mu):
                r, J = self._rows(th, True)
                if not al:
                    return r, J
                vs, Js = self._cons(th)
                rows = [al_rows(vs[i] / scales[i], lam[i], mu, kinds[i]) for i in al]
                jac = [
                    al_jac(vs[i] / scales[i], Js[i] / scales[i][:, None], lam[i], mu, kinds[i])
                    for i in al
                ]
                return np.concatenate([r, *rows]), np.vstack([J, *jac])

            x, res, _ = solver(fun, fun_jac, x)
            if not np.all(np.isfinite(res)):
                return None
            vals, _ = self._cons(x, jac=False)
            viol = max(violation_of(v, k) for v, k in zip(vals, kinds, strict=True))
            if not math.isfinite(viol):
                return None
            if viol <= o.constraint_tol or not al:
                break
            if self.nfev >= o.max_fit_nfev:
                break  # evaluation cap per candidate: report what was reached
            for i in al:
                v = vals[i] / scales[i]
                lam[i] = lam[i] + mu * v if kinds[i] == "eq" else np.maximum(0.0, lam[i] + mu * v)
            if viol > 0.25 * prev_viol:
                if mu >= MU_MAX:
                    break  # the constraint cannot be met by this expression
                if len(raised) >= 2 and viol > AL_STALL * raised[-2]:
                    break  # nor from here: a 100-fold μ did not halve the violation
                raised.append(viol)
                mu *= 10.0
            prev_viol = viol
        res, J = self._rows(x, True)
        loss = float(res @ res)
        if not math.isfinite(loss):
            return None
        vals, jacs = self._cons(x)
        viol = max(violation_of(v, k) for v, k in zip(vals, kinds, strict=True))
        mults = {}
        if inner:
            # least-squares multipliers of the binding rows (an inequality row well
            # inside its bound has none)
            bind = [
                np.ones(vals[i].size, bool) if kinds[i] == "eq" else vals[i] >= -o.constraint_tol
                for i in inner
            ]
            C = np.vstack([jacs[i][b] for i, b in zip(inner, bind, strict=True)])
            with np.errstate(all="ignore"):
                nu = (
                    np.linalg.lstsq(C.T, -(J.T @ res), rcond=1e-12)[0]
                    if np.isfinite(C).all() and np.isfinite(J).all() and C.shape[0]
                    else np.full(C.shape[0], np.nan)
                )
            start = 0
            for i, b in zip(inner, bind, strict=True):
                m = np.zeros(vals[i].size)
                m[b] = nu[start : start + int(b.sum())]
                mults[cons[i].name] = m
                start += int(b.sum())
        for i in al:
            mults[cons[i].name] = lam[i] / scales[i]
        return x, loss, viol, mults
