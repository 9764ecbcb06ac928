"""Hostile recipes and budgets files: what a user hands the loader that it must refuse
with one line naming the file (and line), the problem and the fix, before any work.

Categories: files (kind, encoding, size), YAML structure (nesting, aliases, duplicate
keys, values PyYAML chokes on), numbers and types (every numeric field of every
config model and target options model bounded, finite and never a boolean), the
model/benchmark/target sections, budgets files, and the CLI (exit 2, one line, no run
directory started).
"""

from __future__ import annotations

import math
import os
import re
import time
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ByteSize, ValidationError

import targets
from compressor.config import budgets, finetune, prune, qat, quantize, recipe, tune  # noqa: F401 (models)
from compressor.config.budgets import load_budgets
from compressor.config.recipe import load_recipe, parse_recipe
from compressor.config.strict import Strict
from compressor.errors import RecipeError
from hostile_cli import cli, one_line, refused
from recipes import digits_head

VALID = digits_head("hostile", calibration=64, evaluation=True) + "targets: [onnx]\n"
NEXT = VALID.count("\n") + 1  # the line of whatever a case appends to VALID
BUDGETS = "version: 1\nlimits:\n  onnx/int8: {max_size: 300KB, max_p50_ms: 5}\n"


def parse(text: str):
    return parse_recipe(text, "r.yaml", target_options=targets.option_models())


def refuses(text: str, *says: str) -> str:
    with pytest.raises(RecipeError) as e:
        parse(text)
    msg = str(e.value)
    assert len(msg.splitlines()) == 1 and msg.strip() == msg, msg
    for phrase in says:  # a tuple: any one of its phrases
        assert any(p in msg for p in ((phrase,) if isinstance(phrase, str) else phrase)), (phrase, msg)
    return msg


def refuses_file(path: Path, *says: str, load=load_recipe) -> str:
    with pytest.raises(RecipeError) as e:
        load(path) if load is load_budgets else load(path, target_options=targets.option_models())
    msg = str(e.value)
    assert len(msg.splitlines()) == 1, msg
    for phrase in says:
        assert phrase in msg, (phrase, msg)
    return msg


# --- files: kind, encoding, size ------------------------------------------------------

ENCODINGS = {  # kind: (the file's bytes from its text, phrases of the one line)
    "random-binary": (lambda t: bytes(range(256)) * 4, ("holds NUL bytes (a binary file?)", "must be UTF-8 text")),
    "binary-no-nul": (lambda t: bytes(range(128, 256)) * 3, ("not UTF-8 text (byte 0x80 at offset 0)",
                                                             "save it as UTF-8")),
    "utf16-le-bom": (lambda t: t.encode("utf-16"), ("UTF-16 text", "must be UTF-8 text: save it as UTF-8")),
    "utf16-be-bom": (lambda t: b"\xfe\xff" + t.encode("utf-16-be"), ("UTF-16 text", "must be UTF-8 text")),
    "utf16-no-bom": (lambda t: t.encode("utf-16-le"), ("looks like UTF-16 text (no byte-order mark)",
                                                       "must be UTF-8 text")),
    "utf32-bom": (lambda t: t.encode("utf-32"), ("UTF-32 text", "must be UTF-8 text")),
    "latin1": (lambda t: (t + "# caf\u00e9\n").encode("latin-1"), ("not UTF-8 text (byte 0xe9", "must be UTF-8")),
}


@pytest.mark.parametrize("kind", list(ENCODINGS))
@pytest.mark.parametrize("what", ["recipe", "budgets"])
def test_a_file_that_is_not_utf8_is_named_and_refused(tmp_path, kind, what):
    encode, says = ENCODINGS[kind]
    text, load = (VALID, load_recipe) if what == "recipe" else (BUDGETS, load_budgets)
    path = tmp_path / f"{what}.yaml"
    path.write_bytes(encode(text))
    msg = refuses_file(path, *says, load=load)
    assert msg.startswith(f"{path}:") and f"the {what} must be UTF-8 text" in msg
    if kind == "latin1":  # the line of the first byte that is not UTF-8
        assert msg.startswith(f"{path}:{text.count(chr(10)) + 1}: ")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    (tmp_path / "r.yaml").write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_recipe(tmp_path / "r.yaml", target_options=targets.option_models()).name == "hostile"
    (tmp_path / "b.yaml").write_bytes(b"\xef\xbb\xbf" + BUDGETS.encode())
    assert load_budgets(tmp_path / "b.yaml").limits["onnx/int8"].max_size == 300_000


@pytest.mark.parametrize("load", [load_recipe, load_budgets], ids=["recipe", "budgets"])
def test_a_directory_a_pipe_or_a_missing_file_is_named(tmp_path, load):
    what = "recipe" if load is load_recipe else "budgets"
    refuses_file(tmp_path, f"{what} {tmp_path}: a directory, not a file", load=load)
    os.mkfifo(tmp_path / "fifo")  # opening it would block: refused on its kind, never opened
    refuses_file(tmp_path / "fifo", "not a regular file", load=load)
    refuses_file(tmp_path / "gone.yaml", "gone.yaml: no such file", load=load)
    refuses_file(tmp_path / ("x" * 300 + ".yaml"), "cannot be read (File name too long)", load=load)


def test_an_unreadable_file_says_permission_denied(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("runs as root: root reads a chmod 000 file, so there is no refusal to see")
    path = tmp_path / "r.yaml"
    path.write_text(VALID)
    path.chmod(0)
    try:
        refuses_file(path, "permission denied", "chmod u+r")
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n"], ids=["empty", "blank", "comment", "doc"])
def test_an_empty_file_says_empty(tmp_path, text):
    (tmp_path / "r.yaml").write_text(text)
    refuses_file(tmp_path / "r.yaml", "r.yaml: empty; a recipe is a YAML mapping")
    (tmp_path / "b.yaml").write_text(text)
    refuses_file(tmp_path / "b.yaml", "b.yaml: empty; a budgets file is a YAML mapping", load=load_budgets)


def test_a_huge_file_is_refused_by_its_size_before_parsing(tmp_path):
    (tmp_path / "r.yaml").write_text(VALID + "# " + "x" * (2 << 20) + "\n")
    start = time.perf_counter()
    refuses_file(tmp_path / "r.yaml", "bytes; a recipe file is a few kilobytes")
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("text, says", [
    ("- onnx\n- tflite\n", "(got a list)"), ("just words\n", "(got the text 'just words')"),
    ("version: 1\na\x07: 1\n", "r.yaml:2: not valid YAML (control character #x0007"),
    ("version: 1\n---\nversion: 1\n",
     "not valid YAML (expected a single document in the stream but found another document; the file holds one"),
    ("version: 1\nname: [unclosed\n", "not valid YAML"),
])
def test_yaml_that_is_not_one_mapping(text, says):
    refuses(text, says)


# --- YAML structure: nesting, aliases, duplicate keys, odd scalars --------------------

@pytest.mark.parametrize("nest", [
    "[" * 5000 + "]" * 5000, "{a: " * 5000 + "1" + "}" * 5000, "[" * 100000,
    "".join(f"{' ' * i}a:\n" for i in range(800)) + " " * 800 + "1\n",
], ids=["lists", "flow-maps", "unclosed", "block-maps"])
def test_deep_nesting_is_one_line_not_a_recursion_error(nest):
    text = VALID + "extra: " + nest + "\n" if nest.startswith(("[", "{")) else nest
    refuses(text, "nested more than 64 levels deep")


def test_a_long_chain_of_merge_keys_is_refused():
    text = "a0: &a0 {x: 1}\n" + "".join(f"a{i}: &a{i} {{<<: *a{i - 1}, y{i}: 1}}\n" for i in range(1, 3000))
    refuses(text, "r.yaml")  # a RecursionError in PyYAML's merge, or the size limit: one line either way


@pytest.mark.parametrize("levels", [6, 9, 12])
def test_billion_laughs_is_refused_fast(levels):
    text = 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    text += "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, levels))
    start = time.perf_counter()
    refuses(VALID + "model_kwargs:\n" + "".join(f"  {ln}\n" for ln in text.splitlines()),
            "expands to more than 100,000 values")
    assert time.perf_counter() - start < 1.0


def test_an_alias_that_contains_itself_is_refused():
    refuses(VALID.replace("  factory:", "  kwargs: &k {self: *k}\n  factory:"),
            "refers to the collection that holds it")


def test_aliases_and_merge_keys_within_limits_still_work():
    text = VALID + (
        "steps:\n  - prune:\n      structured: {ratio: 0.5}\n      finetune: &ft {epochs: 1, lr: 1e-3}\n"
        "  - qat:\n      finetune: {<<: *ft, epochs: 2}\n")
    r = parse(text.replace("evaluation: {source: digits, split: test}",
                           "evaluation: {source: digits, split: test}\n  train: {source: digits, split: train}"))
    assert r.prune_steps[0].finetune.lr == 0.001 and r.qat_steps[0].finetune.epochs == 2


@pytest.mark.parametrize("text, says", [
    (VALID + "targets: [tflite]\n",
     f"r.yaml:{NEXT}: key 'targets' appears twice (lines {NEXT - 1} and {NEXT}); keep one"),
    (VALID.replace("name: hostile", "name: a\nname: b"), "key 'name' appears twice (lines 2 and 3)"),
    (VALID + "benchmark: {threads: 2, threads: 4}\n",
     f"r.yaml:{NEXT}: key 'threads' appears twice (line {NEXT}, twice)"),
    (VALID.replace("targets: [onnx]", "targets:\n  onnx:\n    opset: 18\n    opset: 20"), "key 'opset' appears twice"),
    (VALID + "b: &b {x: 1}\nc: {<<: *b, <<: *b}\n", "key '<<' appears twice"),
    (VALID + "kwargs: {1: a, 0x1: b, true: c}\n", "keys '1' and '0x1' are the same key"),
    (VALID + "x:\n  ? 0x" + "f" * 5000 + "\n  : 1\n  ? 0x" + "f" * 5000 + "\n  : 2\n", "appears twice"),
])
def test_a_key_given_twice_names_the_key_and_both_lines(text, says):
    refuses(text, "r.yaml:", says)


@pytest.fixture
def pure_python_yaml(monkeypatch):
    """The loader on PyYAML's own parser, as where PyYAML was built without libyaml."""
    from compressor.config import loader

    monkeypatch.setattr(loader, "_Loader", loader._PurePythonLoader)


@pytest.mark.parametrize("text, says", [
    (VALID + "x: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep"),
    (VALID + "targets: [tflite]\n", f"key 'targets' appears twice (lines {NEXT - 1} and {NEXT})"),
    (VALID + "x: &a [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"x{i}: &{'a' * (i + 1)} [{', '.join([f'*{chr(97) * i}'] * 10)}]\n" for i in range(1, 7)), "expands to more"),
    (VALID.replace("name: hostile", 'name: "\\ud800"'), "unpaired surrogate"),
    (VALID + "benchmark: {warmup_s: 1e400}\n", "benchmark.warmup_s: must be a finite number"),
    ("version: 1\na\x07: 1\n", "r.yaml:2: not valid YAML (control character #x0007"),
])
def test_without_libyaml_the_same_refusals(pure_python_yaml, text, says):
    refuses(text, "r.yaml:", says)
    assert parse(VALID).name == "hostile"


def test_a_budgets_key_given_twice(tmp_path):
    (tmp_path / "b.yaml").write_text(BUDGETS + "limits: {'*': {max_size: 1MB}}\n")
    refuses_file(tmp_path / "b.yaml", "b.yaml:4: key 'limits' appears twice (lines 2 and 4)", load=load_budgets)


@pytest.mark.parametrize("value, says", [
    ("0x" + "f" * 5000, "name: Input should be a valid string (got an integer of about 6,021 digits)"),
    ("2024-13-45", "cannot read the value '2024-13-45' (month must be in 1..12); quote it"),
    ("1" * 5000, "an integer of 5,000 digits"),
    ('"a\\0b"', "holds a NUL character"),
    ('"\\ud800"', ("unpaired surrogate", "invalid Unicode character escape code")),  # PyYAML's, libyaml's
    ("!!python/object:os.system {}", "not valid YAML (could not determine a constructor"),
    ("!!int 'ten'", "cannot read the value 'ten' (invalid literal for int()"),
    ("!!float 1_2_x", "cannot read the value '1_2_x' (could not convert string to float"),
])
def test_values_pyyaml_chokes_on_are_one_line(value, says):
    refuses(VALID.replace("name: hostile", f"name: {value}"), "r.yaml:2:", says)


def test_keys_and_file_names_with_line_breaks_stay_on_one_line(tmp_path):
    refuses(VALID + '"ta\\nrgets\\u2028": 1\n', r"unknown key 'ta\nrgets\u2028'")
    path = tmp_path / "bad\nname.yaml"
    path.write_text(VALID + "benchmark: {threads: 0}\n")
    refuses_file(path, rf"bad\nname.yaml:{NEXT}: benchmark.threads: must be greater than or equal to 1")


# --- numbers and types: every numeric field of every model ----------------------------

def _models() -> list[type[BaseModel]]:
    found, todo = [], [Strict]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return sorted(set(found), key=lambda m: m.__qualname__) + list(targets.option_models().values())


def _numeric(tp) -> tuple[str, type] | None:
    """('scalar'|'list'|'tuple'|'dict', int|float|ByteSize) for a numeric field, else None."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _numeric(args[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        return _numeric(members[0]) if len(members) == 1 else None
    if origin in (list, tuple, dict):
        inner = _numeric(args[-1])
        return (origin.__name__, inner[1]) if inner and inner[0] == "scalar" else None
    if tp in (int, float, ByteSize):
        return "scalar", tp
    return None


NUMERIC = [(m, name, *kind) for m in _models() for name, f in m.model_fields.items()
           if (kind := _numeric(f.annotation))]


def _wrap(kind: str, value):
    return {"scalar": value, "list": [value], "tuple": [value, value], "dict": {"k": value}}[kind]


def _errors_at(model, name, kind, value) -> list[dict]:
    try:
        model.model_validate({name: _wrap(kind, value)})
    except ValidationError as e:
        return [err for err in e.errors() if err["loc"][:1] == (name,)]
    return []


@pytest.mark.parametrize("model, name, kind, base", NUMERIC, ids=[f"{m.__name__}.{n}" for m, n, *_ in NUMERIC])
def test_every_numeric_field_is_bounded_finite_and_no_boolean(model, name, kind, base):
    assert _errors_at(model, name, kind, True), f"{model.__name__}.{name} takes true as a number"
    assert _errors_at(model, name, kind, False), f"{model.__name__}.{name} takes false as a number"
    huge = 10**30 if base is not float else 1e300
    assert _errors_at(model, name, kind, huge), f"{model.__name__}.{name} has no upper bound"
    assert _errors_at(model, name, kind, -huge), f"{model.__name__}.{name} has no lower bound"
    if base is not ByteSize:  # a size may be a string: "300KB"
        assert _errors_at(model, name, kind, "7"), f"{model.__name__}.{name} takes a string as a number"
    if base is float:
        for bad in (math.inf, -math.inf, math.nan):
            assert _errors_at(model, name, kind, bad), f"{model.__name__}.{name} takes {bad}"


def _boolean(tp) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _boolean(args[0])
    if origin in (typing.Union, types.UnionType):
        return any(_boolean(a) for a in args)
    return tp is bool


BOOLS = [(m, name) for m in _models() for name, f in m.model_fields.items() if _boolean(f.annotation)]


@pytest.mark.parametrize("model, name", BOOLS, ids=[f"{m.__name__}.{n}" for m, n in BOOLS])
def test_every_boolean_field_takes_true_or_false_only(model, name):
    for bad in (1, 0, "yes", "true", 1.0):
        assert _errors_at(model, name, "scalar", bad), f"{model.__name__}.{name} takes {bad!r} as a boolean"


def test_the_field_walk_covers_the_config():
    names = {f"{m.__name__}.{n}" for m, n, *_ in NUMERIC}
    assert {"BenchmarkSpec.threads", "BenchmarkSpec.batch_sizes", "InputSpec.shape", "FinetuneConfig.lr",
            "Limits.max_size", "QatSpace.epochs", "StructuredSpec.layers", "OnnxOptions.opset",
            "TuneSpec.seed"} <= names
    assert len(NUMERIC) >= 80 and len(BOOLS) >= 20


CASES = {  # (recipe text, phrases of the one line)
    "threads-true": (VALID + "benchmark: {threads: true}\n", "benchmark.threads: must be a number, not true or false"),
    "threads-1e20": (VALID + "benchmark: {threads: 100000000000000000000}\n",
                     "must be less than or equal to 1024 (got 100,000,000,000,000,000,000)"),
    "threads-2.5": (VALID + "benchmark: {threads: 2.5}\n", "must be a whole number"),
    "threads-hex-huge": (VALID + "benchmark: {threads: 0x" + "f" * 5000 + "}\n",
                         "(got an integer of about 6,021 digits)"),
    "threads-str": (VALID + "benchmark: {threads: '4'}\n", "must be an integer (got '4')"),
    "batch-1e9": (VALID + "benchmark: {batch_sizes: [1000000000]}\n",
                  "batch_sizes[0]: must be less than or equal to 65536", "the batch axis the exports declare"),
    "batch-empty": (VALID + "benchmark: {batch_sizes: []}\n", "batch_sizes: List should have at least 1 item"),
    "batch-twice": (VALID + "benchmark: {batch_sizes: [1, 8, 1]}\n", "lists each batch size once"),
    "warmup_s-inf": (VALID + "benchmark: {warmup_s: .inf}\n", "warmup_s: must be a finite number, not .inf or .nan"),
    "min_time-nan": (VALID + "benchmark: {min_time_s: .nan}\n", "min_time_s: must be a finite number"),
    "warmup_s-day": (VALID + "benchmark: {warmup_s: 86400}\n", "warmup_s: must be less than or equal to 3600"),
    "warmup-neg": (VALID + "benchmark: {warmup: -5}\n",
                   "benchmark.warmup: must be greater than or equal to 0 (got -5)"),
    "runs-0": (VALID + "benchmark: {runs: 0}\n", "benchmark.runs: must be greater than or equal to 5 (got 0)"),
    "min_time-neg": (VALID + "benchmark: {min_time_s: -1}\n",
                     "min_time_s: must be greater than or equal to 0 (got -1)"),
    "memory-1": (VALID + "benchmark: {memory: 1}\n", "benchmark.memory: must be true or false"),
    "device-cuda-huge": (VALID + "benchmark: {device: 'cuda:99999999999'}\n", "benchmark.device"),
    "opset-1e6": (VALID.replace("targets: [onnx]", "targets: {onnx: {opset: 1000000}}"),
                  "targets.onnx.opset: the installed exporter writes opsets 18 to", "(got 1000000)"),
    "opset-17": (VALID.replace("targets: [onnx]", "targets: {onnx: {opset: 17}}"), "writes opsets 18 to"),
    "opset-true": (VALID.replace("targets: [onnx]", "targets: {onnx: {opset: true}}"), "not true or false"),
    "opset-str": (VALID.replace("targets: [onnx]", "targets: {onnx: {opset: '18'}}"), "must be an integer"),
    "dynamic_batch-1": (VALID.replace("targets: [onnx]", "targets: {onnx: {dynamic_batch: 1}}"), "true or false"),
    "targets-twice": (VALID.replace("targets: [onnx]", "targets: [onnx, tflite, onnx]"), "lists onnx more than once"),
    "outputs-empty": (VALID.replace("outputs: [logits]", "outputs: []"),
                      "model.outputs: an empty list names no output"),
    "outputs-twice": (VALID.replace("outputs: [logits]", "outputs: [a, a]"), "output names must be unique"),
    "outputs-blank": (VALID.replace("outputs: [logits]", "outputs: ['']"), "model.outputs[0]"),
    "output-is-input": (VALID.replace("outputs: [logits]", "outputs: [pixels]"), "names both an input and an output"),
    "shape-zero": (VALID.replace("[1, 1, 8, 8]", "[1, 0, 8, 8]"),
                   "shape[1]: must be greater than or equal to 1 (got 0)"),
    "shape-neg": (VALID.replace("[1, 1, 8, 8]", "[1, -3, 8, 8]"), "shape[1]: must be greater than or equal to 1"),
    "shape-empty": (VALID.replace("[1, 1, 8, 8]", "[]"), "shape: List should have at least 1 item"),
    "shape-absurd": (VALID.replace("[1, 1, 8, 8]", "[1, 3, 100000, 100000]"),
                     "holds 30,000,000,000 elements; one input takes at most 2,147,483,648"),
    "shape-float": (VALID.replace("[1, 1, 8, 8]", "[1, 1, 8.5, 8]"), "shape[2]: must be a whole number"),
    "batch-times-shape": (VALID.replace("[1, 1, 8, 8]", "[1, 3, 4096, 4096]") + "benchmark: {batch_sizes: [1, 64]}\n",
                          "batch 64 makes input 'pixels' 3,221,225,472 elements", "lower benchmark.batch_sizes"),
    "limit-0": (VALID.replace("limit: 64", "limit: 0"), "data.calibration.limit: must be greater than or equal to 1"),
    "limit-huge": (VALID.replace("limit: 64", "limit: 100000000000000000000"), "limit: must be less than or equal to"),
    "samples-0": (VALID + "validation: {samples: 0}\n", "validation.samples: must be greater than or equal to 1"),
    "tolerance-nan": (VALID + "validation: {int8: {min_cosine: .nan}}\n",
                      "validation.int8.min_cosine: must be a finite"),
    "version-true": (VALID.replace("version: 1", "version: true"), "version: must be the integer 1"),
    "version-1.0": (VALID.replace("version: 1", "version: 1.0"), "version: must be the integer 1"),
    "name-dotdot": (VALID.replace("name: hostile", "name: '..'"), "would name the folder itself or its parent"),
    "name-long": (VALID.replace("name: hostile", f"name: {'n' * 201}"), "name: String should have at most 200"),
    "name-long-bytes": (VALID.replace("name: hostile", f"name: {chr(0xe9) * 150}"), "300 bytes in UTF-8"),
    "name-long-tune": (VALID.replace("name: hostile", f"name: {'n' * 190}") + "tune: {budget: {min_cosine: 0.9}}\n",
                       "with a 'tune' section a name takes at most 188 bytes"),
    "weights-empty": (re.sub(r"weights: .*", "weights: ''", VALID), "model.weights: an empty path"),
    "weights-long": (re.sub(r"weights: .*", f"weights: {'a' * 300}", VALID), "model.weights: path too long"),
    "output-dir-nul": (VALID + 'output: {dir: "runs/\\0x"}\n', "holds a NUL character"),
    "trusted-yes-str": (VALID.replace("  factory:", "  trusted: 'yes'\n  factory:"), "must be true or false"),
}
STEPS = "  train: {source: digits, split: train}\nsteps:\n"
TRAINING = {
    "lr-0": ("  - prune:\n      structured: {ratio: 0.5}\n      finetune: {lr: 0}\n",
             "finetune.lr: must be greater than 0"),
    "lr-inf": ("  - prune:\n      structured: {ratio: 0.5}\n      finetune: {lr: .inf}\n", "must be a finite number"),
    "lr-neg": ("  - qat:\n      finetune: {lr: -1e-3}\n",
               "steps[0].qat.finetune.lr: must be greater than 0 (got -0.001)"),
    "epochs-neg": ("  - qat:\n      finetune: {epochs: -1}\n", "finetune.epochs: must be greater than or equal to 0"),
    "epochs-huge": ("  - qat:\n      finetune: {epochs: 1000000000}\n",
                    "finetune.epochs: must be less than or equal to 100000"),
    "batch-huge": ("  - qat:\n      finetune: {batch_size: 10000000}\n",
                   "finetune.batch_size: must be less than or equal to 65536"),
    "seed-neg": ("  - qat:\n      finetune: {seed: -1}\n", "finetune.seed: must be greater than or equal to 0"),
    "threads-true": ("  - qat:\n      finetune: {threads: true}\n", "finetune.threads: must be a number"),
    "sparsity-1": ("  - prune:\n      unstructured: {sparsity: 1.0}\n", "sparsity: must be less than 1"),
    "nm-huge": ("  - prune:\n      nm: {n: 2, m: 100000}\n", "nm.m: must be less than or equal to 1024"),
    "weight_bits-1": ("  - qat:\n      weight_bits: 1\n", "weight_bits: must be greater than or equal to 2"),
    "percentile-nan": ("  - quantize:\n      variants: [{mode: static, calibration: percentile, percentile: .nan}]\n",
                       "variants[0].percentile: must be a finite number"),
    "calibration-samples-true": ("  - quantize:\n      variants: [{mode: static, calibration_samples: true}]\n",
                                 "calibration_samples: must be a number, not true or false"),
    "fallback-layers-neg": ("  - quantize:\n      variants: [{mode: static, fallback: {max_float_layers: -1}}]\n",
                            "fallback.max_float_layers: must be greater than or equal to 0"),
}
TUNING = {
    "trials-0": ("tune:\n  trials: 0\n  budget: {min_cosine: 0.99}\n",
                 "tune.trials: must be greater than or equal to 1"),
    "timeout-inf": ("tune:\n  timeout_s: .inf\n  budget: {min_cosine: 0.99}\n", "tune.timeout_s: must be a finite"),
    "seed-2**40": ("tune:\n  seed: 1099511627776\n  budget: {min_cosine: 0.99}\n",
                   "tune.seed: must be less than or equal to"),
    "qat-lr-nan": ("tune:\n  budget: {min_cosine: 0.99}\n  space: {qat: {epochs: [0, 2], lr: [.nan, 0.1]}}\n",
                   "tune.space.qat.lr[0]: must be a finite number"),
    "budget-drop-inf": ("tune:\n  budget: {max_accuracy_drop: .inf}\n", "tune.budget.max_accuracy_drop: must be"),
    "embedded-budgets-true": ("budgets:\n  limits: {'*': {max_size: true}}\n", "limits.*.max_size: must be a number"),
    "embedded-budgets-empty": ("budgets:\n  limits: {'*': {}}\n", "budgets.limits.*: no limit given"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_numbers_and_types_no_machine_can_honour_are_refused_where_the_recipe_is_read(case):
    text, *says = CASES[case]
    refuses(text, "r.yaml:", *says)


@pytest.mark.parametrize("case", list(TRAINING))
def test_training_and_quantization_numbers(case):
    step, says = TRAINING[case]
    refuses(VALID.replace("targets: [onnx]", "") + STEPS + step + "targets: [onnx]\n", "r.yaml:", says)


@pytest.mark.parametrize("case", list(TUNING))
def test_tuning_and_embedded_budget_numbers(case):
    refuses(VALID + TUNING[case][0], "r.yaml:", TUNING[case][1])


def test_exponent_floats_without_a_dot_are_numbers():
    r = parse(VALID + "benchmark: {warmup_s: 2e-2, min_time_s: 1E-1}\nvalidation: {fp32: {max_abs: 1e-3}}\n")
    assert (r.benchmark.warmup_s, r.benchmark.min_time_s, r.validation.fp32.max_abs) == (0.02, 0.1, 0.001)


@pytest.mark.parametrize("body, says", [
    ("limits:\n  '*': {max_p50_ms: .nan}\n", "b.yaml:3: limits.*.max_p50_ms: must be a finite number"),
    ("limits:\n  '*': {max_size: true}\n", "limits.*.max_size: must be a number or a size"),
    ("limits:\n  '*': {max_size: 2EiB}\n", "limits.*.max_size: must be less than or equal to"),
    ("limits:\n  '*': {min_speedup: -1}\n", "min_speedup: must be greater than 0"),
    ("limits:\n  '*': {}\n", "limits.*: no limit given"),
    ("limits: {}\n", "budgets: give 'limits' (selector -> limits) or 'recommended' (or both)"),
    ("latency: {resamples: 1000000000000}\nlimits: {'*': {max_size: 1MB}}\n",
     "latency.resamples: must be less than or equal to"),
    ("latency: {quantile: 100}\nlimits: {'*': {max_size: 1MB}}\n", "latency.quantile: must be less than 100"),
    ("latency: {batch: true}\nlimits: {'*': {max_size: 1MB}}\n", "latency.batch: must be a number"),
    ("latency: {normalize: 0}\nlimits: {'*': {max_size: 1MB}}\n", "latency.normalize: must be true or false"),
])
def test_budgets_files_with_numbers_no_gate_can_use(tmp_path, body, says):
    (tmp_path / "b.yaml").write_text("version: 1\n" + body)
    refuses_file(tmp_path / "b.yaml", says, load=load_budgets)


@pytest.mark.parametrize("version", ["true", "1.0", "'1'", "2"])
def test_a_budgets_file_of_another_version(tmp_path, version):
    (tmp_path / "b.yaml").write_text(BUDGETS.replace("version: 1", f"version: {version}"))
    refuses_file(tmp_path / "b.yaml", "b.yaml:1: version: ", load=load_budgets)


# --- the command line: exit 2, one line, and no run directory started -----------------

CLI_CASES = {
    "utf16": VALID.encode("utf-16"), "binary": bytes(range(256)),
    "empty": b"", "deep": (VALID + "x: " + "[" * 20000 + "]" * 20000 + "\n").encode(),
    "duplicate": (VALID + "targets: [tflite]\n").encode(),
    "threads-true": (VALID + "benchmark: {threads: true}\n").encode(),
    "batch-1e9": (VALID + "benchmark: {batch_sizes: [1000000000]}\n").encode(),
    "warmup_s-inf": (VALID + "benchmark: {warmup_s: .inf}\n").encode(),
    "opset": VALID.replace("targets: [onnx]", "targets: {onnx: {opset: 1000000}}").encode(),
    "outputs-empty": VALID.replace("outputs: [logits]", "outputs: []").encode(),
    "static-no-data": (digits_head("hostile") + "steps: [{quantize: {variants: [{mode: static}]}}]\n"
                       "targets: [onnx]\n").encode(),
    "qat-no-data": (digits_head("hostile", calibration=64) + "steps: [{qat: {}}]\ntargets: [onnx]\n").encode(),
}
CLI_SAYS = {"utf16": "UTF-16 text", "binary": "must be UTF-8 text", "empty": "empty", "deep": "nested more than",
            "duplicate": "key 'targets' appears twice", "threads-true": "not true or false",
            "batch-1e9": "less than or equal to 65536", "warmup_s-inf": "finite", "opset": "opsets 18 to",
            "outputs-empty": "empty list names no output", "static-no-data": "calibrates on data: add 'data:",
            "qat-no-data": "fine-tunes on training data"}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_run_command_refuses_before_it_starts(capsys, tmp_path, case):
    path = tmp_path / "r.yaml"
    path.write_bytes(CLI_CASES[case])
    out = tmp_path / "run"
    line = refused(capsys, "run", path, "--out", out, "--no-progress", says=(str(path), CLI_SAYS[case]))
    assert line.startswith(f"compressor: error: {path}")
    assert not out.exists()


def test_the_run_command_refuses_a_directory_as_the_recipe(capsys, tmp_path):
    refused(capsys, "run", tmp_path, "--out", tmp_path / "run", "--no-progress", says="a directory, not a file")
    code, _, err = cli(capsys, "tune", tmp_path, "--out", tmp_path / "t", "--no-progress")
    assert code == 2 and "a directory, not a file" in one_line(err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "t").exists()
