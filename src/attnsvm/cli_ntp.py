"""``attnsvm solve`` on a next-token problem file: the graph Att-SVM W^dir with its certificate, the SCCs of
every token-priority graph and the finite component W^fin. Called by the ``solve`` command when the file
holds the keys ``E, tokens, next``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .ntp import FiniteComponent, NTPProblem, finite_component, load_ntp
from .svm import GRAPH_NORMS, GraphSVMResult, solve_graph_svm


def ntp_payload(problem: NTPProblem, result: GraphSVMResult, fin: FiniteComponent) -> dict:
    """The JSON object of ``attnsvm solve --json`` for a next-token problem."""
    out = {"problem": {"type": "next-token", "K": problem.K, "d": problem.d, "n": problem.n, "T": problem.T}}
    out.update(result.to_dict())
    out["W_fin"] = fin.to_dict()
    return out


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.6g}"


def _matrix(console: Console, title: str, W: np.ndarray) -> None:
    if not np.all(np.isfinite(W)):
        return
    if W.shape[0] <= 12:
        t = Table(title=title, show_header=False)
        for row in W:
            t.add_row(*[f"{x: .6f}" for x in row])
        console.print(t)
    else:
        s = np.linalg.svd(W, compute_uv=False)
        console.print(f"{title}: shape {W.shape}, leading singular values " + ", ".join(f"{x:.4g}" for x in s[:8]))


def _print(console: Console, problem: NTPProblem, r: GraphSVMResult, fin: FiniteComponent) -> None:
    head = Table(title=f"graph Att-SVM ({r.norm}) on {problem!r}", show_header=False)
    head.add_row("status", r.status)
    head.add_row("value ‖W^dir‖", _fmt(r.value))
    c = r.certificate
    head.add_row("certificate", f"primal {_fmt(c.primal)}  dual {_fmt(c.dual)}  compl. {_fmt(c.complementarity)}"
                                f"  gap {_fmt(c.gap)}")
    head.add_row("equality residual", _fmt(r.equality_residual))
    head.add_row("constraints", f"{int(r.constraints.equality.sum())} equalities, "
                                f"{int((~r.constraints.equality).sum())} inequalities")
    head.add_row("solver", f"{r.solver}  {r.message}".strip())
    head.add_row("W^fin", f"{fin.status}, ‖W^fin‖ = {_fmt(float(np.linalg.norm(fin.W)))}, dim S = {fin.dimension}, "
                          f"reduced loss {_fmt(fin.loss)}, gradient {_fmt(fin.gradient)}")
    console.print(head)
    g = Table(title="SCCs of each token-priority graph G_k (highest priority first)")
    g.add_column("last token k")
    g.add_column("SCCs")
    for k, graph in sorted(r.graphs.items()):
        g.add_row(str(k), "  >  ".join("{" + ", ".join(map(str, s)) + "}" for s in graph.sccs))
    console.print(g)
    _matrix(console, "W^dir", r.W)
    if fin.dimension:
        _matrix(console, "W^fin", fin.W)


def read_select_weights(spec: str) -> tuple[Path, np.ndarray]:
    """The array of a ``--select argmax:FILE.npy`` option (for ``solve`` on both problem types)."""
    path = Path(spec[len("argmax:"):])
    if not path.exists():
        raise ValueError(f"--select: weight file not found: {path}")
    try:
        return path, np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--select: cannot read {path} as a .npy array ({exc})") from exc


def local_problem(problem: NTPProblem, spec: str) -> NTPProblem:
    """``argmax:W.npy``: the problem relabelled by the tokens W selects (attention mass > 1e−2 per sequence),
    whose graph Att-SVM is the local direction at W."""
    path, W = read_select_weights(spec)
    if W.shape != (problem.d, problem.d) or not np.all(np.isfinite(W)):
        raise ValueError(f"--select: {path} must hold a finite ({problem.d}, {problem.d}) matrix W, got shape "
                         f"{W.shape}")
    selected, _ = problem.selected_tokens(W)
    return problem.with_labels(selected)


def solve_ntp(path: Path, norm: str | None, tol: float, as_json: bool, select: str = "opt") -> None:
    """Load, solve and print (raises ValueError on bad input; the caller turns it into exit code 2).

    select: ``opt`` (the labels) or ``argmax:W.npy`` (the tokens W selects: the local graph Att-SVM)."""
    nm = "fro" if norm is None else norm
    if nm not in GRAPH_NORMS:
        raise ValueError(f"--norm: a next-token problem's graph Att-SVM takes {' | '.join(GRAPH_NORMS)}, got {nm!r}")
    problem = load_ntp(path)
    if select != "opt":
        problem = local_problem(problem, select)
    result = solve_graph_svm(problem, nm, tol=tol)
    fin = finite_component(problem)
    if as_json:
        typer.echo(json.dumps(ntp_payload(problem, result, fin), allow_nan=False))
    else:
        _print(Console(), problem, result, fin)
