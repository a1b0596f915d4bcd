import numpy as np

import attnsvm as A
from attnsvm.metrics import verdicts
from attnsvm.models import Model
from attnsvm.training import NGD, Descent, Init, Save, train


def test_verdict_p1_single_global_and_local():
    # global case: the path converges to p^mm(opt); local case from p₀ = (0, −1.5, 0) it converges to the
    # locally-optimal token 1 with p^mm = (1, 0, 0) (P1 Fig. single input)
    for case, p0, sel, glob in (("global", [0.0, 0.0, 0.0], "0", True), ("local", [0.0, -1.5, 0.0], "1", False)):
        prob = A.p1_single(case)
        res = train(prob, Model("prompt"), Descent(NGD(lr=0.1), 1000), save=Save(every=100),
                    init=Init(given={"p": np.array(p0)}))
        df = verdicts(prob, res)
        row = df.iloc[0]
        assert row.selection == sel and bool(row.global_opt) == glob and bool(row.locally_optimal)
        assert row.closest_svm == "l2" and row.one_minus_corr < 1e-3
        assert row.saturated and row.selection_stable and row.margin > 0


def test_verdict_detects_short_runs():
    prob = A.unit_gaussian(3, 4, 5, seed=0)
    res = train(prob, Model("combined"), Descent(NGD(lr=0.01), 10), save=Save(every=5))
    df = verdicts(prob, res)
    assert not df.saturated.iloc[0] and "too short" in df.verdict.iloc[0]
    assert {"corr_fro", "corr_nuclear"} <= set(df.columns)
