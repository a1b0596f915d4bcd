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

from .problem import AttentionProblem
from .svm import correlation, logits, solve_svm
from .tokens import is_locally_optimal
from .training.run import DIVERGED, Run


def verdicts(problems: AttentionProblem | Sequence[AttentionProblem], result: Run,
             sat_tol: float = 1e-6, stable_fraction: float = 0.2):
    """One row per trial (a pandas DataFrame) with the columns described in the module docstring."""
    import pandas as pd

    plist = [problems] if isinstance(problems, AttentionProblem) else list(problems)
    B = result.trials
    param = result.model.param
    predicted, compared = param.predicted_norm, param.compared_norms
    multi = result.model.multihead
    R = result.steps.size
    last = max(1, int(np.ceil(stable_fraction * R)))
    rows = []
    for b in range(B):
        if result.status[b] == DIVERGED:
            # a non-finite W has no selection nor direction: counted apart, never averaged
            rows.append({"trial": b, "status": DIVERGED, "verdict": "diverged (non-finite values)"})
            continue
        prob = plist[b] if len(plist) > 1 else plist[0]
        # a multi-head run gives one row per head: each head against the Att-SVM of its own selection
        for h in range(result.W.shape[1] if multi else 1):
            W = result.W[b, h] if multi else result.W[b]
            row = _verdict_row(prob, W, predicted, compared)
            row = {"trial": b, **({"head": h} if multi else {}), "status": result.status[b], **row}
            sel = result.selection[b, :, h] if multi else result.selection[b]
            sat = result.metrics["max_softmax_min"][b, -1]
            row["saturated"] = bool(sat >= 1.0 - sat_tol)
            row["selection_stable"] = bool(np.all(sel[-last:] == sel[-1]))
            row["verdict"] = _verdict_text(row, predicted)
            rows.append(row)
    return pd.DataFrame(rows)


def _verdict_row(prob: AttentionProblem, W: np.ndarray, predicted: str, compared: tuple[str, ...]) -> dict:
    """Selection, certificate, margin and correlations with the Att-SVMs at the selection of W."""
    a = logits(prob, W)
    alpha = np.argmax(a, axis=1)
    row: dict = {"selection": ",".join(map(str, alpha))}
    lo = is_locally_optimal(prob, alpha, norm=predicted)
    row["global_opt"] = lo.globally_optimal
    row["locally_optimal"] = lo.locally_optimal
    row["svm_status"] = lo.result.status
    nrm = np.linalg.norm(W)
    a_alpha = a[np.arange(prob.n), alpha]
    other = np.where(prob.mask & (np.arange(prob.T)[None, :] != alpha[:, None]), a_alpha[:, None] - a, np.inf)
    row["margin"] = float(other.min() / nrm) if nrm > 0 else 0.0
    best, best_corr = None, -np.inf
    for norm in compared:
        res = lo.result if norm == predicted else solve_svm(prob, alpha, norm)
        c = correlation(W, res.solution) if res.feasible and np.all(np.isfinite(res.solution)) else np.nan
        row[f"corr_{norm}"] = c
        if np.isfinite(c) and c > best_corr:
            best, best_corr = norm, c
    row["closest_svm"] = best or "none"
    row["one_minus_corr"] = 1.0 - best_corr if best else np.nan
    return row


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
    """(quantity, value) rows summarising a verdict table (diverged trials counted, and left out)."""
    n_div = int((df.status == DIVERGED).sum()) if "status" in df else 0
    df = df[df.status != DIVERGED] if "status" in df else df
    if df.empty:
        return [("diverged trials", str(n_div))]
    df = df.astype({c: bool for c in ("global_opt", "locally_optimal", "saturated", "selection_stable")
                    if c in df})
    out = [
        ("diverged trials", str(n_div)),
        ("reached the global opt", f"{df.global_opt.mean():.3f}"),
        ("reached a certified local optimum (not global)", f"{(df.locally_optimal & ~df.global_opt).mean():.3f}"),
        ("closest SVM (counts)", ", ".join(f"{k}: {v}" for k, v in df.closest_svm.value_counts().items())),
        ("1 − corr with closest SVM (median)", f"{np.nanmedian(df.one_minus_corr):.3e}"),
        ("long enough to tell", f"{(df.saturated & df.selection_stable).mean():.3f}"),
    ]
    for col in [c for c in df.columns if c.startswith("corr_")]:
        out.append((f"corr with {col[5:]} SVM at reached selection (mean)", f"{np.nanmean(df[col]):.6f}"))
    return out
