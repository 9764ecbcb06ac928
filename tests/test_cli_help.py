"""`--help` of every command says what each argument is for and shows examples."""

import argparse
import subprocess
import sys

import pytest

from compressor.flows.cli import build_parser

COMMANDS = ("run", "tune", "demo", "bench", "gate", "compare", "sensitivity", "schema", "devices")
WITH_EXAMPLES = ("run", "tune", "bench", "gate", "compare", "sensitivity", "devices")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_has_help_text(command):
    parser = subparsers()[command]
    missing = [a.dest for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not a.help]
    assert missing == [], f"compressor {command}: no help for {missing}"


@pytest.mark.parametrize("command", WITH_EXAMPLES)
def test_commands_show_examples_that_use_their_own_name(command):
    epilog = subparsers()[command].epilog or ""
    assert epilog.startswith("examples:")
    lines = [ln.strip() for ln in epilog.splitlines()[1:] if ln.strip().startswith("compressor ")]
    assert lines and any(ln.startswith(f"compressor {command}") for ln in lines)


def test_the_examples_parse():
    # Each example line is a command line the parser accepts (files need not exist to parse).
    parser = build_parser()
    for command in ("", *WITH_EXAMPLES):
        epilog = (subparsers()[command] if command else parser).epilog
        for line in epilog.splitlines():
            text = line.split("#")[0].split(" > ")[0].strip()
            if not text.startswith("compressor "):
                continue
            words = text.split()[1:]
            words = [w for w in words if w != "*.onnx"] + (["m.onnx"] if "*.onnx" in text else [])
            if len(words) > 1 or words[0] == "demo":
                parser.parse_args(words)


def test_top_level_help_lists_examples_and_keeps_its_layout():
    out = subprocess.run([sys.executable, "-m", "compressor", "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    assert "examples:\n  compressor demo" in out and "'compressor COMMAND --help'" in out
