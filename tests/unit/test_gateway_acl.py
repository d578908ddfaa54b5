"""The mesh gateway's token sources and the way the data plane reports ACL refusals
(server/dataplane/gateway_acl.py, server_api.DenialLog)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from meshfed.server.dataplane import server_api
from meshfed.server.dataplane.gateway_acl import denied_message, gateway_token
from meshfed.server.dataplane.server_api import DenialLog


class ScriptedAPI:
    """A server API for `server_api.follow`: answers `(headers, body)` or raises an exception, in
    order, then cancels the follower; records the paths asked. Retries do not sleep."""

    def __init__(self, answers: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers = answers
        self.paths: list[str] = []

        async def no_sleep(_: float) -> None:
            return None

        monkeypatch.setattr(server_api.asyncio, "sleep", no_sleep)

    async def request(self, method: str, path: str, **_: object) -> tuple[int, dict[str, str], object]:
        self.paths.append(path)
        if not self.answers:
            raise asyncio.CancelledError
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        headers, body = answer
        return 200, headers, body

def test_token_precedence_flag_file_env_envfile(tmp_path) -> None:  # type: ignore[no-untyped-def]
    flag_file = tmp_path / "flag"
    flag_file.write_text("from-flag-file\n")
    env_file = tmp_path / "env"
    env_file.write_text("  from-env-file  \n")
    env = {"CONSUL_HTTP_TOKEN": "from-env", "CONSUL_HTTP_TOKEN_FILE": str(env_file)}
    assert gateway_token("from-flag", str(flag_file), env) == "from-flag"
    assert gateway_token("", str(flag_file), env) == "from-flag-file"
    assert gateway_token("", "", env) == "from-env"
    assert gateway_token("", "", {"CONSUL_HTTP_TOKEN_FILE": str(env_file)}) == "from-env-file"
    assert gateway_token("", "", {}) == ""


def test_unreadable_or_empty_token_files_are_refused_naming_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"^-token-file: cannot read .*missing: No such file"):
        gateway_token("", str(tmp_path / "missing"), {})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match=r"^CONSUL_HTTP_TOKEN_FILE: .*empty is empty$"):
        gateway_token("", "", {"CONSUL_HTTP_TOKEN_FILE": str(empty)})


def test_denied_message_names_the_permission_and_the_needed_rules() -> None:
    server = "Permission denied: anonymous token lacks permission 'service:write' on \"mesh-gateway\"."
    line = denied_message(("gw-dc1", "dc1", False), "registration of gw-dc1/mesh-gateway", server)
    assert "lacks permission 'service:write' on \"mesh-gateway\"" in line
    assert "no token (the anonymous token is used" in line and "-token-file" in line
    assert 'node "gw-dc1" write' in line and "-node-identity gw-dc1:dc1" in line
    assert denied_message(("gw", "dc1", True), "x", server).startswith("x refused by the servers' ACLs with its token")


def test_denial_log_logs_first_and_every_tenth_and_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    denials = DenialLog("registration", lambda text: denied_message(("gw", "dc1", True), "registration", text))
    with caplog.at_level(logging.INFO, logger="meshfed.server.dataplane.server_api"):
        delays = [denials.refused("Permission denied: nope") for _ in range(20)]
        denials.succeeded()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3  # 1st, 10th, 20th
    assert "refused 10 times in a row" in errors[1].getMessage()
    assert errors[0].getMessage().startswith("registration refused by the servers' ACLs with its token: Permission")
    assert delays[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0] and max(delays) == 30.0
    assert caplog.records[-1].getMessage() == "registration accepted again after 20 refusal(s)"
    assert denials.refused("again") == 1.0  # a new run starts from the short delay


def test_a_filtered_answer_is_asked_again_unblocked_until_the_token_sees_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gateway whose token's rights are still replicating must not sit out a blocking wait on an
    index that the change of rights never moves."""
    answers = [({"X-Consul-Index": "7", server_api.FILTERED_HEADER: "true"}, {}),
               ({"X-Consul-Index": "7"}, {"dc1": ["gw"]}),
               ({"X-Consul-Index": "7"}, {"dc1": ["gw"]})]
    api = ScriptedAPI(answers, monkeypatch)
    seen: list[object] = []
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(server_api.follow(api, "/v1/x", "routes", seen.append))  # type: ignore[arg-type]
    assert [p.split("index=")[1].split("&")[0] for p in api.paths] == ["0", "0", "7", "7"]
    assert seen == [{}, {"dc1": ["gw"]}, {"dc1": ["gw"]}]
