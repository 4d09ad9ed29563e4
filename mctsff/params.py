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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from mctsff import kernels, ops
from mctsff.program import Program

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
        >>> from mctsff.program import Program
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

    Examples
    --------
    >>> pot = Potential("A*exp(-r/b)", {"A": 2.0, "b": 0.5}, species=("Ar",))
    >>> float(pot.energy(1.0, ("Ar", "Ar"))[0])  # doctest: +ELLIPSIS
    0.27...
    """

    def __init__(
        self,
        program: Program | str,
        params: Mapping[str, float],
        species: Sequence[str],
        type_pairs: Sequence[tuple[str, str]] | None = None,
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
        """U(r) for a type pair."""
        return self._eval(r, pair, kernels.MODE_VALUE)[0]

    def derivative(self, r, pair: tuple[str, str]) -> np.ndarray:
        """dU/dr for a type pair (the pair force is −dU/dr)."""
        return self._eval(r, pair, kernels.MODE_D)[1]

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
            return kernels.pair_forces(
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
        return sympy.Float(1.0) * self.program.sympy.subs(subs)
