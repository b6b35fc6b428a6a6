"""`coldtrace user add|list|disable|enable|passwd`, `coldtrace token create|list|revoke`, `coldtrace audit
head|verify`, `coldtrace mqtt-config`: access set-up from the shell.

Secrets (tokens, generated MQTT passwords) are printed once; only their hashes are stored.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from coldtrace.core.clock import SystemClock
from coldtrace.core.errors import ConfigError
from coldtrace.core.model import DAY


def _db(args: argparse.Namespace):
    from coldtrace.settings import load_settings
    from coldtrace.store import open_store_database

    over: dict = {"data_dir": args.data_dir} if getattr(args, "data_dir", None) else {}
    settings = load_settings(**over)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"data directory {settings.data_dir} cannot be created: {exc.strerror}") from exc
    return settings, open_store_database(settings)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    pw = getpass.getpass("Password: ")
    if pw != getpass.getpass("Repeat password: "):
        raise ConfigError("the passwords differ")
    return pw


def cmd_user_add(args: argparse.Namespace) -> int:
    from coldtrace.services import auth

    _, db = _db(args)
    try:
        uid = auth.create_user(db, args.username, args.full_name, _password(args), args.role, actor="cli")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        db.close()
    print(f"user {args.username} ({args.role}) created: {uid}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from coldtrace.services import auth

    _, db = _db(args)
    now = SystemClock().now_ms()
    try:
        if args.device:
            token = auth.create_device_token(db, args.device, name=args.name, actor="cli", now_ms=now)
            what = f"device token for {', '.join(sorted(set(args.device)))}"
        else:
            if not args.role and not args.user:
                raise ConfigError("give --role (a service token), --user (a personal token) or --device")
            expires = None if args.expires_days <= 0 else now + int(args.expires_days * DAY)
            token = auth.create_token(db, user=args.user, role=args.role, name=args.name or "cli",
                                      expires=expires, actor="cli", now_ms=now)
            what = f"API token ({args.role or 'user role'})"
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        db.close()
    print(f"{what}, shown once:\n{token}")
    return 0


def cmd_mqtt_config(args: argparse.Namespace) -> int:
    from pathlib import Path

    from coldtrace.adapters import mqtt_access

    settings, db = _db(args)
    try:
        devices = set(args.device or [])
        if not args.no_registered:
            from coldtrace.store import auth as auth_store

            devices |= set(auth_store.registered_device_ids(db))
    finally:
        db.close()
    collector_user = settings.mqtt.username or mqtt_access.DEFAULT_COLLECTOR_USER
    collector_pw = settings.mqtt.password.get_secret_value() if settings.mqtt.password else None
    # the collector's client ids are reserved (and `<id>-*`, a shared-subscription fleet's instances)
    client_ids = [settings.mqtt.client_id, *(args.collector_client_id or [])]
    try:
        owner = mqtt_access.broker_owner(args.broker_user)
        cfg = mqtt_access.write_config(Path(args.out), sorted(devices), collector_user=collector_user,
                                       collector_password=collector_pw, rotate=args.rotate,
                                       collector_client_ids=client_ids, gateways=args.gateway or [],
                                       device_port=args.device_port, collector_port=args.collector_port,
                                       device_bind=args.device_bind, collector_bind=args.collector_bind,
                                       owner=owner)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"wrote {cfg.password_file}, {cfg.collector_password_file}, {cfg.acl_file} and {cfg.conf_file}"
          f" ({len(devices)} devices); include {cfg.conf_file.name} in mosquitto.conf. Devices connect to port"
          f" {args.device_port} (client id = user name), the collector to port {args.collector_port}"
          f" (COLDTRACE_MQTT__URL=mqtt://BROKER:{args.collector_port}).")
    if cfg.new_credentials:
        print("new MQTT credentials (username password), shown once:")
        for user, pw in cfg.new_credentials.items():
            print(f"  {user} {pw}")
        if collector_user in cfg.new_credentials:
            print(f"set COLDTRACE_MQTT__USERNAME={collector_user} and COLDTRACE_MQTT__PASSWORD for the collector")
    return 0


def _fmt_ms(ms: int | None) -> str:
    from coldtrace.core.clock import to_iso

    return "-" if ms is None else (to_iso(ms) or "-")[:19].replace("T", " ") + "Z"


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())


def cmd_user_list(args: argparse.Namespace) -> int:
    from coldtrace.services import auth

    _, db = _db(args)
    try:
        users = auth.list_users(db)
    finally:
        db.close()
    if args.json:
        import json

        print(json.dumps(users, indent=2))
        return 0
    if not users:
        print("no users (create one with `coldtrace user add`)")
        return 0
    _table([[u["username"], u["full_name"], u["role"], "active" if u["active"] else "disabled",
             _fmt_ms(u["created_at"])] for u in users], ["USERNAME", "FULL NAME", "ROLE", "STATE", "CREATED"])
    return 0


def _user_row(db, username: str):
    from coldtrace.services import auth

    row = auth.find_user(db, username)
    if row is None:
        raise ConfigError(f"no user {username!r} (see `coldtrace user list`)")
    return row


def _cmd_user_active(args: argparse.Namespace, active: bool) -> int:
    from coldtrace.core.errors import NotFound
    from coldtrace.services import auth

    _, db = _db(args)
    try:
        changed = auth.set_user_active(db, args.username, active, actor="cli", now_ms=SystemClock().now_ms())
    except NotFound:
        raise ConfigError(f"no user {args.username!r} (see `coldtrace user list`)") from None
    except auth.LastAdmin as exc:
        raise ConfigError(str(exc)) from None
    finally:
        db.close()
    state = "enabled" if active else "disabled"
    print(f"user {args.username} {state}" if changed else f"user {args.username} was already {state}")
    return 0


def cmd_user_disable(args: argparse.Namespace) -> int:
    return _cmd_user_active(args, False)


def cmd_user_enable(args: argparse.Namespace) -> int:
    return _cmd_user_active(args, True)


def cmd_user_passwd(args: argparse.Namespace) -> int:
    from coldtrace.services import auth

    _, db = _db(args)
    try:
        row = _user_row(db, args.username)
        auth.set_password(db, row["id"], _password(args), actor="cli")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        db.close()
    print(f"password of {args.username} changed; their open sessions were ended")
    return 0


def list_all_tokens(db) -> list[dict]:
    """API tokens and device tokens, with whom or what each is for (never the secret: only hashes exist)."""
    from coldtrace.services import auth

    return [dict(t) for t in auth.list_all_tokens(db)]


def _token_state(t: dict, now: int) -> str:
    if t["revoked_at"] is not None:
        return "revoked"
    if t["expires_at"] is not None and t["expires_at"] <= now:
        return "expired"
    return "active"


def cmd_token_list(args: argparse.Namespace) -> int:
    _, db = _db(args)
    try:
        tokens = list_all_tokens(db)
    finally:
        db.close()
    now = SystemClock().now_ms()
    for t in tokens:
        t["state"] = _token_state(t, now)
    if not args.all:
        tokens = [t for t in tokens if t["state"] == "active"]
    if args.json:
        import json

        print(json.dumps(tokens, indent=2))
        return 0
    if not tokens:
        print("no active tokens" + ("" if args.all else " (--all shows revoked and expired ones)"))
        return 0
    _table([[t["id"], t["kind"], t["name"][:40], t["user"] or (",".join(t["devices"] or [])[:40]) or "-", t["role"],
             t["state"], _fmt_ms(t["expires_at"]), _fmt_ms(t["last_used_at"])] for t in tokens],
           ["ID", "KIND", "NAME", "USER/DEVICES", "ROLE", "STATE", "EXPIRES", "LAST USED"])
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from coldtrace.core.errors import NotFound
    from coldtrace.services import auth

    _, db = _db(args)
    try:
        for tid in args.token_id:
            try:
                auth.revoke_token(db, tid, actor="cli")
            except NotFound:
                raise ConfigError(f"no active token {tid} (see `coldtrace token list --all`)") from None
            print(f"token {tid} revoked")
    finally:
        db.close()
    return 0


def add_commands(sub) -> None:
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="create a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--full-name", required=True, help="printed on electronic signatures")
    add.add_argument("--role", required=True, choices=["viewer", "qa", "admin"])
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--data-dir")
    add.set_defaults(handler=cmd_user_add)
    ls = user.add_parser("list", help="list users (username, full name, role, active or disabled)")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--data-dir")
    ls.set_defaults(handler=cmd_user_list)
    for name, handler, text in (("disable", cmd_user_disable, "disable a user: no login, sessions ended, their"
                                 " tokens stop working (audited)"),
                                ("enable", cmd_user_enable, "enable a disabled user again (audited)")):
        p = user.add_parser(name, help=text)
        p.add_argument("username")
        p.add_argument("--data-dir")
        p.set_defaults(handler=handler)
    pw = user.add_parser("passwd", help="set a user's password (asks for it); ends their sessions")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    pw.add_argument("--data-dir")
    pw.set_defaults(handler=cmd_user_passwd)

    tok = sub.add_parser("token", help="API and device tokens").add_subparsers(dest="token_command", required=True)
    create = tok.add_parser("create", help="create a token (printed once)")
    create.add_argument("--role", choices=["viewer", "qa", "admin"], help="service token role")
    create.add_argument("--user", help="username: a personal token (role defaults to the user's)")
    create.add_argument("--device", action="append", help="a device token bound to this device (repeatable)")
    create.add_argument("--name", help="what the token is for")
    create.add_argument("--expires-days", type=float, default=90.0, help="0: never (default 90)")
    create.add_argument("--data-dir")
    create.set_defaults(handler=cmd_token_create)
    tl = tok.add_parser("list", help="API and device tokens: id, name, owner, role, state (never the secret)")
    tl.add_argument("--all", action="store_true", help="also revoked and expired tokens")
    tl.add_argument("--json", action="store_true")
    tl.add_argument("--data-dir")
    tl.set_defaults(handler=cmd_token_list)
    rv = tok.add_parser("revoke", help="revoke tokens by id (see `token list`); audited")
    rv.add_argument("token_id", nargs="+")
    rv.add_argument("--data-dir")
    rv.set_defaults(handler=cmd_token_revoke)

    au = sub.add_parser("audit", help="the audit trail").add_subparsers(dest="audit_command", required=True)
    hd = au.add_parser("head", help="print the newest record as ID:HASH (keep it outside ColdTrace)")
    hd.add_argument("--data-dir")
    hd.set_defaults(handler=cmd_audit_head)
    vf = au.add_parser("verify", help="walk the hash chain; name the first record that no longer matches")
    vf.add_argument("--known-head", help="ID:HASH kept from an earlier `coldtrace audit head`")
    vf.add_argument("--heads", help="signed head file (default: COLDTRACE_AUDIT__HEAD_FILE or"
                    " <data-dir>/audit-heads.jsonl)")
    vf.add_argument("--public-key", help="PEM public key that checks the heads (default: the data directory's)")
    vf.add_argument("--data-dir")
    vf.set_defaults(handler=cmd_audit_verify)

    ex = au.add_parser("export-head", help="append the signed head to the head file now (the collector does it"
                       " on its clock tick; this is for cron when only the API runs)")
    ex.add_argument("--data-dir")
    ex.set_defaults(handler=cmd_audit_export_head)

    mq = sub.add_parser("mqtt-config", help="write Mosquitto password file + ACL: devices write only their topics")
    mq.add_argument("--out", required=True, help="directory for passwd, acl, coldtrace.conf")
    mq.add_argument("--device", action="append", help="a device id (repeatable); registered devices are added")
    mq.add_argument("--no-registered", action="store_true", help="only the --device ids")
    mq.add_argument("--rotate", action="append", help="give this user a new password (repeatable)")
    mq.add_argument("--gateway", action="append", help="a gateway user publishing for any device (repeatable)")
    mq.add_argument("--collector-client-id", action="append",
                    help="another client id of the collector to reserve (the configured one always is)")
    mq.add_argument("--device-port", type=int, default=1883, help="listener of devices and gateways (1883)")
    mq.add_argument("--collector-port", type=int, default=1884, help="listener of the collector only (1884)")
    mq.add_argument("--device-bind", help="address the device listener binds (default: all)")
    mq.add_argument("--collector-bind", help="address the collector listener binds (default: all; prefer internal)")
    mq.add_argument("--broker-user", default=None,
                    help="as root: give the password files and the ACL (0600) to this system user, the one"
                         " Mosquitto drops to (default: mosquitto, if it exists; '' keeps them root's)")
    mq.add_argument("--data-dir")
    mq.set_defaults(handler=cmd_mqtt_config)


def cmd_audit_head(args: argparse.Namespace) -> int:
    from coldtrace.services import audit

    _, db = _db(args)
    rid, h = audit.head(db)
    print(f"{rid}:{h}")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from coldtrace.services import audit, audit_anchor, audit_keys

    settings, db = _db(args)
    known = audit.parse_head(args.known_head) if args.known_head else None
    pub = audit_keys.load_public_key(Path(args.public_key).read_bytes()) if args.public_key else None
    try:
        result = audit_anchor.verify(db, settings, known_head=known, public_key=pub,
                                     heads_path=Path(args.heads) if args.heads else None)
    finally:
        db.close()
    if result.ok:
        print(f"audit trail intact: {result.checked} records, head {result.head_hash}"
              f" ({result.heads_checked} signed/kept heads matched; keyed from record {result.keyed_from},"
              f" key {result.key_id})")
        return 0
    print(f"audit trail BROKEN at record {result.first_bad_id}: {result.problem}")
    return 1


def cmd_audit_export_head(args: argparse.Namespace) -> int:
    from coldtrace.services import audit_anchor

    settings, db = _db(args)
    try:
        rec = audit_anchor.HeadExporter(db, settings).export(SystemClock().now_ms(), force=True)
    finally:
        db.close()
    where = audit_anchor.head_file(settings)
    print(f"exported head {rec['id']}:{rec['hash']} to {where}" if rec else f"the head is already in {where}")
    return 0
