"""docs/architecture.md stays in step with the code: every dotted name it puts in
backticks imports (a module, or an attribute of one), every path it names exists, every
top-level package has its place on the page, and its table of targets is the registry."""

from __future__ import annotations

import importlib
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

import targets

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "architecture.md"
TEXT = PAGE.read_text(encoding="utf-8")
HOMES = ("compressor", "targets", "benchmarks", "tests")
SPANS = re.findall(r"`([^`\n]+)`", TEXT)
DOTTED = sorted({s for s in SPANS if re.fullmatch(rf"(?:{'|'.join(HOMES[:3])})(?:\.\w+)+|{'|'.join(HOMES[:3])}", s)})
# `Target.export` and the like: methods of the base class every target subclasses.
DOTTED += sorted({f"targets.base.{s}" for s in SPANS if re.fullmatch(r"Target\.\w+", s)})
PATHS = sorted({s for s in SPANS if re.fullmatch(rf"(?:{'|'.join(HOMES)})/[\w./-]*", s) and "NAME" not in s})


def _resolve(name: str) -> object:
    """The module `name` names, or the attribute the rest of it names in its longest
    importable prefix (a class, a function, a constant)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj = importlib.import_module(module)
            for attr in parts[cut:]:
                obj = getattr(obj, attr)  # AttributeError: the page names something the code lacks
            return obj
    raise ModuleNotFoundError(name)


def test_the_page_names_code_at_all():
    assert len(DOTTED) > 60 and len(PATHS) > 20  # the extraction works: a broken regex would pass vacuously


@pytest.mark.parametrize("name", DOTTED)
def test_every_dotted_name_exists(name):
    _resolve(name)


@pytest.mark.parametrize("path", PATHS)
def test_every_path_exists(path):
    assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which is not in the repository"


def test_every_top_level_package_is_on_the_page():
    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "packages"]["find"]["include"]
    tops = {p.rstrip("*") for p in include}
    assert tops == {d.name for d in ROOT.iterdir() if (d / "__init__.py").is_file() and d.name in tops}
    for top in [*tops, "tests"]:
        assert f"- `{top}/`" in TEXT, f"docs/architecture.md has no entry for the package {top}/"


def test_the_targets_table_is_the_registry():
    rows = re.findall(r"^\| `(\w+)` \| `([\w.]+)` \| (.+) \|$", TEXT, flags=re.M)
    table = {name: (cls, tuple(re.findall(r"`([^`]+)`", suffixes))) for name, cls, suffixes in rows}
    registry = {}
    for name in targets.names():
        t = targets.get(name)
        registry[name] = (f"{type(t).__module__}.{type(t).__name__}", t.suffixes)
    assert table == registry


def test_every_registered_target_and_builtin_module_is_mentioned():
    for name in targets.names():
        assert f"`{name}`" in TEXT, f"target {name} is registered but not on docs/architecture.md"
    for module, _ in targets.BUILTIN:
        assert f"`{module.replace('.', '/')}/`" in TEXT, f"{module} is a built-in target package not on the page"


def test_the_import_rules_are_the_tests():
    """The rules the page states are the ones tests/test_import_direction.py enforces."""
    rules = (ROOT / "tests" / "test_import_direction.py").read_text(encoding="utf-8")
    assert "no module over 400 lines" in TEXT and "> 400" in rules
    assert "compressor.errors" in rules and "`compressor.errors`" in TEXT
    assert 'startswith("benchmarks.suite")' in rules and "outside `benchmarks/suite/`" in TEXT


def test_the_checks_can_fail():
    with pytest.raises(AttributeError):
        _resolve("targets.base.NoSuchTarget")
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        _resolve("compressor.no_such_module")
    assert "targets.base.Target.export" in DOTTED and "compressor.flows.run.run" in DOTTED
