"""Consul's `?filter=` expression language (go-bexpr), compiled once per request, run per row.

Consul evaluates the expression against its Go structs; meshfed evaluates it against the JSON
rows its handlers answer with, whose keys are those struct fields (`server/http/shapes.py`). A
`Schema` per endpoint (`filter_schemas.py`) says which selectors exist and what type each leaf
has, so that, as in Consul, an unknown selector or an operator that does not apply to a field
is refused before any row is looked at, and a literal is converted to the field's type once
(`Port == 8080` compares integers, `EnableTagOverride == true` booleans).

The grammar (lark, LALR) keeps both sides of a match as one `term` and sorts selector from value
afterwards: with separate rules a bare word before `not` (`web not in Tags` against
`Tags not contains web`) is an LALR conflict.

Semantics where go-bexpr leaves a choice:
- a map key that a row lacks, or a `null` field, reads as the field type's zero value, so
  `Meta.env != "prod"` holds for a node without that key;
- a selector through a list of objects (`Checks.Status`) holds when any element matches;
  the negated operators (`!=`, `not in`, ...) are exactly `not` of the positive one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

STRING, INT, FLOAT, BOOL = "string", "int", "float", "bool"
SCALARS = (STRING, INT, FLOAT, BOOL)


@dataclass(frozen=True)
class MapOf:
    """A JSON object with free keys (Meta, TaggedAddresses): `Meta.env` selects one key."""

    value: Schema


@dataclass(frozen=True)
class ListOf:
    item: Schema


Schema = str | MapOf | ListOf | Mapping[str, "Schema"]
Predicate = Callable[[Any], bool]


class FilterError(ValueError):
    """The expression cannot be compiled; the message says where and why."""


GRAMMAR = r"""
?start: disj
?disj: conj | disj _OR conj -> or_
?conj: neg | conj _AND neg -> and_
?neg: _NOT neg -> not_ | atom
?atom: "(" disj ")" | match
match: term EQ term
     | term NE term
     | term IN term
     | term NOT_IN term
     | term CONTAINS term
     | term NOT_CONTAINS term
     | term MATCHES term
     | term NOT_MATCHES term
     | term IS_EMPTY
     | term IS_NOT_EMPTY
term: NAME segment* -> path
    | STRING -> quoted
    | RAW -> raw
    | NUMBER -> number
?segment: "." NAME | "[" STRING "]"
EQ: "=="
NE: "!="
IN: "in"
NOT_IN: /not\s+in\b/
CONTAINS: "contains"
NOT_CONTAINS: /not\s+contains\b/
MATCHES: "matches"
NOT_MATCHES: /not\s+matches\b/
IS_EMPTY: /is\s+empty\b/
IS_NOT_EMPTY: /is\s+not\s+empty\b/
_OR: "or"
_AND: "and"
_NOT: "not"
NAME: /[A-Za-z_][A-Za-z0-9_\-\/]*/
NUMBER: /-?[0-9]+(\.[0-9]+)?/
STRING: /"(\\.|[^"\\])*"/
RAW: /`[^`]*`/
%import common.WS
%ignore WS
"""

# Which operators a leaf type takes (go-bexpr's per-kind tables).
_EQUALITY = {"==", "!=", "matches", "not matches", "in", "not in", "contains", "not contains",
             "is empty", "is not empty"}
_CONTAINER = {"in", "not in", "contains", "not contains", "is empty", "is not empty"}
_NEGATED = {"!=": "==", "not in": "in", "not contains": "contains", "not matches": "matches",
            "is not empty": "is empty"}


@cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


@dataclass(frozen=True)
class _Path:
    text: str
    segments: tuple[str, ...]


@dataclass(frozen=True)
class _Literal:
    text: str


def _unquote(token: str) -> str:
    try:
        value = json.loads(token)
    except ValueError:
        raise FilterError(f"invalid string literal {token}") from None
    return value


class _Tree(Transformer):  # type: ignore[type-arg]
    """Parse tree -> a nested tuple form; selectors are resolved against the schema later."""

    def path(self, items: list[Any]) -> _Path:
        segments = tuple(_unquote(str(item)) if str(item).startswith('"') else str(item) for item in items)
        text = segments[0] + "".join(f".{s}" if re.fullmatch(r"[A-Za-z0-9_\-/]+", s) else f"[{json.dumps(s)}]"
                                     for s in segments[1:])
        return _Path(text, segments)

    def quoted(self, items: list[Token]) -> _Literal:
        return _Literal(_unquote(str(items[0])))

    def raw(self, items: list[Token]) -> _Literal:
        return _Literal(str(items[0])[1:-1])

    def number(self, items: list[Token]) -> _Literal:
        return _Literal(str(items[0]))

    def match(self, items: list[Any]) -> tuple[Any, ...]:
        if len(items) == 2:
            return ("match", " ".join(str(items[1]).split()), items[0], None)
        return ("match", " ".join(str(items[1]).split()), items[0], items[2])

    @v_args(inline=True)
    def or_(self, left: Any, right: Any) -> tuple[Any, ...]:
        return ("or", left, right)

    @v_args(inline=True)
    def and_(self, left: Any, right: Any) -> tuple[Any, ...]:
        return ("and", left, right)

    @v_args(inline=True)
    def not_(self, inner: Any) -> tuple[Any, ...]:
        return ("not", inner)


def _syntax_error(expression: str, exc: UnexpectedInput) -> FilterError:
    where = f"{exc.line}:{exc.column} ({exc.pos_in_stream})" if exc.pos_in_stream is not None else "end"
    if isinstance(exc, UnexpectedEOF):
        return FilterError("syntax error: the expression ends too early")
    if isinstance(exc, UnexpectedCharacters):
        return FilterError(f"syntax error at {where}: unexpected character {expression[exc.pos_in_stream]!r}")
    token = getattr(exc, "token", None)
    if token is not None and token.type == "$END":
        return FilterError("syntax error: the expression ends too early")
    return FilterError(f"syntax error at {where}: unexpected {str(token)!r}")


def _zero(schema: Schema) -> Any:
    if schema == STRING:
        return ""
    if schema in (INT, FLOAT):
        return 0
    if schema == BOOL:
        return False
    if isinstance(schema, ListOf):
        return []
    return {}


def _resolve(path: _Path, schema: Schema) -> tuple[Schema, list[tuple[str, str]]]:
    """The leaf type a selector names and the steps that reach it in a JSON row."""
    steps: list[tuple[str, str]] = []
    current = schema
    for segment in path.segments:
        while isinstance(current, ListOf) and not isinstance(current.item, str):
            steps.append(("each", ""))
            current = current.item
        if isinstance(current, MapOf):
            steps.append(("key", segment))
            current = current.value
        elif isinstance(current, Mapping) and segment in current:
            steps.append(("key", segment))
            current = current[segment]
        else:
            raise FilterError(f'Selector "{path.text}" is not valid')
    return current, steps


def _reach(row: Any, steps: list[tuple[str, str]], leaf: Schema) -> list[Any]:
    """Every value a selector names in one row (more than one only through a list of objects)."""
    values = [row]
    for kind, name in steps:
        if kind == "each":
            values = [item for value in values if isinstance(value, list) for item in value]
        else:
            values = [value.get(name) if isinstance(value, Mapping) else None for value in values]
    zero = _zero(leaf)
    return [zero if value is None else value for value in values]


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _convert(literal: _Literal, kind: str, selector: str) -> Any:
    """The literal as the field's type, as go-bexpr converts it (strconv's spellings for bool)."""
    text = literal.text
    try:
        if kind == INT:
            return int(text)
        if kind == FLOAT:
            return float(text)
    except ValueError:
        raise FilterError(f'Failed to convert value "{text}" to {kind} for selector "{selector}"') from None
    if kind == BOOL:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise FilterError(f'Failed to convert value "{text}" to bool for selector "{selector}"')
    return text


def _kind_name(schema: Schema) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, MapOf):
        return "map"
    if isinstance(schema, ListOf):
        return "list"
    return "object"


def _leaf_test(op: str, leaf: Schema, literal: _Literal | None, selector: str) -> Callable[[Any], bool]:
    """A test on one reached value for a positive operator."""
    allowed = _EQUALITY if leaf == STRING else (
        {"==", "!="} if isinstance(leaf, str) else _CONTAINER if isinstance(leaf, MapOf | ListOf)
        else {"is empty", "is not empty"})
    if op not in allowed:
        raise FilterError(f'Invalid match operator "{op}" for selector "{selector}" ({_kind_name(leaf)})')
    positive = _NEGATED.get(op, op)
    if positive == "is empty":
        return lambda value: len(value) == 0 if isinstance(value, str | list | Mapping) else False
    assert literal is not None
    if positive == "==":
        wanted = _convert(literal, leaf if isinstance(leaf, str) else STRING, selector)
        return lambda value: value == wanted and type(value) is type(wanted) or (
            isinstance(wanted, float) and isinstance(value, int) and value == wanted)
    if positive == "matches":
        try:
            pattern = re.compile(literal.text)
        except re.error as exc:
            raise FilterError(f'Invalid regular expression "{literal.text}": {exc}') from None
        return lambda value: isinstance(value, str) and pattern.search(value) is not None
    # in / contains: substring of a string, element of a list, key of a map
    if leaf == STRING:
        return lambda value: isinstance(value, str) and literal.text in value
    if isinstance(leaf, ListOf):
        element = _convert(literal, leaf.item if isinstance(leaf.item, str) else STRING, selector)
        return lambda value: isinstance(value, list) and element in value
    return lambda value: isinstance(value, Mapping) and literal.text in value


def _match(op: str, left: Any, right: Any, schema: Schema) -> Predicate:
    # `value in selector` names the selector on the right; every other operator on the left.
    selector_side, value_side = (right, left) if op in ("in", "not in") else (left, right)
    if not isinstance(selector_side, _Path):
        raise FilterError(f'operator "{op}" needs a selector, got the value "{selector_side.text}"')
    if isinstance(value_side, _Path):
        if len(value_side.segments) > 1:
            raise FilterError(f'operator "{op}" needs a value, got the selector "{value_side.text}"')
        value_side = _Literal(value_side.text)  # an unquoted word is a value
    leaf, steps = _resolve(selector_side, schema)
    test = _leaf_test(op, leaf, value_side, selector_side.text)
    negate = op in _NEGATED

    def predicate(row: Any) -> bool:
        hit = any(test(value) for value in _reach(row, steps, leaf))
        return not hit if negate else hit

    return predicate


def _build(node: tuple[Any, ...], schema: Schema) -> Predicate:
    kind = node[0]
    if kind == "match":
        return _match(node[1], node[2], node[3], schema)
    if kind == "not":
        inner = _build(node[1], schema)
        return lambda row: not inner(row)
    left, right = _build(node[1], schema), _build(node[2], schema)
    if kind == "and":
        return lambda row: left(row) and right(row)
    return lambda row: left(row) or right(row)


def compile_filter(expression: str, schema: Schema) -> Predicate:
    """A predicate over JSON rows shaped as `schema`; FilterError when the expression is bad."""
    if not expression.strip():
        raise FilterError("the expression is empty")
    try:
        tree = _Tree().transform(_parser().parse(expression))
    except UnexpectedInput as exc:
        raise _syntax_error(expression, exc) from None
    except VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise FilterError(str(exc.orig_exc)) from None
    except LarkError as exc:
        raise FilterError(f"syntax error: {exc}") from None
    return _build(tree, schema)


def filter_rows(rows: list[Any], expression: str, schema: Schema) -> list[Any]:
    predicate = compile_filter(expression, schema)
    return [row for row in rows if predicate(row)]
