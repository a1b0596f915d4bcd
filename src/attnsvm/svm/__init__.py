"""Attention max-margin problems (Att-SVM) with certificates.

For a token selection α = (α_i) and margins c_i (default 1) the Att-SVM is

    minimize ‖θ‖   subject to   ⟨A_it, θ⟩ ≥ c_i   for every sample i and every real token t ≠ α_i,

with D_it = x_iα − x_it and the constraint vectors

* ``fro`` / ``nuclear``:  A_it = D_it z_iᵀ ∈ R^{d×d}, θ = W (W^mm, W^mm_★);
* ``l1``:                 a_it = D_it ⊙ z_i ∈ R^d, θ = w with W = diag(w) (‖diag(w)‖_* = ‖w‖₁);
* ``l2``:                 a_it = Kᵀ D_it ∈ R^{d'}, θ = p (p^mm of the prompt model; K = ``problem.keys``).

Dual multipliers. Every result reports λ ≥ 0, the multipliers of the *squared* problem
min ½‖θ‖² s.t. ⟨A_k, θ⟩ ≥ c_k, whose KKT conditions read

    G := Σ_k λ_k A_k ∈ ∂(½‖θ‖²)   ⇔   ‖G‖_dual = ‖θ‖ and ⟨G, θ⟩ = ‖θ‖²,   λ_k (⟨A_k, θ⟩ − c_k) = 0.

For the Frobenius and ℓ2 norms this is θ = Σ λ_k A_k (so rank W ≤ min(n, d)), and Σ λ_k c_k = ‖θ‖².
Whatever λ ≥ 0 is, weak duality gives the lower bound  Σ λ_k c_k / ‖Σ λ_k A_k‖_dual ≤ ‖θ^mm‖  (dual norms:
Frobenius ↔ Frobenius, nuclear ↔ spectral, ℓ1 ↔ ℓ∞, ℓ2 ↔ ℓ2), so every certificate carries a computable
duality gap.

Solvers. Frobenius and ℓ2 are solved exactly as a least-distance problem by NNLS (Lawson & Hanson,
*Solving Least Squares Problems*, ch. 23: min ‖θ‖ s.t. Aθ ≥ c ⇔ NNLS min_{u≥0} ‖[Aᵀ; cᵀ]u − e‖, then
θ = Aᵀu/(1 − cᵀu) and λ = u/(1 − cᵀu)); infeasibility is the case 1 − cᵀu = 0, where u itself is a
Farkas certificate. The nuclear norm is an SDP handed to SCS directly in conic form, posed in the span of
the constraint directions and queries (where a minimal solution lives) and keeping the rank-one structure
of the constraints sparse. ℓ1 of the diagonal is an LP solved with HiGHS. Infeasible problems return
status ``INFEASIBLE`` with a Farkas certificate λ ≥ 0, Σ λ_k A_k = 0, Σ λ_k c_k > 0, and the samples
responsible.

Statuses are the constants ``OPTIMAL``, ``INFEASIBLE``, ``INACCURATE``, ``SOLVER_ERROR``; ask
``result.status in SOLUTION_PRESENT`` (a finite solution is returned), never compare with typed strings.

Layout (private modules; this namespace is the public API):

* ``_status``: status constants; ``_results``: :class:`Certificate`, :class:`SVMResult`;
* ``_registry``: :class:`NormSpec`, :class:`RawSolution`, ``register_norm``, ``get_norm``;
* ``_constraints``: :class:`Constraints`, ``build_constraints`` and the validation of selections/margins;
* ``_certificate``: ``certificate_rows``, ``norm_value`` (any registered norm);
* ``_ldp``: exact least-distance NNLS and Farkas LPs; ``_euclidean``: the solver of the Euclidean norms;
* one module per norm: ``_l2`` (prompt p), ``_fro``, ``_nuclear``, ``_l1``, and ``_lp``: the parametric
  entrywise ℓp families ``lp:P`` (W) and ``lp-prompt:P`` (p), 1 ≤ p ≤ ∞ (``lp_norm_name(p)``);
* ``_solve``: ``solve_svm`` (constraints → the norm's solver → certified result);
* ``_batch``: ``solve_svm_batch``/``solve_fro_stacked``; ``_vsvm``: v-SVM and relaxed margins;
* ``_kkt``: ε-KKT certificates of any direction (convex norms and (K, Q) / (k, q) parameter space);
* ``_multitoken``: the multi-token SVM-equivalence; ``_measures``: ``correlation``,
  ``directional_bregman`` and ``logits`` (NumPy).

Adding a norm (one module + one line here):

1. Write ``svm/_NAME.py`` with the norm's value and dual norm (on the natural array: p, W as d×d, or w)
   and a solver ``solve(constraints, options) -> RawSolution`` that returns the solution θ as a vector of
   length ``constraints.dim`` (rows ``constraints.rows`` (m, dim), right-hand sides ``constraints.rhs``) and
   the multipliers λ ≥ 0 of ½‖θ‖² (for a solver of min ‖θ‖ with duals y, λ = ‖θ‖·y), or status
   ``INFEASIBLE`` (the Farkas certificate is then computed for you) or ``SOLVER_ERROR``;
2. at the bottom of the module ``SPEC = register_norm(NormSpec(name="NAME", variable="matrix" | "prompt" |
   "diagonal", value=..., dual=..., solve=..., tolerance=..., options=(...)))``: ``variable`` picks the
   constraint vectors (matrix: D_it z_iᵀ; prompt: Kᵀ D_it; diagonal: D_it ⊙ z_i), ``tolerance`` is the
   certificate level below which the result is called optimal;
3. import the module below (``from . import _NAME``); ``solve_svm(problem, sel, "NAME")``,
   ``norm_value``, certificates, ``attnsvm solve --norm NAME`` and ``tokens`` then work unchanged;
4. test it against an independent solver (cvxpy) on random instances, as ``tests/test_svm.py`` does.

Problems that are not a norm over these constraints (``_graph``: the graph Att-SVM of next-token prediction,
with equality constraints; an ε-KKT test) are their own module
with their own result type, built from ``build_constraints``, ``certificate_rows`` and the statuses here.
"""

from __future__ import annotations

# norms, in the order they are listed to users
from . import _l2, _fro, _nuclear, _l1, _lp  # noqa: F401  (each registers its norm)  # isort: skip
from ._batch import SVMBatch, solve_fro_stacked, solve_svm_batch
from ._certificate import certificate_rows, dual_norm_value, norm_value
from ._constraints import Constraints, build_constraints, check_margins, check_selection, pow2_scale
from ._graph import GRAPH_NORMS, GraphConstraints, GraphSVMResult, graph_certificate, graph_constraints, solve_graph_svm
from ._kkt import DEFAULT_NORM as KKT_DEFAULT_NORM
from ._kkt import RANK_TOL as KKT_RANK_TOL
from ._kkt import (
    KKTCertificate,
    kkt_certificate,
    kkt_norm_variable,
    kkt_path,
    kkt_table,
    parameter_kkt_certificate,
    parameter_kkt_path,
)
from ._lp import lp_norm, lp_norm_name, margin_ratio, solve_v_svm_lp
from ._measures import correlation, directional_bregman, logits
from ._multitoken import MultiTokenSVM, multitoken_svm
from ._registry import (
    NormSpec,
    RawSolution,
    available_norms,
    check_norm,
    get_norm,
    register_family,
    register_norm,
)
from ._results import Certificate, SVMResult
from ._solve import SUPPORT_TOL, check_tol, constraints_feasible, rows_feasible, solve_svm
from ._status import INACCURATE, INFEASIBLE, OPTIMAL, SOLUTION_PRESENT, SOLVER_ERROR, STATUSES
from ._vsvm import VSVMResult, relaxed_margins_from_v, solve_v_svm

#: the built-in norms (``available_norms()`` also lists norms registered later)
NORMS: tuple[str, ...] = available_norms()
#: norms on the attention matrix W (they need per-sample queries z_i)
MATRIX_NORMS: tuple[str, ...] = tuple(n for n in NORMS if get_norm(n).variable != "prompt")

__all__ = [
    "INACCURATE", "INFEASIBLE", "MATRIX_NORMS", "NORMS", "OPTIMAL", "SOLUTION_PRESENT", "SOLVER_ERROR",
    "STATUSES", "SUPPORT_TOL", "GRAPH_NORMS",
    "Certificate", "Constraints", "GraphConstraints", "GraphSVMResult", "MultiTokenSVM", "NormSpec",
    "RawSolution", "SVMBatch", "SVMResult",
    "VSVMResult",
    "available_norms", "build_constraints", "certificate_rows", "check_margins", "check_norm",
    "check_selection", "check_tol", "constraints_feasible", "correlation", "directional_bregman",
    "dual_norm_value", "get_norm",
    "graph_certificate", "graph_constraints", "logits", "lp_norm", "lp_norm_name", "margin_ratio", "multitoken_svm",
    "norm_value", "pow2_scale", "register_family", "register_norm", "relaxed_margins_from_v", "rows_feasible",
    "solve_fro_stacked", "solve_graph_svm", "solve_svm", "solve_svm_batch", "solve_v_svm", "solve_v_svm_lp",
]
# ε-KKT certificates (own list, so that additions elsewhere do not conflict)
__all__ += ["KKT_DEFAULT_NORM", "KKT_RANK_TOL", "KKTCertificate", "kkt_certificate", "kkt_norm_variable", "kkt_path",
            "kkt_table", "parameter_kkt_certificate", "parameter_kkt_path"]
