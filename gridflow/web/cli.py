"""``gridflow page``: serve the household and operator pages, or print a page token.

gridflow page serve [--set web.port=0]        # blocks; prints the URL
gridflow page token HOUSEHOLD_ID              # the household's access code
gridflow page token --operator                # the operator's access code
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from gridflow.cli_args import add_settings_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``page`` subcommand on ``subparsers`` (of the ``gridflow`` command)."""
    parser = subparsers.add_parser(
        "page",
        help="serve the household and operator pages, or print a page token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="page_action", required=True)
    serve = actions.add_parser("serve", help="serve the pages until interrupted (prints the URL)")
    add_settings_arguments(serve)
    token = actions.add_parser("token", help="print the access code of a household page or the operator view")
    who = token.add_mutually_exclusive_group(required=True)
    who.add_argument("household_id", nargs="?")
    who.add_argument("--operator", action="store_true")
    add_settings_arguments(token)
    return parser


def run(args: argparse.Namespace, settings) -> None:
    from gridflow.web.auth import load_tokens
    from gridflow.web.store import HOUSEHOLD_ID

    tokens = load_tokens(settings)
    if args.page_action == "token":
        if args.operator:
            print(tokens.operator())
        elif not HOUSEHOLD_ID.match(args.household_id):
            sys.exit(f"gridflow page: household id {args.household_id!r} must match {HOUSEHOLD_ID.pattern}")
        else:
            print(tokens.household(args.household_id))
        return
    from gridflow.web.server import serve

    def ready(url: str) -> None:
        print(
            f"gridflow pages on {url}\n  household: {url}/household/<household_id>?token=<gridflow page token "
            f"<household_id>>\n  operator:  {url}/operator?token=<gridflow page token --operator>",
            flush=True,
        )

    asyncio.run(serve(settings, tokens, ready))
