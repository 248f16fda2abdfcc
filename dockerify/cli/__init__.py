"""The command line: `dockerify`, `undockerify` and `pi`. The only package that knows argparse;
each command turns its flags into a library call with typed options and prints the result.

One module per command group: images (build, inspect, diff), export (export, undockerify),
registry (push, pull, artifacts, signing), run (run, binfmt, pi)."""

from dockerify.cli.app import main, pi_main, undockerify_main

__all__ = ["main", "pi_main", "undockerify_main"]
