"""The `compressor` console script.

Heavy libraries (torch, onnxruntime) are imported inside the subcommands, so that
`compressor --help` answers at once. A user mistake prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

from compressor.errors import CompressorError


def _batches(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a comma-separated list such as 1,8,32") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: batch sizes are positive integers")
    return out


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return v


MAIN_EXAMPLES = """examples:
  compressor demo                              # the shipped model, end to end
  compressor run recipe.yaml                   # compress, export, validate, benchmark
  compressor bench model.onnx model.tflite     # time files made by anybody
  compressor compare base/report.json new/report.json
  compressor gate runs/NAME/report.json --budgets budgets.yaml

'compressor COMMAND --help' has each command's options and examples."""

RUN_EXAMPLES = """examples:
  compressor run recipe.yaml
  compressor run recipe.yaml --out runs/today --overwrite
  compressor run recipe.yaml --baseline runs/main/report.json   # regression budgets
  compressor run recipe.yaml --devices devices.yaml --no-progress
A run writes report.md, report.html, report.json, manifest.json and artifacts/ under --out."""

BENCH_EXAMPLES = """examples:
  compressor bench model.onnx model_int8.onnx model.tflite
  compressor bench model.onnx --batch 1,8,32 --threads 4
  compressor bench encoder.onnx --shape input_ids=1x128 --inputs tokens.npz
  compressor bench model.onnx --device pi5 --device local      # devices.yaml
  compressor bench *.onnx --format csv > latency.csv"""

COMPARE_EXAMPLES = """examples:
  compressor compare runs/main/report.json runs/pr/report.json
  compressor compare base.json new.json --device pi5
  compressor compare run.json run.json --map local=pi5        # the board against this machine
  compressor compare base.json new.json --format json"""


TUNE_EXAMPLES = """examples:
  compressor tune recipe.yaml --trials 20          # a study in runs/NAME-tune/study.db
  compressor tune recipe.yaml --trials 40          # continue it to 40 trials
  compressor tune recipe.yaml --storage sqlite:///shared.db --study nightly"""

GATE_EXAMPLES = """examples:
  compressor gate runs/pr/report.json                       # the recipe's own budgets
  compressor gate runs/pr/report.json --budgets budgets.yaml --baseline runs/main/report.json
  compressor gate runs/pr/report.json --junit gate.xml --markdown comment.md
  compressor gate runs/pr/report.json --format json"""

SENSITIVITY_EXAMPLES = """examples:
  compressor sensitivity recipe.yaml --target onnx --top 10
  compressor sensitivity recipe.yaml --target onnx --mode target --granularity block
  compressor sensitivity recipe.yaml --target tflite --json > ranking.json"""


def _add_format(parser: argparse.ArgumentParser, help: str = "table (fits the terminal), or json / csv of the raw "
                "values on stdout (default table)") -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", help=help)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every user mistake
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from compressor import __version__

    p = _Parser(prog="compressor", description="Compress a PyTorch model, export it to deployment targets, "
                "validate and benchmark every artifact.", epilog=MAIN_EXAMPLES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"compressor {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    r = sub.add_parser("run", help="run a recipe: compress, export, validate, benchmark, report",
                       epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("recipe", type=Path, help="recipe YAML ('compressor schema' prints its JSON schema)")
    r.add_argument("--out", type=Path, help="run directory (default: the recipe's output.dir or runs/NAME)")
    r.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    r.add_argument("--baseline", type=Path, help="baseline report.json for the recipe's regression budgets")
    r.add_argument("--no-progress", action="store_true", help="no progress lines")
    r.add_argument("--devices", type=Path, metavar="FILE",
                   help="devices inventory for benchmark.devices (default ./devices.yaml over the user's)")
    r.add_argument("--resume", action="store_true",
                   help="continue QAT from the checkpoints in the run directory (after an interruption)")

    t = sub.add_parser("tune", help="search the recipe's tune space for the fastest/smallest configuration "
                       "within its accuracy budget (an Optuna study; rerun to continue it)", epilog=TUNE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("recipe", type=Path, help="recipe YAML with a tune section (see docs/tune.md)")
    t.add_argument("--trials", type=_positive, help="trials in the study in all (default: the recipe's tune.trials)")
    t.add_argument("--storage", help="SQLAlchemy database URL of the study (default: sqlite:///OUT/study.db)")
    t.add_argument("--study", help="study name (default: tune.study or the recipe's name)")
    t.add_argument("--out", type=Path, help="tune directory (default: runs/NAME-tune)")
    t.add_argument("--no-progress", action="store_true", help="no progress lines")

    d = sub.add_parser("demo", help="run the shipped recipe on the shipped digits CNN")
    d.add_argument("--out", type=Path, default=Path("runs/digits-demo"),
                   help="run directory, replaced on each demo (default runs/digits-demo)")
    d.add_argument("--no-progress", action="store_true", help="no progress lines")

    b = sub.add_parser("bench", help="benchmark artifact files made by anybody", epilog=BENCH_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("files", type=Path, nargs="+", metavar="FILE",
                   help="artifacts: .onnx, .tflite, .xml (OpenVINO IR), .pte, .pt (TorchScript), .pt2")
    b.add_argument("--threads", type=_positive, default=2, help="intra-op threads of each runtime (default 2)")
    b.add_argument("--batch", type=_batches, help="batch sizes, e.g. 1,8,32 (default 1, or the batch --shape "
                   "gives)")
    b.add_argument("--shape", action="append", default=[], metavar="[FILE:]NAME=DxDxD",
                   help="fix an input's shape (for dynamic dimensions); FILE: for one of several files; repeatable")
    b.add_argument("--inputs", action="append", default=[], metavar="[FILE:]DATA.npz",
                   help="real input values, one array per input name (samples first, or the whole value of an "
                        "input without a batch axis): token ids, states; repeatable")
    b.add_argument("--value", action="append", default=[], metavar="[FILE:]NAME=NUMBER",
                   help="fill an input with one number (a scalar input: a sample rate, a step); repeatable")
    b.add_argument("--device", action="append", metavar="NAME",
                   help="where to measure: local (default), a device of devices.yaml, or cpu / cuda:N for this "
                        "machine's runtime device; repeatable (devices are measured at the same time)")
    b.add_argument("--devices", type=Path, metavar="FILE", help="devices inventory (default: ./devices.yaml "
                   "over ~/.config/compressor/devices.yaml)")
    b.add_argument("--rounds", type=_positive, default=3,
                   help="interleaved rounds across the files on a remote device (default 3)")
    b.add_argument("--runs", type=_positive, default=100, help="timed runs per batch size (default 100)")
    b.add_argument("--warmup", type=int, default=10, help="untimed runs before timing (default 10)")
    b.add_argument("--warmup-s", type=float, default=0.2,
                   help="keep warming up for at least this many seconds (default 0.2)")
    b.add_argument("--min-time-s", type=float, default=0.0,
                   help="time for at least this many seconds, beyond --runs (default 0)")
    b.add_argument("--eval-data", type=Path, help=".npz of inputs keyed by input name, plus 'labels'")
    b.add_argument("--json", type=Path, help="also write the metrics as JSON here")
    b.add_argument("--no-isolate", action="store_true", help="measure in this process (no peak memory)")
    b.add_argument("--trust", action="store_true",
                   help="allow formats that run code when loaded (TorchScript .pt, .pt2) from outside")
    _add_format(b)
    b.add_argument("--no-progress", action="store_true", help="no progress bar (on stderr)")

    g = sub.add_parser("gate", help="check a report against budgets (exit 0 ok, 1 exceeded, 2 usage error)",
                       epilog=GATE_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("report", type=Path, help="the run's report.json")
    g.add_argument("--budgets", type=Path, help="budgets.yaml (default: the budgets of the run's recipe)")
    g.add_argument("--baseline", type=Path, help="baseline report.json for regression limits")
    g.add_argument("--junit", type=Path, help="write JUnit XML here (one test case per artifact and budget)")
    g.add_argument("--json", type=Path, help="write a JSON summary here")
    g.add_argument("--markdown", type=Path, help="write a pull-request comment (Markdown) here")
    _add_format(g, "stdout: a table for people (fits the terminal), the checks and verdict as JSON, or one CSV "
                "row per check; the exit code is the same")

    c = sub.add_parser("compare", help="side-by-side table of two reports (baseline first)", epilog=COMPARE_EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("baseline", type=Path, help="the baseline run's report.json")
    c.add_argument("candidate", type=Path, help="the new run's report.json")
    _add_format(c)
    from benchmarks.compare import add_arguments as compare_arguments

    compare_arguments(c)

    sn = sub.add_parser("sensitivity", help="rank a recipe model's layers by how much int8 on one target hurts "
                        "them (one layer quantized at a time)", epilog=SENSITIVITY_EXAMPLES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sn.add_argument("recipe", type=Path, help="recipe YAML (its model, data and calibration)")
    sn.add_argument("--target", required=True, help="whose quantizer to simulate: onnx, tflite, torchscript, pt2")
    sn.add_argument("--top", type=_positive, help="show only the N most sensitive")
    sn.add_argument("--granularity", choices=("layer", "block"), default="layer",
                    help="score each layer, or each block (a module holding layers) first (default layer)")
    sn.add_argument("--mode", choices=("simulated", "target"), default="simulated",
                    help="simulated: the target's quantizer in PyTorch; target: its real lowering (onnx)")
    sn.add_argument("--json", action="store_true", help="print the ranking as JSON")

    from benchmarks.devices.cli import add_arguments as device_arguments

    device_arguments(sub)

    s = sub.add_parser("schema", help="print the recipe's JSON schema (for editor validation)")
    s.add_argument("--out", type=Path, help="write it to a file instead")
    return p


def main(argv: list[str] | None = None) -> int:
    from compressor.logs import cli_done, quiet_cli

    args = build_parser().parse_args(argv)
    quiet_cli()  # before any subcommand imports a library: their logs go to the run's log
    try:
        return _dispatch(args)
    finally:
        cli_done()


def _dispatch(args: argparse.Namespace) -> int:
    try:
        return {"run": _run, "tune": _tune, "demo": _demo, "bench": _bench, "gate": _gate, "compare": _compare,
                "schema": _schema, "sensitivity": _sensitivity, "devices": _devices}[args.command](args)
    except CompressorError as e:
        partial = getattr(e, "report", None)
        if partial is not None:  # some artifacts failed: show the ones that worked
            from benchmarks.report import print_table

            print_table(partial)
        print(f"compressor: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("compressor: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("compressor: error: out of memory; use smaller batch sizes or input shapes, or fewer samples",
              file=sys.stderr)
        return 2
    except Exception as e:
        return _unexpected(e)


def _unexpected(e: Exception) -> int:
    """A full disk is the user's to fix (exit 2); anything else is a bug of ours, shown
    with its traceback and exit code 3 (1 means "over budget", and a bug must not read so)."""
    if isinstance(e, OSError) and e.errno in _DISK_FULL:
        where = f" while writing {e.filename}" if e.filename else ""
        print(f"compressor: error: no space left on the device{where}; free some space or choose another "
              "--out (nothing half-written was left)", file=sys.stderr)
        return 2
    if isinstance(e, OSError) and e.errno in _PLACE and e.filename:
        # A path of the user's that cannot be written: read-only, not a folder, too long.
        print(f"compressor: error: {e.filename}: {(e.strerror or 'cannot be written').lower()}; choose another "
              "path or fix its permissions", file=sys.stderr)
        return 2
    import traceback

    traceback.print_exc()
    print("compressor: internal error (a bug, not your mistake): please report it with the traceback above",
          file=sys.stderr)
    return 3


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_PLACE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG)


def _load(path: Path):
    import targets
    from compressor.config.recipe import load_recipe

    return load_recipe(path, target_options=targets.option_models())


def _run(args: argparse.Namespace) -> int:
    from benchmarks.report import print_table
    from compressor.flows.rundir import run_dir_for
    from compressor.flows.run import run

    recipe = _load(args.recipe)
    out = run_dir_for(recipe, args.out)
    report = run(recipe, out, overwrite=args.overwrite, show_progress=not args.no_progress,
                 baseline=args.baseline, resume=args.resume, devices_file=args.devices)
    if report is None:  # a torchrun worker other than rank 0: rank 0 reports
        return 0
    print_table(report)
    print(f"run directory: {out}  (report.md, report.json, manifest.json, artifacts/)")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from compressor.flows.tune.study import run_tune

    recipe = _load(args.recipe)
    out = args.out or Path("runs") / f"{recipe.name}-tune"
    report = run_tune(recipe, out, trials=args.trials, storage=args.storage, study_name=args.study,
                      show_progress=not args.no_progress)
    print(report["verdict"])
    files = [f for f in ("tune.md", "tune.json", "tune.html", "best.yaml", "trials/") if (out / f).exists()]
    print(f"tune directory: {out}  ({', '.join(files)})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from benchmarks.report import print_table
    from compressor.flows.run import run
    from compressor.recipes import DEMO_RECIPE

    report = run(_load(DEMO_RECIPE), args.out, overwrite=True, show_progress=not args.no_progress)
    print_table(report)
    print(f"run directory: {args.out}  (report.md, report.json, manifest.json, artifacts/)")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from benchmarks.bench_cli import bench_files

    return bench_files(args)


def _gate(args: argparse.Namespace) -> int:
    from benchmarks.gate_cli import gate_command

    return gate_command(args)


def _compare(args: argparse.Namespace) -> int:
    from benchmarks.compare import compare_command

    return compare_command(args.baseline, args.candidate, device=args.device, mapping=args.map, fmt=args.format)


def _devices(args: argparse.Namespace) -> int:
    from benchmarks.devices.cli import devices_command

    return devices_command(args)


def _sensitivity(args: argparse.Namespace) -> int:
    from compressor.flows.sensitivity_cli import sensitivity_command

    return sensitivity_command(_load(args.recipe), args.target, args.top, args.granularity, args.json, args.mode)


def _schema(args: argparse.Namespace) -> int:
    from compressor.fsutil import write_text
    from compressor.config.recipe import json_schema

    text = json_schema()
    if args.out:
        write_text(args.out, text + "\n")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
