"""SearchConfig is the one place the defaults of a search live."""

import dataclasses
import inspect
import json

import pytest

from mctsff.config import (
    DEFAULTS,
    OBJECTIVE_DEFAULTS,
    SETTINGS,
    ConfigError,
    LocalMoveSettings,
    SearchConfig,
)


def _defaults(fn) -> dict:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_engines_take_their_defaults_from_the_config():
    from mctsff.engines.gp import GP
    from mctsff.engines.local import LocalMoves
    from mctsff.engines.mcts import MCTS
    from mctsff.engines.parallel import Evaluator

    mcts = _defaults(MCTS)
    for f in dataclasses.fields(DEFAULTS.mcts):
        value = getattr(DEFAULTS.mcts, f.name)
        expected = OBJECTIVE_DEFAULTS["forces"][f.name] if value is None else value
        assert mcts[f.name] == expected, f.name
    assert mcts["max_length"] == DEFAULTS.max_length == 16
    gp = _defaults(GP)
    assert gp["max_length"] == DEFAULTS.max_length
    assert all(gp[f.name] == getattr(DEFAULTS.gp, f.name) for f in dataclasses.fields(DEFAULTS.gp))
    ev = _defaults(Evaluator)
    assert (ev["workers"], ev["scheduler"], ev["timeout"]) == (1, None, None)
    for name in LocalMoveSettings.tunables():
        assert getattr(LocalMoves, name) == getattr(DEFAULTS.local, name), name


def test_search_module_reexports_the_config_values():
    from mctsff import search as s

    assert s.OBJECTIVE_DEFAULTS is OBJECTIVE_DEFAULTS
    assert s.DEFAULT_ETA == DEFAULTS.eta == 0.99
    assert set(s.LOCAL_OPTIONS) == set(LocalMoveSettings.tunables())


def test_updated_routes_flat_names_to_their_group():
    cfg = DEFAULTS.updated(
        budget=7, exploration=0.3, screen=2, max_share=0.5, workers=3, prune=False
    )
    assert cfg.budget == 7 and cfg.mcts.exploration == 0.3 and cfg.gp.screen == 2
    assert cfg.local.max_share == 0.5 and cfg.local.prune is False
    assert cfg.parallel.workers == 3
    assert DEFAULTS.budget == 1000 and DEFAULTS.mcts.exploration == pytest.approx(2**-0.5)
    # the old dictionaries of search() still work
    cfg = DEFAULTS.updated(mcts_options={"mast": 0.0}, local_options={"spread_hosts": 1})
    assert cfg.mcts.mast == 0.0 and cfg.local.spread_hosts == 1
    # None keeps a setting that cannot be None (an unset command-line option) ...
    assert DEFAULTS.updated(novelty=None).mcts.novelty == 8
    # ... and sets one that can
    assert DEFAULTS.updated(budget=None).budget is None


def test_flat_names_are_unique():
    groups = [
        {f.name for f in dataclasses.fields(getattr(DEFAULTS, g))}
        for g in ("mcts", "gp", "local", "parallel")
    ]
    top = {f.name for f in dataclasses.fields(SearchConfig)} - {"mcts", "gp", "local", "parallel"}
    names = [*top, *(n for g in groups for n in g)]
    assert len(names) == len(set(names)) == len(SETTINGS)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"budgett": 5}, "unknown search setting 'budgett'"),
        ({"budget": 0}, "budget must be a whole number >= 1"),
        ({"budget": 2.5}, "budget must be a whole number >= 1"),
        ({"time_limit": -1.0}, "time_limit must be a finite number > 0"),
        ({"method": "anneal"}, "unknown search method 'anneal'"),
        ({"max_length": 0}, "max_length must be a whole number >= 1"),
        ({"eta": 1.5}, r"eta must be in \(0, 1\]"),
        ({"local_options": {"max_depth": -1}}, "'max_depth' must be a non-negative integer"),
        ({"mcts_options": {"speed": 1}}, "mcts_options: unknown setting 'speed'"),
    ],
)
def test_bad_settings_are_one_clear_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        DEFAULTS.updated(**settings)


def test_search_refuses_an_unknown_setting_before_any_fit():
    from mctsff.search import SearchError, search

    with pytest.raises(SearchError, match="unknown search setting 'exploraton'"):
        search(None, "pair", exploraton=0.5)


def test_as_dict_is_json():
    cfg = DEFAULTS.updated(reward=lambda r: 0.0, scheduler=object())
    d = json.loads(json.dumps(cfg.as_dict()))
    assert d["budget"] == 1000 and d["mcts"]["novelty"] == 8 and d["local"]["prune"] is True
    assert d["reward"].startswith("<function")
