"""`meshfed version`, `--version` and `-version` print the installed package's version."""

from __future__ import annotations

from importlib.metadata import version

import pytest

from meshfed.server.cli.main import main


@pytest.mark.parametrize("argv", [["version"], ["--version"], ["-version"]])
def test_version_comes_from_package_metadata(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's version action exits
        code = exit_.code
    assert code == 0
    assert capsys.readouterr().out == f"meshfed v{version('meshfed')}\n"
