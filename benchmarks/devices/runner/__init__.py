"""The runner shipped to a device: this package as one zip file (a Python zipapp), needing
the standard library, numpy and the artifact's own runtime (onnxruntime, ai-edge-litert or
tflite-runtime). Nothing of this project is installed on a device; the zip is copied into
a work folder there and run.

    python runner.pyz probe                 what the device is and has (stdlib only)
    python runner.pyz sha256 FILE...        size and sha256 of files (checks transfers)
    python runner.pyz measure PLAN.json     measure the plan's artifacts, one JSON line per event

`measure` loads every artifact in a child process of its own (peak memory is that
artifact's alone) and drives them in interleaved rounds, so that a board warming up
does not penalise whichever artifact runs last; it reads the temperature and CPU
frequency around every round and cools down between artifacts as the plan says. It
watches its stdin: when the connection that started it drops (stdin closes), it stops
its children and removes its work folder, so nothing is left behind on the device.

The host (benchmarks.devices.remote) turns the raw timings it sends back into the same
metrics record the local harness writes; the local harness times with the same loop and
generates inputs with the same code (`timed_runs`, `generated_input`). Keep every module
importable on Python 3.8 and free of project imports (relative imports only).
"""
