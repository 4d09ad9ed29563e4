"""The search façade: outputs, checkpoint/resume, rewards, progress."""

import io
import json
import math
import os
import pickle

import numpy as np
import pytest

from mctsff.expr.canonical import canonical_key
from mctsff.expr.grammar import Grammar
from mctsff.expr.program import Program
from mctsff.expr.tree import derive
from mctsff.fit import Fitter
from mctsff.fit.objective import searched_expression
from mctsff.search import SearchError, search


def test_search_writes_outputs_and_front_is_consistent(screened, tmp_path):
    train, valid = screened
    fitter = Fitter(train, valid, constraints=(), n_starts=2, wall=None)  # as in _fast
    res = search(fitter, "pair", budget=40, seed=0, out=tmp_path)
    for name in ("pareto.json", "pareto.csv", "pareto.png", "potentials.png", "checkpoint.pkl"):
        assert (tmp_path / name).stat().st_size > 0
    pts = json.loads((tmp_path / "pareto.json").read_text())
    assert pts and len(pts) == len(res.front)
    for p in pts:
        assert {
            "expression",
            "complexity",
            "rmse_train",
            "rmse_valid",
            "params",
            "constraints",
            "flags",
        } <= set(p)
    cx = [p["complexity"] for p in pts]
    loss = [p["rmse_valid"] for p in pts]
    assert cx == sorted(cx) and loss == sorted(loss, reverse=True)
    assert res.n_evaluations >= 40


@pytest.mark.slow
def test_true_form_recovered_on_front(screened):
    train, valid = screened
    rms = float(np.sqrt(np.mean(train.forces**2)))
    # the fixture's forces come from the unshifted form, attractive between H and O
    fitter = Fitter(train, valid, constraints=(), n_starts=3, cutoff_scheme="none", wall=None)
    res = search(fitter, "pair", budget=1500, seed=1)
    truth_cx = Program.from_string("prod_c1*exp(-r/c1)/r").complexity
    exact = [p for p in res.front.points if p.rmse_valid < 1e-6 * rms]
    assert exact, [p.expression for p in res.front.points]
    # the simplest exact point is the true form (or one of equal complexity)
    assert exact[0].complexity <= truth_cx, exact[0].expression
    assert canonical_key(exact[0].expression) == canonical_key("prod_c1*exp(-r/c1)/r")


def test_resume_equals_uninterrupted_run(screened, tmp_path):
    train, valid = screened
    full = search(Fitter(train, valid, constraints=(), n_starts=2), "pair", budget=60, seed=3)
    a = tmp_path / "a"
    search(Fitter(train, valid, constraints=(), n_starts=2), "pair", budget=25, seed=3, out=a)
    resumed = search(
        Fitter(train, valid, constraints=(), n_starts=2),
        "pair",
        budget=60,
        seed=3,
        out=a,
        resume=True,
    )
    assert resumed.mcts.evaluated == full.mcts.evaluated
    assert [p.expression for p in resumed.front.points] == [p.expression for p in full.front.points]


def test_resume_refuses_other_data(screened, dimers, tmp_path):
    train, valid = screened
    search(Fitter(train, valid, constraints=()), "pair", budget=5, seed=0, out=tmp_path)
    other_train, other_valid = dimers.split(0.5, seed=1)
    with pytest.raises(SearchError, match="different"):
        search(
            Fitter(other_train, other_valid, constraints=()),
            "pair",
            budget=10,
            out=tmp_path,
            resume=True,
        )
    with pytest.raises(SearchError, match="nothing to resume"):
        search(Fitter(train, valid), "pair", budget=10, out=tmp_path / "none", resume=True)


def test_resume_refuses_other_fit_options(screened, tmp_path):
    """Later fits with other constraints or starts would mix two objectives in one front."""
    import pickle

    train, valid = screened
    search(Fitter(train, valid, constraints=(), n_starts=2), "pair", budget=5, out=tmp_path)
    for fitter, message in [
        (Fitter(train, valid, constraints=(), n_starts=3), r"fit option n_starts \(2; now 3\)"),
        (
            Fitter(train, valid, constraints=("force0",), n_starts=2),
            r"fit option constraints \(\(\); now \('force0'\)\)",
        ),
        (
            Fitter(train, valid, constraints=(), n_starts=2, pair_start=True),
            "fit option pair_start",
        ),
    ]:
        with pytest.raises(SearchError, match=message):
            search(fitter, "pair", budget=10, out=tmp_path, resume=True)
    # the same options resume
    same = Fitter(train, valid, constraints=(), n_starts=2)
    assert search(same, "pair", budget=8, out=tmp_path, resume=True).n_evaluations >= 8
    # a checkpoint written before the fit options were saved resumes as before
    path = tmp_path / "checkpoint.pkl"
    state = pickle.loads(path.read_bytes())
    del state["signature"]["fit"]
    path.write_bytes(pickle.dumps(state))
    other = Fitter(train, valid, constraints=(), n_starts=3)
    assert search(other, "pair", budget=10, out=tmp_path, resume=True).n_evaluations >= 10


def test_resume_notices_an_edited_user_constraint(screened, tmp_path):
    """A user's constraint is compared by its function too, not only by its name."""
    import pickle

    from mctsff.fit import Constraint

    def minimum_at(r0):
        return Constraint("min_OO", "ineq", lambda pot: pot.derivative(r0, ("O", "O")) - 1e3)

    train, valid = screened
    kw = dict(budget=4, out=tmp_path, prune=False, grow=False)
    search(Fitter(train, valid, constraints=(minimum_at(2.9),), n_starts=1), "pair", **kw)
    kw["budget"] = 6
    with pytest.raises(SearchError, match=r"fit option constraints \(\(min_OO \(kind ineq"):
        edited = Fitter(train, valid, constraints=(minimum_at(3.1),), n_starts=1)
        search(edited, "pair", resume=True, **kw)
    same = Fitter(train, valid, constraints=(minimum_at(2.9),), n_starts=1)
    assert search(same, "pair", resume=True, **kw).n_evaluations >= 6
    # a checkpoint that named the constraint only (written before digests) resumes
    path = tmp_path / "checkpoint.pkl"
    state = pickle.loads(path.read_bytes())
    state["signature"]["fit"]["constraints"] = "(min_OO)"
    path.write_bytes(pickle.dumps(state))
    kw["budget"] = 8
    other = Fitter(train, valid, constraints=(minimum_at(3.1),), n_starts=1)
    assert search(other, "pair", resume=True, **kw).n_evaluations >= 8


def test_resume_notices_a_prebuilt_projection_of_another_grid(screened, tmp_path):
    """A prebuilt ForceProjection is compared by its settings and data, not its type only."""
    import pickle

    from mctsff.data.projection import ForceProjection

    train, valid = screened
    kw = dict(budget=4, out=tmp_path, prune=False, grow=False)

    def fitter(spacing):
        proj = ForceProjection.from_dataset(train, spacing=spacing)
        return Fitter(train, valid, constraints=(), n_starts=1, projection=proj)

    search(fitter(0.05), "pair", **kw)
    saved = pickle.loads((tmp_path / "checkpoint.pkl").read_bytes())["signature"]["fit"]
    assert saved["projection"].startswith("ForceProjection(spacing=0.05,")
    assert saved["projection"] == repr(ForceProjection.from_dataset(train, spacing=0.05))
    kw["budget"] = 6
    with pytest.raises(SearchError, match=r"fit option projection \(ForceProjection\(spacing=0.05"):
        search(fitter(0.1), "pair", resume=True, **kw)
    assert search(fitter(0.05), "pair", resume=True, **kw).n_evaluations >= 6
    # a checkpoint that named the projection's type only (written before) resumes as before
    path = tmp_path / "checkpoint.pkl"
    state = pickle.loads(path.read_bytes())
    state["signature"]["fit"]["projection"] = "ForceProjection"
    path.write_bytes(pickle.dumps(state))
    kw["budget"] = 8
    assert search(fitter(0.1), "pair", resume=True, **kw).n_evaluations >= 8


def test_resume_refuses_an_older_checkpoint_format(screened, tmp_path):
    import pickle

    train, valid = screened
    fitter = Fitter(train, valid, constraints=())
    search(fitter, "pair", budget=5, seed=0, out=tmp_path)
    path = tmp_path / "checkpoint.pkl"
    state = pickle.loads(path.read_bytes())
    state["version"] = 1  # transposition keys printed by sympy.srepr
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(SearchError, match=r"checkpoint\.pkl: checkpoint format 1 is not"):
        search(fitter, "pair", budget=10, out=tmp_path, resume=True)


@pytest.mark.slow
def test_custom_reward_changes_the_search(screened):
    train, valid = screened
    seen = []

    def prefers_long(result):
        seen.append(result.expression)
        return 0.0 if not result.valid else result.complexity / 100.0

    # local moves off: compare what the tree itself chose (40 fits already tell them apart)
    kw = dict(budget=40, seed=0, prune=False, grow=False)
    base = search(Fitter(train, valid, constraints=()), "pair", **kw)
    custom = search(Fitter(train, valid, constraints=()), "pair", reward=prefers_long, **kw)
    assert seen, "the custom reward was never called"
    assert custom.mcts.evaluated != base.mcts.evaluated
    mean_cx = np.mean([r.complexity for r in custom.mcts.results])
    assert mean_cx > np.mean([r.complexity for r in base.mcts.results])


def test_mcts_options_reach_the_tree(screened):
    train, valid = screened
    kw = dict(budget=20, seed=0, prune=False, grow=False)
    plain = search(Fitter(train, valid, constraints=()), "pair", mcts_options={"mast": 0.0}, **kw)
    assert plain.mcts.mast == 0.0
    assert search(Fitter(train, valid, constraints=()), "pair", **kw).mcts.mast > 0  # default
    fitter = Fitter(train, valid, constraints=())
    with pytest.raises(SearchError, match="'exploration' is a parameter of search"):
        search(fitter, "pair", budget=5, mcts_options={"exploration": 0.1})
    with pytest.raises(SearchError, match="unknown MCTS option 'temperature'"):
        search(fitter, "pair", budget=5, mcts_options={"temperature": 0.1})
    with pytest.raises(SearchError, match="apply to method='mcts', not 'gp'"):
        search(fitter, "pair", budget=5, method="gp", mcts_options={"mast": 0.0})
    with pytest.raises(SearchError, match="unknown GP option 'mast'"):
        search(fitter, "pair", budget=5, method="gp", gp_options={"mast": 0.0})
    with pytest.raises(SearchError, match="apply to method='gp', not 'mcts'"):
        search(fitter, "pair", budget=5, gp_options={"screen": 2})


def test_search_docstring_states_the_local_move_defaults():
    """The defaults of ``local_options`` written in ``search``'s docstring are the
    ``LocalMoves`` class attributes (the docstring repeats them for readers)."""
    from mctsff.engines.local import LOCAL_OPTIONS, LocalMoves

    doc = " ".join(search.__doc__.split())
    for key in LOCAL_OPTIONS:
        default = getattr(LocalMoves, key)
        shown = "``None``" if default is None else f"{default:g}"
        assert f"``{key}`` ({shown}" in doc, (key, default)


@pytest.mark.slow
def test_local_options_set_the_share_of_local_moves(screened, tmp_path):
    """``local_options`` reach the local moves: with no share left they stop at once."""
    train, valid = screened
    kw = dict(budget=60, seed=0, prune=False)
    runs = {}
    for share in (0.0, 1.0):
        opts = {"max_share": share, "spread_share": share}
        runs[share] = search(Fitter(train, valid, constraints=()), "pair", local_options=opts, **kw)
    # share 0: only the first batch, fitted before any local fit counted; share 1: more
    # (how many more depends on the search's path: 18 or 22 of 60 as fits changed)
    assert runs[0.0].n_local < runs[1.0].n_local
    # the checkpoint keeps them, and a resumed run goes on with them
    opts = {"spread_share": 1.0, "spread_hosts": 2}
    fitter = Fitter(train, valid, constraints=())
    search(fitter, "pair", budget=20, out=tmp_path, local_options=opts)
    with open(tmp_path / "checkpoint.pkl", "rb") as fh:
        assert pickle.load(fh)["local_options"] == {"spread_share": 1.0, "spread_hosts": 2}
    search(Fitter(train, valid, constraints=()), "pair", budget=30, out=tmp_path, resume=True)
    with open(tmp_path / "checkpoint.pkl", "rb") as fh:
        assert pickle.load(fh)["local_options"] == {"spread_share": 1.0, "spread_hosts": 2}
    # other settings passed to a resumed run: a warning says which ones it keeps
    with pytest.warns(UserWarning, match="started with .*'spread_hosts': 2"):
        search(
            Fitter(train, valid, constraints=()), "pair", budget=35, out=tmp_path, resume=True,
            local_options={"spread_hosts": 5},
        )  # fmt: skip
    with open(tmp_path / "checkpoint.pkl", "rb") as fh:
        assert pickle.load(fh)["local_options"] == {"spread_share": 1.0, "spread_hosts": 2}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"spread_everywhere": True}, "unknown setting 'spread_everywhere'"),
        ({"max_share": -0.1}, "'max_share' must be a non-negative number"),
        ({"spread_hosts": 1.5}, "'spread_hosts' must be a non-negative integer"),
        ({"max_terms": True}, "'max_terms' must be a non-negative integer"),
        ({"max_share": "high"}, "'max_share' must be a non-negative number"),
    ],
)
def test_bad_local_options_are_one_clear_error(screened, options, message):
    train, valid = screened
    with pytest.raises(SearchError, match=message):
        search(Fitter(train, valid, constraints=()), "pair", budget=5, local_options=options)


def test_bad_candidates_do_not_stop_the_search(screened):
    train, valid = screened

    class Flaky(Fitter):
        def fit(self, expression):
            if "erf" in expression:
                raise RuntimeError("boom")
            return super().fit(expression)

    res = search(Flaky(train, valid, constraints=()), "pair", budget=60, seed=0)
    bad = [r for r in res.mcts.results if not r.valid and "boom" in r.reason]
    assert all(math.isinf(r.score_loss) for r in bad)
    assert res.n_evaluations >= 60


def test_building_block_reuse_recovers_nguyen2():
    import sympy

    from mctsff.fit.regression import RegressionFitter, nguyen

    data, _ = nguyen(2, seed=0)
    # reuse alone: with linear scaling (the default) this seed needs more than 4000 fits
    fitter = RegressionFitter(data, n_starts=1, linear_scaling=False)

    def exact(res):
        return res is not None and res.valid and res.rmse_train < 1e-10

    hits = []
    res = search(  # reuse is the default for regression
        fitter, "nguyen", budget=4000, seed=0, max_length=30,
        callback=lambda r: hits.append(r) if exact(r) else None, should_stop=lambda: bool(hits),
    )  # fmt: skip
    assert res.mcts.elite == 0.3 and res.mcts.transplant
    assert hits and exact(res.best)
    x = sympy.Symbol("x")
    assert sympy.expand(sympy.sympify(res.best.expression) - (x**4 + x**3 + x**2 + x)) == 0


def test_linear_scaling_search_edits_the_searched_structure(tmp_path):
    from mctsff.fit.regression import RegressionFitter, nguyen

    data, _ = nguyen(10, seed=0)  # 2*sin(x)*cos(y): exact only when scaled
    fitter = RegressionFitter(data, n_starts=1, linear_scaling=True)
    res = search(fitter, "nguyen2", budget=3000, seed=0, max_length=30, out=tmp_path,
                 should_stop=lambda: False)  # fmt: skip
    best = res.best
    assert best.rmse_train < 1e-10
    assert best.expression == f"scale*({searched_expression(best)}) + offset"
    assert best.params["scale"] == pytest.approx(2.0, abs=1e-9)
    # no local move ever proposed a model's own scale/offset constants
    assert not any("scale" in r.extra.get("unscaled_expression", "") for r in res.mcts.results)
    assert json.loads((tmp_path / "run.json").read_text())["linear_scaling"] is True
    with pytest.raises(SearchError, match="linear_scaling"):
        search(RegressionFitter(data, n_starts=1, linear_scaling=False), "nguyen2", budget=10,
               out=tmp_path,
               resume=True)  # fmt: skip


def test_reuse_defaults_follow_the_objective(screened):
    from mctsff.fit.regression import RegressionFitter, nguyen

    data, _ = nguyen(1, seed=0)
    reg = RegressionFitter(data, n_starts=1)
    train, valid = screened
    forces = Fitter(train, valid, constraints=())
    cases = ((reg, "nguyen", (True, 0.3), 10), (forces, "pair", (False, 0.0), 3))
    for fitter, grammar, want, rollouts in cases:
        res = search(fitter, grammar, budget=3, seed=0)
        assert (res.mcts.transplant, res.mcts.elite) == want
        assert res.mcts.novelty == 8 and res.mcts.cover
        assert res.mcts.n_rollouts == rollouts
        res = search(
            fitter,
            grammar,
            budget=3,
            seed=0,
            transplant=not want[0],
            elite=0.1,
            novelty=2,
            n_rollouts=5,
        )
        assert (res.mcts.transplant, res.mcts.elite) == (not want[0], 0.1)
        assert res.mcts.novelty == 2 and res.mcts.n_rollouts == 5
        assert search(fitter, grammar, budget=3, seed=0, cover=False).mcts.cover is False


def test_surrogate_follows_the_objective_and_the_checkpoint(screened, tmp_path):
    from mctsff.fit.regression import RegressionFitter, nguyen
    from mctsff.fit.surrogate import ForceSurrogate

    train, valid = screened
    fitter = Fitter(train, valid, constraints=())
    res = search(fitter, "pair", budget=3, seed=0, out=tmp_path)
    assert isinstance(res.mcts.surrogate, ForceSurrogate)
    assert json.loads((tmp_path / "run.json").read_text())["surrogate"] is True
    assert search(fitter, "pair", budget=3, seed=0, surrogate=False).mcts.surrogate is None
    data, _ = nguyen(1, seed=0)
    reg = RegressionFitter(data, n_starts=1)
    assert search(reg, "nguyen", budget=3, seed=0).mcts.surrogate is None
    gp = search(fitter, "pair", budget=3, seed=0, method="gp", out=tmp_path / "gp")
    assert isinstance(gp.mcts.surrogate, ForceSurrogate)  # both methods get the same help
    assert json.loads((tmp_path / "gp" / "run.json").read_text())["surrogate"] is True
    gp_resumed = search(fitter, "pair", budget=6, method="gp", out=tmp_path / "gp", resume=True)
    assert isinstance(gp_resumed.mcts.surrogate, ForceSurrogate)
    assert search(fitter, "pair", budget=3, method="gp", surrogate=False).mcts.surrogate is None
    with pytest.raises(SearchError, match="surrogate"):
        search(fitter, "pair", budget=3, mcts_options={"surrogate": None})
    with pytest.raises(SearchError, match="gp_options: 'surrogate' is a parameter of search"):
        search(fitter, "pair", budget=3, method="gp", gp_options={"surrogate": None})
    # a resumed run keeps what it was started with
    resumed = search(fitter, "pair", budget=6, out=tmp_path, resume=True, surrogate=False)
    assert isinstance(resumed.mcts.surrogate, ForceSurrogate)
    off = tmp_path / "off"
    search(fitter, "pair", budget=3, seed=0, out=off, surrogate=False)
    assert search(fitter, "pair", budget=6, out=off, resume=True).mcts.surrogate is None


def test_objective_kind_is_one_convention(screened):
    from types import SimpleNamespace

    from mctsff.fit.regression import RegressionData, RegressionFitter
    from mctsff.search import OBJECTIVE_DEFAULTS, objective_kind

    train, valid = screened
    x = np.linspace(0.1, 1.0, 20)
    assert objective_kind(Fitter(train, valid, constraints=())) == "forces"
    data = RegressionData(x[None, :], x**2, ("x",))
    assert objective_kind(RegressionFitter(data)) == "regression"
    assert objective_kind(None) == "regression"
    # a user's own force-matching fitter is recognised by what its outputs need
    assert objective_kind(SimpleNamespace(species=("H", "O"))) == "forces"
    assert set(OBJECTIVE_DEFAULTS) == {"forces", "regression"}


def test_substitution_has_its_own_share_and_finds_nguyen11():
    """``x**y = exp(y*log(x))``: at 1500 fits 0/6 seeds without the move, 5/6 with it."""
    from mctsff.fit.regression import RegressionFitter, nguyen

    data, _ = nguyen(11, seed=3)
    runs = {}
    for share in (0.0, 0.3):
        fitter = RegressionFitter(data, n_starts=1, seed=0)
        runs[share] = search(
            fitter, "nguyen2", budget=1500, seed=3, max_length=30,
            local_options={"substitute_share": share},
        )  # fmt: skip
    kinds = {s: [r.extra.get("local_move") for r in runs[s].mcts.results] for s in runs}
    assert "substitute" not in kinds[0.0]
    n_sub = kinds[0.3].count("substitute")
    # its own share, checked before each batch (one batch of a few front members can overshoot)
    assert 0 < n_sub <= 0.5 * runs[0.3].n_evaluations
    rms = float(np.sqrt(np.mean(data.y**2)))
    exact = [p for p in runs[0.3].front.points if p.valid and p.rmse_train <= 1e-8 * rms]
    assert any(p.expression.replace(" ", "") in ("exp(y*log(x))", "exp(log(x)*y)") for p in exact)
    # the moves' results keep their derivations, so the tree's reuse can copy their parts
    engine = runs[0.3].mcts
    local = [r for r in engine.results if "local_move_from" in r.extra]
    searched = [searched_expression(r) for r in local]  # without the linear scaling
    derived = [e for e in searched if engine._actions[engine._key(e)]]
    assert len(derived) > 0.5 * len(local)
    for e in derived[:20]:
        assert derive(engine.grammar, engine._actions[engine._key(e)]).expression() == e.replace(
            " ", ""
        )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_follows_the_time_limit_or_the_budget_and_quiet_shows_nothing():
    from mctsff.search import _Progress

    for stream in (_Terminal(), io.StringIO()):  # a terminal (tqdm bar), a log (lines)
        # with a time limit: a bar over the seconds, the fits against the budget beside it
        bar = _Progress(10, 60.0, True, stream=stream)
        bar.update(3, 0.125, 2, force=True)
        bar.update(7, 0.0625, 3, force=True)
        bar.update(8, 0.25, 2, force=True)  # the front dropped its best member
        bar.close()
        text = stream.getvalue()
        assert "0/60 s" in text and "fits 3/10" in text and "fits 8/10" in text, text
        assert "best RMSE 0.0625, front 2" in text and text.endswith("\n")
        assert "best RMSE 0.25" not in text
        # without one: a bar over the budget (fits)
        stream.seek(0), stream.truncate()
        bar = _Progress(10, None, True, stream=stream)
        bar.update(3, 0.125, 2, force=True)
        bar.update(7, 0.0625, 3, force=True)
        bar.close()
        text = stream.getvalue()
        assert "3/10" in text and "7/10" in text and " s [" not in text, text
        assert "best RMSE 0.0625, front 3" in text
    # the ETA is the time left: 30 s of a 60 s limit gone after 2 of 1000 fits
    log = io.StringIO()
    bar = _Progress(1000, 60.0, True, stream=log)
    bar.t0 -= 30.0
    bar.update(2, math.inf, 0, force=True)  # nothing on the front yet
    assert "30/60 s [00:30<00:30, fits 2/1000, best RMSE none yet" in log.getvalue(), log.getvalue()
    quiet = _Terminal()
    bar = _Progress(10, 60.0, False, stream=quiet)
    bar.update(3, 0.125, 2, force=True)
    bar.close()
    assert quiet.getvalue() == ""


# ----------------------------------------------------------------------------- run folders
def _fast(train, valid):
    # wall off: the screened-Coulomb fixture attracts between H and O at every distance,
    # so under the repulsive wall few forms beat U = 0 on it and a 4-fit front is empty
    return Fitter(train, valid, constraints=(), n_starts=1, wall=None)


_FAST = dict(budget=4, seed=0, prune=False, grow=False)


class _Evil:
    """Pickles to a call of os.system (what a crafted checkpoint would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_runs_no_code(screened, tmp_path):
    """Resume and export read checkpoint.pkl through an allow-list unpickler (issue 36)."""
    from mctsff.export import ExportError, load_front_point
    from mctsff.runio import RunFolderError, load_checkpoint

    train, valid = screened
    search(_fast(train, valid), "pair", out=tmp_path, **_FAST)
    marker = tmp_path / "PWNED"
    state = load_checkpoint(tmp_path / "checkpoint.pkl")
    state["front"].append(_Evil(marker))
    (tmp_path / "checkpoint.pkl").write_bytes(pickle.dumps(state))
    with pytest.raises(RunFolderError, match=r"checkpoint\.pkl: not a readable .*posix\.system"):
        search(_fast(train, valid), "pair", out=tmp_path, resume=True, **_FAST)
    (tmp_path / "pareto.json").unlink()  # export falls back to the checkpoint
    with pytest.raises(ExportError, match="posix.system"):
        load_front_point(tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "Ran out of input"),
        (b"garbage\x00\x01", "not a readable mctsff checkpoint"),
        (pickle.dumps([1, 2, 3]), "holds a list, not a dict"),
        (pickle.dumps({"version": 6, "signature": {}})[:-7], "not a readable"),
        (pickle.dumps({"version": 6, "signature": {}}), "damaged checkpoint .'mcts' is missing"),
    ],
)
def test_damaged_checkpoints_are_one_clear_error(screened, tmp_path, content, message):
    from mctsff.runio import RunFolderError

    train, valid = screened
    search(_fast(train, valid), "pair", out=tmp_path, **_FAST)
    (tmp_path / "checkpoint.pkl").write_bytes(content)
    with pytest.raises((RunFolderError, SearchError), match=message):
        search(_fast(train, valid), "pair", out=tmp_path, resume=True, **_FAST)


def test_a_run_folder_is_never_overwritten_silently(screened, tmp_path):
    from mctsff.runio import RunFolderError

    train, valid = screened
    first = search(_fast(train, valid), "pair", out=tmp_path, **_FAST)
    before = (tmp_path / "checkpoint.pkl").read_bytes()
    with pytest.raises(RunFolderError, match="exists and is not empty .*--overwrite"):
        search(_fast(train, valid), "pair", out=tmp_path, **_FAST)
    assert (tmp_path / "checkpoint.pkl").read_bytes() == before
    (tmp_path / "notes.txt").write_text("mine")
    again = search(_fast(train, valid), "pair", out=tmp_path, overwrite=True, **_FAST)
    assert again.mcts.evaluated == first.mcts.evaluated  # same seed, same run
    assert (tmp_path / "notes.txt").read_text() == "mine"  # only the run's own files go
    with pytest.raises(RunFolderError, match="not a folder"):
        search(_fast(train, valid), "pair", out=tmp_path / "notes.txt", **_FAST)


def test_a_locked_run_folder_stops_a_second_search(screened, tmp_path):
    from mctsff.runio import RunFolderError, RunLock

    train, valid = screened
    with RunLock(tmp_path):  # another search holds the folder
        with pytest.raises(RunFolderError, match="another search is writing this run folder"):
            search(_fast(train, valid), "pair", out=tmp_path, **_FAST)
    search(_fast(train, valid), "pair", out=tmp_path, **_FAST)  # free again
    assert not (tmp_path / ".mctsff.lock").exists()  # removed when the search ends
    with RunLock(tmp_path):
        with pytest.raises(RunFolderError, match="locked"):
            search(_fast(train, valid), "pair", out=tmp_path, resume=True, **_FAST)
        # other data while the folder is in use: refused as in use (the lock comes first)
        with pytest.raises(RunFolderError, match="locked"):
            search(_fast(valid, train), "pair", out=tmp_path, resume=True, **_FAST)
    with pytest.raises(SearchError, match="different"):  # and as other data once free
        search(_fast(valid, train), "pair", out=tmp_path, resume=True, **_FAST)
    assert not (tmp_path / ".mctsff.lock").exists()  # a refused resume releases the lock


def test_writes_never_follow_a_planted_symlink(screened, tmp_path):
    train, valid = screened
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json.tmp").symlink_to(victim)  # the fixed temporary name of old versions
    search(_fast(train, valid), "pair", out=out, overwrite=True, **_FAST)
    assert victim.read_text() == "precious"
    assert json.loads((out / "run.json").read_text())["n_evaluations"] >= 4
    (out / "pareto.json").unlink()
    (out / "pareto.json").symlink_to(victim)  # a link at the target is replaced, not followed
    search(_fast(train, valid), "pair", out=out, resume=True, **{**_FAST, "budget": 6})
    assert victim.read_text() == "precious"
    assert not (out / "pareto.json").is_symlink()
    assert not [p for p in os.listdir(out) if p.endswith(".tmp") or ".tmp." in p][1:]


def test_an_unwritable_folder_stops_before_the_search(screened, tmp_path, monkeypatch):
    import errno
    import tempfile

    from mctsff import runio

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    train, valid = screened
    monkeypatch.setattr(runio.tempfile, "mkstemp", read_only)
    fits = []
    with pytest.raises(runio.RunFolderError, match="cannot write .*: read-only file system"):
        search(_fast(train, valid), "pair", out=tmp_path, callback=fits.append, **_FAST)
    assert not fits  # nothing was fitted
    monkeypatch.setattr(runio.tempfile, "mkstemp", tempfile.mkstemp)


def test_a_full_disk_at_the_end_keeps_the_checkpoint_and_returns_the_front(
    screened, tmp_path, monkeypatch
):
    import errno

    from mctsff import search as search_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

    train, valid = screened
    monkeypatch.setattr(search_module, "plot_potentials", full)
    # the tree's 4 fits give a front to write (the term library's first 4 proposals, 3-term
    # sums, do not enter it on these data)
    with pytest.warns(UserWarning, match="no space left"):
        res = search(_fast(train, valid), "pair", out=tmp_path, **_FAST, terms=False)
    assert len(res.front) > 0
    assert "potentials.png: no space left on the device" in res.write_error
    assert "checkpoint" in res.write_error and "--resume" in res.write_error
    assert (tmp_path / "checkpoint.pkl").is_file() and (tmp_path / "pareto.json").is_file()
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]
    monkeypatch.undo()
    resumed = search(_fast(train, valid), "pair", out=tmp_path, resume=True, **_FAST, terms=False)
    assert resumed.write_error is None and (tmp_path / "potentials.png").is_file()


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_search_like_ctrl_c(screened, tmp_path, name):
    """A batch system's stop (SIGTERM) and a closed terminal or dropped ssh session
    (SIGHUP, which used to kill the search before anything was written) end the search as
    Ctrl-C does, and the handlers are restored."""
    import signal

    from mctsff.engines.pareto import ParetoFront

    signum = getattr(signal, name)
    train, valid = screened
    sent = []

    def send(res):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)

    res = search(
        _fast(train, valid), "pair", out=tmp_path, callback=send, **{**_FAST, "budget": 500}
    )
    assert res.interrupted and res.n_evaluations < 500
    # the front as it stood is written (it may be empty: no local moves, and the first
    # results may not earn a place)
    written = ParetoFront.from_json(tmp_path / "pareto.json")
    assert [p.expression for p in written.points] == [p.expression for p in res.front.points]
    assert signal.getsignal(signum) is signal.SIG_DFL


def test_a_stop_request_ends_a_step_that_draws_without_end(screened, tmp_path):
    """SIGTERM during a step of 10 million rollouts stops its drawing as a passed time limit
    would (it used to wait for the step: the issue-36 probe's two remaining hangs)."""
    import signal
    import threading
    import time

    train, valid = screened
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    t0 = time.perf_counter()
    timer.start()
    try:
        # the tree's step alone (the term library's proposals would spend the budget first)
        kw = {**_FAST, "n_rollouts": 10_000_000, "terms": False}
        res = search(_fast(train, valid), "pair", out=tmp_path, **kw)
    finally:
        timer.cancel()
    assert res.interrupted and time.perf_counter() - t0 < 30.0
    assert (tmp_path / "pareto.json").is_file() and (tmp_path / "checkpoint.pkl").is_file()


def test_an_ignored_sighup_stays_ignored_under_nohup(screened):
    import signal

    train, valid = screened
    seen = []
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # what nohup does
    try:

        def hang_up(res):
            seen.append(signal.getsignal(signal.SIGHUP))
            os.kill(os.getpid(), signal.SIGHUP)

        res = search(_fast(train, valid), "pair", callback=hang_up, **{**_FAST, "budget": 2})
        assert not res.interrupted and res.n_evaluations == 2 and set(seen) == {signal.SIG_IGN}
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, old)


def test_resume_compares_the_data_by_content_not_path(tmp_path):
    import shutil

    from mctsff.data import data_file, load_dataset

    src = data_file("water_dimers_mp2_sample20.extxyz")
    first, moved = tmp_path / "a.extxyz", tmp_path / "b.extxyz"
    shutil.copy(src, first)

    def fitter(path):
        train, valid = load_dataset(path, cutoff=9.0).split(0.2, seed=0)
        return _fast(train, valid)

    out = tmp_path / "run"
    search(fitter(first), "pair", out=out, **_FAST)
    first.rename(moved)  # the same file under another path resumes
    search(fitter(moved), "pair", out=out, resume=True, **{**_FAST, "budget": 6})
    text = moved.read_text().splitlines(keepends=True)  # one force component changed
    i = next(k for k, line in enumerate(text) if line.strip().startswith("O "))
    parts = text[i].split()
    parts[-1] = repr(float(parts[-1]) + 0.5)
    text[i] = " ".join(parts) + "\n"
    moved.write_text("".join(text))
    with pytest.raises(SearchError, match=r"different data \(the content"):
        search(fitter(moved), "pair", out=out, resume=True, **{**_FAST, "budget": 8})


#: a grammar that allows only pair-specific inverse powers 6, 8, 12 and screened Coulomb
RESTRICTIVE = """
// @variables r
start: potential
potential: term
         | potential "+" term               -> add
         | potential "-" term               -> sub
term: PAIR_CONST "/" rpow                   -> inverse_power
    | PAIR_CONST "*erfc(" CONST "*r)/r"     -> screened
rpow: "r**6"                                -> r6
    | "r**8"                                -> r8
    | "r**12"                               -> r12
CONST: "C"
PAIR_CONST: "P"
"""


def _parses(grammar_text: str, expression: str) -> bool:
    """Parse ``expression`` with a plain Lark parser of the grammar (constants as placeholders)."""
    import re

    import lark

    text = re.sub(r"\bpair_c\d+\b", "P", expression.replace(" ", ""))
    text = re.sub(r"\bc\d+\b", "C", text)
    try:
        lark.Lark(grammar_text, start="start").parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mcts", "gp"])
def test_every_fitted_expression_is_derivable_from_a_custom_grammar(screened, method):
    """Issue 32: the local moves proposed ``c1 / r``, ``prod_c1 * erfc(c1 * r)`` and
    ``c1 / r ** 8`` outside such a grammar; now every fitted expression parses with it."""
    train, valid = screened
    grammar = Grammar.from_text(RESTRICTIVE, name="restrictive")
    fitted = []
    res = search(
        Fitter(train, valid, constraints=(), n_starts=1),
        grammar,
        budget=40,
        seed=0,
        method=method,
        callback=fitted.append,
    )
    assert len(fitted) >= 40 and res.n_local > 0
    assert res.n_underivable > 0  # the moves did propose forms outside the grammar
    bad = [r.expression for r in fitted if not _parses(RESTRICTIVE, searched_expression(r))]
    assert not bad
    assert _parses(RESTRICTIVE, "pair_c1/r**6 + pair_c2*erfc(c1*r)/r")  # the check can pass
    assert not _parses(RESTRICTIVE, "c1/r**8") and not _parses(RESTRICTIVE, "pair_c1/r")
    off = search(
        Fitter(train, valid, constraints=(), n_starts=1),
        grammar,
        budget=20,
        seed=0,
        method=method,
        prune=False,
        grow=False,
    )
    assert off.n_local == 0 and off.n_underivable == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(budget=0), "budget must be a whole number >= 1"),
        (dict(budget=-3), "budget must be a whole number >= 1"),
        (dict(budget=2.5), "budget must be a whole number >= 1"),
        (dict(time_limit=math.nan), "time_limit must be a finite number > 0"),
        (dict(resume=True, overwrite=True), "resume and overwrite exclude each other"),
    ],
)
def test_bad_budgets_and_limits_are_one_clear_error(screened, tmp_path, kwargs, message):
    train, valid = screened
    args = {**_FAST, "out": tmp_path / "run", **kwargs}
    with pytest.raises(SearchError, match=message):
        search(_fast(train, valid), "pair", **args)
    assert not (tmp_path / "run").exists()


def test_engine_files_are_saved_atomically_and_loaded_without_running_code(screened, tmp_path):
    from mctsff.engines.mcts import MCTS
    from mctsff.runio import RunFolderError

    train, valid = screened
    res = search(_fast(train, valid), "pair", **_FAST)
    path = tmp_path / "engine.pkl"
    res.mcts.save(path)
    again = MCTS.load(path, res.mcts.evaluate)
    assert again.evaluated == res.mcts.evaluated
    state = pickle.loads(path.read_bytes())
    state["evaluated"].append(_Evil(tmp_path / "PWNED"))
    path.write_bytes(pickle.dumps(state))
    with pytest.raises(RunFolderError, match="posix.system"):
        MCTS.load(path, res.mcts.evaluate)
    assert not (tmp_path / "PWNED").exists()


def test_a_failed_atomic_write_names_its_file_and_leaves_the_old_one(tmp_path):
    import errno

    from mctsff.runio import atomic_output, atomic_write, write_error

    target = tmp_path / "pareto.csv"
    atomic_write(target, b"old")
    with pytest.raises(OSError) as info, atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")  # as fh.write raises it
    assert write_error(info.value, info.value.filename) == (
        f"cannot write {target}: no space left on the device"
    )
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["pareto.csv"]


# ----------------------------------------------------------------------------- variables
def test_grammar_variables_must_be_the_datas(screened, tmp_path, monkeypatch):
    """A variable the data lack would be fitted as a constant (issue 36): one error, no fit."""
    from mctsff.fit.regression import RegressionData, RegressionFitter

    t = np.linspace(-1.0, 1.0, 20)
    data = RegressionData(t[None, :], t**3 + t, ("t",), "data.csv")
    fitter = RegressionFitter(data, n_starts=1)
    fits = []  # the evaluator turns a fit's exception into an invalid result: record instead
    monkeypatch.setattr(fitter, "fit", fits.append)
    with pytest.raises(SearchError) as info:
        search(fitter, "nguyen", out=tmp_path / "reg", **_FAST)
    assert str(info.value).startswith(
        "grammar 'nguyen' uses variables x; the data provide t (columns of data.csv); "
    )
    # every grammar variable must be there (nguyen2 writes x and y)
    data_x = RegressionData(t[None, :], t**3, ("x",), "x.csv")
    with pytest.raises(SearchError, match="uses variables x y; the data provide x "):
        search(RegressionFitter(data_x, n_starts=1), "nguyen2", out=tmp_path / "xy", **_FAST)
    # forces data provide r only: a regression grammar is refused, not an empty front
    forces = _fast(*screened)
    monkeypatch.setattr(forces, "fit", fits.append)
    with pytest.raises(SearchError) as info:
        search(forces, "nguyen", out=tmp_path / "forces", **_FAST)
    message = str(info.value)
    assert "grammar 'nguyen' uses variables x; the data provide r (pair distances of " in message
    assert "--grammar pair" in message
    assert not fits and not any(tmp_path.iterdir())  # refused before any fit and any file


def test_a_grammar_may_use_some_of_the_datas_variables():
    from mctsff.fit.regression import RegressionData, RegressionFitter
    from mctsff.search import check_variables

    xy = np.random.default_rng(0).uniform(-1, 1, size=(2, 10))
    fitter = RegressionFitter(RegressionData(xy, xy[0] ** 2, ("x", "y")), n_starts=1)
    check_variables(fitter, Grammar.load("nguyen"))  # x of x, y: accepted
    check_variables(fitter, Grammar.load("nguyen2"))
    with pytest.raises(SearchError, match="uses no variables; the data provide x y"):
        check_variables(fitter, Grammar.from_text('start: "1" | start "+" "1"', name="consts"))


_DAMAGES = [  # (where, value, words of the message)
    (("mcts", "n_evaluations"), "x", "n_evaluations is 'x'"),  # was a TypeError later on
    (("mcts", "grammar"), "pair", "AttributeError"),
    (("mcts", "_inflight"), [1], "AttributeError"),
    (("front",), [5], "TypeError"),
    (("front",), [{"zzz": 1}], "unexpected keyword argument 'zzz'"),
    (("local_options",), 5, "TypeError"),
    (("mcts", "_cache"), 5, "_cache is not a dict"),
    (("terms_pending",), {"cut": [1]}, "terms_pending"),  # a batch of proposals cut short
    (("terms_pending",), {"cut": ["c1/r"], "starts": {"c1/r": {"c1": "x"}}}, "terms_pending"),
    # a planted member (was dropped without a word): the expression of no fit
    (("front",), [{"expression": 'A/r #"""\n', "params": {"A": 1.0}}], "ExpressionError"),
]


def test_a_checkpoint_with_parts_of_the_wrong_type_is_one_error(screened, tmp_path):
    """Parts a damaged or planted checkpoint.pkl can hold while it still unpickles (the
    allow-list admits containers): one 'damaged checkpoint' line each, never a traceback
    (the first seven were tracebacks)."""
    from mctsff.runfolder import read_checkpoint

    train, valid = screened
    run = tmp_path / "run"
    search(_fast(train, valid), "pair", out=run, **{**_FAST, "budget": 2})
    good = (run / "checkpoint.pkl").read_bytes()
    for (*path, key), value, words in _DAMAGES:
        state = read_checkpoint(run)
        holder = state
        for p in path:
            holder = holder[p]
        holder[key] = value
        (run / "checkpoint.pkl").write_bytes(pickle.dumps(state))
        with pytest.raises(SearchError) as exc:
            search(_fast(train, valid), "pair", out=run, resume=True, **{**_FAST, "budget": 3})
        message = str(exc.value)
        assert "damaged checkpoint" in message and words in message, message
        assert "\n" not in message
        (run / "checkpoint.pkl").write_bytes(good)
