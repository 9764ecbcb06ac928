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
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError

from compressor.errors import RecipeError


def read_yaml(text: str, filename: str, what: str) -> tuple[dict, yaml.Node]:
    """Parse YAML into data plus its node tree (for line numbers in error messages)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise RecipeError(f"{filename}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{filename}: {what}")
    return data, root


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
        msg = f"unknown key {key!r}" + (f" in {_dotted(loc[:-1])}" if len(loc) > 1 else "")
        msg += closest(str(key), valid)
        if valid and not closest(str(key), valid):
            msg += f"; valid keys: {', '.join(valid)}"
    elif first["type"] == "missing":
        line = line_of(root, loc[:-1])
        msg = f"missing required key {place!r}"
    else:
        line = line_of(root, loc)
        text = first["msg"].removeprefix("Value error, ")
        msg = f"{place or 'recipe'}: {text}" + (f" (got {first['input']!r})" if _short(first.get("input")) else "")
        if first["type"] == "literal_error" and isinstance(first.get("input"), str):
            msg += closest(first["input"], re.findall(r"'([^']*)'", first["ctx"]["expected"]))
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{filename}{line}: {msg}{more}"


def _short(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and len(repr(value)) < 60


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def closest(word: str, options: Any) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def line_of(root: yaml.Node | None, loc: tuple, key: bool = False) -> str:
    """':LINE' of the node at `loc` (of its key when `key`), or of the deepest node found."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
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
            field = tp.model_fields.get(str(part))
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


def _unwrap(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
        return models[0] if models else members[0]
    if origin is Annotated:
        return typing.get_args(tp)[0]
    return tp
