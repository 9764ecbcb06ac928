"""The command line of the runner."""

import hashlib
import os
import signal
import sys

from .child import child, send as _send
from .plan import measure
from .probe import probe


def sha256_files(paths):
    out = {}
    for p in paths:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[p] = [os.path.getsize(p), h.hexdigest()]
        except OSError as e:
            out[p] = [None, str(e)]
    return out


def _short(e):
    """The first line of an error without the C++ source location and signature some
    runtimes put before their words (onnxruntime: '/onnxruntime_src/...:46 void f(...) ')."""
    import re

    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = re.sub(r"/\S*_src/\S+:\d+ [^()]*\((?:[^()]|\([^()]*\))*\) ", "", text)
    return text[:800]


def main(argv):
    if not argv:
        sys.stderr.write("usage: runner.pyz probe|sha256 FILE...|measure PLAN.json\n")
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    cmd, args = argv[0], argv[1:]
    if cmd == "probe":
        _send(probe(args[0] if args else None))
        return 0
    if cmd == "sha256":
        _send(sha256_files(args))
        return 0
    if cmd == "measure":
        return measure(args[0])
    if cmd == "child":
        try:
            return child(args[0])
        except Exception as e:  # its one line travels to the parent on stderr
            sys.stderr.write("%s: %s\n" % (type(e).__name__, _short(e)))
            return 1
    sys.stderr.write("unknown command %r\n" % cmd)
    return 2

