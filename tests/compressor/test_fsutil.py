import os

import pytest

from compressor.fsutil import atomic_path, sha256, staging_dir, write_json, write_text


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    final = tmp_path / "out.txt"
    final.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(final) as tmp:
            tmp.write_text("new, half written")
            raise RuntimeError
    assert final.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_staging_dir_is_removed_even_on_error(tmp_path):
    with pytest.raises(ValueError):
        with staging_dir(tmp_path, "model.onnx") as work:
            (work / "model.onnx").write_bytes(b"x")
            raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_written_files_get_the_usual_permissions(tmp_path):
    # A report or manifest must be readable like any file the user writes (umask), not 0600.
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "report.json", {"a": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 << 20)
    (tmp_path / "f").write_bytes(data)
    assert sha256(tmp_path / "f", chunk=1 << 20) == hashlib.sha256(data).hexdigest()


def test_write_text_replaces_content(tmp_path):
    write_text(tmp_path / "a.md", "one")
    write_text(tmp_path / "a.md", "two")
    assert (tmp_path / "a.md").read_text() == "two"
