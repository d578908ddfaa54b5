"""Every subcommand refuses abbreviated flags (issue #12 item 5): Python 3.11's argparse matches a
single-dash flag by prefix even with allow_abbrev=False, so `-expose-server` meant `-expose-servers`."""

from __future__ import annotations

import pytest

from meshfed.server.cli.main import parse_args


@pytest.mark.parametrize(
    "argv, abbreviated",
    [
        (["gateway", "-dc", "dc1", "-bind", "127.0.0.1:8443", "-expose-server"], "-expose-server"),
        (["agent", "-data", "/tmp/x"], "-data"),
        (["members", "-http", "127.0.0.1:8500"], "-http"),
        (["tls", "cert", "create", "-serv"], "-serv"),
        (["config", "delete", "-kind", "service-defaults", "-name", "web", "-ca", "5"], "-ca"),
        (["demo", "-keep"], "-keep"),
        (["monitor", "-log", "debug"], "-log"),
    ],
)
def test_an_abbreviated_flag_is_refused(argv: list[str], abbreviated: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parse_args(argv)  # parse only: an accepted abbreviation must not start a gateway here
    assert caught.value.code == 2
    assert f"unrecognized arguments: {abbreviated}" in capsys.readouterr().err


def test_the_full_flag_and_flag_equals_value_still_parse() -> None:
    from meshfed.server.cli.main import build_parser

    ns = build_parser().parse_args(["gateway", "-dc", "dc1", "-bind=127.0.0.1:8443", "-expose-servers"])
    assert ns.expose_servers and ns.bind == "127.0.0.1:8443"
