"""The migration spec: validation messages, presets, merging, and the documented example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agentengine import ConfigError
from agentengine_migrate.presets import PRESETS
from agentengine_migrate.spec import SpecError, Target, build_spec, load_spec
from agentengine_migrate.spec_validation import SpecModel, validate_table

DOCS = Path(__file__).parents[2] / "docs" / "migrate.md"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_specs(name: str) -> None:
    SpecModel.model_validate(PRESETS[name])
    spec = build_spec({}, presets=[name])
    assert spec.modules
    for rule in spec.modules.values():
        for target in rule.names.values():
            assert target.name is not None


def _error(table: object) -> str:
    with pytest.raises(SpecError) as info:
        validate_table(table, prefix="tool.agentengine.migrate", source="pyproject.toml")
    return str(info.value)


def test_errors_name_the_key_and_what_is_expected() -> None:
    assert "tool.agentengine.migrate.presets: Input should be a valid list" in _error(
        {"presets": "netra"}
    )
    message = _error({"modulez": {}})
    assert "tool.agentengine.migrate.modulez: unknown key; expected one of: presets" in message
    message = _error({"modules": {"old.mod": {"names": {"X": "new mod:Y"}}}})
    assert 'tool.agentengine.migrate.modules."old.mod".names.X: expected' in message
    assert "'module' or 'module:Name'" in message
    message = _error({"modules": {"not a module": {}}})
    assert "a dotted module path" in message
    message = _error({"calls": {"old.mod": "new.mod:X.create"}})
    assert "'module:Name', like 'pkg.old:OldName'" in message
    assert "must be a table" in _error(["not", "a", "table"])


def test_call_rewrite_must_be_an_attribute_of_the_replacement() -> None:
    message = _error(
        {
            "modules": {"old.mod": {"names": {"Engine": "new.mod:UserEngine"}}},
            "calls": {"old.mod:Engine": "other.mod:Thing.create"},
        }
    )
    assert "must be an attribute of 'new.mod:UserEngine'" in message
    ok = validate_table(
        {
            "modules": {"old.mod": {"names": {"Engine": "new.mod:UserEngine"}}},
            "calls": {"old.mod:Engine": "new.mod:UserEngine.create"},
        },
        prefix="",
        source="spec.toml",
    )
    spec = build_spec(ok, presets=[])
    assert spec.calls[("old.mod", "Engine")].attribute == "create"


def test_unknown_preset_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown preset 'nope'"):
        build_spec({}, presets=["nope"])
    bad = tmp_path / "spec.toml"
    bad.write_text("modules = [\n")
    with pytest.raises(SpecError, match="is not valid TOML"):
        load_spec(bad)


def test_read_errors_name_the_file_and_what_it_is(tmp_path: Path) -> None:
    bad = tmp_path / "spec.toml"
    bad.write_text("modules = [\n")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(info.value).startswith(f"the migration spec {bad} is not valid TOML: ")
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path)  # a directory cannot be read as a file
    assert str(info.value).startswith(f"cannot read the migration spec {tmp_path}: ")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.agentengine.migrate\n")
    below = tmp_path / "sub"
    below.mkdir()
    with pytest.raises(SpecError) as info:
        load_spec(cwd=below)  # the nearest pyproject.toml above is read
    assert str(info.value).startswith(
        f"configuration file {pyproject.resolve()} is not valid TOML: "
    )
    # A spec error is a configuration error of agentengine, and still a ValueError.
    assert isinstance(info.value, ConfigError)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("document", ["tool = 'x'\n", "[tool]\nagentengine = 5\n"])
def test_a_pyproject_whose_tool_key_is_not_a_table_means_no_spec(
    tmp_path: Path, document: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(document)
    spec = load_spec(cwd=tmp_path)
    assert spec.presets == ("agentengine-legacy",)
    assert spec.source == str((tmp_path / "pyproject.toml").resolve())


def test_user_tables_merge_over_presets() -> None:
    spec = build_spec(
        {"modules": {"agentengine.legacy": {"names": {"ExecutionEngine": "mine:Engine"}}}},
    )
    rule = spec.modules["agentengine.legacy"]
    assert rule.names["ExecutionEngine"] == Target("mine", "Engine")
    assert rule.names["ExecutionFactory"] == Target("agentengine", "ExecutionEngineFactory")
    assert spec.rule_for("agentengine.legacy.sub.deeper") is rule
    assert spec.rule_for("agentengine.legacyish") is None
    assert spec.replace_dotted("agentengine.legacy.ExecutionFactory.x") == (
        "agentengine.ExecutionEngineFactory.x"
    )


def test_the_documented_spec_example_loads(tmp_path: Path) -> None:
    text = DOCS.read_text()
    example = re.search(r"```toml\n(\[tool\.agentengine\.migrate\].*?)```", text, re.DOTALL)
    assert example is not None
    (tmp_path / "pyproject.toml").write_text(example.group(1))
    spec = load_spec(cwd=tmp_path)
    assert spec.presets == ("agentengine-legacy", "netra")
    assert spec.allow == ("src/compat/shim.py",)
    rule = spec.modules["oldlib.engine"]
    assert rule.target_for("Engine") == Target("newlib.engine", "UserEngine")
    assert rule.target_for("other") == Target("newlib.engine", "other")
    assert spec.calls[("oldlib.engine", "Engine")].attribute == "create_from_legacy"
