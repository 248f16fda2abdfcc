"""`dockerify.cli.main()` is a function, not a script: it can run many times in one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dockerify import __version__
from dockerify.cli import main, pi_main, undockerify_main


def _help(entry, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exit_:
        entry(argv)
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_main_twice_builds_every_subparser(capsys: pytest.CaptureFixture[str]) -> None:
    # The second call failed with "conflicting subparser: run" when commands were registered
    # into a module-level list on each call.
    for _ in range(3):
        assert "run an image" in _help(main, ["--help"], capsys)
        assert "COMMAND" in _help(main, ["run", "--help"], capsys)
    assert "ROOT_MIB" in _help(undockerify_main, ["--help"], capsys)
    assert "pi:latest" in _help(pi_main, ["--help"], capsys)
    assert "ROOT_MIB" in _help(undockerify_main, ["--help"], capsys)


def test_main_twice_runs_a_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "same").write_text("x\n")
    (b / "new").write_text("y\n")
    for _ in range(2):
        assert main(["diff", "--json", str(a), str(b)]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["differences"] and "new" in report["differences"][0]
        assert main(["diff", str(a), str(a)]) == 0
        assert "no differences" in capsys.readouterr().err
        assert main(["diff", "-q", str(a), str(a)]) == 0
        assert capsys.readouterr().err == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(main, ["--version"], capsys).strip() == f"dockerify {__version__}"
