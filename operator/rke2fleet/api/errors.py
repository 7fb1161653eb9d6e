"""Spec errors with camelCase field paths, built from pydantic's errors.

Messages name the violated rule and never echo the offending value: a value may be
a token or a key pasted into the wrong field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

# Key under which our own validators carry a location relative to where they run,
# for checks (exactly one of two fields, …) that pydantic would report at the model.
LOC_CTX = "rke2fleet_loc"
RULE_ERROR = "rke2fleet_rule"


@dataclass(frozen=True)
class FieldError:
    """One violated rule: `path` is dotted camelCase from the object root (`spec.ssh.port`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(Exception):
    """A spec failed validation; `.errors` holds every violation found."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


def rule_error(message: str, loc: tuple[str | int, ...] = ()) -> PydanticCustomError:
    """The error our validators raise; `loc` extends the location pydantic reports."""
    # Braces would be read as format placeholders by pydantic.
    safe = message.replace("{", "(").replace("}", ")")
    return PydanticCustomError(RULE_ERROR, safe, {LOC_CTX: loc} if loc else None)


def format_path(loc: Iterable[str | int]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = dict(err.get("ctx") or {})
    if kind == RULE_ERROR:
        return err["msg"]
    simple = {
        "missing": "field is required",
        "extra_forbidden": "unknown field (check the spelling; unknown fields are errors)",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "bool_type": "must be a boolean (true or false)",
        "bool_parsing": "must be a boolean (true or false)",
        "float_type": "must be a number",
        "list_type": "must be a list",
        "dict_type": "must be an object",
        "model_type": "must be an object",
        "model_attributes_type": "must be an object",
        "union_tag_invalid": "has an invalid type",
    }
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}".rstrip()
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "string_too_short":
        return f"must be at least {ctx.get('min_length')} characters"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}"
    # pydantic's own messages do not include the input value.
    return str(err["msg"])


def _clean_loc(err: ErrorDetails) -> tuple[str | int, ...]:
    loc: list[str | int] = []
    for part in err["loc"]:
        if part == "[key]":  # a dict key failed: the path already ends with the key
            continue
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue  # union / validator branch labels, not fields
        loc.append(part)
    extra = (err.get("ctx") or {}).get(LOC_CTX)
    if extra:
        loc.extend(extra)
    return tuple(loc)


def field_errors(exc: ValidationError, root: str) -> list[FieldError]:
    """Convert a pydantic error into FieldErrors under `root` (e.g. "spec"), de-duplicated."""
    seen: set[FieldError] = set()
    out: list[FieldError] = []
    for err in exc.errors(include_input=False, include_url=False):
        path = format_path((root, *_clean_loc(err))) if root else format_path(_clean_loc(err))
        fe = FieldError(path or root, _message(err))
        if fe not in seen:
            seen.add(fe)
            out.append(fe)
    return out
