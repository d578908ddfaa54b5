"""A small reader for the HCL1 subset that ACL rules are written in, keeping line numbers.

Why not pyhcl: `hcl.loads` builds a fresh parser per call, but PLY's `yacc()`/`lex()` regenerate the
LALR tables on every call, assign module globals (`ply.yacc.parse`, `ply.lex.lexer/token/input`) and
log warnings to stderr — shared mutable state and I/O that `fsm/` must not have. Its output is also a
plain dict, so a rule that is syntactically fine but semantically wrong (`policy = "sudo"`) could not
be traced back to its line. Rules documents use a tiny part of HCL, so we read that part ourselves.

Grammar (HCL1 as Consul's rules use it; newlines are plain whitespace, commas optional):

    body   := entry*
    entry  := key label* ( "=" value | object ) [","]
    key    := IDENT | STRING        label := STRING | IDENT
    value  := STRING | NUMBER | true | false | object | list
    object := "{" body "}"          list  := "[" (value [","])* "]"

Comments: `# ...`, `// ...`, `/* ... */`. Heredocs and interpolation are refused with a clear error.
The result is a tuple of `Entry`, each with the line its key starts on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Union

from meshfed.fsm.acl.errors import RulesError

Value = Union[str, int, float, bool, "Block", list]  # noqa: UP007 - a forward reference needs Union


@dataclass(frozen=True)
class Block:
    """An object `{ ... }`: its entries in source order (keys may repeat, as HCL1 allows)."""

    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Entry:
    """One `key "label"... = value` or `key "label"... { ... }` with the line where `key` stands."""

    key: str
    labels: tuple[str, ...]
    value: Value
    line: int


@dataclass(frozen=True)
class _Token:
    kind: str  # one of: ident string number punct eof
    text: str
    value: object
    line: int


_TOKEN_PATTERN = re.compile(
    r"""
    (?P<space>[ \t\r\n]+)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.\-]*)
  | (?P<punct>[{}\[\]=,])
    """,
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, line = 0, 1
    while position < len(text):
        match = _TOKEN_PATTERN.match(text, position)
        if match is None:
            tokens.append(_Token("bad", text[position], None, line))
            break
        kind, lexeme = match.lastgroup or "", match.group()
        if kind == "string":
            if "${" in lexeme:
                raise RulesError(f"interpolation ({lexeme}) is not allowed in ACL rules", line)
            try:
                tokens.append(_Token("string", lexeme, json.loads(lexeme), line))
            except ValueError:
                raise RulesError(f"invalid escape in string {lexeme}", line) from None
        elif kind == "number":
            tokens.append(_Token("number", lexeme, float(lexeme) if "." in lexeme else int(lexeme), line))
        elif kind in ("ident", "punct"):
            tokens.append(_Token(kind, lexeme, lexeme, line))
        line += lexeme.count("\n")
        position = match.end()
    if tokens and tokens[-1].kind == "bad":
        bad = tokens[-1]
        if text.startswith("/*", position):
            raise RulesError("comment opened with /* is never closed", bad.line)
        if bad.text == '"':
            raise RulesError("string is not closed before the end of the line", bad.line)
        if text.startswith("<<", position):
            raise RulesError("heredoc strings are not supported in ACL rules; use a quoted string", bad.line)
        raise RulesError(f"unexpected character {bad.text!r}", bad.line)
    tokens.append(_Token("eof", "end of input", None, line))
    return tokens


def _describe(token: _Token) -> str:
    return "the end of the document" if token.kind == "eof" else f"{token.text!r}"


class _Reader:
    """Recursive descent over the token list; one instance per document, never shared."""

    def __init__(self, tokens: list[_Token]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self) -> _Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def body(self, closing: str | None) -> tuple[Entry, ...]:
        entries: list[Entry] = []
        while True:
            token = self.peek()
            if token.kind == "eof":
                if closing is not None:
                    raise RulesError(f"expected {closing!r} to close a block, found the end of the document",
                                     token.line)
                return tuple(entries)
            if token.kind == "punct" and token.text == closing:
                return tuple(entries)
            entries.append(self.entry())
            after = self.peek()
            if after.kind == "punct" and after.text == ",":
                self.take()

    def entry(self) -> Entry:
        key_token = self.take()
        if key_token.kind not in ("ident", "string"):
            raise RulesError(f"expected a name (like service or acl), found {_describe(key_token)}",
                             key_token.line)
        key = str(key_token.value)
        labels: list[str] = []
        while self.peek().kind in ("string", "ident"):
            labels.append(str(self.take().value))
        token = self.peek()
        if token.kind == "punct" and token.text == "=":
            self.take()
            return Entry(key, tuple(labels), self.value(), key_token.line)
        if token.kind == "punct" and token.text == "{":
            return Entry(key, tuple(labels), self.value(), key_token.line)
        shown = " ".join([key, *(json.dumps(label) for label in labels)])
        raise RulesError(f'expected "=" or "{{" after {shown}, found {_describe(token)}', token.line)

    def value(self) -> Value:
        token = self.take()
        if token.kind in ("string", "number"):
            return token.value  # type: ignore[return-value]
        if token.kind == "ident" and token.text in ("true", "false"):
            return token.text == "true"
        if token.kind == "punct" and token.text == "{":
            entries = self.body("}")
            self.take()
            return Block(entries)
        if token.kind == "punct" and token.text == "[":
            items: list[Value] = []
            while not (self.peek().kind == "punct" and self.peek().text == "]"):
                if self.peek().kind == "eof":
                    raise RulesError("expected ']' to close a list, found the end of the document",
                                     self.peek().line)
                items.append(self.value())
                if self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
            self.take()
            return items
        if token.kind == "ident":
            raise RulesError(f"expected a value, found the bare word {token.text!r}; quote it: \"{token.text}\"",
                             token.line)
        raise RulesError(f"expected a value, found {_describe(token)}", token.line)


def parse_hcl(text: str) -> tuple[Entry, ...]:
    """Read an HCL rules document into entries.

    Raises:
        RulesError: with the line of the first token that does not fit the grammar.
    """
    return _Reader(_tokenize(text)).body(None)
