"""Every experiment's settings are written once, in its packaged TOML (attnsvm/configs/<id>.toml): the config
classes declare types and validation only. Each TOML validates and sets every setting, each setting says
what it means in a comment, a user's ``--config`` overrides merge over it, a misspelled key is an error that
suggests the right one, and the quick settings validate."""

from __future__ import annotations

import re
import tomllib
from importlib import resources

import pytest
from typer.testing import CliRunner

from attnsvm.cli import app
from attnsvm.experiments import IDS, all_experiments, get


def _toml(exp_id: str) -> str:
    return resources.files("attnsvm.configs").joinpath(f"{exp_id}.toml").read_text()


@pytest.mark.parametrize("exp_id", IDS)
def test_the_toml_is_the_only_source_of_the_settings(exp_id):
    exp = get(exp_id)
    text = _toml(exp_id)
    keys = set(tomllib.loads(text))
    fields = exp.config_cls.model_fields
    # the class holds no values: a setting without a TOML entry can only be an optional one (None = unset)
    for name, f in fields.items():
        if not f.is_required():
            assert f.default is None and f.default_factory is None, f"{exp_id}.{name}: a value in the class"
            assert re.search(rf"#\s*{name}\b", text), f"{exp_id}.{name}: the optional setting is not documented"
    assert keys <= set(fields)
    assert {n for n, f in fields.items() if f.is_required()} <= keys
    cfg = exp.default_config()
    assert cfg.model_dump() == exp.config_cls.model_validate(tomllib.loads(text)).model_dump()
    for k, v in tomllib.loads(text).items():
        got = getattr(cfg, k)
        assert (list(got) if isinstance(got, tuple) else got) == v, (exp_id, k)
    # every setting says what it means: a comment on its line or on the line above
    lines = text.splitlines()
    for k in keys:
        i = next(i for i, line in enumerate(lines) if re.match(rf"\s*{re.escape(k)}\s*=", line))
        assert "#" in lines[i] or (i > 0 and lines[i - 1].lstrip().startswith("#")), f"{exp_id}.{k}: no comment"
    with pytest.raises(ValueError):
        exp.config_cls()  # no defaults to fall back on


@pytest.mark.parametrize("exp_id", IDS)
def test_overrides_merge_and_quick_validates(exp_id):
    exp = get(exp_id)
    default = exp.default_config()
    quick = exp.configure(quick=True)
    assert quick != default and set(exp.quick) <= set(type(default).model_fields)
    for k, v in exp.quick.items():
        got = getattr(quick, k)
        assert (list(got) if isinstance(got, tuple) and isinstance(v, list) else got) == v
    key = next(k for k in ("seed", "trials", "steps", "lr") if k in type(default).model_fields)
    value = getattr(default, key)
    # doubled (a step count stays a multiple of its record spacing), or a different seed
    new = value + 1 if key == "seed" else [2 * x for x in value] if isinstance(value, list) else 2 * value
    cfg = exp.configure({key: new})
    assert getattr(cfg, key) == new
    assert cfg.model_dump() == {**default.model_dump(), key: getattr(cfg, key)}


def test_misspelled_and_invalid_keys_are_errors():
    exp = get("md-local")
    with pytest.raises(ValueError, match=r"md-local config: trails: unknown key \(did you mean 'trials'\?\)"):
        exp.configure({"trails": 3})
    with pytest.raises(ValueError, match=r"md-local config: steps"):
        exp.configure({"steps": "many"})
    assert len(all_experiments()) == len(IDS)


def test_reproduce_config_file_misspelling_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("init_sdt = 0.5\n")
    res = CliRunner().invoke(app, ["reproduce", "md-local", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "init_sdt: unknown key (did you mean 'init_std'?)" in res.output
    assert "Traceback" not in res.output
