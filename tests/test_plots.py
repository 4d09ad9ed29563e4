"""pareto.png and potentials.png as talk figures: math labels, selected member, references."""

import numpy as np

from mctsff.engines.pareto import ParetoFront, math_label
from mctsff.expr.params import Potential
from mctsff.fit import Fitter
from mctsff.fit.result import FitResult
from mctsff.plots import plot_potentials, potentials_figure
from mctsff.search import write_outputs
from mctsff.water.models import reference_model


def _member(fitter, expr, complexity):
    res = fitter.fit(expr)
    res.complexity = complexity
    return res


def test_math_label_is_mathtext_with_combining_rules_and_falls_back_to_plain_text():
    label = math_label("prod_q/r + pair_A*exp(-r/b) - pair_C/r**6")
    assert label.startswith("$") and label.endswith("$")
    assert "q^{A} q^{B}" in label and "C^{AB}" in label and "r^{6}" in label
    assert math_label("c1*(r") == "c1*(r"  # does not parse: the plain text


def test_pareto_figure_labels_every_member_and_keeps_the_reference_elements(tmp_path):
    pts = [
        FitResult("c1/r", complexity=3, rmse_train=2.0, rmse_valid=2.1, rmse_test=2.2),
        FitResult("prod_q/r + c1/r**12", complexity=7, rmse_train=0.5, rmse_valid=0.6),
        FitResult("prod_q/r + geom_A/r**12 - c2/r**6", complexity=12, rmse_valid=0.55),
    ]
    front = ParetoFront(pts, null_loss=3.0)
    fig = front.figure({"q-SPC/Fw (published)": 0.9}, title="t")
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_gid() == "member-label"]
    assert [t.get_text() for t in labels] == [math_label(p.expression) for p in front.points]
    assert all(t.get_text().startswith("$") for t in labels)
    assert [t.get_rotation() for t in labels] == [35.0] * len(front)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for entry in (
        "U = 0 (3)",
        "train",
        "test",
        "selected (knee rule)",
        "q-SPC/Fw (published) (0.9)",
    ):
        assert entry in legend
    lo, hi = ax.get_ylim()
    assert lo < 0.55 and hi > 3.0  # every member, U = 0 and the reference line in view
    one = ParetoFront(pts[:1]).figure()
    assert len([t for t in one.axes[0].texts if t.get_gid() == "member-label"]) == 1
    assert front.plot(tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_pareto_figure_shows_a_reference_line_at_the_loss_of_u_equals_zero():
    """A reference model as bad as U = 0 (q-SPC/Fw published on the demo's validation
    frames: 0.0969 vs 0.0975) is drawn on top of U = 0's band, and the legend tells the two
    values apart."""
    pts = [FitResult("c1/r", complexity=3, rmse_train=0.08, rmse_valid=0.09)]
    fig = ParetoFront(pts, null_loss=0.0975).figure({"q-SPC/Fw (published)": 0.0969})
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    zero, ref = lines["U = 0 (0.0975)"], lines["q-SPC/Fw (published) (0.0969)"]
    assert ref.get_zorder() > zero.get_zorder()  # drawn over the band
    assert zero.get_linewidth() > 2 * ref.get_linewidth()  # the band shows around the dashes
    assert ref.get_linestyle() == "--" and zero.get_color() != ref.get_color()


def test_potentials_figure_draws_the_exported_selected_member_simpler_ones_and_the_reference(
    screened, tmp_path
):
    train, valid = screened
    fitter = Fitter(train, valid, constraints=(), n_starts=2)
    members = [
        _member(fitter, "prod_c1/r", 3),
        _member(fitter, "prod_c1*exp(-r/c1)/r", 7),
    ]
    front = ParetoFront(members)
    chosen = front.selected()
    assert chosen is not None
    expr, params, _ = reference_model("q-SPC/Fw", fitter.species, fitter.type_pairs)
    ref = Potential(
        expr, params, fitter.species, fitter.type_pairs, cutoff=fitter.cutoff, scheme=fitter.scheme
    )
    fig = potentials_figure(front, fitter, reference_potentials={"q-SPC/Fw (published)": ref})
    assert len(fig.axes) == len(fitter.type_pairs)
    pot = fitter.potential(chosen.expression, chosen.params)
    for ax, pair in zip(fig.axes, fitter.type_pairs, strict=True):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        sel = next(ln for lab, ln in lines.items() if lab.startswith("selected:"))
        assert sel.get_linewidth() > 2
        r = np.asarray(sel.get_xdata())
        np.testing.assert_allclose(sel.get_ydata(), pot.energy(r, pair))  # as exported
        assert lines["q-SPC/Fw (published)"].get_linestyle() == "--"
        simpler = [p for p in front.points if p.complexity < chosen.complexity]
        for p in simpler:
            assert any(lab.startswith(math_label(p.expression)) for lab in lines)
        lo, hi = ax.get_ylim()
        assert lo < np.min(pot.energy(r[r >= r.min() / 0.8], pair)) and hi - lo < 10
    assert fig.legends and not any(ax.get_legend() for ax in fig.axes)  # outside the panels

    single = ParetoFront(members[:1])
    fig1 = potentials_figure(single, fitter)
    labels = [ln.get_label() for ln in fig1.axes[0].get_lines()]
    assert sum(lab.startswith("selected:") for lab in labels) == 1
    assert plot_potentials(tmp_path / "p.png", single, fitter).read_bytes()[:4] == b"\x89PNG"
    files = write_outputs(tmp_path, front, fitter, {"x": 0.1}, {"q-SPC/Fw (published)": ref})
    assert all((tmp_path / name).stat().st_size > 0 for name in ("pareto.png", "potentials.png"))
    assert "potentials.png" in files
