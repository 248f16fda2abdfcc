"""The frontend's entry point: read the options and the build file, compile, solve, return."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping

from dockerify.errors import DockerifyError
from dockerify.frontend import llb
from dockerify.frontend.buildfile import parse
from dockerify.frontend.compiler import Compiler, Options

log = logging.getLogger("dockerify")


def frontend_options(environ: Mapping[str, str]) -> dict[str, str]:
    """BUILDKIT_FRONTEND_OPT_<i>=key=value, in a canonical (sorted) order: BuildKit numbers them
    in Go's random map order."""
    opts: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if name.startswith("BUILDKIT_FRONTEND_OPT_"):
            key, _, val = value.partition("=")
            opts[key] = val
    return dict(sorted(opts.items()))


def process_age() -> float:
    """Seconds since this process was started (exec), from /proc: the frontend's start-up time."""
    try:
        start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        uptime = float(open("/proc/uptime").read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_frontend(bridge: object, environ: Mapping[str, str]) -> int:
    """Everything between connecting and `Return`. Every failure is returned to BuildKit as one
    message naming the build file and line; nothing is raised past here."""
    from dockerify.frontend.gateway import Bridge

    assert isinstance(bridge, Bridge)
    try:
        opts = Options.from_map(frontend_options(environ), environ.get("BUILDKIT_SESSION_ID", ""))
        name = opts.filename
        base = os.path.basename(name)
        dockerfile = llb.local(
            "dockerfile",
            opts.session,
            include=[base],
            shared_key=base,
            description=f"load build file {base}",
        )
        ref = bridge.solve(llb.definition(dockerfile), f"{name}: reading the build file")
        log.info("first Solve answered %.3f s after the process started", process_age())
        text = bridge.read_file(ref, base).decode("utf-8", "replace")
        buildfile = parse(text, name)
        compiler = Compiler(buildfile, opts, bridge)
        results = compiler.compile()
        refs: dict[str, str] = {}
        metadata: dict[str, bytes] = {}
        for r in results:
            what = f"{name}: building stage {r.stage} for {r.platform}"
            try:
                definition = llb.definition(r.state, ignore_cache=opts.no_cache)
                ref = bridge.solve(definition, what) if r.state is not None else ""
            except DockerifyError as e:
                raise compiler.explain(e) from None
            key = str(r.platform)
            refs[key] = ref
            config = json.dumps(r.config, sort_keys=True).encode()
            metadata["containerimage.config" if len(results) == 1 else f"containerimage.config/{key}"] = (
                config
            )
        if len(results) > 1:
            platforms = [{"ID": str(r.platform), "Platform": r.platform.to_oci()} for r in results]
            metadata["refs.platforms"] = json.dumps({"Platforms": platforms}).encode()
        bridge.return_result(bridge.result(refs, metadata, single=len(results) == 1))
        return 0
    except DockerifyError as e:
        message = e.message + (f" (hint: {e.hint})" if e.hint else "")
        log.error("%s", message)
        bridge.return_error(message)
        return 0
    except Exception as e:  # noqa: BLE001 - the user must get a message, never a traceback
        log.exception("frontend failure")
        bridge.return_error(f"dockerify frontend: unexpected {type(e).__name__}: {e}")
        return 0


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("convert", "export"):
        # The exec ops' tool loads the readers and exporters, which the gateway does not need.
        from dockerify.frontend.convert import main as tool_main

        return tool_main(argv)
    logging.basicConfig(level=logging.INFO, format="dockerify-frontend: %(message)s", stream=sys.stderr)
    from dockerify.frontend.gateway import Bridge
    from dockerify.frontend.transport import stdio_transport

    try:
        with stdio_transport() as transport:
            return run_frontend(Bridge(transport), os.environ)
    finally:
        log.info("frontend exits")
