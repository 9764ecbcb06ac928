"""The benchmark worker: `python -m benchmarks.worker` reads one job (JSON) on stdin
and prints its metrics (JSON) on stdout. Errors travel back as JSON too, so the parent
re-raises the same typed error; any other failure comes back as its one-line reason."""

from __future__ import annotations

import json
import sys


def main() -> int:
    job = json.loads(sys.stdin.read())
    from benchmarks.harness import failure, run_job
    from compressor.errors import CompressorError

    try:
        result = run_job(job)
    except CompressorError as e:
        result = {"error": str(e), "error_type": type(e).__name__}
    except Exception as e:  # the runtime or the harness failed: its own reason, in one line
        result = {"error": failure(e), "error_type": "internal"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
