"""What a file is, from its first bytes: one reading for every reader that refuses a file
of another format than it was given as (an ONNX model given as .tflite, a safetensors file
named .pt, a pickle given as ONNX), so each can say what the file is and how to give it."""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 64

# kind -> how messages name it
NAMES = {
    "tflite": "a TFLite flatbuffer",
    "zip": "a zip archive (a .keras model, a PyTorch checkpoint or .pt2 program)",
    "hdf5": "an HDF5 file (a Keras .h5 model)",
    "pickle": "a Python pickle (a PyTorch .pt/.pth file)",
    "safetensors": "a safetensors weights file",
    "onnx": "an ONNX model",
    "text": "a text file (JSON or YAML)",
}


def head(path: Path, n: int = HEAD_BYTES) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def is_pickle(head: bytes) -> bool:
    """Whether `head` opens a pickle of protocol 2 to 5 (what pickle.dumps and torch.save write)."""
    return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5


def is_safetensors(head: bytes) -> bool:
    # An 8-byte little-endian header length, then the JSON header.
    return len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30


def kind_of(head: bytes, name: str = "") -> str | None:
    """The format `head` (a file's first bytes) says the file is, a key of NAMES; the
    file's name decides only for ONNX, whose protobuf has no magic number."""
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x89HDF"):
        return "hdf5"
    if is_pickle(head):
        return "pickle"
    if is_safetensors(head):
        return "safetensors"
    # A ModelProto begins with field 1 (ir_version, a small varint), then a string field.
    if head[:1] == b"\x08" and len(head) > 2 and 0 < head[1] < 32 and head[2:3] in (b"\x12", b"\x1a", b"\x3a", b"\x42"):
        return "onnx"
    if Path(name).suffix.lower() == ".onnx":
        return "onnx"
    if head.lstrip()[:1] in (b"{", b"[", b"#") or head.startswith(b"version"):
        return "text"
    return None


def regular_file(path: Path, where: str, fix: str, again: str) -> int:
    """The size of the non-empty regular file at `path`, or one ModelLoadError line: a
    directory, nothing there (`fix` says where to fix the name), empty (`again`: how to
    make it anew)."""
    from compressor.errors import ModelLoadError

    if path.is_dir():
        raise ModelLoadError(f"{where} is a directory; give the file itself")
    if not path.is_file():
        raise ModelLoadError(f"{where}: no such file" + (f"; {fix}" if fix else ""))
    size = path.stat().st_size
    if size == 0:
        raise ModelLoadError(f"{where}: the file is empty (0 bytes); {again}")
    return size
