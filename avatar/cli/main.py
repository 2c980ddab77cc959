"""The ``avatar`` command: global flags, subcommand dispatch, error handling.

Each subcommand lives in its own module in this package with two functions:
``add_parser(subparsers)`` and ``run(args) -> int``. A subcommand is listed
here only once it really works.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from avatar import __version__
from avatar.core.errors import UserError

INTERRUPTED = "interrupted: finished stages are kept; run the same command again to resume"
"""What Ctrl-C prints, unless the command set its own ``interrupted`` default (one that cannot resume)."""

SUBCOMMANDS = ("preprocess", "fit", "eval", "export", "motion", "render", "view", "batch", "inspect", "bench", "config")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar",
        description="Person-specific 3D Gaussian talking-head avatars, offline on a CPU.",
        epilog="Run `avatar COMMAND --help` for a command's options.")
    parser.add_argument("--version", action="version", version=f"talking-avatar {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors, no progress bars")
    g.add_argument("-v", "--verbose", action="store_true", help="debug messages")
    g.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib
    for name in SUBCOMMANDS:
        importlib.import_module(f"avatar.cli.{name}_cmd").add_parser(sub, common)
    return parser


def setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="[avatar] %(message)s", stream=sys.stderr, force=True)
    if quiet:
        os.environ["AVATAR_QUIET"] = "1"


def main(argv: list[str] | None = None, *, filter_native_log: bool = True) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    ``filter_native_log=False`` leaves file descriptor 2 alone (see
    :mod:`avatar.cli.native_log`), for callers that run commands in their own
    process, such as the tests.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if filter_native_log and not args.verbose:
        from avatar.cli.native_log import filter_native_stderr
        filter_native_stderr()
    setup_logging(args.quiet, args.verbose)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        if args.debug:
            traceback.print_exc()
        print(f"error: {e.problem}", file=sys.stderr)
        if e.fix:
            print(f"  fix: {e.fix}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(getattr(args, "interrupted", INTERRUPTED), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
