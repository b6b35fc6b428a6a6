"""Shipments, their loggers and their signed decisions (rows in, dicts out). What the trip report and the
release checklist read about a shipment's alerts is in coldtrace/store/alerts.py (``shipment_alerts``,
``shipment_alarms``, ``events_with_actions``).

The rules (which state may follow which, who may sign) live in ``coldtrace.services.shipments``; this module only
reads and writes rows, inside the caller's transaction where one is given. Every statement is portable (SQLite
and PostgreSQL run the same text: docs/CONVENTIONS.md "Portable SQL").
"""

from __future__ import annotations

import sqlite3
from typing import Any

from coldtrace.core.errors import NotFound
from coldtrace.ports import ShipmentTick
from coldtrace.store.db import Database, add_equal_filters, conn_of

SHIPMENT_COLUMNS = ("id", "reference", "origin", "destination", "product", "lot", "profile_id", "state",
                    "start_ts", "end_ts", "created_at", "created_by", "updated_at")
MAX_PAGE = 500


def insert_shipment(c: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """A new shipment; False (nothing stored) when its id or reference exists already."""
    cols = [k for k in SHIPMENT_COLUMNS if k in row]
    return c.execute(f"INSERT INTO shipments ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
                     " ON CONFLICT DO NOTHING", tuple(row[k] for k in cols)).rowcount == 1


def update_shipment(c: sqlite3.Connection, shipment_id: str, **fields: Any) -> None:
    bad = set(fields) - set(SHIPMENT_COLUMNS)
    if bad:
        raise ValueError(f"unknown shipment fields {sorted(bad)}")
    sets = ", ".join(f"{k} = ?" for k in fields)
    c.execute(f"UPDATE shipments SET {sets} WHERE id = ?", (*fields.values(), shipment_id))


def get_shipment(db: Database | sqlite3.Connection, shipment_id: str) -> dict[str, Any]:
    row = conn_of(db).execute("SELECT * FROM shipments WHERE id = ?", (shipment_id,)).fetchone()
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
    rows = conn_of(db).execute(f"SELECT s.* FROM shipments s WHERE {' AND '.join(where)} ORDER BY s.id LIMIT ?",
                             tuple(params))
    return [dict(r) for r in rows]


def lot_shipments(db: Database | sqlite3.Connection, product: str, lot: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn_of(db).execute(
        "SELECT * FROM shipments WHERE product = ? AND lot = ? ORDER BY COALESCE(start_ts, created_at), id",
        (product, lot))]


def loggers(db: Database | sqlite3.Connection, shipment_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in conn_of(db).execute(
        "SELECT * FROM shipment_loggers WHERE shipment_id = ? ORDER BY device_id", (shipment_id,))]


def attach_logger(c: sqlite3.Connection, row: dict[str, Any]) -> bool:
    """Attach a logger; False (nothing changed) when it is attached to that shipment already."""
    return c.execute(
        "INSERT INTO shipment_loggers (shipment_id, device_id, start_ts, end_ts, attached_at, attached_by)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (shipment_id, device_id) DO NOTHING",
        (row["shipment_id"], row["device_id"], row["start_ts"], row["end_ts"], row["attached_at"],
         row["attached_by"])).rowcount == 1


def detach_logger(c: sqlite3.Connection, shipment_id: str, device_id: str) -> int:
    return c.execute("DELETE FROM shipment_loggers WHERE shipment_id = ? AND device_id = ?",
                     (shipment_id, device_id)).rowcount


def active_shipments_of_devices(db: Database, device_ids: list[str]) -> list[str]:
    if not device_ids:
        return []
    marks = ",".join("?" * len(device_ids))
    return [r[0] for r in conn_of(db).execute(
        f"SELECT DISTINCT s.id FROM shipments s JOIN shipment_loggers l ON l.shipment_id = s.id"
        f" WHERE s.state IN ('in_transit', 'delivered') AND l.device_id IN ({marks}) ORDER BY s.id",
        tuple(device_ids))]


def shipments_to_tick(db: Any) -> list[ShipmentTick]:
    """The shipments the clock re-evaluates: in transit or delivered, by id."""
    return [ShipmentTick(id=r[0], product=r[1], lot=r[2]) for r in conn_of(db).execute(
        "SELECT id, product, lot FROM shipments WHERE state IN ('in_transit', 'delivered') ORDER BY id")]


DECISION_COLUMNS = ("id", "shipment_id", "meaning", "reason", "signer_user_id", "signer_username", "printed_name",
                    "signed_at", "supersedes_id", "supersede_reason", "record_hash", "signature_hash")


def insert_decision(c: sqlite3.Connection, row: dict[str, Any]) -> None:
    c.execute(f"INSERT INTO shipment_decisions ({', '.join(DECISION_COLUMNS)}) VALUES"
              f" ({', '.join('?' * len(DECISION_COLUMNS))})", tuple(row[k] for k in DECISION_COLUMNS))


def decisions(db: Database | sqlite3.Connection, shipment_id: str) -> list[dict[str, Any]]:
    """All decisions of a shipment, oldest first; the last one is in force.

    Oldest first is by signing time and, within one millisecond, along the chain of supersessions (a decision
    supersedes the one in force when it was signed), so the order needs no row id (PostgreSQL has none)."""
    rows = [dict(r) for r in conn_of(db).execute(
        "SELECT * FROM shipment_decisions WHERE shipment_id = ? ORDER BY signed_at, id", (shipment_id,))]
    by_id = {r["id"]: r for r in rows}

    def depth(r: dict[str, Any]) -> int:
        n, seen = 0, {r["id"]}
        while r["supersedes_id"] in by_id and r["supersedes_id"] not in seen:
            r = by_id[r["supersedes_id"]]
            seen.add(r["id"])
            n += 1
        return n

    return sorted(rows, key=lambda r: (r["signed_at"], depth(r)))


