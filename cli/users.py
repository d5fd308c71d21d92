"""`rag users add|list|passwd|remove|grant|revoke|key|revoke-key|audit`: the accounts of `rag ui` and `rag serve`
(service/accounts.py), in the data folder's app.db. Run on the server's machine by whoever owns its data folder;
each change is in the audit log under `cli:<login>`."""

from __future__ import annotations

import argparse
import functools
import getpass
import sys
from pathlib import Path

from rag.config import Settings
from rag.errors import RagError
from service.accounts import Accounts, Role
from service.appdb import FILE_NAME, AppDatabase


def users_args(p: argparse.ArgumentParser) -> None:
    # --data-dir and --config after the action too (`rag users list --data-dir D`); SUPPRESS keeps one given before
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, default=argparse.SUPPRESS, help="the data folder (RAG_DATA_DIR)"
    )
    common.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, help="TOML settings file (RAG_CONFIG)"
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser = functools.partial(sub.add_parser, parents=[common])  # type: ignore[method-assign]
    add = sub.add_parser("add", help="a new user; the password is asked for (or read from standard input)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="every collection, at every role")
    sub.add_parser("list", help="users, their roles and their live API keys")
    sub.add_parser("passwd", help="a new password (their open sessions end)").add_argument("name")
    sub.add_parser("remove", help="the user, their roles and keys").add_argument("name")
    grant = sub.add_parser("grant", help="a role in a collection: reader, editor or admin")
    grant.add_argument("name")
    grant.add_argument("collection")
    grant.add_argument("role", choices=[r.label for r in Role])
    revoke = sub.add_parser("revoke", help="take the user's role in a collection away")
    revoke.add_argument("name")
    revoke.add_argument("collection")
    sub.add_parser("key", help="a new API key for the user, printed once").add_argument("name")
    sub.add_parser("revoke-key", help="revoke a key by its start (rag-1a2b3c4d)").add_argument("key")
    audit = sub.add_parser("audit", help="who uploaded, deleted, granted, trained: newest first")
    audit.add_argument("--user", help="only this actor's entries")
    audit.add_argument("--limit", type=int, default=50)


def users_command(args: argparse.Namespace, settings: Settings) -> int:
    accounts = Accounts(AppDatabase(settings.data_dir / FILE_NAME))
    actor = f"cli:{getpass.getuser()}"
    action = args.action
    if action == "list":
        return _list(accounts)
    if action == "audit":
        return _audit(accounts, args.user, args.limit)
    message = _change(accounts, args)
    detail = getattr(args, "role", "") or ""
    accounts.record(actor, f"user {action}", getattr(args, "collection", None), _target(args), detail)
    print(message)
    return 0


def _change(accounts: Accounts, args: argparse.Namespace) -> str:
    action = args.action
    if action == "add":
        first = not accounts.exist()
        accounts.add(args.name, _new_password(args.name), admin=args.admin)
        role = "an admin" if args.admin else "no role yet (rag users grant)"
        restart = "; restart rag ui / rag serve: logins are required from their next start" if first else ""
        return f"added {args.name}, {role}{restart}"
    if action == "passwd":
        accounts.set_password(args.name, _new_password(args.name))
        return f"changed {args.name}'s password; their open sessions end"
    if action == "remove":
        accounts.remove(args.name)
        return f"removed {args.name}, their roles, keys, saved conversations and ratings"
    if action == "grant":
        accounts.grant(args.name, args.collection, Role.parse(args.role))
        return f"{args.name} is {args.role} of {args.collection!r}"
    if action == "revoke":
        accounts.revoke(args.name, args.collection)
        return f"{args.name} has no role in {args.collection!r} now"
    if action == "key":
        key = accounts.new_key(args.name)
        print("The key is shown only this once; keep it secret (Authorization: Bearer KEY):", file=sys.stderr)
        return key
    user = accounts.revoke_key(args.key)
    return f"revoked {user}'s key {args.key}: refused from now on"


def _target(args: argparse.Namespace) -> str:
    return str(getattr(args, "name", None) or getattr(args, "key", "") or "")


def _list(accounts: Accounts) -> int:
    users = accounts.users()
    if not users:
        print("no users: rag ui and rag serve are open (or behind RAG_API_KEY); rag users add NAME --admin")
        return 0
    for user in users:
        roles = ", ".join(f"{c}: {r.label}" for c, r in user.grants.items()) or "no roles"
        kind = "admin (every collection)" if user.admin else roles
        keys = f"; keys {', '.join('rag-' + k for k in user.keys)}" if user.keys else ""
        print(f"{user.name}\t{kind}{keys}")
    return 0


def _audit(accounts: Accounts, user: str | None, limit: int) -> int:
    for entry in accounts.audit_log(limit, user):
        where = f" in {entry.collection}" if entry.collection else ""
        what = f" {entry.target}" if entry.target else ""
        detail = f" ({entry.detail})" if entry.detail else ""
        print(f"{entry.at}\t{entry.actor}\t{entry.action}{where}:{what}{detail}")
    return 0


def _new_password(name: str) -> str:
    """Asked twice on a terminal; else one line of standard input (scripts: `echo "$PW" | rag users add NAME`)."""
    if not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise RagError("no password on standard input")
        return password
    password = getpass.getpass(f"password for {name}: ")
    if getpass.getpass("again: ") != password:
        raise RagError("the two passwords differ; nothing changed")
    return password
