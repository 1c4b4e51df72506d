"""`python -m harness study|teacher|report|export|bench|data`: the command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _cmd_data(args) -> int:
    from . import data

    data.prepare_fashion_mnist(args.data_dir)
    print("fashion_mnist is ready")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("data", help="build TFDS fashion_mnist offline from Debian's package")
    d.add_argument("--data-dir", default=None)
    d.set_defaults(func=_cmd_data)
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    from .data import DataError

    try:
        return args.func(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
