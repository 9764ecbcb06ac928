"""Reading YAML documents into strict models, with mistakes as one line.

A mistake is reported as one line that names the file, the line, the place in the
document and, for a misspelt key, the closest valid key. The recipe, budgets files and
target options all go through here.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from compressor.config.loader import Refused, load, read_text, reader_line
from compressor.errors import RecipeError, first_line


def read_file(path: Path | str, what: str) -> str:
    """The text of the user's `what` file ('recipe', 'budgets'): a regular, readable,
    small UTF-8 file, or a RecipeError saying which of those it is not."""
    try:
        return read_text(Path(path), what)
    except Refused as e:
        raise RecipeError(one_line(str(e))) from None


def read_yaml(text: str, filename: str, what: str) -> tuple[dict, yaml.Node]:
    """Parse YAML into data plus its node tree (for line numbers in error messages)."""
    try:
        data, root = load(text)
    except Refused as e:
        raise RecipeError(one_line(f"{filename}{_at(e.line)}: {e}")) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = " ".join(x for x in (e.context, e.problem) if x) or type(e).__name__
        problem += "; the file holds one YAML document: drop the '---' line" if "another document" in problem else ""
        raise RecipeError(one_line(f"{filename}{_at(mark.line + 1 if mark else None)}: not valid YAML ({problem})")
                          ) from None
    except yaml.reader.ReaderError as e:
        line = reader_line(text, e.position)
        char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
        raise RecipeError(f"{one_line(filename)}:{line}: not valid YAML (control character {char} is not allowed: "
                          "remove it)") from None
    except yaml.YAMLError as e:
        raise RecipeError(one_line(f"{filename}: not valid YAML ({first_line(e)})")) from None
    if data is None:
        raise RecipeError(one_line(f"{filename}: empty; {what}"))
    if not isinstance(data, dict):
        raise RecipeError(one_line(f"{filename}{line_of(root, ())}: {what} (got {_kind(data)})"))
    return data, root


def _at(line: int | None) -> str:
    return f":{line}" if line else ""


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return f"{type(value).__name__} {_shown(value)}"[:60]


_LONG_QUOTE = re.compile(r"'([^']{%d,})'" % 80)
MAX_MESSAGE = 1000


def one_line(msg: str) -> str:
    """`msg` with every line break and control character escaped, quoted values cut to
    60 characters and the whole to MAX_MESSAGE: one readable line, whatever the file
    names, keys or values in it hold."""
    msg = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                  for c in msg)
    msg = _LONG_QUOTE.sub(lambda m: f"'{m.group(1)[:60]}...'", msg)
    return msg if len(msg) <= MAX_MESSAGE else f"{msg[:MAX_MESSAGE - 300]} ... {msg[-295:]}"


def validate_yaml(model: type[BaseModel], data: dict, root: yaml.Node, filename: str) -> Any:
    """model.model_validate(data), with errors as one line naming file, line and fix."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RecipeError(describe(e, root, filename, model)) from None


def describe(err: ValidationError, root: yaml.Node | None, filename: str,
              model: type[BaseModel], prefix: tuple = ()) -> str:
    # A misspelt key also shows up as a missing one; the misspelling is the useful half.
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = prefix + tuple(first["loc"])
    place = _dotted(loc)
    if first["type"] == "extra_forbidden":
        key = loc[-1]
        line = line_of(root, loc, key=True)
        valid = _fields_at(model, loc[len(prefix):-1])
        msg = f"unknown key {_shown(key)}" + (f" in {_dotted(loc[:-1])}" if len(loc) > 1 else "")
        msg += closest(str(key), valid)
        if valid and not closest(str(key), valid):
            msg += f"; valid keys: {', '.join(valid)}"
    elif first["type"] == "missing":
        line = line_of(root, loc[:-1])
        msg = f"missing required key {place!r}"
    else:
        line = line_of(root, loc)
        text, why = _reworded(first), None
        if first["type"] in _BOUNDS:  # say what the number is for: the field's description
            why = getattr(_field_at(model, loc[len(prefix):]), "description", None)
        value = first.get("input")
        msg = f"{place or 'recipe'}: {text}" + (f" (got {_shown(value)})" if _short(value) else "")
        msg += f"; {why}" if why else ""
        if first["type"] == "literal_error" and isinstance(value, str):
            msg += closest(value, re.findall(r"'([^']*)'", first["ctx"]["expected"]))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return one_line(f"{filename}{line}: {msg}{more}")


# pydantic's own relation words ("less than 1"), which other messages and tests use too
_BOUNDS = {"greater_than_equal": "must be greater than or equal to {ge}", "greater_than": "must be greater than {gt}",
           "less_than_equal": "must be less than or equal to {le}", "less_than": "must be less than {lt}"}


def _reworded(error: dict) -> str:
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind in _BOUNDS:
        return _BOUNDS[kind].format(**{k: _shown(int(v) if isinstance(v, float) and v.is_integer() else v)
                                       for k, v in ctx.items()})
    if kind == "finite_number":
        return "must be a finite number, not .inf or .nan"
    if kind in ("int_type", "float_type") and isinstance(value, bool):
        return "must be a number, not true or false"
    if kind == "int_type" and isinstance(value, float):
        return "must be a whole number"
    if kind == "int_type":
        return "must be an integer"
    if kind == "float_type":
        return "must be a number"
    if kind == "bool_type":
        return "must be true or false"
    return error["msg"].removeprefix("Value error, ")


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(_shown(value)) < 60


def _shown(value: Any) -> str:
    """A value as a message shows it: YAML's true/false, big integers with separators,
    huge ones by their size (str() of an int past 4300 digits raises)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and abs(value) >= 10**12:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"{value:,}" if abs(value) < 10**60 else f"an integer of about {digits:,} digits"
    return repr(value)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        part = _shown(part) if isinstance(part, int) and abs(part) >= 10**12 else part
        part = part if isinstance(part, int) or len(str(part)) <= 60 else f"{str(part)[:57]}..."
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _text(part: Any) -> str:
    """str(part), or '' for an integer too long for str() (it names no key anyway)."""
    try:
        return str(part)
    except ValueError:
        return ""


def closest(word: str, options: Any) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def line_of(root: yaml.Node | None, loc: tuple, key: bool = False) -> str:
    """':LINE' of the node at `loc` (of its key when `key`), or of the deepest node found."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == _text(part):
                    line = (k if key and part == loc[-1] else v).start_mark.line + 1
                    node = v
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    if line is None and root is not None:
        line = root.start_mark.line + 1
    return f":{line}" if line else ""


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Names of the fields valid at `loc` under `model`, walking lists, dicts and Optionals."""
    tp = model
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(_text(part))
            if field is None:
                return []
            tp = field.annotation
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else None
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _field_at(model: Any, loc: tuple) -> Any:
    """The FieldInfo of the deepest model field on `loc` (list indices and dict keys skipped)."""
    tp, found = model, None
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            found = tp.model_fields.get(_text(part))
            if found is None:
                return None
            tp = found.annotation
        else:
            args = typing.get_args(tp)
            tp = args[-1] if args else None
    return found


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else members[0]
    if origin is Annotated:
        return typing.get_args(tp)[0]
    return tp
