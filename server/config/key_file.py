"""The cluster key read from a file (``-encrypt-file``), so it never sits on a command line.

A command line is readable by every local user (``ps``, /proc/<pid>/cmdline); a file can be made
readable by its owner only, and we insist that it is, as ssh does for private keys: the key guards
a port that unpickles what it receives. The file holds the key as ``meshfed keygen`` prints it;
surrounding whitespace (the trailing newline of ``meshfed keygen > file``) is ignored. The key
itself is checked where every ``encrypt`` value is, when the configuration is loaded.
"""

from __future__ import annotations

import os
import stat

from meshfed.server.config.errors import ConfigError

KEY = "encrypt"


def read_key_file(path: str) -> str:
    """Return the cluster key held in ``path``.

    Raises:
        ConfigError: naming the file when it cannot be read, is open to group or others, or does
            not hold a line of text.
    """
    try:
        with open(path, "rb") as key_file:
            mode = os.fstat(key_file.fileno()).st_mode
            raw = key_file.read()
    except OSError as error:
        raise ConfigError(path, KEY, f"cannot read the key file: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            path, KEY, f"the key file is open to group or others (mode {stat.S_IMODE(mode):04o}); accepted: chmod 600"
        )
    try:
        key = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ConfigError(path, KEY, "not a key: the file is not ASCII text (make one with `meshfed keygen`)") from None
    if not key:
        raise ConfigError(path, KEY, "the key file is empty (make one with `meshfed keygen`)")
    return key
