"""``avatar config``: print the resolved config with every setting's meaning."""

from __future__ import annotations

from avatar.cli.options import add_config_options


def add_parser(sub, common) -> None:
    p = sub.add_parser("config", parents=[common], help="print the resolved config and what each setting means",
                       description="Print a preset with --set overrides applied, one comment per setting. "
                                   "Any key shown can be changed with --set SECTION.KEY=VALUE.")
    add_config_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from avatar.core import config as config_io
    from avatar.settings import load_config

    cfg = load_config(args.config, args.overrides)
    print(config_io.dump_yaml(cfg), end="")
    return 0
