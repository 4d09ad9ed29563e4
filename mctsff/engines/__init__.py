"""Search engines: the run loop, Monte Carlo tree search, grammar-guided GP and what they share.

:mod:`~mctsff.engines.reward` (loss and complexity into a reward),
:mod:`~mctsff.engines.engine` (the one run loop of every engine: budget, deadline, results),
:mod:`~mctsff.engines.mcts` (UCT over partial derivations), :mod:`~mctsff.engines.gp`
(grammar-guided genetic programming, the baseline), :mod:`~mctsff.engines.parallel` (fits in
worker processes or on Dask), :mod:`~mctsff.engines.pareto` (the complexity × loss front, its
files and figures), :mod:`~mctsff.engines.holdout` (the frame resampling that decides
whether a member beats the simpler ones) and :mod:`~mctsff.engines.local` (the prune, grow,
wrap and substitution moves around new front members).
"""
