"""Named statuses of every Att-SVM result.

Code compares ``result.status`` against these constants (``status in SOLUTION_PRESENT``), never against
strings typed where they are used.
"""

from __future__ import annotations

#: the solver returned a solution and its certificate confirms it to the norm's tolerance
OPTIMAL = "optimal"
#: the constraints cannot be met; the result carries a Farkas certificate λ ≥ 0, Σλ_k A_k = 0, Σλ_k c_k > 0
INFEASIBLE = "infeasible"
#: a solution is returned but its certificate is above the norm's tolerance (numbers in the message)
INACCURATE = "inaccurate"
#: the numerical solver failed (no usable answer); says nothing about feasibility
SOLVER_ERROR = "solver_error"

#: every status a result can have
STATUSES: frozenset[str] = frozenset({OPTIMAL, INFEASIBLE, INACCURATE, SOLVER_ERROR})
#: statuses whose result carries a finite solution θ (possibly inaccurate)
SOLUTION_PRESENT: frozenset[str] = frozenset({OPTIMAL, INACCURATE})
