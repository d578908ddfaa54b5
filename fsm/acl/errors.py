"""The one error a rules document can raise.

It lives apart from the parser so the HCL reader and the rules validator share it without importing
each other. The HTTP layer turns it into a 400 whose body is `str(error)`, so the text is written for
the operator who typed the rules: where (line, when known), what, and what would be accepted.
"""

from __future__ import annotations


class RulesError(ValueError):
    """A rules document that cannot be read or holds a rule Consul would refuse.

    Attributes:
        problem: the sentence without the location, e.g. `Invalid service policy: ...`.
        line: 1-based line of the offending text, or None when the source cannot tell (JSON values).
    """

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem = problem
        self.line = line
        super().__init__(problem if line is None else f"line {line}: {problem}")
