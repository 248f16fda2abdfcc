"""`dockerify build` on a terminal: the layer's bar has a total (the source's estimate), so it
shows a percentage and the time left, and the log lines around it start lines of their own."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fixtures import fixture
from tests.integration.test_cli import _on_a_terminal

BAR = re.compile(r": +\d+%\|.*\| [\d.]+\w?/[\d.]+\w? \[[\d:]+<[\d:?]+")  # percentage, total, ETA


def _rendered(screen: str) -> list[str]:
    """The lines a terminal shows once `screen` is written to it: a carriage return goes back to
    the start of the line and what follows overwrites what was there (escape sequences dropped)."""
    lines = []
    for raw in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen).split("\n"):
        cells: list[str] = []
        col = 0
        for ch in raw:
            if ch == "\r":
                col = 0
                continue
            if col < len(cells):
                cells[col] = ch
            else:
                cells.append(ch)
            col += 1
        lines.append("".join(cells).rstrip())
    return lines


@pytest.mark.fixtures
def test_build_shows_a_percentage_and_log_lines_do_not_collide(tmp_path: Path) -> None:
    card = fixture("pi-arm64.img")
    screen = _on_a_terminal("build", str(card), "--output", f"oci:{tmp_path / 'l'}:v1")
    bars = [f for f in re.split(r"[\r\n]", screen) if f.startswith(f"layer from {card}")]
    assert any(BAR.search(f) for f in bars), bars
    assert not any(re.search(r"\b1[0-9]{2}%", f) for f in bars), bars  # never past its total
    lines = _rendered(screen)
    # Logged while the bar is drawn, and right after it goes: each on a line of its own.
    fixup = next(line for line in lines if "neutralised libarmmem" in line)
    assert fixup == "neutralised libarmmem in /etc/ld.so.preload (restored on SD-card export)", lines
    done = next(line for line in lines if "linux/arm64, " in line)
    assert re.fullmatch(
        rf"{re.escape(str(card))}: linux/arm64, \d+ entries, 1 layer\(s\) sha256:[0-9a-f]{{64}}", done
    ), lines
    assert not any("layer from" in line for line in lines), lines  # the bar left nothing behind
