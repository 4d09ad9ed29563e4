"""Fitted parameters of a program on a set of atom types, and the resulting potential.

A program has *constant slots* (one per distinct constant name).  On a dataset
with atom types, each slot takes one value per type pair, derived from the
*fitted parameters* by the slot's combining rule:

========== ============================ ==========================
rule       parameters                   value for pair (A, B)
========== ============================ ==========================
global     ``b``                        b
product    ``prod_q[A]`` per type       q[A]·q[B]
geometric  ``geom_e[A]`` per type       sqrt(e[A]·e[B])
arithmetic ``arith_s[A]`` per type      (s[A] + s[B]) / 2
pair       ``pair_k[A-B]`` per pair     k[A-B]
========== ============================ ==========================

:class:`Parameterization` turns a parameter vector θ into the per-pair
constant table and its derivative tensor ``T[pair, slot, param]``, which the
kernels contract with ∂U/∂slot to get ∂U/∂θ.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mctsff.expr import kernels, ops
from mctsff.expr.program import Program

if TYPE_CHECKING:  # pragma: no cover
    import sympy

#: Lower bound given by default to constants that act as a length of ``r``.
LENGTH_LOWER_BOUND = 1e-2
#: Combining rules with one parameter per atom type.
PER_TYPE_RULES = ("product", "geometric", "arithmetic")
#: Lower bound of geometric-mean constants (sqrt needs x > 0; 0 would make dU/dx infinite).
GEOM_LOWER_BOUND = 1e-8


@dataclass(frozen=True)
class Parameterization:
    """Map between fitted parameters and per-type-pair constant values.

    Parameters
    ----------
    program
        The compiled expression.
    species
        Atom type names (sorted).
    type_pairs
        Unordered type pairs, the index order of the dataset's ``pair_type``.
    """

    program: Program
    species: tuple[str, ...]
    type_pairs: tuple[tuple[str, str], ...]
    names: tuple[str, ...] = field(init=False)
    _slots: tuple = field(init=False, repr=False)

    def __post_init__(self):
        names: list[str] = []
        slots = []
        sp_index = {s: i for i, s in enumerate(self.species)}
        for const in self.program.constants:
            rule = ops.constant_rule(const)
            if rule == "global":
                slots.append((rule, len(names)))
                names.append(const)
            elif rule == "pair":
                idx = []
                for a, b in self.type_pairs:
                    idx.append(len(names))
                    names.append(f"{const}[{a}-{b}]")
                slots.append((rule, tuple(idx)))
            else:
                idx = []
                for s in self.species:
                    idx.append(len(names))
                    names.append(f"{const}[{s}]")
                pairs = tuple((sp_index[a], sp_index[b]) for a, b in self.type_pairs)
                slots.append((rule, (tuple(idx), pairs)))
        object.__setattr__(self, "names", tuple(names))
        object.__setattr__(self, "_slots", tuple(slots))

    @property
    def n_params(self) -> int:
        """Number of fitted parameters."""
        return len(self.names)

    def base_name(self, param: str) -> str:
        """Constant name of a parameter (``prod_q[O]`` → ``prod_q``)."""
        return param.split("[", 1)[0]

    def table(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Constant table ``(n_pairs, K)`` and derivative tensor ``(n_pairs, K, M)``."""
        P = len(self.type_pairs)
        K = self.program.n_constants
        M = self.n_params
        C = np.empty((P, K))
        T = np.zeros((P, K, M))
        for k, (rule, info) in enumerate(self._slots):
            if rule == "global":
                C[:, k] = theta[info]
                T[:, k, info] = 1.0
            elif rule == "pair":
                for p, m in enumerate(info):
                    C[p, k] = theta[m]
                    T[p, k, m] = 1.0
            else:
                idx, pairs = info
                for p, (a, b) in enumerate(pairs):
                    ma, mb = idx[a], idx[b]
                    xa, xb = theta[ma], theta[mb]
                    if rule == "product":
                        C[p, k] = xa * xb
                        T[p, k, ma] += xb
                        T[p, k, mb] += xa
                    elif rule == "arithmetic":
                        C[p, k] = 0.5 * (xa + xb)
                        T[p, k, ma] += 0.5
                        T[p, k, mb] += 0.5
                    else:  # geometric
                        with np.errstate(all="ignore"):
                            g = np.sqrt(xa * xb)
                            C[p, k] = g
                            T[p, k, ma] += 0.5 * xb / g
                            T[p, k, mb] += 0.5 * xa / g
        return C, T

    def default_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds used when the user gives none.

        Length-like constants (``r/b``, ``r - b``) are kept positive and
        geometric-mean constants non-negative; everything else is free.
        """
        lo = np.full(self.n_params, -np.inf)
        hi = np.full(self.n_params, np.inf)
        for m, name in enumerate(self.names):
            base = self.base_name(name)
            if base in self.program.length_constants:
                lo[m] = LENGTH_LOWER_BOUND
            elif ops.constant_rule(base) == "geometric":
                lo[m] = GEOM_LOWER_BOUND
        return lo, hi

    def linear_mask(self) -> np.ndarray:
        """Parameters on which U depends linearly (global or per-pair prefactors)."""
        lin = _linear_constants(self.program)
        return np.array([self.base_name(n) in lin for n in self.names], dtype=bool)

    def typed_prefactors(self) -> tuple[int, ...]:
        """Slots of per-type constants (product, geometric, arithmetic) that U is linear in.

        U is linear in such a constant's *per-pair value* (``q[A]·q[B]`` for a charge
        product), though not in its per-type parameters; a fit can solve for the
        per-pair values and start from the per-type values closest to them
        (:meth:`factored`).
        """
        lin = _linear_constants(self.program, rules=PER_TYPE_RULES)
        return tuple(k for k, name in enumerate(self.program.constants) if name in lin)

    def factored(self, theta: np.ndarray, values: Mapping[int, np.ndarray]) -> np.ndarray | None:
        """θ with each per-type slot ``k`` of ``values`` set to the per-type values
        closest to the per-pair values ``values[k]`` (in :attr:`type_pairs` order).

        A product ``q[A]·q[B]`` takes the best rank-one approximation ``√λ·v`` of the
        symmetric matrix of per-pair values (leading eigenpair; of ``±√λ·v``, the one
        closer in direction to ``theta``'s values), a geometric mean
        ``sqrt(e[A]·e[B])`` the same for ``√e``, an arithmetic mean the least-squares
        solution of ``(s[A] + s[B])/2``.  ``None`` when a product or geometric slot's
        matrix has no positive eigenvalue (only a minus sign in front of the term
        could give such values).

        Examples
        --------
        >>> from mctsff.expr.program import Program
        >>> par = Parameterization(Program.from_string("prod_q/r"), ("H", "O"),
        ...                        (("H", "H"), ("H", "O"), ("O", "O")))
        >>> theta = par.factored(np.array([-1.0, 1.0]), {0: np.array([0.64, -2.56, 10.24])})
        >>> np.round(theta, 6)  # q[H], q[O]; the sign of q[O] kept from theta
        array([-0.8,  3.2])
        """
        theta = np.array(theta, dtype=float)
        S = len(self.species)
        for k, vals in values.items():
            rule, (idx, pairs) = self._slots[k]
            if rule == "arithmetic":
                A = np.zeros((len(pairs), S))
                for p, (a, b) in enumerate(pairs):
                    A[p, a] += 0.5
                    A[p, b] += 0.5
                x, *_ = np.linalg.lstsq(A, vals, rcond=None)
            else:
                M = np.zeros((S, S))
                for p, (a, b) in enumerate(pairs):
                    M[a, b] = M[b, a] = vals[p]
                w, v = np.linalg.eigh(M)
                if not w[-1] > 0:
                    return None
                x = math.sqrt(w[-1]) * v[:, -1]
                if rule == "geometric":
                    x = np.maximum(x * (1.0 if x.sum() >= 0 else -1.0), 0.0) ** 2
                elif x @ theta[list(idx)] < 0:
                    x = -x  # q and -q give the same products: keep theta's orientation
            theta[list(idx)] = x
        return theta


#: How a potential is made to end at the cutoff (see :func:`cutoff_shift`).
CUTOFF_SCHEMES = ("shifted-force", "shifted-energy", "constraint", "none")
#: The schemes that shift the potential (the others fit it as written).
SHIFTED_SCHEMES = ("shifted-force", "shifted-energy")


def check_scheme(scheme: str) -> str:
    """``scheme`` if it is one of :data:`CUTOFF_SCHEMES`, else a ``ValueError`` naming them."""
    if scheme not in CUTOFF_SCHEMES:
        raise ValueError(
            f"unknown cutoff scheme {scheme!r}; use one of {', '.join(CUTOFF_SCHEMES)}"
        )
    return scheme


def cutoff_shift(
    program: Program,
    consts: np.ndarray,
    T: np.ndarray | None,
    cutoff: float | None,
    scheme: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The shift of each type pair's potential that a cutoff scheme applies.

    The potential used (fitted, reported, exported) is

    ``U_s(r) = U(r) − a − (r − rc)·b``, so ``U_s'(r) = U'(r) − b``,

    with ``a = U(rc)`` and ``b = U'(rc)`` per type pair for ``"shifted-force"`` (energy
    and force both continuous and zero at the cutoff, for any form, as MD engines'
    shifted-force potentials), ``a = U(rc)``, ``b = 0`` for ``"shifted-energy"``, and
    ``a = b = 0`` for ``"constraint"`` and ``"none"``.

    Parameters
    ----------
    program, consts
        The expression and its constant table ``(n_pairs, K)``.
    T
        Derivative tensor ``(n_pairs, K, M)`` of the constants, or ``None``.
    cutoff, scheme
        The cutoff (Å) and one of :data:`CUTOFF_SCHEMES`.

    Returns
    -------
    a, b, da, db
        ``(n_pairs,)`` each, and with ``T`` their Jacobians ``(n_pairs, M)`` (else ``None``).
    """
    P = consts.shape[0]
    M = 0 if T is None else T.shape[2]

    def zeros():
        return np.zeros(P), (None if T is None else np.zeros((P, M)))

    if scheme not in SHIFTED_SCHEMES or cutoff is None:
        (a, da), (b, db) = zeros(), zeros()
        return a, b, da, db
    r = np.full(P, float(cutoff))
    group = np.arange(P, dtype=np.int64)
    with np.errstate(all="ignore"):
        if T is None:
            v, d, _, _ = program.evaluate(r, consts, group, mode=kernels.MODE_D)
            da = db = None
        else:
            v, d, g, h = program.evaluate(r, consts, group, mode=kernels.MODE_ALL)
            da = np.einsum("pk,pkm->pm", g, T)
            db = np.einsum("pk,pkm->pm", h, T)
    if scheme == "shifted-energy":
        d, db = zeros()
    return v, d, da, db


def shift_maps(dataset, n_type_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How per-type-pair shifts ``a``, ``b`` (:func:`cutoff_shift`) enter a dataset's sums.

    Returns ``S`` ``(3·n_atoms, P)``: the forces of a unit ``U'`` on every pair of type
    ``t`` (so shifted forces are ``F − S·b``); ``N`` ``(n_frames, P)``: pairs of each type
    per frame, and ``D`` ``(n_frames, P)``: their summed ``r − rc`` (so shifted frame
    energies are ``E − N·a − D·b``).
    """
    P = int(n_type_pairs)
    n_atoms = int(dataset.n_atoms)
    n_frames = int(dataset.n_frames)
    t = np.asarray(dataset.pair_type, dtype=np.int64)
    u = np.asarray(dataset.u, dtype=np.float64)
    S = np.zeros((n_atoms, 3, P))
    np.add.at(S, (np.asarray(dataset.pair_i), slice(None), t), -u)
    np.add.at(S, (np.asarray(dataset.pair_j), slice(None), t), u)
    N = np.zeros((n_frames, P))
    D = np.zeros((n_frames, P))
    frame = np.asarray(dataset.pair_frame, dtype=np.int64)
    np.add.at(N, (frame, t), 1.0)
    np.add.at(D, (frame, t), np.asarray(dataset.r, dtype=np.float64) - float(dataset.cutoff))
    return S.reshape(3 * n_atoms, P), N, D


def shifted_sums(maps, a, b, forces, energies=None):
    """Flat forces ``F − S·b`` and frame energies ``E − N·a − D·b`` of the shifted potential.

    ``maps`` is :func:`shift_maps`; ``a``, ``b`` per type pair (:func:`cutoff_shift`).  The
    map is linear, so with ``da``, ``db`` for ``a``, ``b`` and Jacobians for ``forces``,
    ``energies`` it gives the shifted Jacobians.  ``energies`` ``None`` or empty is passed
    through.
    """
    S, N, D = maps
    forces = forces - S @ b
    if energies is not None and len(energies):
        energies = energies - N @ a - D @ b
    return forces, energies


def _linear_constants(program: Program, rules: Sequence[str] = ("global", "pair")) -> set[str]:
    """Constants of the combining ``rules`` that enter the expression linearly.

    Walks the postfix code with, for each stack value, the set of constants it
    depends on and the subset it is (affinely) linear in.
    """
    code = program.code
    names = program.constants
    stack: list[tuple[frozenset, frozenset]] = []
    for op, arg in code:
        if op == ops.CONST:
            s = frozenset([names[arg]])
            stack.append((s, s))
        elif op in (ops.VAR, ops.LIT):
            stack.append((frozenset(), frozenset()))
        elif op in (ops.ADD, ops.SUB):
            (db, lb), (da, la) = stack.pop(), stack.pop()
            both = da & db
            stack.append((da | db, (la | lb) - both if both else la | lb))
        elif op == ops.MUL:
            # a*b is jointly affine in the constants that are affine in one factor and
            # absent from the other; two such sets (bilinear) can't both be kept
            (db, lb), (da, la) = stack.pop(), stack.pop()
            left, right = la - db, lb - da
            lin = left if len(left) >= len(right) else right
            stack.append((da | db, lin))
        elif op == ops.DIV:
            (db, lb), (da, la) = stack.pop(), stack.pop()
            stack.append((da | db, la - db))
        elif op == ops.POW:
            (db, lb), (da, la) = stack.pop(), stack.pop()
            stack.append((da | db, frozenset()))
        elif op == ops.NEG:
            pass
        else:  # unary nonlinear
            d, _ = stack.pop()
            stack.append((d, frozenset()))
    _, lin = stack[-1]
    counts: dict[str, int] = {}
    for op, arg in code:
        if op == ops.CONST:
            counts[names[arg]] = counts.get(names[arg], 0) + 1
    return {n for n in lin if ops.constant_rule(n) in rules and counts[n] == 1}


class Potential:
    """A fitted pair potential: program + parameter values on a set of types.

    Parameters
    ----------
    program
        Compiled expression (or expression string).
    params
        Parameter values by name (as in :attr:`Parameterization.names`).
    species
        Atom types.
    type_pairs
        Unordered type pairs; all pairs of ``species`` by default.
    cutoff, scheme
        The cutoff (Å) and how the potential ends there (one of :data:`CUTOFF_SCHEMES`,
        default ``"none"``: the expression as written).  With ``"shifted-force"`` or
        ``"shifted-energy"``, :meth:`energy`, :meth:`derivative` and :meth:`forces` give
        the shifted potential of :func:`cutoff_shift`.

    Examples
    --------
    >>> pot = Potential("A*exp(-r/b)", {"A": 2.0, "b": 0.5}, species=("Ar",))
    >>> float(pot.energy(1.0, ("Ar", "Ar"))[0])  # doctest: +ELLIPSIS
    0.27...
    >>> sf = Potential("c/r", {"c": 1.0}, ("Ar",), cutoff=5.0, scheme="shifted-force")
    >>> [round(float(x), 12) for x in (sf.energy(5.0, ("Ar", "Ar"))[0],
    ...                                sf.derivative(5.0, ("Ar", "Ar"))[0])]
    [0.0, 0.0]
    """

    def __init__(
        self,
        program: Program | str,
        params: Mapping[str, float],
        species: Sequence[str],
        type_pairs: Sequence[tuple[str, str]] | None = None,
        *,
        cutoff: float | None = None,
        scheme: str = "none",
    ):
        if isinstance(program, str):
            program = Program.from_string(program)
        species = tuple(species)
        if type_pairs is None:
            type_pairs = tuple((a, b) for i, a in enumerate(species) for b in species[i:])
        self.program = program
        self.parameterization = Parameterization(program, species, tuple(type_pairs))
        missing = [n for n in self.parameterization.names if n not in params]
        if missing:
            raise KeyError(f"missing parameter values: {', '.join(missing)}")
        self.params = {n: float(params[n]) for n in self.parameterization.names}
        self.theta = np.array([self.params[n] for n in self.parameterization.names])
        self.consts, _ = self.parameterization.table(self.theta)
        self.scheme = check_scheme(scheme)
        if self.scheme in SHIFTED_SCHEMES and cutoff is None:
            raise ValueError(f"cutoff scheme {scheme!r} needs the cutoff")
        self.cutoff = None if cutoff is None else float(cutoff)
        self.shift_a, self.shift_b, _, _ = cutoff_shift(
            program, self.consts, None, self.cutoff, self.scheme
        )

    @property
    def species(self) -> tuple[str, ...]:
        """Atom types."""
        return self.parameterization.species

    @property
    def type_pairs(self) -> tuple[tuple[str, str], ...]:
        """Unordered type pairs."""
        return self.parameterization.type_pairs

    def pair_index(self, pair: tuple[str, str]) -> int:
        """Index of an (unordered) type pair."""
        a, b = pair
        for i, (x, y) in enumerate(self.type_pairs):
            if (x, y) in ((a, b), (b, a)):
                return i
        raise KeyError(f"unknown type pair {a}-{b}; known: {self.type_pairs}")

    def _eval(self, r, pair, mode):
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        group = np.full(r.shape[0], self.pair_index(pair), dtype=np.int64)
        with np.errstate(all="ignore"):
            return self.program.evaluate(r, self.consts, group, mode=mode)

    def energy(self, r, pair: tuple[str, str]) -> np.ndarray:
        """U(r) for a type pair (shifted by the cutoff scheme)."""
        r = np.atleast_1d(np.asarray(r, dtype=np.float64))
        v = self._eval(r, pair, kernels.MODE_VALUE)[0]
        p = self.pair_index(pair)
        if self.cutoff is None:
            return v
        return v - self.shift_a[p] - (r - self.cutoff) * self.shift_b[p]

    def derivative(self, r, pair: tuple[str, str]) -> np.ndarray:
        """dU/dr for a type pair (the pair force is −dU/dr; shifted by the cutoff scheme)."""
        return self._eval(r, pair, kernels.MODE_D)[1] - self.shift_b[self.pair_index(pair)]

    def forces(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Forces ``(n_atoms, 3)`` and per-frame pair energies this potential gives on a dataset.

        The dataset's type pairs must match this potential's (same species order).
        """
        if tuple(dataset.type_pairs) != tuple(self.type_pairs):
            raise ValueError(
                f"dataset type pairs {dataset.type_pairs} differ from the potential's "
                f"{self.type_pairs}"
            )
        p = self.program
        with np.errstate(all="ignore"):
            forces, energies = kernels.pair_forces(
                p.code,
                p.literals,
                np.ascontiguousarray(dataset.r),
                self.consts,
                dataset.pair_type,
                dataset.pair_i,
                dataset.pair_j,
                np.ascontiguousarray(dataset.u),
                dataset.pair_frame,
                dataset.n_atoms,
                dataset.n_frames,
                p.max_stack,
            )
        if self.scheme in SHIFTED_SCHEMES:
            if not math.isclose(float(dataset.cutoff), self.cutoff):
                raise ValueError(
                    f"the dataset's cutoff {dataset.cutoff:g} differs from the potential's "
                    f"{self.cutoff:g}: its shifted potential is defined up to that cutoff"
                )
            maps = shift_maps(dataset, len(self.type_pairs))
            flat, energies = shifted_sums(
                maps, self.shift_a, self.shift_b, forces.ravel(), energies
            )
            forces = flat.reshape(forces.shape)
        return forces, energies

    def synthetic(self, dataset):
        """A copy of ``dataset`` whose reference forces and energies come from this potential."""
        f, e = self.forces(dataset)
        return dataset.with_forces(f, e)

    def expanded(self, pair: tuple[str, str]):
        """Sympy expression in ``r`` alone for one type pair (constants substituted)."""
        import sympy

        p = self.pair_index(pair)
        subs = {
            self.program.symbols[c]: float(self.consts[p, k])
            for k, c in enumerate(self.program.constants)
        }
        expr = sympy.Float(1.0) * self.program.sympy.subs(subs)
        if self.cutoff is None or self.scheme not in SHIFTED_SCHEMES:
            return expr
        r = self.program.symbols[self.program.variables[0]]
        a, b = float(self.shift_a[p]), float(self.shift_b[p])
        return expr - sympy.Float(a) - (r - sympy.Float(self.cutoff)) * sympy.Float(b)


#: Accent of a per-type constant's stem in :func:`sympy_expression` when constants of several
#: per-type rules share that stem (``prod_c1``, ``geom_c1``): written as a suffix of the
#: letters, which sympy's LaTeX printer turns into the accent (``ctilde1^A`` →
#: ``\tilde{c}^{A}_{1}``).  The product rule keeps the plain letter.
SHARED_STEM_ACCENTS: dict[str, str] = {"product": "", "geometric": "tilde", "arithmetic": "bar"}


def _symbol_stems(names: Sequence[str]) -> dict[str, str]:
    """Symbol stem of each per-type constant among ``names``: the name without its rule
    prefix (``prod_q`` → ``q``), accented by :data:`SHARED_STEM_ACCENTS` where constants of
    several per-type rules share a stem, so that distinct constants never get the same
    symbol (``prod_c1`` → ``c1``, ``geom_c1`` → ``ctilde1``)."""
    stems = {n: n.split("_", 1)[1] for n in names if ops.constant_rule(n) != "global"}
    single = {n for n in stems if ops.constant_rule(n) in SHARED_STEM_ACCENTS}
    taken = set(names) | set(stems.values())
    out = dict(stems)
    for name in single:
        stem = stems[name]
        if sum(stems[m] == stem for m in single) < 2:
            continue
        rule = ops.constant_rule(name)
        accent = SHARED_STEM_ACCENTS[rule]
        if not accent:
            continue
        letters, digits = re.fullmatch(r"(.*?)(\d*)", stem).groups()
        for candidate in (f"{letters}{accent}{digits}", f"{stem}_{rule}"):
            if candidate not in taken:
                break
        taken.add(candidate)
        out[name] = candidate
    return out


def sympy_expression(program: Program, pair: tuple[str, str] | None = None) -> sympy.Expr:
    """The program as a sympy expression with per-type constants written through their
    combining rule (``prod_q`` → ``q^A·q^B`` for the type pair ``(A, B)``, symbolic types
    without ``pair``).  Distinct constants get distinct symbols: where constants of several
    per-type rules share a stem, the geometric and arithmetic ones are accented
    (:func:`_symbol_stems`: ``prod_c1/r + geom_c1/r**12`` →
    ``c1^A·c1^B/r + sqrt(ctilde1^A·ctilde1^B)/r**12``)."""
    import sympy

    a, b = pair if pair is not None else ("A", "B")
    stems = _symbol_stems(list(program.constants))
    subs = {}
    for name in program.constants:
        rule = ops.constant_rule(name)
        if rule == "global":
            continue
        stem = stems[name]
        sa = sympy.Symbol(f"{stem}^{a}", real=True)
        sb = sympy.Symbol(f"{stem}^{b}", real=True)
        if rule == "product":
            val = sa * sb
        elif rule == "geometric":
            val = sympy.sqrt(sa * sb)
        elif rule == "arithmetic":
            val = (sa + sb) / 2
        else:
            val = sympy.Symbol(f"{stem}^{a}{b}", real=True)
        subs[program.symbols[name]] = val
    return program.sympy.xreplace(subs)
