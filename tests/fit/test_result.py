"""FitResult (mctsff.fit.result): what ``print(result)`` shows."""

import math

from mctsff.fit.result import FitResult


def _forces_result(**kw):
    return FitResult(
        "prod_q/r + A*exp(-r/b)",
        complexity=12,
        rmse_train=0.0618225,
        rmse_valid=0.0758,
        loss=0.0038220,
        params={"prod_q[H]": -0.54876, "prod_q[O]": 1.7031, "A": 17.5956, "b": 0.3464},
        constraints={"wall": 5.6e-12},
        flags=["the force of H-O at the cutoff is 10% of its largest"],
        extra={"start_losses": [0.004] * 50, "multipliers": {"wall": [0.0] * 200}},
        species=("H", "O"),
        type_pairs=(("H", "H"), ("H", "O"), ("O", "O")),
        cutoff=9.0,
        cutoff_scheme="shifted-force",
        **kw,
    )


def test_str_is_a_short_summary_with_units():
    res = _forces_result()
    text = str(res)
    lines = text.splitlines()
    assert lines[0] == "FitResult  prod_q/r + A*exp(-r/b)  (complexity 12)"
    assert "  force RMSE  train 0.06182 eV/Å, validation 0.0758 eV/Å, test n/a" in lines
    assert any(
        line.startswith("  training loss  0.003822 (") and "(eV/Å)²" in line for line in lines
    )
    assert "  potential  types H O, cutoff 9 Å (shifted-force)" in lines
    # one aligned line per parameter and constraint, each flag on its own line
    assert "    prod_q[H] = -0.5488" in lines and "    A         = 17.6" in lines
    assert "    wall = 5.6e-12" in lines
    assert "    - the force of H-O at the cutoff is 10% of its largest" in lines
    # the details (per-start losses, multipliers) stay in repr, not in the summary
    assert "start_losses" not in text and "multipliers" not in text
    assert len(text) < len(repr(res)) / 2 and "start_losses" in repr(res)
    assert "test 0.07 eV/Å" in str(_forces_result(rmse_test=0.07))


def test_str_of_a_regression_and_an_invalid_result():
    reg = FitResult("scale*(x**3) + offset", complexity=7, rmse_train=0.28, loss=0.0811,
                    params={"scale": 0.24, "offset": 0.36})  # fmt: skip
    lines = str(reg).splitlines()
    assert "  RMSE  train 0.28, validation n/a, test n/a" in lines  # no unit: the target's
    assert "eV" not in str(reg) and "potential" not in str(reg)
    assert any("the target's unit squared" in line for line in lines)
    bad = FitResult.invalid("log(r - 100)*c1", "evaluation not finite from every start", 6)
    assert str(bad).splitlines() == [
        "FitResult  log(r - 100)*c1  (complexity 6)",
        "  invalid: evaluation not finite from every start",
    ]
    assert math.isinf(bad.loss)
