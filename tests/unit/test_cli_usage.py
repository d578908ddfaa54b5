"""An unknown flag is reported with the usage of the command that did not know it (issue #8 nit)."""

from __future__ import annotations

import pytest

from meshfed.server.cli.main import main


@pytest.mark.parametrize(
    "argv, prog, expected_flag",
    [
        (["agent", "-bogus"], "meshfed agent", "-encrypt-file"),
        (["operator", "raft", "list-peers", "-bogus"], "meshfed operator raft list-peers", "-http-addr"),
        (["demo", "-bogus"], "meshfed demo", "-keep-data"),
    ],
)
def test_unknown_flag_prints_the_commands_own_usage(
    argv: list[str], prog: str, expected_flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: {prog} ")
    assert expected_flag in err
    assert f"{prog}: error: unrecognized arguments: -bogus" in err
    assert "COMMAND ..." not in err  # not the top-level usage


def test_a_missing_command_still_prints_the_top_level_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([])
    assert capsys.readouterr().err.startswith("usage: meshfed [-h] COMMAND ...")
