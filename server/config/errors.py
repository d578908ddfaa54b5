"""The one error a configuration can fail with, and the names of the sources it can blame.

Every stage of loading (read, flatten, merge, check) raises ``ConfigError`` so that an operator
always learns the file (or "command line", or "defaults"), the dotted key and what would have been
accepted, whichever stage found the problem.
"""

from __future__ import annotations

COMMAND_LINE = "command line"
DEFAULTS = "defaults"


class ConfigError(Exception):
    """A configuration the agent must not start with; says where, which key and why."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}" if key else f"{source}: {reason}")
