"""Expressions: operators, grammars, derivation trees, compiled programs and their constants.

In the order the modules import each other: :mod:`~mctsff.expr.ops` (the operator table),
:mod:`~mctsff.expr.kernels` (the numba kernels and their flags, compiled once per operator
set), :mod:`~mctsff.expr.grammar` (Lark grammars as productions), :mod:`~mctsff.expr.tree`
(partial derivations), :mod:`~mctsff.expr.program` (an expression compiled to postfix code)
and :mod:`~mctsff.expr.params` (per-atom-type constants, combination rules, the
:class:`~mctsff.expr.params.Potential` and the cutoff schemes' shifts).
"""
