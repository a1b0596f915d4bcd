"""What a finished run says about the theory (docs/concepts/dynamics.md#what-a-run-records-and-the-verdict).

For every trial, from the final attention weights W (or p):

* the selection reached, α_i = argmax_t a_it, and whether it is the global opt (ties allowed) or a
  locally-optimal selection certified by the test of docs/concepts/local-optimality.md (under the norm the
  parameterization is predicted to minimise: ℓ2 for p, Frobenius for W, nuclear for (K, Q), ℓ1 for diagonal (k, q));
* corr(W, θ^mm_α) = ⟨W, θ^mm_α⟩ / (‖W‖_F ‖θ^mm_α‖_F) for each Att-SVM norm, and which norm fits best;
* the normalized margin min_{i, t≠α_i} (a_iα − a_it)/‖W‖_F: positive iff W separates α from every other token;
* whether the run was long enough to tell: attention saturated (min_i max_t s_it ≥ 1 − ``sat_tol``) and the
  selection unchanged over the last ``stable_fraction`` of the records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .dynamics import TrainResult
from .problem import AttentionProblem
from .svm import correlation, logits, solve_svm
from .tokens import is_locally_optimal

#: the norm each parameterization's direction is predicted to minimise (P1, P2, P3)
PREDICTED_NORM = {"prompt": "l2", "combined": "fro", "factored": "nuclear", "diagonal": "l1"}
#: the norms compared for each parameterization
COMPARED_NORMS = {"prompt": ("l2",), "combined": ("fro", "nuclear"), "factored": ("fro", "nuclear"),
                  "diagonal": ("fro", "nuclear", "l1")}


def verdicts(problems: AttentionProblem | Sequence[AttentionProblem], result: TrainResult,
             sat_tol: float = 1e-6, stable_fraction: float = 0.2):
    """One row per trial (a pandas DataFrame) with the columns described in the module docstring."""
    import pandas as pd

    plist = [problems] if isinstance(problems, AttentionProblem) else list(problems)
    B = result.trials
    P = result.model.parameterization
    predicted = PREDICTED_NORM[P]
    R = result.steps.size
    last = max(1, int(np.ceil(stable_fraction * R)))
    rows = []
    for b in range(B):
        prob = plist[b] if len(plist) > 1 else plist[0]
        W = result.W[b]
        a = logits(prob, W)
        alpha = np.argmax(a, axis=1)
        row: dict = {"trial": b, "selection": ",".join(map(str, alpha))}
        lo = is_locally_optimal(prob, alpha, norm=predicted)
        row["global_opt"] = lo.globally_optimal
        row["locally_optimal"] = lo.locally_optimal
        row["svm_status"] = lo.result.status
        nrm = np.linalg.norm(W)
        a_alpha = a[np.arange(prob.n), alpha]
        other = np.where(prob.mask & (np.arange(prob.T)[None, :] != alpha[:, None]), a_alpha[:, None] - a, np.inf)
        row["margin"] = float(other.min() / nrm) if nrm > 0 else 0.0
        best, best_corr = None, -np.inf
        for norm in COMPARED_NORMS[P]:
            res = lo.result if norm == predicted else solve_svm(prob, alpha, norm)
            c = correlation(W, res.solution) if res.feasible and np.all(np.isfinite(res.solution)) else np.nan
            row[f"corr_{norm}"] = c
            if np.isfinite(c) and c > best_corr:
                best, best_corr = norm, c
        row["closest_svm"] = best or "none"
        row["one_minus_corr"] = 1.0 - best_corr if best else np.nan
        sat = result.metrics["max_softmax_min"][b, -1]
        stable = bool(np.all(result.selection[b, -last:] == result.selection[b, -1]))
        row["saturated"] = bool(sat >= 1.0 - sat_tol)
        row["selection_stable"] = stable
        row["verdict"] = _verdict_text(row, predicted)
        rows.append(row)
    return pd.DataFrame(rows)


def _verdict_text(row: dict, predicted: str) -> str:
    where = ("global opt" if row["global_opt"] else
             "certified local optimum" if row["locally_optimal"] else "selection not certified optimal")
    if row["closest_svm"] == "none":
        return f"no feasible SVM at the reached selection ({where})"
    head = (f"→ {row['closest_svm']} SVM at {where}, 1−corr = {row['one_minus_corr']:.2e}"
            + ("" if row["closest_svm"] == predicted else f" (theory predicts {predicted})"))
    if not (row["saturated"] and row["selection_stable"]):
        head += "; run too short to tell (attention not saturated or selection still changing)"
    return head


def verdict_summary(df) -> list[tuple[str, str]]:
    """(quantity, value) rows summarising a verdict table."""
    out = [
        ("reached the global opt", f"{df.global_opt.mean():.3f}"),
        ("reached a certified local optimum (not global)", f"{(df.locally_optimal & ~df.global_opt).mean():.3f}"),
        ("closest SVM (counts)", ", ".join(f"{k}: {v}" for k, v in df.closest_svm.value_counts().items())),
        ("1 − corr with closest SVM (median)", f"{np.nanmedian(df.one_minus_corr):.3e}"),
        ("long enough to tell", f"{(df.saturated & df.selection_stable).mean():.3f}"),
    ]
    for col in [c for c in df.columns if c.startswith("corr_")]:
        out.append((f"corr with {col[5:]} SVM at reached selection (mean)", f"{np.nanmean(df[col]):.6f}"))
    return out
