"""What every hostile case asserts: the command line answers a user mistake with exit
code 2 and one line on stderr naming the problem, never a traceback, and leaves nothing
half-written behind. Shared by the catalog's files (one file a category)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from compressor.flows.cli import main

DEBRIS_SUFFIXES = (".staging", ".part")


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run the CLI in this process: (exit code, stdout, stderr). Anything but a return
    or SystemExit escaping main() is a traceback the user would have seen."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exits
        code = e.code if isinstance(e.code, int) else 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, out.out, out.err


def cli_process(*argv, cwd: Path | None = None, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    """The CLI in a real process (for what only a process shows: exit codes set by user
    code, output at interpreter exit, files written to the working directory)."""
    return subprocess.run([sys.executable, "-m", "compressor", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def one_line(err: str) -> str:
    """The single 'compressor: error: ...' line (anything else on stderr fails)."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("compressor: error: "), err
    return lines[0]


def refused(capsys, *argv, says: str | tuple[str, ...]) -> str:
    """The CLI refuses with exit 2 and one line containing every phrase of `says`."""
    code, _, err = cli(capsys, *argv)
    line = one_line(err)
    assert code == 2, (code, err)
    for phrase in (says,) if isinstance(says, str) else says:
        assert phrase in line, (phrase, line)
    return line


def debris(root: Path) -> list[str]:
    """Staging folders and partial files a run or a write left under root."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(DEBRIS_SUFFIXES))
