"""``gridflow page``: serve the household and operator pages, and manage their access codes.

gridflow page serve [--set web.port=0]                 # blocks; prints the URL
gridflow page token issue HOUSEHOLD_ID [--expires-days N]
gridflow page token issue --operator NAME [--role viewer|operator]
gridflow page token list [SUBJECT]                     # ids, states and times; never the codes
gridflow page token rotate HOUSEHOLD_ID | --operator NAME
gridflow page token revoke HOUSEHOLD_ID | --operator NAME | --id CODE_ID

``issue`` and ``rotate`` print the new code on stdout, once: it is stored only as a keyed digest. A
revoked code and every session opened with it stop working at the next request, in a running
``page serve`` too; other households are not touched. ``rotate`` revokes the old codes and issues one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from gridflow.cli_args import add_settings_arguments


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``page`` subcommand on ``subparsers`` (of the ``gridflow`` command)."""
    parser = subparsers.add_parser(
        "page",
        help="serve the household and operator pages, and manage their access codes",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="page_action", required=True)
    serve = actions.add_parser("serve", help="serve the pages until interrupted (prints the URL)")
    add_settings_arguments(serve)
    token = actions.add_parser("token", help="issue, list, rotate and revoke access codes")
    verbs = token.add_subparsers(dest="token_action", required=True)
    for verb, text in (
        ("issue", "issue a new access code (printed once)"),
        ("rotate", "revoke the current codes and issue a new one"),
        ("revoke", "revoke codes and end their sessions"),
    ):
        sub = verbs.add_parser(verb, help=text)
        who = sub.add_mutually_exclusive_group(required=True)
        who.add_argument("household_id", nargs="?")
        who.add_argument("--operator", metavar="NAME", help="an operator account instead of a household")
        if verb == "revoke":
            who.add_argument("--id", dest="code_id", help="one code, by the id 'list' shows")
        else:
            sub.add_argument(
                "--role",
                choices=("viewer", "operator"),
                help="operator accounts only; issue: viewer unless given, rotate: the account's current role",
            )
            sub.add_argument("--expires-days", type=float, help="the code stops working after this many days")
        add_settings_arguments(sub)
    listing = verbs.add_parser("list", help="list codes (ids, states and times; never the codes)")
    listing.add_argument("subject", nargs="?", help="only this household or operator")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    add_settings_arguments(listing)
    return parser


def run(args: argparse.Namespace, settings) -> None:
    from gridflow.web.auth import open_credentials

    credentials = open_credentials(settings)
    if args.page_action == "token":
        try:
            _token(args, credentials)
        except ValueError as error:
            sys.exit(f"gridflow page token {args.token_action}: {error}")
        finally:
            credentials.close()
        return
    from gridflow.web.server import serve

    def ready(url: str) -> None:
        print(
            f"gridflow pages on {url}\n  household: {url}/household/<household_id>?code=<gridflow page token issue "
            f"<household_id>>\n  operator:  {url}/operator?code=<gridflow page token issue --operator <name>>",
            flush=True,
        )

    asyncio.run(serve(settings, credentials, ready))


def _token(args: argparse.Namespace, credentials) -> None:
    action = args.token_action
    if action == "list":
        rows = credentials.listing(args.subject)
        if args.json:
            for row in rows:
                print(json.dumps(row))
            return
        print(f"{'id':<12} {'subject':<24} {'role':<9} {'state':<8} {'created (UTC)':<17} {'expires':<17} sessions")
        for row in rows:
            print(
                f"{row['id']:<12} {row['subject']:<24} {row['role']:<9} {row['state']:<8} "
                f"{_when(row['created_ms']):<17} {_when(row['expires_ms']):<17} {row['sessions']}"
            )
        return
    household, operator = args.household_id, args.operator
    if action == "revoke":
        count = credentials.revoke(code_id=args.code_id, household=household, operator=operator)
        print(f"revoked {count} code(s)", file=sys.stderr)
        return
    if household is not None and args.role is not None:
        raise ValueError("--role applies to operator accounts only")
    expires_ms = None
    if args.expires_days is not None:
        if args.expires_days <= 0:
            raise ValueError(f"--expires-days must be positive, got {args.expires_days}")
        expires_ms = int(time.time() * 1000 + args.expires_days * 86_400_000)
    if household is not None:
        subject, role = household, "household"
    else:
        current = {
            r["role"] for r in credentials.listing(operator) if r["state"] == "active" and r["role"] != "household"
        }
        kept = "operator" if "operator" in current else "viewer"
        subject, role = operator, args.role or (kept if action == "rotate" else "viewer")
    if action == "rotate":
        code_id, code, count = credentials.rotate(subject, role, expires_ms)
        print(f"revoked {count} code(s)", file=sys.stderr)
    else:
        code_id, code = credentials.issue(subject, role, expires_ms)
    print(
        f"issued {code_id} for {role} {subject}, expires {_when(expires_ms)}; the code is shown only now",
        file=sys.stderr,
    )
    print(code)


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) if ms else "never"
