"""Acceptance 3: every python block of README.md's "Python SDK" section runs exactly as written,
each in a fresh python3, one after the other (later blocks use what earlier ones wrote), on the
real daemon, the loopback registry and qemu-user; what each prints is checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import FIXTURES_DIR, entry

ROOT = Path(__file__).resolve().parents[2]
DIGEST = r"sha256:[0-9a-f]{64}"

# What each block prints, by the first SDK function it calls.
EXPECTED = {
    "build": rf"^{DIGEST}\nlinux/arm64\n$",
    "inspect": r"^linux/arm64 \d+\n\['linux/arm64'\]\n$",
    "diff": r"^True \((\d+), \1\)\n$",
    "export": r"^/tmp/sdk-card\.img 0x[0-9a-f]{8}\n$",
    "copy": rf"^{DIGEST} 2 blobs\n$",
    "push": rf"^{DIGEST} 2 blobs\n$",
    "pull": rf"^{DIGEST} linux/arm64\n$",
    "keygen": r"^/tmp/sdk-signer\.key /tmp/sdk-signer\.pub\n$",
    "sign": rf"^\('{DIGEST}',\)\n$",
    "verify": rf"^{DIGEST} verified\n$",
    "sbom": r"^/tmp/sdk-pi\.spdx\.json SPDX-2\.3\n$",
    "attest_sbom": rf"^\('{DIGEST}',\)\n$",
    "verify_attestation": r"^https://spdx\.dev/Document\n$",
    "push_artifact": r"^application/vnd\.dockerify\.sdcard\.v1\n/tmp/sdk-card-back\.img\.xz\n$",
    "login": r"^127\.0\.0\.1:5000 /tmp/sdk-auth\.json\nTrue\n$",
    "run": r"^0 aarch64\nTrue\n$",
    "open_tree": r"^\d+ entries as on disk\nNotFound /tmp/sdk-no-such-card\.img: no such file\b.*\n$",
}
SDK_FUNCTIONS = {
    "build", "inspect", "diff", "export", "copy", "push", "pull",
    "sign", "verify", "keygen", "run", "binfmt_status",
    "push_artifact", "pull_artifact", "sbom", "attest_sbom", "verify_attestation", "login", "logout",
}  # fmt: skip
# The paths the examples write, removed first so each run starts as a new user's would.
OUTPUTS = (
    "sdk-pi", "sdk-card.img", "sdk-pi.tar", "sdk-pulled", "sdk-signer.key", "sdk-signer.pub",
    "sdk-pi.spdx.json", "sdk-card-back.img.xz", "sdk-auth.json",
)  # fmt: skip


def sdk_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Python SDK\n", 1)[1]
    section = re.split(r"\n#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def first_call(block: str) -> str:
    match = re.search(r"dockerify\.(\w+)\(", block)
    assert match, block
    return match.group(1)


def test_every_sdk_function_has_an_example() -> None:
    called = {name for block in sdk_blocks() for name in re.findall(r"dockerify\.(\w+)\(", block)}
    assert called >= SDK_FUNCTIONS, SDK_FUNCTIONS - called
    import dockerify

    assert set(SDK_FUNCTIONS) <= set(dockerify.__all__)


@pytest.mark.registry
def test_readme_sdk_examples_run_as_written(
    tmp_path: Path, docker_daemon: str, registry: str, binfmt: None
) -> None:
    entry("pi-arm64.img")
    _remove_outputs()
    try:
        _run_blocks(tmp_path)
    finally:
        _remove_outputs()  # a card and three copies of the image: not left behind in /tmp


def _remove_outputs() -> None:
    for name in OUTPUTS:
        path = Path("/tmp") / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _run_blocks(tmp_path: Path) -> None:
    (tmp_path / ".fixtures").symlink_to(FIXTURES_DIR)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DOCKERIFY_KEY_PASSWORD", None)
    env.pop("COSIGN_PASSWORD", None)
    seen = []
    for block in sdk_blocks():
        name = first_call(block)
        seen.append(name)
        proc = subprocess.run(
            [sys.executable, "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, f"{name}:\n{block}\n{proc.stderr}"
        assert re.match(EXPECTED[name], proc.stdout), f"{name}:\n{block}\nprinted {proc.stdout!r}"
        assert "Traceback" not in proc.stderr, proc.stderr
    assert sorted(seen) == sorted(EXPECTED), seen
    # The examples agree with each other and with the judges: one digest throughout.
    built = Path("/tmp/sdk-pi/index.json").read_text()
    pulled = Path("/tmp/sdk-pulled/index.json").read_text()
    digests = set(re.findall(DIGEST, built)) & set(re.findall(DIGEST, pulled))
    assert digests, (built, pulled)
