"""`compressor bench --inputs / --value / --shape FILE:...`: real input values for models
whose inputs are not tensors of noise (token ids within a vocabulary, a sample-rate
scalar, a state without a batch axis), and shapes per file when several are measured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compressor.flows.cli import main
from given_models import VOCAB, audio_model

FAST = ["--runs", "3", "--warmup", "0", "--warmup-s", "0", "--no-isolate"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("given")
    ids = np.random.default_rng(1).integers(0, VOCAB, size=(3, 4))
    np.savez(d / "ids.npz", ids=ids, state=np.ones((2, 3), np.float32))
    np.savez(d / "bad_ids.npz", ids=ids + VOCAB)
    np.savez(d / "fractional.npz", ids=ids + 0.5)
    return {"rate": audio_model(d / "rate.onnx"), "plain": audio_model(d / "plain.onnx", with_rate=False),
            "ids": d / "ids.npz", "bad_ids": d / "bad_ids.npz", "fractional": d / "fractional.npz", "dir": d}


def test_given_values_are_what_the_session_is_fed(files):
    """The feeds the harness builds, on a real ONNX Runtime session: the given ids (their
    3 samples repeated in turn to batch 4), the scalar, the state whole, the time axis."""
    from benchmarks.given import parse, per_file
    from benchmarks.harness import _feeds
    from targets.base import Device
    from targets.onnx.runtime import OrtSession

    f = files["rate"]
    settings = [*parse("--inputs", [str(files["ids"])], [f]), *parse("--value", ["sample_rate=16000"], [f]),
                *parse("--shape", ["audio=4x160"], [f])]
    given = per_file(settings, [f])[f]
    session = OrtSession(f, Device(), 1)
    feeds = _feeds(session, 4, given.shapes, None, given)
    ids = np.load(files["ids"])["ids"]
    assert np.array_equal(feeds["ids"], ids[[0, 1, 2, 0]])
    assert feeds["sample_rate"].shape == () and feeds["sample_rate"].dtype == np.int64
    assert int(feeds["sample_rate"]) == 16000
    assert np.array_equal(feeds["state"], np.ones((2, 3)))
    assert feeds["audio"].shape == (4, 160)
    (y,) = session.run(feeds)
    want = feeds["audio"].sum(1) * 16000 + ids[[0, 1, 2, 0]].sum(1) + 6
    assert np.allclose(y, want, rtol=1e-5)


def test_token_ids_beyond_the_vocabulary_fail_and_given_ids_measure(files, capsys, tmp_path):
    """Generated ids (0..99) index past the 10-row table: the runtime refuses them. With
    real ids from --inputs the same file measures, at batch 1 and 2."""
    base = ["bench", str(files["rate"]), "--shape", "audio=1x160", "--value", "sample_rate=16000", *FAST]
    assert main(base) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rate.onnx" in err[0]
    out = tmp_path / "bench.json"
    assert main([*base, "--inputs", str(files["ids"]), "--json", str(out)]) == 0
    capsys.readouterr()
    result = json.loads(out.read_text())["results"][0]
    assert result["latency"][0]["p50_ms"] > 0


@pytest.mark.parametrize("argv, says", [
    (["--inputs", "{bad_ids}", "--value", "sample_rate=16000"], "rate.onnx"),
    (["--inputs", "{fractional}", "--value", "sample_rate=16000"], "--inputs array 'ids': it holds fractional"),
    (["--inputs", "{ids}", "--value", "sample_rate=16000.5"], "--value sample_rate=16000.5: the input takes int64"),
    (["--inputs", "{ids}", "--value", "sample_rate=1e30"], "does not fit int64"),
    (["--inputs", "{ids}", "--value", "rate=16000"], "--value names 'rate', but the model's inputs are"),
    (["--inputs", "{ids}", "--value", "sample_rate=fast"], "--value 'sample_rate=fast': use [FILE:]NAME=16000"),
    (["--inputs", "{dir}/missing.npz", "--value", "sample_rate=1"], "missing.npz"),
    (["--inputs", "{ids}", "--inputs", "{ids}", "--value", "sample_rate=1"], "is already given by another --inputs or --value"),
])
def test_bad_given_values_are_one_line(files, capsys, argv, says):
    argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
    code = main(["bench", str(files["rate"]), "--shape", "audio=1x160", *argv, *FAST])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert says in err[0]


def test_shapes_and_values_per_file(files, capsys, tmp_path):
    """FILE: settings go to that file; a setting without it to every file that has the
    input (the plain model has no sample_rate); one that names no file's input is refused."""
    out = tmp_path / "two.json"
    argv = ["bench", str(files["rate"]), str(files["plain"]), "--inputs", str(files["ids"]),
            "--shape", "rate.onnx:audio=1x160", "--shape", f"{files['plain']}:audio=1x320",
            "--value", "sample_rate=8000", *FAST]
    assert main([*argv, "--json", str(out)]) == 0
    capsys.readouterr()
    assert [Path(r["path"]).name for r in json.loads(out.read_text())["results"]] == ["rate.onnx", "plain.onnx"]
    assert main([*argv, "--value", "temperature=1"]) == 2
    err = capsys.readouterr().err
    assert "--value temperature=1: no file has an input named 'temperature'" in err
    assert main([*argv[:-len(FAST)], "--value", "plain.onnx:sample_rate=1", *FAST]) == 2
    assert "--value names 'sample_rate', but the model's inputs are" in capsys.readouterr().err
