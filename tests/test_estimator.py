"""PairPotentialSearch: the scikit-learn-style façade over search()."""

import numpy as np
import pytest

import mctsff
from mctsff import PairPotentialSearch, load_dataset
from mctsff.data import data_file


def test_public_api_is_lazy_and_complete():
    import subprocess
    import sys

    code = "import sys, mctsff; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr  # import mctsff stays light
    for name in mctsff.__all__:
        assert getattr(mctsff, name) is not None, name
    assert callable(mctsff.search) and mctsff.SearchConfig().budget == 1000


def test_init_stores_and_fit_runs_the_search():
    # 20 dimers leave 4 validation frames, too few for the resolution rule to admit a
    # member after 4 fits (a paired bootstrap over 4 frames): the rule is off here
    est = PairPotentialSearch(grammar="pair", cutoff=7.0, budget=4, seed=1,
                              fit_options={"constraints": (), "n_starts": 1},
                              settings={"resolution": False})  # fmt: skip
    assert est.get_params()["budget"] == 4 and not hasattr(est, "result_")
    with pytest.raises(AttributeError, match="not fitted"):
        est.predict_forces(None)
    with pytest.raises(ValueError, match="unknown parameter 'bugdet'"):
        est.set_params(bugdet=3)
    ds = load_dataset(data_file("water_dimers_mp2_sample20.extxyz"), cutoff=7.0)
    assert est.fit(ds) is est
    assert est.result_.n_evaluations >= 4 and est.best_ is not None
    forces = est.predict_forces(est.test_)
    assert forces.shape == est.test_.forces.shape and np.isfinite(forces).all()
    rmse = float(np.sqrt(np.mean((forces - est.test_.forces) ** 2)))
    assert rmse == pytest.approx(est.best_.rmse_test, rel=1e-6)
    pd = pytest.importorskip("pandas")
    front = est.front_
    assert isinstance(front, pd.DataFrame) and len(front) == len(est.result_.front.points)
    assert front["selected"].sum() == 1
    assert list(front.columns[:5]) == ["complexity", "rmse_train", "rmse_valid", "rmse_test",
                                       "loss_train"]  # fmt: skip
