"""Hostile cases, user code: a model factory, the module it lives in, the model's forward
and a data callable are the user's code; whatever they raise is reported as their crash
(file, line, exception) in one line with exit 2, a call of sys.exit() says so, and
Ctrl-C still interrupts (exit 130).

Each case writes its module beside the recipe (the loader searches the recipe's folder
first) under a name of its own, since Python caches imported modules by name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hostile_cli import cli, cli_process, debris, one_line, refused
from recipes import DIGITS_MODEL

FAST = "targets: [onnx]\nbenchmark: {runs: 5, warmup: 1, warmup_s: 0, memory: false}\n"
DIGITS_NET = "from compressor.zoo.digits import DigitsCNN\n"


def factory_recipe(tmp_path: Path, module: str, code: str, attr: str = "make", inputs: str = "",
                   prelude: str = "") -> Path:
    """A recipe whose model is `module:attr`, with `prelude` and `code` (dedented) as
    module.py beside it."""
    (tmp_path / f"{module}.py").write_text(prelude + textwrap.dedent(code).lstrip())
    inputs = inputs or "[{name: pixels, shape: [1, 1, 8, 8]}]"
    path = tmp_path / "recipe.yaml"
    path.write_text(f"version: 1\nname: t\nmodel:\n  factory: {module}:{attr}\n  inputs: {inputs}\n{FAST}")
    return path


def data_recipe(tmp_path: Path, module: str, code: str, section: str = "calibration") -> Path:
    """The digits model with `data.<section>` from `module:load`, the module beside the recipe."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(code).lstrip())
    path = tmp_path / "recipe.yaml"
    path.write_text(f"version: 1\nname: t\nmodel:\n{DIGITS_MODEL}data:\n  {section}: {{source: '{module}:load'}}\n"
                    f"{FAST}")
    return path


def run(tmp_path: Path, recipe: Path, capsys, says) -> str:
    line = refused(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress", says=says)
    assert debris(tmp_path / "run") == []
    return line


# --- a factory that raises -----------------------------------------------------------

@pytest.mark.parametrize("module, body, shown", [
    ("uc_runtime", "raise RuntimeError('the checkpoint server is down')",
     "RuntimeError: the checkpoint server is down"),
    ("uc_value", "raise ValueError('width must be even, got 7')", "ValueError: width must be even, got 7"),
    ("uc_key", "return {'a': 1}['depth']", "KeyError: 'depth'"),
    ("uc_zero", "return 1 / 0", "ZeroDivisionError: division by zero"),
    ("uc_empty", "raise RuntimeError()", "RuntimeError; fix it there"),
])
def test_a_factory_that_raises_is_reported_as_its_crash_with_file_and_line(tmp_path, capsys, module, body, shown):
    recipe = factory_recipe(tmp_path, module, f"import torch\n\n\ndef make():\n    {body}\n")
    line = run(tmp_path, recipe, capsys, f"model factory '{module}:make' crashed: {tmp_path / module}.py:5: {shown}")
    assert "(the error is in that code, not in the recipe)" in line


def test_a_crash_deep_inside_torch_is_placed_at_the_users_line(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_deep", """
        from torch import nn


        def make():
            hidden = -4
            return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden))
        """)
    line = run(tmp_path, recipe, capsys, f"crashed: {tmp_path / 'uc_deep.py'}:6: RuntimeError: ")
    assert "negative dimension -4" in line


def test_a_crash_in_a_helper_module_of_the_user_names_the_helper(tmp_path, capsys):
    (tmp_path / "uc_helpers.py").write_text("def width(name):\n    return {'small': 16}[name]\n")
    recipe = factory_recipe(tmp_path, "uc_uses_helper", prelude=DIGITS_NET, code="""
        from uc_helpers import width


        def make(size="large"):
            return DigitsCNN(width(size))
        """)
    run(tmp_path, recipe, capsys, f"model factory 'uc_uses_helper:make' crashed: {tmp_path / 'uc_helpers.py'}:2: "
                                  "KeyError: 'large'")


def test_a_type_error_inside_the_factory_is_its_crash_not_a_kwargs_mismatch(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_type", "def make():\n    return len(5)\n")
    line = run(tmp_path, recipe, capsys, f"{tmp_path / 'uc_type.py'}:2: TypeError: object of type 'int' has no len()")
    assert "kwargs" not in line


def test_kwargs_the_factory_does_not_take_are_still_named_as_such(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_kwargs", DIGITS_NET + "def make(width=32):\n    return DigitsCNN(width)\n")
    recipe.write_text(recipe.read_text().replace("  inputs:", "  kwargs: {depth: 3}\n  inputs:"))
    run(tmp_path, recipe, capsys, ("model factory 'uc_kwargs:make' rejected kwargs {'depth': 3}",
                                   "unexpected keyword argument 'depth'"))


# --- the module: at import ------------------------------------------------------------

def test_a_module_that_raises_at_import_names_file_line_and_exception(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_import_raises", """
        import os

        ROOT = os.environ["UC_MODEL_ROOT_THAT_IS_NOT_SET"]


        def make():
            pass
        """)
    run(tmp_path, recipe, capsys, "model factory 'uc_import_raises:make': importing module 'uc_import_raises' "
                                  f"failed: {tmp_path / 'uc_import_raises.py'}:3: KeyError: "
                                  "'UC_MODEL_ROOT_THAT_IS_NOT_SET'")


@pytest.mark.parametrize("module, code, line_no, shown", [
    ("uc_syntax", "def make():\n    return DigitsCNN(\n\n\nx = = 1\n", 2, "SyntaxError: '(' was never closed"),
    ("uc_indent", "def make():\nreturn 1\n", 2, "IndentationError: expected an indented block"),
])
def test_a_module_with_a_syntax_error_names_the_file_and_line(tmp_path, capsys, module, code, line_no, shown):
    (tmp_path / f"{module}.py").write_text(code)
    recipe = factory_recipe(tmp_path, "uc_imports_" + module, f"from {module} import make\n")
    run(tmp_path, recipe, capsys, (f"importing module 'uc_imports_{module}' failed: ",
                                   f"{tmp_path / module}.py:{line_no}: {shown}"))


def test_a_dependency_the_module_imports_but_is_not_installed_is_named_at_its_import(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_needs_pkg", "import uc_package_nobody_installed\n\n\ndef make():\n    pass\n")
    run(tmp_path, recipe, capsys, f"{tmp_path / 'uc_needs_pkg.py'}:1: ModuleNotFoundError: No module named "
                                  "'uc_package_nobody_installed'")


def test_a_module_that_is_not_there_says_where_it_was_looked_for(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_present", "def make():\n    pass\n")
    recipe.write_text(recipe.read_text().replace("uc_present:make", "uc_absent_module:make"))
    run(tmp_path, recipe, capsys, ("model factory 'uc_absent_module:make': cannot import module 'uc_absent_module'",
                                   "put uc_absent_module.py beside the recipe"))


def test_a_script_module_that_exits_at_import_says_so(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_script", "import sys\n\nsys.exit(4)\n\n\ndef make():\n    pass\n")
    run(tmp_path, recipe, capsys, ("importing module 'uc_script' called sys.exit(4) at "
                                   f"{tmp_path / 'uc_script.py'}:3", "if __name__ == '__main__':"))


# --- a factory that exits: only a real process shows the exit code ----------------------

@pytest.mark.parametrize("module, body, shown", [
    ("uc_exit3", "raise SystemExit(3)", "sys.exit(3)"),
    ("uc_exit_bare", "sys.exit()", "sys.exit()"),
    ("uc_exit_text", "sys.exit('no GPU here')", "sys.exit('no GPU here')"),
])
def test_a_factory_that_calls_exit_is_exit_2_with_a_line_saying_so(tmp_path, module, body, shown):
    recipe = factory_recipe(tmp_path, module, f"import sys\n\n\ndef make():\n    {body}\n")
    proc = cli_process("run", recipe, "--out", tmp_path / "run", "--no-progress", cwd=tmp_path)
    line = one_line(proc.stderr)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert f"model factory '{module}:make' called {shown} at {module}.py:5, which would end the run" in line
    assert proc.stdout == "" and debris(tmp_path / "run") == []


# --- a factory that returns something else ---------------------------------------------

@pytest.mark.parametrize("module, code, shown", [
    ("uc_none", DIGITS_NET + "def make():\n    DigitsCNN()\n", "returned None (a missing 'return'?)"),
    ("uc_function", DIGITS_NET + "def make():\n    def build():\n        return DigitsCNN()\n    return build\n",
     "returned a function (build; call it and return its result?)"),
    ("uc_class", DIGITS_NET + "def make():\n    return DigitsCNN\n",
     "returned the class DigitsCNN itself (return DigitsCNN(), an instance)"),
    ("uc_dict", DIGITS_NET + "def make():\n    return DigitsCNN().state_dict()\n",
     "returned a value of type OrderedDict"),
])
def test_a_factory_that_returns_no_module_says_what_it_returned(tmp_path, capsys, module, code, shown):
    line = run(tmp_path, factory_recipe(tmp_path, module, code), capsys, f"model factory '{module}:make' {shown}")
    assert line.endswith("not a torch.nn.Module instance; make it return the built model")


def test_a_factory_name_that_is_no_callable_is_refused(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_constant", "make = 32\n")
    run(tmp_path, recipe, capsys, "model factory 'uc_constant:make' is not callable (a value of type int: 32)")


def test_a_forward_that_raises_names_the_line_of_the_models_code(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_forward", """
        from torch import nn


        class Net(nn.Module):
            def forward(self, x):
                return x.view(-1, 65)


        def make():
            return Net()
        """)
    run(tmp_path, recipe, capsys, ("the model does not run on its declared inputs (pixels [1, 1, 8, 8] float32): "
                                   f"{tmp_path / 'uc_forward.py'}:6: RuntimeError: shape '[-1, 65]' is invalid",
                                   "fix 'inputs' in the recipe's model section (or the model's forward)"))


def test_ctrl_c_in_the_factory_still_interrupts(tmp_path, capsys):
    recipe = factory_recipe(tmp_path, "uc_ctrl_c", "def make():\n    raise KeyboardInterrupt\n")
    code, _, err = cli(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress")
    assert code == 130 and err.strip() == "compressor: interrupted"


# --- a data callable -------------------------------------------------------------------

def test_a_data_callable_that_raises_is_reported_as_its_crash(tmp_path, capsys):
    recipe = data_recipe(tmp_path, "ud_raises", """
        import numpy as np


        def load(split="all"):
            images = np.load("/nonexistent/uc/images.npy")
            return images
        """)
    run(tmp_path, recipe, capsys, f"data source 'ud_raises:load' crashed: {tmp_path / 'ud_raises.py'}:5: "
                                  "FileNotFoundError: [Errno 2] No such file or directory: "
                                  "'/nonexistent/uc/images.npy'")


def test_a_type_error_inside_a_data_callable_is_not_retried_without_split(tmp_path, capsys):
    recipe = data_recipe(tmp_path, "ud_type", """
        CALLS = []


        def load(split):
            CALLS.append(split)
            return sorted([1, "a"])
        """)
    run(tmp_path, recipe, capsys, f"{tmp_path / 'ud_type.py'}:6: TypeError: '<' not supported")
    import ud_type

    assert ud_type.CALLS == ["all"]  # called once, with its split


def test_a_data_module_that_raises_at_import_names_it(tmp_path, capsys):
    recipe = data_recipe(tmp_path, "ud_import", "raise ImportError('build the data with make data first')\n")
    run(tmp_path, recipe, capsys, "data source 'ud_import:load': importing module 'ud_import' failed: "
                                  f"{tmp_path / 'ud_import.py'}:1: ImportError: build the data with make data first")


def test_a_data_callable_that_exits_says_so(tmp_path, capsys):
    recipe = data_recipe(tmp_path, "ud_exit", "import sys\n\n\ndef load():\n    sys.exit(1)\n", section="evaluation")
    run(tmp_path, recipe, capsys, f"data source 'ud_exit:load' called sys.exit(1) at {tmp_path / 'ud_exit.py'}:5")


@pytest.mark.parametrize("module, returns, shown", [
    ("ud_none", "None", "returned None"),
    ("ud_str", "'digits.npz'", "returned a value of type str"),
    ("ud_gen", "(x for x in range(3))", "returned a value of type generator"),
])
def test_a_data_callable_that_returns_no_data_says_what_it_returned(tmp_path, capsys, module, returns, shown):
    recipe = data_recipe(tmp_path, module, f"def load():\n    return {returns}\n")
    run(tmp_path, recipe, capsys, (f"data source '{module}:load' {shown}; return an array of inputs, "
                                   "(inputs, labels), a dict keyed by input name, or a compressor.data.Dataset"))


@pytest.mark.parametrize("module, returns, shown", [
    ("ud_shape", "np.zeros((10, 8, 8, 1), np.float32)",
     "input 'pixels' has samples of shape [8, 8, 1], the model declares [1, 8, 8]"),
    ("ud_strings", "np.full((10, 1, 8, 8), '0.5')", "input 'pixels' holds strings (<U3)"),
    ("ud_complex", "np.zeros((10, 1, 8, 8), np.complex64)", "input 'pixels' holds complex numbers (complex64)"),
    ("ud_objects", "np.array([object()] * 640, dtype=object).reshape(10, 1, 8, 8)",
     "input 'pixels' holds Python objects (object)"),
    ("ud_ragged", "[np.zeros((1, 8, 8)), np.zeros((1, 8, 7))]", "input 'pixels' cannot be read as one array"),
    ("ud_labels", "np.zeros((10, 1, 8, 8), np.float32), np.arange(9)", "9 labels for 10 samples"),
])
def test_a_data_callable_that_returns_wrong_arrays_is_refused_by_what_is_wrong(tmp_path, capsys, module, returns,
                                                                                 shown):
    recipe = data_recipe(tmp_path, module, f"import numpy as np\n\n\ndef load():\n    return {returns}\n")
    run(tmp_path, recipe, capsys, f"data source '{module}:load': {shown}")


def test_ctrl_c_in_a_data_callable_still_interrupts(tmp_path, capsys):
    recipe = data_recipe(tmp_path, "ud_ctrl_c", "def load():\n    raise KeyboardInterrupt\n")
    code, _, err = cli(capsys, "run", recipe, "--out", tmp_path / "run", "--no-progress")
    assert code == 130 and err.strip() == "compressor: interrupted"
