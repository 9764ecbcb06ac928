"""The YAML a user hands over, read defensively: from the file's bytes to plain data.

Recipes, budgets files and target options are small documents written by people. What
is refused here, each with one line naming the file and line:

- a file that is not there, not a regular file (a folder, a pipe), unreadable, over
  MAX_BYTES, or not UTF-8 text (a UTF-8 byte-order mark is fine; UTF-16 is not);
- nesting deeper than MAX_DEPTH (PyYAML's composer recurses: thousands of levels
  end in a RecursionError);
- a key given twice in one mapping (YAML keeps the last one silently);
- aliases that expand past MAX_VALUES values (a "billion laughs" document is a few
  hundred bytes; everything downstream walks the expanded tree) or refer to themselves;
- strings holding NUL or unpaired surrogates (paths and module names cannot hold them);
- values PyYAML's constructors choke on (a timestamp like 2024-13-45, an integer of
  more digits than Python converts).

Floats in exponent form without a dot (`1e-3`) are floats, as in YAML 1.2 (PyYAML's
YAML 1.1 rules read them as strings). Events come from libyaml's parser where PyYAML has
it (four times faster), else from PyYAML's own; the checks are the same on both.
"""

from __future__ import annotations

import codecs
import re
import stat
from pathlib import Path
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # a recipe is a few kilobytes
MAX_DEPTH = 64  # a recipe nests six or seven levels
MAX_VALUES = 100_000  # values in the document once aliases are expanded

_EXP_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_MERGE = "tag:yaml.org,2002:merge"


class Refused(Exception):
    """A document this reader will not turn into data: one-line message, optional line."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


def read_text(path: Path, what: str) -> str:
    """The text of a user's `what` file ('recipe', 'budgets'), or Refused saying why not."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise Refused(f"{what} {path}: no such file; check the path") from None
    except ValueError:  # a NUL in the name
        raise Refused(f"{what} {str(path)!r}: not a usable path") from None
    except OSError as e:
        raise Refused(f"{what} {path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if stat.S_ISDIR(st.st_mode):
        raise Refused(f"{what} {path}: a directory, not a file; give the {what} YAML file itself")
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{what} {path}: not a regular file (a pipe or a device); save the {what} to a file")
    if st.st_size > MAX_BYTES:
        raise Refused(f"{what} {path}: {st.st_size:,} bytes; a {what} file is a few kilobytes of YAML "
                      f"(at most {MAX_BYTES:,} bytes read)")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except PermissionError:
        raise Refused(f"{what} {path}: permission denied; make the file readable (chmod u+r)") from None
    except OSError as e:
        raise Refused(f"{what} {path}: cannot be read ({e.strerror or type(e).__name__})") from None
    return decode(data, str(path), what)


def decode(data: bytes, filename: str, what: str) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or Refused naming the encoding found."""
    if len(data) > MAX_BYTES:
        raise Refused(f"{filename}: over {MAX_BYTES:,} bytes; a {what} file is a few kilobytes of YAML")
    for bom, name in ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
                      (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")):
        if data.startswith(bom):
            raise Refused(f"{filename}: {name} text; the {what} must be UTF-8 text: save it as UTF-8")
    if len(data) >= 4 and max(data[0::2].count(0), data[1::2].count(0)) > len(data) // 4:
        raise Refused(f"{filename}: looks like UTF-16 text (no byte-order mark); the {what} must be UTF-8 text: "
                      "save it as UTF-8")
    if b"\0" in data:
        line = data.count(b"\n", 0, data.index(b"\0")) + 1
        raise Refused(f"{filename}:{line}: holds NUL bytes (a binary file?); the {what} must be UTF-8 text", line)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise Refused(f"{filename}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                      f"the {what} must be UTF-8 text: save it as UTF-8", line) from None


def load(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, node tree) of one YAML document; yaml.YAMLError or Refused when not."""
    if len(text) > MAX_BYTES:
        raise Refused(f"over {MAX_BYTES:,} characters of YAML; these files are a few kilobytes")
    try:
        loader = _Loader(text)
    except UnicodeEncodeError:  # libyaml takes UTF-8: a str holding a lone surrogate has none
        raise Refused("holds an unpaired surrogate character; these files are plain UTF-8 text") from None
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        if loader.aliases:
            _check_size(root)
        return loader.construct_document(root), root
    except yaml.MarkedYAMLError as e:
        if "nesting depth" not in str(e.problem):
            raise
        raise Refused(f"nested more than {MAX_DEPTH} levels deep (an unclosed '[' or '{{'?); these files nest "
                      "a few levels", _line(e.problem_mark)) from None  # libyaml's own limit, met scanning ahead
    except RecursionError:  # a chain of merge keys, or anything else PyYAML recurses on
        raise Refused("nested too deeply (through aliases or merge keys); these files nest a few levels") from None
    finally:
        loader.dispose()


def reader_line(text: str, position: int) -> int:
    """The line of a yaml.reader.ReaderError's position: characters into `text` for
    PyYAML's reader, bytes into its UTF-8 for libyaml's."""
    if _Loader is _PurePythonLoader:
        return text.count("\n", 0, position) + 1
    return text.encode("utf-8", "surrogatepass")[:position].count(b"\n") + 1


def _line(node: yaml.Node | yaml.Mark | None) -> int | None:
    mark = getattr(node, "start_mark", node)
    return mark.line + 1 if mark is not None else None


class _Checks(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's composing and safe constructing with the checks of this module; the
    events come from the parser a subclass adds."""

    def _start(self) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._checked: set[int] = set()
        self.aliases = False  # only a document with anchors (so aliases) can expand past its text

    def compose_document(self):
        self.get_event()  # Composer.compose_document, noting whether the document had anchors
        node = self.compose_node(None, None)
        self.get_event()
        self.aliases, self.anchors = bool(self.anchors), {}
        return node

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = _line(self.peek_event().start_mark)
                raise Refused(f"nested more than {MAX_DEPTH} levels deep (an unclosed '[' or '{{'?); these files "
                              "nest a few levels", line)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError, TypeError) as e:  # e.g. a timestamp 2024-13-45
            value = str(node.value if isinstance(node, yaml.ScalarNode) else node.tag)
            shown = repr(value if len(value) <= 40 else value[:40] + "...")
            if "digits" in str(e) and node.tag == "tag:yaml.org,2002:int":
                raise Refused(f"an integer of {len(value):,} digits ({shown}); no setting takes a number "
                              "that large", _line(node)) from None
            text = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise Refused(f"cannot read the value {shown} ({text}); quote it to make it a string, "
                          "or fix it", _line(node)) from None

    def construct_scalar(self, node):
        value = super().construct_scalar(node)
        if isinstance(value, str) and ("\0" in value or _has_surrogate(value)):
            raise Refused("a string holds a NUL character or an unpaired surrogate (a \\0 or \\ud800 escape); "
                          "these files take plain text", _line(node))
        return value

    def flatten_mapping(self, node):
        # Before merge keys are folded in (which rewrites node.value): the pairs as written.
        if id(node) not in self._checked:
            self._checked.add(id(node))
            self._refuse_duplicates(node)
        super().flatten_mapping(node)

    def _refuse_duplicates(self, node: yaml.MappingNode) -> None:
        seen: dict[Any, yaml.ScalarNode] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a collection as a key: the constructor refuses it as unhashable
            key = "<<" if key_node.tag == _MERGE else self.construct_object(key_node)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue
            if first is not key_node:
                lines = _line(first), _line(key_node)
                where = f"line {lines[0]}, twice" if lines[0] == lines[1] else f"lines {lines[0]} and {lines[1]}"
                what = (f"key {key_node.value[:60]!r} appears twice" if first.value == key_node.value else
                        f"keys {first.value[:60]!r} and {key_node.value[:60]!r} are the same key")
                raise Refused(f"{what} ({where}); keep one", lines[1])


_Checks.add_implicit_resolver("tag:yaml.org,2002:float", _EXP_FLOAT, list("-+0123456789"))


class _PurePythonLoader(_Checks, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    def __init__(self, stream: str):
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        self._start()


# libyaml's parser (a state machine in C, where PyYAML was built with it) makes the events
# four times faster than PyYAML's own; the composing stays in Python, where its depth is
# counted (libyaml's own composer recurses in C, past Python's recursion limit).
if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser

    class _LibyamlLoader(_Checks, CParser):
        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            self._start()

    _Loader: type = _LibyamlLoader
else:
    _Loader = _PurePythonLoader


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_size(root: yaml.Node) -> None:
    """Count the values of the document with aliases expanded (each node once: aliases
    share nodes), refusing cycles and documents past MAX_VALUES."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = _children(node)
        if done:
            open_.discard(id(node))
            sizes[id(node)] = total = 1 + sum(sizes[id(k)] for k in kids)
            if total > MAX_VALUES:
                raise Refused(f"expands to more than {MAX_VALUES:,} values (aliases repeating aliases?); "
                              "these files hold a few dozen", _line(node))
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            raise Refused("an alias refers to the collection that holds it (a cycle); YAML data here "
                          "must be a tree", _line(node))
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []
