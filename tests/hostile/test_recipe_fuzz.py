"""Property: whatever a recipe or budgets file holds, the loader returns a model or
raises the project's own error with one non-empty line naming the file, never any other
exception. Valid documents (the shipped recipe, recipes with every section, a budgets
file) are mutated structurally (keys dropped, renamed, added; values replaced by other
types, huge, negative or non-finite numbers, odd strings; deep nesting), as text
(truncated, spliced, lines repeated) and as bytes (other encodings, random bytes).

Deterministic (derandomize): the same examples every run, no example database, and
Hypothesis's caches in the temp folder, not the checkout. New examples:
HYPOTHESIS_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import copy
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

import targets
from compressor.config.budgets import BudgetsFile, load_budgets
from compressor.config.recipe import Recipe, load_recipe, parse_recipe
from compressor.errors import CompressorError
from recipes import digits_head

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = targets.option_models()

TRAIN = digits_head("fuzz-train", calibration=64, evaluation=True, train=True) + """\
steps:
  - prune:
      structured:
        ratio: 0.25
        layers: {features.0.0: 0.5}
        importance: taylor
        round_to: 4
        max_layer_ratio: 0.5
        skip_depthwise: false
        calibration_batches: 2
      ignore: [classifier]
      finetune:
        epochs: 2
        batch_size: 32
        optimizer: sgd
        lr: 1e-2
        momentum: 0.9
        weight_decay: 0.0001
        l1: 0.00001
        label_smoothing: 0.1
        schedule: {kind: step, warmup_epochs: 0.5, step_epochs: 1, gamma: 0.5, min_lr_ratio: 0.0}
        distill: {temperature: 2.0, alpha: 0.5}
        augment: {shift: 1, hflip: false, noise: 0.01}
        bn_recalibration: 4
        early_stopping: {patience: 2, min_delta: 0.1}
        threads: 1
        seed: 7
  - prune:
      unstructured: {sparsity: 0.5, scope: layer, norm: l2, schedule: gradual, gradual_end: 0.5,
                     layers: {classifier: 0.2}}
      finetune: {epochs: 1}
  - prune: {nm: {n: 2, m: 4}}
  - qat:
      weight_bits: 4
      per_channel: false
      keep_float: [classifier]
      sensitivity: {keep_most_sensitive: 1, samples: 64}
      freeze_observers_after: 1
      freeze_bn_after: 1
      calibration_samples: 64
      compare_ptq: false
      finetune: {epochs: 2, lr: 0.0005}
  - quantize:
      variants: [{mode: qat}]
targets: [onnx, tflite]
budgets:
  baseline: baseline.json
  latency: {batch: 1, confidence: 0.9, normalize: false, resamples: 500, quantile: 25}
  limits:
    '*': {max_size: 1MB, max_gzip_size: 500KB}
    onnx/int8: {max_p50_ms: 5, max_p90_ms: 8, max_p99_ms: 12, min_accuracy: 90, max_accuracy_drop: 2,
                min_cosine: 0.99, min_speedup: 1.1, max_size_ratio: 0.5, max_latency_regression: 10,
                max_size_regression: 5, max_accuracy_regression: 1}
"""

TUNE = digits_head("fuzz-tune", calibration=128, evaluation=True, train=True) + """\
steps:
  - quantize:
      variants:
        - {mode: static, calibration_samples: 64, fallback: {min_cosine: 0.995, max_accuracy_drop: 1.0,
           max_float_layers: 2, alternatives: false, granularity: block, sensitivity: target,
           sensitivity_samples: 32}}
        - {name: pct, mode: static, calibration: percentile, percentile: 99.9, per_channel: false,
           symmetric_activations: true}
        - {name: dyn, mode: dynamic, exclude: [classifier], exclude_ops: [Softmax]}
targets:
  onnx: {opset: 18, dynamic_batch: false, external_data: false, fusions: none}
  tflite: {io: int8, channels_last: true, compact: false, signature: serving_default}
  torchscript: {capture: trace, optimize_for_inference: false, quantized_engine: x86, compress: true}
  pt2: {dynamic_batch: true}
benchmark: {device: cpu, threads: 2, batch_sizes: [1, 8], warmup: 2, warmup_s: 0.02, runs: 20,
            min_time_s: 0.0, memory: false}
validation:
  samples: 64
  fp32: {max_abs: 1.0e-3, min_cosine: 0.9999, min_top1: 0.99}
  int8: {min_cosine: 0.98}
output: {dir: runs/fuzz, overwrite: false}
tune:
  target: onnx
  trials: 4
  timeout_s: 600
  engine: optuna
  sampler: nsga2
  seed: 3
  objectives: [latency, size]
  budget: {max_accuracy_drop: 1.0, min_cosine: 0.99}
  storage: sqlite:///study.db
  study: fuzz
  benchmark: {runs: 10, warmup: 1, warmup_s: 0.01, memory: false}
  space:
    prune: {ratio: [0.0, 0.5], finetune_epochs: 1, lr: 0.002}
    modes: [static, dynamic, fp16]
    calibration: [minmax, percentile]
    percentile: 99.9
    calibration_samples: [64, 128]
    per_channel: [true, false]
    fallback: {max_layers: 2}
    qat: {epochs: [0, 2], lr: [0.0001, 0.001]}
"""

BUDGETS = """\
version: 1
baseline: main/report.json
latency: {batch: 1, confidence: 0.95, normalize: true, resamples: 2000, quantile: 50}
limits:
  '*': {max_size: 300KB, max_gzip_size: 200KB}
  onnx/int8-static: {max_p50_ms: 2.5, max_p90_ms: 3, max_p99_ms: 4, min_accuracy: 95, min_cosine: 0.99}
  '*/int8': {max_accuracy_drop: 1.0, min_speedup: 1.2, max_size_ratio: 0.4}
  tflite/*: {max_latency_regression: 10, max_size_regression: 5, max_accuracy_regression: 0.5}
"""

RECIPES = {"digits": (ROOT / "compressor/recipes/digits.yaml").read_text(), "train": TRAIN, "tune": TUNE}
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's emitter, when there: faster
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):  # its caches, out of the checkout
    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "compressor-hypothesis")
RANDOM = os.environ.get("HYPOTHESIS_FUZZ_RANDOM") == "1"
EXAMPLES = {"tree": 2000, "text": 600, "bytes": 300, "budgets": 600}
FUZZ = settings(deadline=None, derandomize=not RANDOM, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def outcome(load, filename: str) -> str:
    """'loaded', 'yaml' (refused reading) or 'model' (refused validating); any exception
    that is not a CompressorError, or a message that is not one line naming the file, fails."""
    try:
        result = load()
    except CompressorError as e:
        msg = str(e)
        assert msg and msg == msg.strip() and len(msg.splitlines()) == 1, repr(msg)
        assert len(msg) <= 1000, msg
        assert filename in msg, msg
        yaml_stage = any(p in msg for p in ("YAML", "UTF-8", "appears twice", "nested", "expands to", "empty",
                                             "NUL", "cannot read the value", "refers to the", "a directory"))
        return "yaml" if yaml_stage else "model"
    assert isinstance(result, (Recipe, BudgetsFile)), type(result)
    return "loaded"


# --- what goes into a document ---------------------------------------------------------

# Built from a seeded random.Random that Hypothesis draws (one draw, not one per value:
# Hypothesis's recursive strategies cost ~7 ms an example, the loading itself ~2 ms),
# plus one scalar Hypothesis picks with its own eye for nasty values.
INTS = [0, -1, 1, 2, 5, 7, 8, 18, 28, 29, 255, 1024, 1025, 65536, 65537, 2**31 - 1, 2**31, 2**32, 2**63, 2**64,
        10**20, -10**20, 10**300, -(2**31)]
FLOATS = [math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, -0.0, 0.0, 0.5, 1.0, 1.5, 50.0, 99.999, 100.0,
          100.5, 1e-3, -1e-3, 3600.0, 3600.5]
TEXTS = ["", " ", ".", "..", "*", "/", "onnx", "tflite", "torchscript", "pt2", "static", "dynamic", "fp16", "qat",
         "digits", "sentences", "train", "cuda:0", "cuda:999999", "1e-3", "300KB", "2EiB", "-1KB", "nanKB", "1.5MiB",
         "pkg.mod:fn", "compressor.zoo.digits:digits_cnn", "a" * 300, "\x00", "\ud800", "\t", "x\ny", "\u2028",
         "\ufeff", "~", "null", "yes", "2024-13-45", "<<", "&a", "*a", "!!int", "onnx/int8", "*/int8", "a/b/c"]
CHARS = ("abcxyz_.-/:*09 \t\n\r[]{},&!|>'\"%@`#?~=\\\u00e9\u00fc\u2028\u0085\ufeff\U0001f600\x07\x1b")
# NUL and lone surrogates are in TEXTS only: each is refused, and in CHARS they would mask the rest.


def hostile_value(rnd, depth: int = 0):
    """A YAML-representable value of any kind: numbers past every bound, non-finite
    floats, odd strings, and lists and mappings of those."""
    roll = rnd.random()
    if depth < 3 and roll < 0.12:
        return [hostile_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    if depth < 3 and roll < 0.24:
        return {hostile_key(rnd): hostile_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))}
    pick = rnd.randrange(9)
    if pick == 0:
        return None if rnd.random() < 0.5 else rnd.random() < 0.5
    if pick == 1:
        return rnd.choice(INTS) * rnd.choice([1, 1, -1])
    if pick == 2:
        return rnd.randint(-10, 100) if rnd.random() < 0.5 else rnd.randint(-2**70, 2**70)
    if pick == 3:
        return rnd.choice(FLOATS)
    if pick == 4:  # any double: subnormals, huge exponents, NaN payloads
        return struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
    if pick == 5:
        return rnd.uniform(-2, 2)
    if pick in (6, 7):
        return rnd.choice(TEXTS)
    return "".join(rnd.choice(CHARS) for _ in range(rnd.randint(0, 24)))


def hostile_key(rnd):
    roll = rnd.random()
    if roll < 0.1:
        return rnd.choice([None, True, False, 0, 1, -1, 1.5])
    return rnd.choice(TEXTS) if roll < 0.5 else "".join(rnd.choice(CHARS) for _ in range(rnd.randint(0, 10)))


SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10))


def _walk(rnd, tree) -> tuple:
    """A random place in `tree`: down from the top (the top itself 1 time in 50), then
    stopping at each level with p = 1/5."""
    path, node = (), tree
    while isinstance(node, (dict, list)) and node and (not path and rnd.random() > 0.02 or rnd.random() > 0.2):
        key = rnd.choice(list(node)) if isinstance(node, dict) else rnd.randrange(len(node))
        path, node = path + (key,), node[key]
    return path


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    if not path:
        return value
    _get(tree, path[:-1])[path[-1]] = value
    return tree


def mutate(rnd, tree, scalar):
    """`tree` after one to four structural mutations at random places; what goes in is
    `scalar` (drawn by Hypothesis) or a hostile_value."""
    tree = copy.deepcopy(tree)
    for _ in range(rnd.randint(1, 4)):
        path = _walk(rnd, tree)
        node = _get(tree, path)
        op = rnd.choice(["replace", "replace", "replace", "drop", "rename", "add", "wrap", "nest", "repeat"])
        if op == "replace" or (op in ("drop", "rename") and not path):
            tree = _set(tree, path, scalar if rnd.random() < 0.25 else hostile_value(rnd))
        elif op == "drop":
            del _get(tree, path[:-1])[path[-1]]
        elif op == "rename" and isinstance(_get(tree, path[:-1]), dict):
            key = path[-1]
            new = rnd.choice([hostile_key(rnd), f"{key}s", f"{key}"[:-1], f"{key}".upper(), f"_{key}"])
            parent = _get(tree, path[:-1])
            parent[new] = parent.pop(key)
        elif op == "add" and isinstance(node, dict):
            node[hostile_key(rnd)] = hostile_value(rnd)
        elif op == "add" and isinstance(node, list):
            node.insert(rnd.randint(0, len(node)), hostile_value(rnd))
        elif op == "wrap":
            tree = _set(tree, path, rnd.choice([[node], {"x": node}, {path[-1] if path else "k": node}]))
        elif op == "nest":
            for _ in range(rnd.choice([2, 10, 50, 63, 65, 200])):
                node = [node] if rnd.random() < 0.5 else {"a": node}
            tree = _set(tree, path, node)
        elif op == "repeat" and isinstance(node, list):
            tree = _set(tree, path, node * rnd.randint(0, 50))
    return tree


def dump(rnd, tree) -> str:
    style = dict(sort_keys=False, allow_unicode=rnd.random() < 0.5, width=rnd.randint(20, 200),
                 default_flow_style=rnd.choice([None, False, True]))
    try:
        return yaml.dump(tree, Dumper=DUMPER, **style)
    except UnicodeEncodeError:  # libyaml's emitter takes no lone surrogate; PyYAML's escapes it
        return yaml.dump(tree, Dumper=yaml.SafeDumper, **style)


PIECES = [  # YAML's own syntax, escapes and the values its constructors choke on
    ":", ": ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "*b", "!!int ", "!!float ", "!!python/object:os.system ",
    "!!binary ", "%YAML 1.1\n", "---\n", "...\n", "\t", "\r", "\x85", "\u2028", "\ufeff", "\x07", "'", '"', "#",
    "<<: *a\n", "? ", "|\n", ">\n", "\n  ", "\n" + " " * 9, "[" * 3000, "{a: " * 2000, "- " * 2000, "1" * 5000,
    ".inf", ".nan", "-5", "true", "1e400", "0x10", "0o7", "1:30", "2024-13-45", "\\ud800", '"\\0"', '"\\ud800"',
    "0x" + "f" * 5000, "0b" + "1" * 20000, "1:" + "59:" * 3000 + "0", "? 0x" + "f" * 5000 + "\n: 1\n"]
SPLICES = st.one_of(st.sampled_from(PIECES), st.text(max_size=12))


def splice(rnd, text: str, piece: str) -> str:
    """`text` cut, spliced (with `piece`, a SPLICES one or a hostile_value as text) or
    with lines repeated, one to three times."""
    for _ in range(rnd.randint(1, 3)):
        op = rnd.choice(["cut", "insert", "insert", "delete", "repeat-line", "swap-lines"])
        at = rnd.randint(0, len(text))
        if op == "cut":
            text = text[:at]
        elif op == "insert":
            piece = piece if rnd.random() < 0.5 else rnd.choice(PIECES + [str(hostile_value(rnd))])
            text = text[:at] + piece + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + rnd.randint(1, 40):]
        else:
            lines = text.splitlines(keepends=True) or [""]
            i, j = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            if op == "repeat-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


def garble(rnd, text: str, noise: bytes) -> bytes:
    """The bytes of `text` in another encoding, with bytes replaced, or `noise` itself."""
    op = rnd.choice(["encoding", "flip", "noise", "bom"])
    if op == "encoding":
        codec = rnd.choice(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252", "cp037"])
        return (text + rnd.choice(["", "# caf\u00e9\n", "name2: \u00fc\n"])).encode(codec, "replace")
    if op == "noise":
        return noise
    data = bytearray(text.encode("utf-8"))
    if op == "bom":
        return b"\xef\xbb\xbf" + bytes(data)
    for byte in noise[:5] or b"\xff":
        if data:
            data[rnd.randrange(len(data))] = byte
    return bytes(data)


# A seed rather than st.randoms(): Hypothesis's own Random makes every call a draw, three
# times slower than the loading; the seed shows in a failure's report and replays it.
RND = st.builds(random.Random, st.integers(0, 2**64))



# --- the properties ---------------------------------------------------------------------

def _check(seen: Counter, least: dict[str, int]) -> None:
    print(f"outcomes: {dict(seen)}")  # shown with -s
    for kind, n in least.items():
        assert seen[kind] >= n, (kind, dict(seen))  # the fuzz reached this stage often enough


@pytest.mark.parametrize("seed", list(RECIPES))
def test_every_seed_loads(seed, tmp_path):
    assert parse_recipe(RECIPES[seed], "seed.yaml", target_options=OPTIONS).version == 1
    (tmp_path / "b.yaml").write_text(BUDGETS)
    assert load_budgets(tmp_path / "b.yaml").version == 1


def test_structurally_mutated_recipes_load_or_refuse_in_one_line():
    seen: Counter = Counter()
    trees = {k: yaml.safe_load(t) for k, t in RECIPES.items()}

    @settings(FUZZ, max_examples=EXAMPLES["tree"])
    @given(st.sampled_from(list(trees)), RND, SCALAR)
    def prop(seed, rnd, scalar):
        text = dump(rnd, mutate(rnd, trees[seed], scalar))
        note(text)
        seen[outcome(lambda: parse_recipe(text, "fuzz.yaml", target_options=OPTIONS), "fuzz.yaml")] += 1

    prop()
    _check(seen, {"loaded": 30, "model": 600, "yaml": 10})


@pytest.mark.parametrize("parser", ["libyaml", "pure-python"])
def test_spliced_recipe_text_loads_or_refuses_in_one_line(parser, monkeypatch):
    seen: Counter = Counter()
    if parser == "pure-python":  # the loader where PyYAML was built without libyaml
        from compressor.config import loader

        monkeypatch.setattr(loader, "_Loader", loader._PurePythonLoader)

    @settings(FUZZ, max_examples=EXAMPLES["text"] // (1 if parser == "libyaml" else 3))
    @given(st.sampled_from(list(RECIPES)), RND, SPLICES)
    def prop(seed, rnd, piece):
        text = splice(rnd, RECIPES[seed], piece)
        note(text)
        seen[outcome(lambda: parse_recipe(text, "fuzz.yaml", target_options=OPTIONS), "fuzz.yaml")] += 1

    prop()
    _check(seen, {"loaded": 5, "model": 15, "yaml": 30})


def test_garbled_recipe_files_load_or_refuse_in_one_line(tmp_path_factory):
    seen: Counter = Counter()
    path = tmp_path_factory.mktemp("fuzz") / "recipe.yaml"

    @settings(FUZZ, max_examples=EXAMPLES["bytes"])
    @given(st.sampled_from(list(RECIPES)), RND, st.binary(max_size=400))
    def prop(seed, rnd, noise):
        path.write_bytes(garble(rnd, RECIPES[seed], noise))
        note(repr(path.read_bytes()))
        seen[outcome(lambda: load_recipe(path, target_options=OPTIONS), str(path))] += 1

    prop()
    _check(seen, {"loaded": 10, "yaml": 100})


def test_mutated_budgets_files_load_or_refuse_in_one_line(tmp_path_factory):
    seen: Counter = Counter()
    path = tmp_path_factory.mktemp("fuzz") / "budgets.yaml"
    tree = yaml.safe_load(BUDGETS)

    @settings(FUZZ, max_examples=EXAMPLES["budgets"])
    @given(st.sampled_from(["tree", "tree", "text", "bytes"]), RND, SCALAR)
    def prop(how, rnd, scalar):
        if how == "tree":
            path.write_text(dump(rnd, mutate(rnd, tree, scalar)), encoding="utf-8", errors="surrogatepass")
        elif how == "text":
            path.write_text(splice(rnd, BUDGETS, str(scalar)), encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(garble(rnd, BUDGETS, rnd.randbytes(rnd.randint(0, 200))))
        note(repr(path.read_bytes()))
        seen[outcome(lambda: load_budgets(path), str(path))] += 1

    prop()
    _check(seen, {"loaded": 20, "model": 100, "yaml": 50})


def test_loading_a_recipe_imports_no_torch():
    code = ("import sys, targets\nfrom compressor.config.recipe import load_recipe\n"
            f"load_recipe({str(ROOT / 'compressor/recipes/digits.yaml')!r}, target_options=targets.option_models())\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"
