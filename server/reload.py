"""`PUT /v1/agent/reload`: re-read the server's config files and apply what can change live.

`log_level` and the service definitions (`service`/`services`) change live (RELOADABLE); the
definitions are handed to the agent, which registers, re-registers and deregisters them
(server/service_definitions.py). Every other key is wired into objects built at start
(sockets, Raft, TLS contexts, ACL resolver, replication loops), so a change to it is reported as
needing a restart and the running value stays. A new configuration that does not load (bad file,
unknown key, failed cross-key check) is refused as a whole with the loader's error naming file,
key and reason, and nothing is applied: reload never half-applies.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from meshfed.server.config import Config, ConfigError, load
from meshfed.server.config.services import ServiceDefinition

log = logging.getLogger(__name__)

RELOADABLE = ("log_level", "services")
# How long a reload waits for the new service definitions to be written before it answers; without
# a leader the writes go on in the background and the reload answers anyway.
SERVICES_WAIT = 10.0
# Differences that are not changes: the dev cluster key is generated afresh by every load, and the
# list of unused keys is reported by the loader's warning, not applied.
NOT_COMPARED = ("encrypt", "unused_keys")


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(value):
        item = getattr(value, f.name)
        if dataclasses.is_dataclass(item):
            yield from _flat(item, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", item


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of every setting that differs, in field order."""
    before = dict(_flat(old))
    return [key for key, value in _flat(new) if key not in NOT_COMPARED and before.get(key) != value]


@dataclass(frozen=True)
class ReloadOutcome:
    applied: tuple[str, ...]  # keys changed live
    needs_restart: tuple[str, ...]  # keys that differ but keep their running value


def plan(old: Config, new: Config) -> ReloadOutcome:
    changed = changed_keys(old, new)
    return ReloadOutcome(tuple(k for k in changed if k in RELOADABLE), tuple(k for k in changed if k not in RELOADABLE))


class Reloader:
    """Holds the sources the agent was started from, and the configuration running now."""

    def __init__(self, files: Sequence[str] | Callable[[], Sequence[str]], overrides: Mapping[str, Any], dev: bool,
                 running: Config, set_log_level: Callable[[str], None]) -> None:
        # A callable lists the files afresh at every reload, so a file added to (or removed from) a
        # -config-dir since the start is read (or forgotten), as Consul's agent does.
        self.files = files
        self.overrides = dict(overrides)
        self.dev = dev
        self.running = running
        self._set_log_level = set_log_level
        # Set by the agent once it runs: starts applying the definitions on its event loop.
        self.apply_services: Callable[[tuple[ServiceDefinition, ...]], Future[None]] | None = None
        self._lock = threading.Lock()  # two reloads at once must not interleave load and apply

    def reload(self) -> ReloadOutcome:
        """Raises ConfigError (nothing applied) when the files on disk do not load."""
        with self._lock:
            try:
                files = self.files() if callable(self.files) else self.files
                new = load(list(files), self.overrides, dev=self.dev)
            except ConfigError as exc:
                log.error("reload refused, the running configuration stays: %s", exc)
                raise
            outcome = plan(self.running, new)
            if "log_level" in outcome.applied:
                self._set_log_level(new.log_level)
            if "services" in outcome.applied and self.apply_services is not None:
                self._wait_for(self.apply_services(new.services))
            self.running = dataclasses.replace(self.running, **{k: getattr(new, k) for k in outcome.applied})
        shown = [f"services ({len(new.services)} defined)" if k == "services" else f"{k}={getattr(new, k)}"
                 for k in outcome.applied]
        log.info("reload: applied %s", ", ".join(shown) or "no change")
        if outcome.needs_restart:
            # Key names only: values may be secrets (acl.tokens.*).
            log.warning("reload: changed but only applied at the next restart: %s", ", ".join(outcome.needs_restart))
        return outcome

    @staticmethod
    def _wait_for(applying: Future[None]) -> None:
        try:
            applying.result(timeout=SERVICES_WAIT)
        except FutureTimeout:
            log.warning("reload: service definitions are still waiting for a leader; they are written when one is elected")
