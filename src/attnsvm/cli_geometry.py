"""Command-line geometry: ``attnsvm solve`` (an Att-SVM with its certificate) and ``attnsvm tokens``
(scores, optimal tokens, locally-optimal selections). The main app calls :func:`register`.

Exit codes: 0 when a result was computed (an infeasible problem is a result: status ``infeasible`` with its
Farkas certificate), 2 for bad input (message on stderr).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from .cli_ntp import read_select_weights, solve_ntp
from .ntp import is_ntp_file
from .problem import AttentionProblem, load_problem
from .progress import make_progress
from .svm import INFEASIBLE, NORMS, SUPPORT_TOL, SVMResult, get_norm, lp_norm_name, relaxed_margins_from_v, solve_svm
from .tokens import (
    default_max_selections,
    default_norm,
    is_locally_optimal,
    search_locally_optimal,
    selection_from_W,
)


def parse_selection(problem: AttentionProblem, spec: str) -> str | np.ndarray:
    """``opt`` | ``argmax:W.npy`` (the argmax attention of a saved W, or p for prompt problems) | a
    comma-separated list of n token indices."""
    spec = spec.strip()
    if spec == "opt":
        return "opt"
    if spec.startswith("argmax:"):
        _, W = read_select_weights(spec)
        return selection_from_W(problem, W)
    try:
        sel = np.array([int(s) for s in spec.split(",")], dtype=np.int64)
    except ValueError as exc:
        raise ValueError(f"--select: expected 'opt', 'argmax:W.npy' or {problem.n} comma-separated token "
                         f"indices, got {spec!r}") from exc
    if sel.shape != (problem.n,):
        raise ValueError(f"--select: {sel.size} indices given, the problem has n = {problem.n} sequences")
    return sel


def _json_number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def solve_payload(problem: AttentionProblem, result: SVMResult, locally_optimal: bool) -> dict:
    """The JSON object of ``attnsvm solve --json``."""
    out = result.to_dict()
    out["certificate"] = {k: _json_number(getattr(result.certificate, k))
                          for k in ("primal", "dual", "complementarity", "gap", "lower", "upper", "scale",
                                    "relative_gap")}
    out["locally_optimal"] = bool(locally_optimal)
    out["scores"] = [[_json_number(g) for g in row] for row in problem.scores()]
    return out


def _fmt(x: float) -> str:
    return "—" if not np.isfinite(x) else f"{x:.6g}"


def _print_solve(console: Console, problem: AttentionProblem, r: SVMResult, locally_optimal: bool) -> None:
    head = Table(title=f"Att-SVM ({r.norm}) on {problem!r}", show_header=False)
    head.add_row("status", r.status)
    head.add_row("value ‖θ‖", _fmt(r.value))
    head.add_row("margin 1/‖θ‖", _fmt(1 / r.value) if r.value > 0 else "∞")
    head.add_row("locally optimal", str(locally_optimal))
    c = r.certificate
    head.add_row("certificate", f"primal {_fmt(c.primal)}  dual {_fmt(c.dual)}  compl. {_fmt(c.complementarity)}"
                                f"  gap {_fmt(c.gap)}")
    head.add_row("solver", f"{r.solver}  {r.message}".strip())
    if r.status == INFEASIBLE:
        head.add_row("infeasible alone", ", ".join(map(str, r.infeasible_samples)) or "none (jointly infeasible)")
        head.add_row("certificate uses", ", ".join(map(str, r.farkas_samples)))
    console.print(head)
    if np.all(np.isfinite(r.solution)):
        sol = np.atleast_2d(r.solution)
        if max(sol.shape) <= 12:
            # plain rows, never a table: rich shrinks table cells to the terminal width and cuts the
            # numbers ("-0.1…"); a row longer than the terminal wraps instead, every digit kept
            console.print(f"solution {'p' if r.norm == 'l2' else 'W'}:", highlight=False)
            for row in sol:
                console.print("  " + " ".join(f"{x: .6f}" for x in row), highlight=False, soft_wrap=True)
        else:
            s = np.linalg.svd(sol, compute_uv=False)
            console.print(f"solution: shape {sol.shape}, leading singular values "
                          + ", ".join(f"{x:.4g}" for x in s[:8]))
    g = problem.scores()
    per = Table(title="per sequence")
    for col in ("i", "α_i", "γ_iα", "c_i", "support tokens T_i", "Σ_t λ_it"):
        per.add_column(col)
    for i in range(problem.n):
        a = int(r.selection[i])
        per.add_row(str(i), str(a), _fmt(g[i, a]), _fmt(r.margins[i]),
                    ", ".join(map(str, r.support_tokens[i])) if r.support_tokens else "",
                    _fmt(float(r.duals[i].sum())))
    console.print(per)


def _norm_for(problem: AttentionProblem, norm: str | None, p: float | None = None) -> str:
    """--norm, or the problem's default (l2 for prompt problems, fro otherwise), validated; ``lp`` (with
    --p P) and ``linf`` are the entrywise ℓp norms, on W or on the prompt vector p by the problem's kind."""
    nm = default_norm(problem) if norm is None else norm
    if nm in ("lp", "linf"):
        if nm == "lp" and p is None:
            raise ValueError("--p: --norm lp needs the exponent, e.g. --norm lp --p 1.75 (1 ≤ P ≤ inf)")
        return lp_norm_name(float("inf") if nm == "linf" else p, prompt=problem.kind == "prompt")
    if p is not None:
        raise ValueError(f"--p: only used with --norm lp, not with --norm {nm}")
    if nm not in NORMS:
        if ":" in nm:
            get_norm(nm)  # a parametric family name such as lp:3 (ValueError if unknown)
            return nm
        raise ValueError(f"--norm: must be one of {', '.join(NORMS)}, lp (with --p) or linf, got {nm!r}")
    return nm


def check_tol_option(tol: float) -> float:
    """--tol: a finite number ≥ 0 (the support-token tolerance on ⟨A_it, θ⟩ − c_i, margins being 1)."""
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"--tol: must be a finite number ≥ 0 (tolerance on ⟨A_it,θ⟩ − c_i), got {tol}; "
                         f"the default is {SUPPORT_TOL:g}")
    return float(tol)


def check_positive_int(value: int, name: str) -> int:
    if value < 1:
        raise ValueError(f"{name}: must be a positive integer, got {value}")
    return int(value)


def register(app: typer.Typer) -> None:
    """Add the ``solve`` and ``tokens`` commands to ``app``."""

    @app.command("solve")
    def solve_cmd(
        problem_path: Annotated[Path, typer.Argument(
            metavar="PROBLEM.npz", help="Problem file (.npz): an attention problem (X, Y, v, ...) or a "
                                        "next-token problem (E, tokens, next).")],
        norm: Annotated[str | None, typer.Option(
            "--norm", help="l2 (prompt p) | fro | nuclear | l1 (diagonal W) | lp (entrywise ℓp, with --p) | "
                           "linf. Default: l2 for prompt problems, fro otherwise; fro | nuclear for next-token "
                           "problems.")] = None,
        p_exp: Annotated[float | None, typer.Option(
            "--p", help="Exponent P of --norm lp (1 ≤ P ≤ inf): min ‖W‖_P entrywise, or ‖p‖_P for prompt "
                        "problems.")] = None,
        select: Annotated[str, typer.Option(
            "--select", help="opt | argmax:W.npy | comma-separated token indices (one per sequence).")] = "opt",
        relax_from_v: Annotated[bool, typer.Option(
            "--relax-from-v", help="Margins c_i = 1 on the support samples of the v-SVM at the selection, "
                                   "0 elsewhere (P1's p^relax).")] = False,
        tol: Annotated[float, typer.Option("--tol", help="Support-token tolerance on ⟨A_it,θ⟩ − c_i.")
                       ] = SUPPORT_TOL,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Solve the Att-SVM of a selection and print the solution with its certificate."""
        try:
            tol = check_tol_option(tol)
            if is_ntp_file(problem_path):
                if (select != "opt" and not select.startswith("argmax:")) or relax_from_v or p_exp is not None:
                    raise ValueError("--select/--relax-from-v/--p: a next-token problem takes --select opt (its "
                                     "labels) or argmax:W.npy (the tokens W selects), and --norm fro | nuclear")
                solve_ntp(problem_path, norm, tol, as_json, select)
                return
            problem = load_problem(problem_path)
            nm = _norm_for(problem, norm, p_exp)
            sel = parse_selection(problem, select)
            margins = relaxed_margins_from_v(problem, sel) if relax_from_v else None
            result = solve_svm(problem, sel, nm, margins=margins, tol=tol)
            lo = is_locally_optimal(problem, result.selection, nm, tol, result=result).locally_optimal
        except (ValueError, FileNotFoundError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if as_json:
            typer.echo(json.dumps(solve_payload(problem, result, lo), allow_nan=False))
        else:
            _print_solve(Console(), problem, result, lo)

    @app.command("tokens")
    def tokens_cmd(
        problem_path: Annotated[Path, typer.Argument(metavar="PROBLEM.npz", help="Problem file (.npz).")],
        norm: Annotated[str | None, typer.Option(
            "--norm", help="SVM norm of the local-optimality test (default l2 for prompt, fro otherwise).")
        ] = None,
        max_selections: Annotated[int | None, typer.Option(
            "--max-selections", help="Search only when at most this many candidate selections remain after "
                                     "pruning (default 2000000 for fro/l2, 20000 for nuclear/l1).")] = None,
        tol: Annotated[float, typer.Option("--tol", help="Support-token tolerance on ⟨A_it,θ⟩ − c_i.")
                       ] = SUPPORT_TOL,
        progress: Annotated[bool, typer.Option("--progress/--no-progress",
                                               help="Progress of the search on stderr.")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    ) -> None:
        """Scores γ_it, optimal tokens (ties reported) and every locally-optimal selection with its margin."""
        try:
            tol = check_tol_option(tol)
            if max_selections is not None:
                max_selections = check_positive_int(max_selections, "--max-selections")
            problem = load_problem(problem_path)
            nm = _norm_for(problem, norm)
            top = problem.optimal_tokens()
            cap = default_max_selections(nm) if max_selections is None else max_selections
            bar = make_progress(Console(stderr=True), enabled=progress, unit="selections")
            stats = None
            try:
                if bar is None:
                    local, stats = search_locally_optimal(problem, nm, tol, cap)
                else:
                    with bar:
                        task = bar.add_task("locally-optimal search", total=None)

                        def tick(done: int, total: int) -> None:
                            bar.update(task, total=total, completed=done)

                        local, stats = search_locally_optimal(problem, nm, tol, cap, progress=tick)
                skipped = ""
            except ValueError as exc:
                if not str(exc).startswith("max_selections"):
                    raise
                local, skipped = None, str(exc).replace("max_selections", "--max-selections")
        except (ValueError, FileNotFoundError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        g = problem.scores()
        if as_json:
            payload = {
                "scores": [[_json_number(x) for x in row] for row in g],
                "opt": top.opt.tolist(),
                "ties": [np.flatnonzero(row).tolist() for row in top.tied],
                "norm": nm,
                "locally_optimal": None if local is None else [
                    {"selection": s.selection.tolist(), "value": s.value, "margin": s.margin,
                     "globally_optimal": s.globally_optimal} for s in local],
                "skipped": skipped or None,
                "search": None if stats is None else {
                    "candidates": list(stats.candidates), "total": stats.total, "pruned": stats.pruned,
                    "screened": stats.screened, "solved": stats.solved, "seconds": stats.seconds},
            }
            typer.echo(json.dumps(payload, allow_nan=False))
            return
        console = Console()
        t = Table(title=f"scores γ_it = Y_i vᵀx_it of {problem!r}")
        t.add_column("i")
        for k in range(problem.T):
            t.add_column(f"t={k}")
        t.add_column("opt (ties)")
        for i in range(problem.n):
            tied = np.flatnonzero(top.tied[i])
            t.add_row(str(i), *[_fmt(x) if problem.mask[i, k] else "pad" for k, x in enumerate(g[i])],
                      str(int(top.opt[i])) + (f" (tied: {', '.join(map(str, tied))})" if tied.size > 1 else ""))
        console.print(t)
        if local is None:
            console.print(f"[yellow]locally-optimal selections not enumerated:[/] {skipped}")
            return
        lt = Table(title=f"locally-optimal selections ({nm} Att-SVM), best margin first")
        for col in ("selection α", "‖θ^mm_α‖", "margin", "global"):
            lt.add_column(col)
        for s in local:
            lt.add_row(",".join(map(str, s.selection.tolist())), _fmt(s.value), _fmt(s.margin),
                       "yes" if s.globally_optimal else "")
        console.print(lt)
        if stats is not None:
            console.print(f"searched {stats.total} candidate selections (per-sequence candidate tokens "
                          f"{list(stats.candidates)}; {stats.pruned} pruned as infeasible prefixes, "
                          f"{stats.screened} decided by the reduced exact test, {stats.solved} full solves) "
                          f"in {stats.seconds:.1f} s", highlight=False)
