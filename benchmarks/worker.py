"""The benchmark worker: `python -m benchmarks.worker` reads one job (JSON) on stdin
and prints its metrics (JSON) on stdout. Errors travel back as JSON too, so the parent
re-raises the same typed error."""

from __future__ import annotations

import json
import sys
import traceback


def main() -> int:
    job = json.loads(sys.stdin.read())
    from benchmarks.harness import run_job
    from compressor.errors import CompressorError

    try:
        result = run_job(job)
    except CompressorError as e:
        result = {"error": str(e), "error_type": type(e).__name__}
    except Exception as e:  # an internal failure: keep the trace for the parent
        result = {"error": f"{type(e).__name__}: {e} :: {traceback.format_exc(limit=3)!r}", "error_type": "internal"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
