"""``attnsvm problem``: write a problem file from a named generator, so the command line alone goes from
nothing to ``solve``, ``tokens`` and ``train``. The main app calls :func:`register`.

    attnsvm problem --list
    attnsvm problem unit-gaussian --out problem.npz n=6 T=8 d=10 seed=0

Generator arguments are ``name=value`` (or ``--name value``); their types and choices come from the
generator's signature, so a generator added to :data:`attnsvm.problem.GENERATORS` appears here unchanged.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


def _generators() -> dict[str, Any]:
    from .ntp import generate_ntp
    from .problem import GENERATORS

    return {**GENERATORS, "next-token": generate_ntp}


def _params(fn: Any) -> dict[str, inspect.Parameter]:
    return {k: p for k, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _choices(fn: Any, name: str) -> tuple | None:
    """The allowed values of a ``Literal[...]`` parameter, else None."""
    try:
        hint = typing.get_type_hints(fn).get(name)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only loses the choice check
        return None
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else None


def _describe(fn: Any) -> str:
    parts = []
    for k, p in _params(fn).items():
        choices = _choices(fn, k)
        default = "" if p.default is inspect.Parameter.empty else f"={p.default}"
        parts.append(f"{k}{default}" + (f" ({'|'.join(map(str, choices))})" if choices else ""))
    return " ".join(parts)


def parse_generator_args(name: str, fn: Any, args: list[str]) -> dict[str, Any]:
    """``["n=6", "--T", "8", "--case=local"]`` → ``{"n": 6, "T": 8, "case": "local"}``, typed by the
    generator's defaults (int, float, bool, str) and checked against its ``Literal`` choices."""
    params = _params(fn)
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            key = a[2:]
            if "=" in key:
                key, val = key.split("=", 1)
            elif i + 1 < len(args):
                i += 1
                val = args[i]
            else:
                raise ValueError(f"generator argument {a}: missing value (write {key}=VALUE)")
        elif "=" in a:
            key, val = a.split("=", 1)
        else:
            raise ValueError(f"generator argument {a!r}: expected name=value; {name} takes: {_describe(fn)}")
        pairs.append((key.replace("-", "_"), val))
        i += 1
    out: dict[str, Any] = {}
    for key, val in pairs:
        if key not in params:
            raise ValueError(f"generator {name} has no argument {key!r}; it takes: {_describe(fn) or 'none'}")
        default = params[key].default
        try:
            if isinstance(default, bool):
                if val.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                typed: Any = val.lower() in ("true", "1")
            elif isinstance(default, int):
                typed = int(val)
            elif isinstance(default, float):
                typed = float(val)
            else:
                typed = val
        except ValueError:
            raise ValueError(f"generator argument {key}={val!r}: expected a {type(default).__name__} "
                             f"(default {default})") from None
        choices = _choices(fn, key)
        if choices and typed not in choices:
            raise ValueError(f"generator argument {key}={val!r}: must be one of {', '.join(map(str, choices))}")
        out[key] = typed
    return out


def register(app: typer.Typer) -> None:
    """Add the ``problem`` command to ``app``."""

    @app.command("problem", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def problem_cmd(
        ctx: typer.Context,
        generator: Annotated[str | None, typer.Argument(
            metavar="GENERATOR", help="Generator name (see --list), followed by its arguments name=value.")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="Problem file to write (.npz).")] = None,
        list_: Annotated[bool, typer.Option("--list", help="List the generators and their arguments.")] = False,
    ) -> None:
        """Write a problem file (.npz) from a generator, for `solve`, `tokens` and `train`."""
        gens = _generators()
        console = Console()
        if list_:
            from rich.markup import escape

            t = Table(title=escape("attnsvm problem GENERATOR --out FILE.npz [name=value ...]"))
            for col in ("generator", "arguments (defaults)", "what"):
                t.add_column(col)
            for name, fn in gens.items():
                doc = " ".join((inspect.getdoc(fn) or "").split("\n\n")[0].split())
                t.add_row(name, _describe(fn), doc)
            console.print(t)
            return
        if generator is None:
            typer.echo("error: give a GENERATOR (see `attnsvm problem --list`)", err=True)
            raise typer.Exit(2)
        if generator not in gens:
            typer.echo(f"error: unknown generator {generator!r}; one of: {', '.join(gens)} "
                       "(see `attnsvm problem --list`)", err=True)
            raise typer.Exit(2)
        if out is None:
            typer.echo("error: --out: give the file to write, e.g. --out problem.npz", err=True)
            raise typer.Exit(2)
        try:
            kwargs = parse_generator_args(generator, gens[generator], list(ctx.args))
            problem = gens[generator](**kwargs)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        if out.suffix != ".npz":
            out = out.with_name(out.name + ".npz")  # what np.savez would do silently; say it
        out.parent.mkdir(parents=True, exist_ok=True)
        problem.save(out)
        args = " ".join(f"{k}={v}" for k, v in kwargs.items())
        console.print(f"{problem!r} from {generator} {args}".rstrip() + f" → {out}", highlight=False,
                      soft_wrap=True)
        hint = (f"attnsvm solve {out}" if hasattr(problem, "tokens")  # a next-token problem: the graph Att-SVM
                else f"attnsvm tokens {out}   |   attnsvm solve {out}")
        console.print(f"next: {hint}", highlight=False, soft_wrap=True)
