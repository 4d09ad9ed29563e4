"""The examples in the package's docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import mctsff

MODULES = sorted(m.name for m in pkgutil.walk_packages(mctsff.__path__, "mctsff."))


def test_every_module_is_listed():
    for name in ("mctsff.fit", "mctsff.fit.forces", "mctsff.expr.params", "mctsff.engines.mcts",
                 "mctsff.export.openmm", "mctsff.data.dataset", "mctsff.water.models"):  # fmt: skip
        assert name in MODULES
    assert len(MODULES) >= 40


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
