"""The ``callboard`` command: serve, worker, migrate, keys, accounts, render."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Sequence

from service import accounts, clock, schema
from service import settings as settings_mod
from service.db import Database

log = logging.getLogger("callboard")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _ensure_schema(settings: settings_mod.Settings) -> None:
    """SQLite installs migrate themselves on start; PostgreSQL must already be migrated
    (the Procfile's ``release:`` step), so that many web processes never race to migrate."""
    if settings.is_sqlite:
        schema.upgrade(settings.database_url)
        return
    db = Database(settings.database_url)
    try:
        current = schema.current_revision(db.engine)
    finally:
        db.close()
    head = schema.head_revision(settings.database_url)
    if current != head:
        raise SystemExit(
            f"callboard: the database is at schema revision {current or 'none'}, not {head}; run 'callboard migrate' first"
        )


def _bootstrap_account(settings: settings_mod.Settings) -> None:
    """On a brand-new install, create the 'default' account and print its key once."""
    db = Database(settings.database_url)
    try:

        def unit(conn):  # type: ignore[no-untyped-def]
            if accounts.count_accounts(conn) > 0:
                return None
            account = accounts.create_account(conn, "default", clock.SystemClock().now())
            secret, _row = accounts.create_key(
                conn, account["id"], clock.SystemClock().now(), name="bootstrap"
            )
            return secret

        secret = db.write_sync(unit)
    finally:
        db.close()
    if secret:
        print(
            "\n  New install: created account 'default' with API key (shown once, keep it):\n\n"
            f"    {secret}\n\n  More keys: callboard keys create --account NAME\n",
            file=sys.stderr,
            flush=True,
        )


def cmd_serve(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from service.api import app as app_mod
    from service.api import server

    if args.host:
        settings = settings.replace(host=args.host)
    if args.port is not None:
        settings = settings.replace(port=args.port)
    _ensure_schema(settings)
    _bootstrap_account(settings)
    application = app_mod.create_app(
        settings, embedded_worker=not args.no_worker and settings.embedded_worker
    )
    config = uvicorn.Config(
        application,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=server.protocol(settings.max_header_bytes, settings.header_timeout),
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=30,
        server_header=False,
    )
    print(
        f"Callboard serving on {settings.public_url} (provider: {settings.provider})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.Server(config).run()
    return 0


def _ensure_schema_patiently(settings: settings_mod.Settings) -> None:
    """:func:`_ensure_schema`, waiting out a database that is not up yet (a worker
    started during an outage backs off and starts once it is back, like a running one)."""
    import sqlalchemy as sa

    delay = 0.5
    while True:
        try:
            _ensure_schema(settings)
            return
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            log.warning("database unreachable at start-up, retrying in %.1fs: %s", delay, type(exc).__name__)
            time.sleep(delay)
            delay = min(30.0, delay * 2)


def cmd_worker(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    from service import runtime
    from service import worker as worker_mod

    _ensure_schema_patiently(settings)

    async def main() -> None:
        db = Database(settings.database_url)
        rt = runtime.build(settings)
        worker = worker_mod.Worker.build(db, rt)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.request_stop)
        try:
            if args.until_idle:
                rounds = await worker.run_until_idle()
                await worker.aclose()
                print(f"worker idle after {rounds} busy rounds", file=sys.stderr)
            else:
                await worker.run()
        finally:
            db.close()

    asyncio.run(main())
    return 0


def cmd_migrate(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    if args.downgrade:
        schema.downgrade(settings.database_url, args.downgrade)
    else:
        schema.upgrade(settings.database_url, args.revision)
    print(
        f"database at revision {args.downgrade or schema.head_revision(settings.database_url)}",
        file=sys.stderr,
    )
    return 0


def cmd_keys(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    if args.keys_command == "create" and args.max_jobs is not None and not 1 <= args.max_jobs <= 1000:
        print("callboard: --max-jobs must be between 1 and 1000", file=sys.stderr)
        return 2
    _ensure_schema(settings)
    db = Database(settings.database_url)
    now = clock.SystemClock().now()
    try:
        if args.keys_command == "create":

            def create(conn):  # type: ignore[no-untyped-def]
                account = accounts.get_account_by_name(conn, args.account)
                if account is None:
                    account = accounts.create_account(conn, args.account, now, max_jobs=args.max_jobs or 5)
                elif args.max_jobs is not None:
                    accounts.update_account(conn, account["id"], max_jobs=args.max_jobs)
                return accounts.create_key(conn, account["id"], now, name=args.name)

            secret, row = db.write_sync(create)
            print(secret)
            print(f"key {row['id']} for account {args.account!r}: shown once, store it now", file=sys.stderr)
        elif args.keys_command == "list":

            def listing(conn):  # type: ignore[no-untyped-def]
                account_id = None
                if args.account:
                    account = accounts.get_account_by_name(conn, args.account)
                    if account is None:
                        return None
                    account_id = account["id"]
                return accounts.list_keys(conn, account_id)

            rows = db.read_sync(listing)
            if rows is None:
                print(f"callboard: no account named {args.account!r}", file=sys.stderr)
                return 1
            print(f"{'ID':32} {'PREFIX':12} {'ACCOUNT':20} {'CREATED':26} STATUS")
            for r in rows:
                status = "revoked " + clock.iso(r["revoked_at"]) if r["revoked_at"] else "active"
                print(
                    f"{r['id']:32} {r['prefix']:12} {r['account_name']:20} {clock.iso(r['created_at']):26} {status}"
                )
        elif args.keys_command == "revoke":
            if not db.write_sync(lambda conn: accounts.revoke_key(conn, args.key, now)):
                print(f"callboard: no active key {args.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {args.key}", file=sys.stderr)
    finally:
        db.close()
    return 0


def cmd_accounts(settings: settings_mod.Settings, args: argparse.Namespace) -> int:
    from service import netguard

    _ensure_schema(settings)
    db = Database(settings.database_url)
    try:
        if args.accounts_command == "list":
            rows = db.read_sync(accounts.list_accounts)
            print(f"{'NAME':24} {'MAX JOBS':8}  DEFAULT REPLY URL")
            for r in rows:
                print(f"{r['name']:24} {r['max_jobs']:8}  {r['default_reply_url'] or '-'}")
            return 0
        values: dict[str, object] = {}
        if args.max_jobs is not None:
            if not 1 <= args.max_jobs <= 1000:
                print("callboard: --max-jobs must be between 1 and 1000", file=sys.stderr)
                return 2
            values["max_jobs"] = args.max_jobs
        if args.default_reply_url is not None:
            url = args.default_reply_url.strip() or None
            if url is not None:
                try:
                    netguard.check_url(url, netguard.Allowlist(settings.allow_private_targets))
                except netguard.UrlRejected as exc:
                    print(f"callboard: --default-reply-url: the URL {exc}", file=sys.stderr)
                    return 2
            values["default_reply_url"] = url
        if not values:
            print(
                "callboard: nothing to change (give --max-jobs and/or --default-reply-url)", file=sys.stderr
            )
            return 2

        def update(conn):  # type: ignore[no-untyped-def]
            account = accounts.get_account_by_name(conn, args.name)
            if account is None:
                return False
            accounts.update_account(conn, account["id"], **values)
            return True

        if not db.write_sync(update):
            print(f"callboard: no account named {args.name!r}", file=sys.stderr)
            return 1
        print(f"updated account {args.name!r}", file=sys.stderr)
        return 0
    finally:
        db.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callboard", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (and, by default, an embedded worker)")
    serve.add_argument("--host", help="bind address (default CALLBOARD_HOST)")
    serve.add_argument("--port", type=int, help="port (default CALLBOARD_PORT)")
    serve.add_argument("--no-worker", action="store_true", help="API only; run 'callboard worker' separately")

    worker = sub.add_parser("worker", help="run a worker (dispatch, polling, deliveries)")
    worker.add_argument("--until-idle", action="store_true", help="drain: exit once there is nothing to do")

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="head")
    migrate.add_argument("--downgrade", metavar="REVISION", help="downgrade to REVISION instead")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (and the account if new); prints the key once")
    create.add_argument("--account", required=True)
    create.add_argument("--max-jobs", type=int, help="concurrent provider jobs for the account (default 5)")
    create.add_argument("--name", help="a label for the key")
    listing = keys_sub.add_parser("list", help="list keys (never the secrets)")
    listing.add_argument("--account")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key")

    accounts_cmd = sub.add_parser(
        "accounts", help="list accounts or change their limits and default replyUrl"
    )
    accounts_sub = accounts_cmd.add_subparsers(dest="accounts_command", required=True)
    accounts_sub.add_parser("list", help="list accounts")
    update = accounts_sub.add_parser("update", help="change an account")
    update.add_argument("name")
    update.add_argument("--max-jobs", type=int, help="concurrent provider jobs (1-1000)")
    update.add_argument("--default-reply-url", help="replyUrl for tasks created without one ('' removes it)")

    sub.add_parser(
        "render", help="render one job offline from files (see 'callboard render --help')", add_help=False
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "render":
        from service.engine import cli as engine_cli

        return engine_cli.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        settings = settings_mod.load()
    except settings_mod.SettingsError as exc:
        print(f"callboard: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    handlers = {
        "serve": cmd_serve,
        "worker": cmd_worker,
        "migrate": cmd_migrate,
        "keys": cmd_keys,
        "accounts": cmd_accounts,
    }
    return handlers[args.command](settings, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
