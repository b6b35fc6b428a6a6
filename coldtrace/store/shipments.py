"""SQLite access for shipments, their loggers and their signed decisions (rows in, dicts out).

The rules (which state may follow which, who may sign) live in ``coldtrace.services.shipments``; this module only
reads and writes rows, inside the caller's transaction where one is given.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from coldtrace.core.errors import NotFound
from coldtrace.store.db import Database, add_equal_filters

SHIPMENT_COLUMNS = ("id", "reference", "origin", "destination", "product", "lot", "profile_id", "state",
                    "start_ts", "end_ts", "created_at", "created_by", "updated_at")
MAX_PAGE = 500


def insert_shipment(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    cols = [k for k in SHIPMENT_COLUMNS if k in row]
    c.execute(f"INSERT INTO shipments ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
              tuple(row[k] for k in cols))


def update_shipment(c: sqlite3.Connection, shipment_id: str, **fields: Any) -> None:
    bad = set(fields) - set(SHIPMENT_COLUMNS)
    if bad:
        raise ValueError(f"unknown shipment fields {sorted(bad)}")
    sets = ", ".join(f"{k} = ?" for k in fields)
    c.execute(f"UPDATE shipments SET {sets} WHERE id = ?", (*fields.values(), shipment_id))


def get_shipment(db: Database | sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    conn = db.conn() if isinstance(db, Database) else db
    row = conn.execute("SELECT * FROM shipments WHERE id = ?", (shipment_id,)).fetchone()
    if row is None:
        raise NotFound(f"no shipment {shipment_id}")
    return dict(row)


def list_shipments(db: Database, *, state: str | None = None, product: str | None = None,
                   lot: str | None = None, device_id: str | None = None, after: str | None = None,
                   limit: int = 100) -> list[dict[str, Any]]:
    """Shipments by id, keyset-paginated with ``after`` (stable while others insert)."""
    where, params = ["1 = 1"], []
    if after:
        where.append("s.id > ?")
        params.append(after)
    add_equal_filters(where, params, (("s.state", state), ("s.product", product), ("s.lot", lot)))
    if device_id is not None:
        where.append("EXISTS (SELECT 1 FROM shipment_loggers l WHERE l.shipment_id = s.id AND l.device_id = ?)")
        params.append(device_id)
    params.append(max(1, min(int(limit), MAX_PAGE)))
    rows = db.query(f"SELECT s.* FROM shipments s WHERE {' AND '.join(where)} ORDER BY s.id LIMIT ?",
                    tuple(params))
    return [dict(r) for r in rows]


def lot_shipments(db: Database | sqlite3.Connection, product: str, lot: str) -> list[dict[str, Any]]:
    conn = db.conn() if isinstance(db, Database) else db
    return [dict(r) for r in conn.execute(
        "SELECT * FROM shipments WHERE product = ? AND lot = ? ORDER BY COALESCE(start_ts, created_at), id",
        (product, lot))]


def loggers(db: Database | sqlite3.Connection, shipment_id: str) -> list[dict[str, Any]]:
    conn = db.conn() if isinstance(db, Database) else db
    return [dict(r) for r in conn.execute(
        "SELECT * FROM shipment_loggers WHERE shipment_id = ? ORDER BY device_id", (shipment_id,))]


def attach_logger(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    c.execute("INSERT INTO shipment_loggers (shipment_id, device_id, start_ts, end_ts, attached_at, attached_by)"
              " VALUES (:shipment_id, :device_id, :start_ts, :end_ts, :attached_at, :attached_by)", row)


def detach_logger(c: sqlite3.Connection, shipment_id: str, device_id: str) -> int:
    return c.execute("DELETE FROM shipment_loggers WHERE shipment_id = ? AND device_id = ?",
                     (shipment_id, device_id)).rowcount


def active_shipments_of_devices(db: Database, device_ids: list[str]) -> list[str]:
    if not device_ids:
        return []
    marks = ",".join("?" * len(device_ids))
    return [r[0] for r in db.query(
        f"SELECT DISTINCT s.id FROM shipments s JOIN shipment_loggers l ON l.shipment_id = s.id"
        f" WHERE s.state IN ('in_transit', 'delivered') AND l.device_id IN ({marks})", tuple(device_ids))]


def insert_decision(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    c.execute("INSERT INTO shipment_decisions (id, shipment_id, meaning, reason, signer_user_id, signer_username,"
              " printed_name, signed_at, supersedes_id, supersede_reason, record_hash, signature_hash) VALUES"
              " (:id, :shipment_id, :meaning, :reason, :signer_user_id, :signer_username, :printed_name,"
              " :signed_at, :supersedes_id, :supersede_reason, :record_hash, :signature_hash)", row)


def decisions(db: Database | sqlite3.Connection, shipment_id: str) -> list[dict[str, Any]]:
    """All decisions of a shipment, oldest first; the last one is in force."""
    conn = db.conn() if isinstance(db, Database) else db
    return [dict(r) for r in conn.execute(
        "SELECT * FROM shipment_decisions WHERE shipment_id = ? ORDER BY signed_at, rowid", (shipment_id,))]


def shipment_alerts(db: Database, shipment_id: str, device_windows: list[tuple[str, int, int]],
                    limit: int = 1000) -> list[dict[str, Any]]:
    """Alerts of a shipment: those raised for it, and its loggers' alerts inside their windows."""
    clauses, params = ["shipment_id = ?"], [shipment_id]
    for dev, start, end in device_windows:
        clauses.append("(device_id = ? AND ts >= ? AND ts < ?)")
        params.extend([dev, start, end])
    params.append(limit)
    return [dict(r) for r in db.query(
        f"SELECT * FROM alerts WHERE {' OR '.join(clauses)} ORDER BY ts, id LIMIT ?", tuple(params))]
