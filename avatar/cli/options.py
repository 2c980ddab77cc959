"""Options shared by several subcommands."""

from __future__ import annotations

import argparse


def add_config_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("config")
    g.add_argument("--config", default="default", metavar="PRESET",
                   help="preset name in configs/ (default, fast) or a path to a YAML file")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one setting, e.g. --set preprocess.decode.size=256 "
                        "(repeatable; `avatar config` lists them all)")


def minutes_override(minutes: float | None) -> list[str]:
    """``--minutes N`` as the ``--set fit.minutes=N`` it stands for (so the config checks it like any
    setting); the message names the option the user typed."""
    if minutes is None:
        return []
    if not minutes > 0:
        from avatar.core.errors import UserError
        raise UserError(f"--minutes {minutes:g} is not a positive number of minutes", "give e.g. --minutes 10")
    return [f"fit.minutes={minutes!r}"]
