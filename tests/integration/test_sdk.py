"""The SDK's result types and errors: every result is a frozen dataclass; every function, given
a missing input, raises a DockerifyError subclass naming it (in this process, and in a fresh
one) and writes nothing."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dockerify
from dockerify import sdk
from dockerify.errors import DockerifyError, NotFound

ROOT = Path(__file__).resolve().parents[2]
RESULTS = [
    dockerify.BuildResult,
    dockerify.InspectResult,
    dockerify.DiffResult,
    dockerify.ExportResult,
    dockerify.CopyResult,
    dockerify.PushResult,
    dockerify.PullResult,
    dockerify.TransferCounts,
    dockerify.KeygenResult,
    dockerify.SignResult,
    dockerify.SignedDigest,
    dockerify.VerifyResult,
    dockerify.VerifiedDigest,
    dockerify.RunResult,
    dockerify.BinfmtResult,
]


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_results_are_frozen_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_result_properties() -> None:
    same = dockerify.DiffResult("a", "b", (), (3, 3))
    other = dockerify.DiffResult("a", "b", ("~ /etc/hostname: size 4 -> 5",), (3, 3))
    assert same.identical and not other.identical
    with pytest.raises(dataclasses.FrozenInstanceError):
        same.lines = ("x",)  # type: ignore[misc]
    assert dockerify.BinfmtResult({"arm64": True, "arm": True, "riscv64": False}).ok
    assert not dockerify.BinfmtResult({"arm64": True, "arm": False}).ok
    signed = dockerify.SignResult(
        (dockerify.SignedDigest("sha256:a", True), dockerify.SignedDigest("sha256:b", False))
    )
    assert signed.digests == ("sha256:a", "sha256:b")
    verified = dockerify.VerifyResult((dockerify.VerifiedDigest("sha256:a", "h/r", 1),))
    assert verified.digests == ("sha256:a",)


def test_binfmt_status_reports_the_kernel() -> None:
    status = dockerify.binfmt_status()
    for arch in ("arm64", "arm"):
        assert (
            status.handlers[arch]
            == Path(f"/proc/sys/fs/binfmt_misc/qemu-{'aarch64' if arch == 'arm64' else 'arm'}").exists()
        )


def test_inspect_result_carries_the_cli_view(tmp_path: Path) -> None:
    (tmp_path / "tree" / "etc").mkdir(parents=True)
    (tmp_path / "tree" / "etc" / "hostname").write_text("pi\n")
    result = dockerify.inspect(tmp_path / "tree")
    assert result.info["kind"] == "directory", dict(result.info)
    assert str(tmp_path / "tree") in result.text
    with pytest.raises(TypeError):
        result.info["kind"] = "x"  # type: ignore[index]
    assert dockerify.diff(tmp_path / "tree", tmp_path / "tree").identical


def _missing(tmp_path: Path) -> dict[str, Callable[[], Any]]:
    gone = tmp_path / "gone"
    layout = f"oci:{gone}:v1"
    out = tmp_path / "out"
    return {
        "build": lambda: dockerify.build(str(gone / "card.img"), output=f"oci:{out}:v1"),
        "inspect": lambda: dockerify.inspect(str(gone / "card.img")),
        "diff": lambda: dockerify.diff(str(gone / "a.img"), str(gone / "b.img")),
        "export": lambda: dockerify.export(layout, "sdcard", str(out / "card.img")),
        "copy": lambda: dockerify.copy(layout, f"oci:{out}:v1"),
        "push": lambda: dockerify.push(layout, "127.0.0.1:5000/sdk-tests/never:v1"),
        "pull": lambda: dockerify.pull(
            "127.0.0.1:5000/sdk-tests/never:v1", f"oci:{out}:v1", verify_key=str(gone / "k.pub")
        ),
        "keygen": lambda: dockerify.keygen(gone / "signer", password="x"),
        "sign": lambda: dockerify.sign(layout, gone / "k.key", password="x"),
        "verify": lambda: dockerify.verify(layout, gone / "k.pub"),
    }


@pytest.mark.parametrize(
    "function", ["build", "inspect", "diff", "export", "copy", "push", "pull", "keygen", "sign", "verify"]
)
def test_missing_input_is_a_dockerify_error(tmp_path: Path, function: str) -> None:
    with pytest.raises(DockerifyError) as info:
        _missing(tmp_path)[function]()
    assert isinstance(info.value, NotFound), repr(info.value)
    assert str(tmp_path / "gone") in str(info.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "gone").exists()


def test_run_of_a_missing_image_is_a_dockerify_error(docker_daemon: str) -> None:
    with pytest.raises(NotFound, match="sdk-tests-no-such-image:v1"):
        dockerify.run("sdk-tests-no-such-image:v1", ["true"])


def test_bad_arguments_are_dockerify_errors(tmp_path: Path) -> None:
    with pytest.raises(DockerifyError, match="name where the image goes"):
        dockerify.build(str(tmp_path))
    with pytest.raises(DockerifyError, match="unknown option 'bogus'"):
        dockerify.export("oci:/nowhere:v1", "sdcard", str(tmp_path / "c.img"), bogus=1)
    with pytest.raises(DockerifyError, match="unknown format 'pem'"):
        dockerify.keygen(tmp_path / "k", password="x", format="pem")
    assert list(tmp_path.iterdir()) == []


def test_an_uncaught_error_is_the_named_error(tmp_path: Path) -> None:
    """A script that lets the error through ends on the NotFound naming the input (not a
    TypeError or KeyError from inside the library), having written nothing."""
    code = "import dockerify\ndockerify.export('oci:/nonexistent-sdk-layout:v1', 'sdcard', 'card.img')\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last == "dockerify.errors.NotFound: oci:/nonexistent-sdk-layout:v1: no such directory", proc.stderr
    assert not (tmp_path / "card.img").exists()


def test_functions_named_like_modules_stay_functions() -> None:
    """`dockerify.build`, `inspect` and `diff` share their names with modules: loading those
    modules (as the command line does) must not replace the SDK functions."""
    code = (
        "import dockerify, dockerify.cli.app, dockerify.inspect, dockerify.diff, dockerify.build\n"
        "import dockerify.sdk as s\n"
        "assert (dockerify.build, dockerify.inspect, dockerify.diff) == (s.build, s.inspect, s.diff)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_sdk_name_is_the_packages() -> None:
    """dockerify/__init__.py takes its SDK names from sdk.__all__: each one is exported, and is
    the SDK's own object (not a module of the same name, as `run` and `build` also are)."""
    for name in sdk.__all__:
        assert name in dockerify.__all__, name
        assert getattr(dockerify, name) is getattr(sdk, name), name
    assert len(set(dockerify.__all__)) == len(dockerify.__all__)
