"""SQL of webhook subscriptions, deliveries and attempts (migration 0200_webhooks.sql).

The notifier and the API share these functions; all state changes are single transactions so a process
killed at any point leaves either the old or the new state, never half of one.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from coldtrace.core.errors import NotFound
from coldtrace.core.subscriptions import matches
from coldtrace.store.cluster import row_locked_write, skip_locked
from coldtrace.store.db import Database, add_equal_filters

log = logging.getLogger(__name__)

SUBSCRIPTION_PUBLIC = ("id, url, description, event_types, min_severity, device_ids, enabled, escalation,"
                       " disabled_reason, created_at, created_by, updated_at, previous_expires_at")


def _sub_dict(r: sqlite3.Row) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {
        "id": r["id"], "url": r["url"], "description": r["description"],
        "event_types": json.loads(r["event_types"]), "min_severity": r["min_severity"],
        "device_ids": json.loads(r["device_ids"]), "enabled": bool(r["enabled"]),
        "escalation": bool(r["escalation"]), "disabled_reason": r["disabled_reason"],
        "created_at": r["created_at"], "created_by": r["created_by"], "updated_at": r["updated_at"],
        "rotation_expires_at": r["previous_expires_at"],
    }


def create_subscription(db: Database, *, url: str, secret: str, now: int, event_types: list[str] | None = None,
                        min_severity: str | None = None, device_ids: list[str] | None = None,
                        enabled: bool = True, escalation: bool = False, description: str = "",
                        created_by: str | None = None) -> dict[str, Any]:
    sid = "whsub_" + uuid.uuid4().hex[:20]
    with db.write() as c:
        c.execute(
            "INSERT INTO webhook_subscriptions (id, url, description, secret, event_types, min_severity,"
            " device_ids, enabled, escalation, created_at, created_by, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (sid, url, description, secret, json.dumps(list(event_types or [])), min_severity,
             json.dumps(list(device_ids or [])), int(enabled), int(escalation), now, created_by, now))
    return get_subscription(db, sid)


def get_subscription(db: Database, sid: str) -> dict[str, Any]:
    r = db.query_one(f"SELECT {SUBSCRIPTION_PUBLIC} FROM webhook_subscriptions WHERE id = ?", (sid,))
    if r is None:
        raise NotFound(f"no webhook subscription {sid}")
    return _sub_dict(r)


def list_subscriptions(db: Database) -> list[dict[str, Any]]:
    return [_sub_dict(r) for r in db.query(
        f"SELECT {SUBSCRIPTION_PUBLIC} FROM webhook_subscriptions ORDER BY created_at, id")]


_UPDATABLE = {"url", "description", "event_types", "min_severity", "device_ids", "escalation"}


def update_subscription(db: Database, sid: str, changes: dict[str, Any], now: int) -> dict[str, Any]:
    """Change filters, URL, description or escalation flag; ``enabled`` goes through set_enabled."""
    sets, params = [], []
    for k, v in changes.items():
        if k not in _UPDATABLE:
            continue
        if k in ("event_types", "device_ids"):
            v = json.dumps(list(v or []))
        elif k == "escalation":
            v = int(bool(v))
        sets.append(f"{k} = ?")
        params.append(v)
    with db.write() as c:
        if c.execute("SELECT 1 FROM webhook_subscriptions WHERE id = ?", (sid,)).fetchone() is None:
            raise NotFound(f"no webhook subscription {sid}")
        if sets:
            c.execute(f"UPDATE webhook_subscriptions SET {', '.join(sets)}, updated_at = ? WHERE id = ?",
                      (*params, now, sid))
        if "enabled" in changes:
            _set_enabled(c, sid, bool(changes["enabled"]), None, now)
    return get_subscription(db, sid)


def _set_enabled(c: sqlite3.Connection, sid: str, enabled: bool, reason: str | None, now: int) -> None:
    c.execute("UPDATE webhook_subscriptions SET enabled = ?, disabled_reason = ?, updated_at = ? WHERE id = ?",
              (int(enabled), None if enabled else reason, now, sid))
    if enabled:  # deliveries held while disabled resume now: nothing is lost by a pause
        c.execute("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ? WHERE subscription_id = ?"
                  " AND state = 'disabled'", (now, sid))
    else:
        c.execute("UPDATE webhook_deliveries SET state = 'disabled', next_attempt_at = NULL"
                  " WHERE subscription_id = ? AND state = 'pending'", (sid,))


def set_enabled(db: Database, sid: str, enabled: bool, now: int, reason: str | None = None) -> dict[str, Any]:
    with db.write() as c:
        if c.execute("SELECT 1 FROM webhook_subscriptions WHERE id = ?", (sid,)).fetchone() is None:
            raise NotFound(f"no webhook subscription {sid}")
        _set_enabled(c, sid, enabled, reason, now)
    return get_subscription(db, sid)


def delete_subscription(db: Database, sid: str) -> None:
    with db.write() as c:
        if c.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (sid,)).rowcount == 0:
            raise NotFound(f"no webhook subscription {sid}")


def rotate_secret(db: Database, sid: str, new_secret: str, now: int, overlap_ms: int) -> dict[str, Any]:
    """New secret now; the old one keeps signing (a second signature) until now + overlap_ms."""
    with db.write() as c:
        cur = c.execute("UPDATE webhook_subscriptions SET previous_secret = secret, previous_expires_at = ?,"
                        " secret = ?, updated_at = ? WHERE id = ?", (now + overlap_ms, new_secret, now, sid))
        if cur.rowcount == 0:
            raise NotFound(f"no webhook subscription {sid}")
    return get_subscription(db, sid)


def signing_secrets(row: sqlite3.Row | dict[str, Any], now: int) -> list[str]:
    out = [row["secret"]]
    if row["previous_secret"] and (row["previous_expires_at"] or 0) > now:
        out.append(row["previous_secret"])
    return out


# ---------------------------------------------------------------- events and fan-out


OUTBOX_INSERT_SQL = ("INSERT INTO outbox (event_id, type, alert_id, payload, created_at)"
                     " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")  # the pipeline's, per alert


def insert_event(c: sqlite3.Connection, event_id: str, event_type: str, payload: str, now: int,
                 alert_id: str | None = None, dispatched: bool = False) -> bool:
    """An outbox row written by ColdTrace itself (escalations, acknowledgements, pings). Caller's txn."""
    cur = c.execute("INSERT INTO outbox (event_id, type, alert_id, payload, created_at, dispatched)"
                    " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (event_id, event_type, alert_id, payload, now, int(dispatched)))
    return cur.rowcount == 1


def _event_facts(c: sqlite3.Connection, row: sqlite3.Row) -> tuple[str | None, str | None]:
    """(severity, device_id) of an outbox event, from its body (alerts may not be in `alerts`)."""
    try:
        data = json.loads(row["payload"]).get("data") or {}
    except (ValueError, AttributeError):
        data = {}
    return data.get("severity"), data.get("device_id")


def wants(sub: sqlite3.Row, event_type: str, severity: str | None, device_id: str | None) -> bool:
    """Escalation subscriptions get alert.escalated (plus any type they list); others never get it unless
    they list it. Then the type/severity/device filters apply."""
    types = json.loads(sub["event_types"])
    if event_type == "alert.escalated":
        if not sub["escalation"] and "alert.escalated" not in types:
            return False
        types = []  # the escalation flag is the type filter
    elif sub["escalation"] and not types:
        return False
    filters = {"event_types": types, "min_severity": sub["min_severity"], "device_ids": json.loads(sub["device_ids"])}
    return matches(filters, event_type, severity, device_id)


def fan_out(db: Database, now: int, limit: int = 500) -> int:
    """Turn undispatched outbox rows into one delivery per matching enabled subscription, in one transaction.

    A crash before COMMIT leaves the rows undispatched (done again, UNIQUE makes it harmless); after COMMIT
    every delivery exists. Returns the number of events dispatched.
    """
    with db.write() as c:
        events = c.execute("SELECT event_id, type, payload FROM outbox WHERE dispatched = 0"
                           " ORDER BY created_at, event_id LIMIT ?", (limit,)).fetchall()
        if not events:
            return 0
        subs = c.execute("SELECT * FROM webhook_subscriptions WHERE enabled = 1").fetchall()
        for ev in events:
            severity, device_id = _event_facts(c, ev)
            for s in subs:
                if wants(s, ev["type"], severity, device_id):
                    c.execute("INSERT INTO webhook_deliveries (subscription_id, event_id, event_type,"
                              " state, next_attempt_at, created_at) VALUES (?,?,?,'pending',?,?)"
                              " ON CONFLICT DO NOTHING",
                              (s["id"], ev["event_id"], ev["type"], now, now))
        c.executemany("UPDATE outbox SET dispatched = 1 WHERE event_id = ?", [(e["event_id"],) for e in events])
    return len(events)


def add_delivery(c: sqlite3.Connection, sid: str, event_id: str, event_type: str, due_at: int) -> int:
    """One delivery made by hand (a ping), due at ``due_at``. Caller's transaction."""
    c.execute("INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, state,"
              " next_attempt_at, created_at) VALUES (?,?,?,'pending',?,?) ON CONFLICT DO NOTHING",
              (sid, event_id, event_type, due_at, due_at))
    return c.execute("SELECT id FROM webhook_deliveries WHERE subscription_id = ? AND event_id = ?",
                     (sid, event_id)).fetchone()[0]


# ---------------------------------------------------------------- delivery jobs


@dataclass(frozen=True, slots=True)
class Job:
    delivery_id: int
    subscription_id: str
    url: str
    secrets: tuple[str, ...]
    event_id: str
    event_type: str
    payload: str
    attempts: int  # attempts already made
    holder: str | None = None  # the notifier whose lease this attempt is under (None: a ping, sent at once)


_JOB_SQL = ("SELECT d.id, d.subscription_id, d.event_id, d.event_type, d.attempts, s.url, s.secret,"
            " s.previous_secret, s.previous_expires_at, o.payload FROM webhook_deliveries d"
            " JOIN webhook_subscriptions s ON s.id = d.subscription_id JOIN outbox o ON o.event_id = d.event_id")


def _job(r: sqlite3.Row, now: int, holder: str | None = None) -> Job:
    return Job(r["id"], r["subscription_id"], r["url"], tuple(signing_secrets(r, now)), r["event_id"],
               r["event_type"], r["payload"], r["attempts"], holder)


def claim_due_lanes(db: Database, now: int, lease_ms: int, lane_capacity: int, in_flight: Mapping[str, int],
                    limit: int = 200, running: Collection[int] = (), holder: str = "notifier") -> list[Job]:
    """Claim due deliveries lane by lane: for each subscription at most ``lane_capacity`` minus what is in
    flight to it already (here, ``in_flight``, and under other notifiers' unexpired leases), oldest first
    within the lane, ``limit`` in all; each leased to ``holder`` for ``lease_ms``.

    A full lane (a receiver hanging until the timeout) gets nothing, so its backlog cannot fill the claim and
    hold back another subscription's deliveries. ``running``: delivery ids this process is still sending
    (a receiver trickling its answer can outlast the lease); they are never claimed twice.

    Several notifiers (processes, machines) claim side by side: a claim pushes ``next_attempt_at`` to the
    lease's end, so a claimed delivery is not due for anyone else until the lease has expired (its holder
    was killed). On PostgreSQL the claim locks the rows it takes ``FOR UPDATE SKIP LOCKED`` outside the
    cluster-wide write lock: two notifiers claiming at the same instant each take other rows, never the same
    one twice. On SQLite the write transaction already excludes every other writer."""
    full = [sid for sid, n in in_flight.items() if n >= lane_capacity]
    skip = f" AND d.subscription_id NOT IN ({','.join('?' * len(full))})" if full else ""
    ranked = _JOB_SQL.replace("SELECT ", "SELECT ROW_NUMBER() OVER (PARTITION BY d.subscription_id ORDER BY"
                              " d.next_attempt_at, d.id) AS lane_rank, d.next_attempt_at AS due_at, ", 1)
    with row_locked_write(db) as c:
        rows = c.execute(
            "SELECT * FROM (" + ranked + " WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND s.enabled = 1"
            + skip + ") AS lanes WHERE lane_rank <= ? ORDER BY due_at, id",
            (now, *full, 2 * lane_capacity)).fetchall()
        if not rows:
            return []
        others = {r[0]: r[1] for r in c.execute(
            "SELECT subscription_id, COUNT(*) FROM webhook_deliveries WHERE state = 'pending'"
            " AND lease_expires_at > ? AND lease_holder <> ? GROUP BY subscription_id", (now, holder))}
        room = {r["subscription_id"]: lane_capacity - in_flight.get(r["subscription_id"], 0)
                - others.get(r["subscription_id"], 0) for r in rows}
        chosen = []
        for r in rows:
            if len(chosen) >= limit:
                break
            if r["id"] in running or room[r["subscription_id"]] <= 0:
                continue
            room[r["subscription_id"]] -= 1
            chosen.append(r)
        if not chosen:
            return []
        # lock what was chosen, still due (another notifier may have claimed some since the read above)
        got = {r[0] for r in c.execute(
            f"SELECT id FROM webhook_deliveries WHERE id IN ({','.join('?' * len(chosen))}) AND state = 'pending'"
            " AND next_attempt_at <= ?" + skip_locked(db), (*(r["id"] for r in chosen), now))}
        chosen = [r for r in chosen if r["id"] in got]
        c.executemany("UPDATE webhook_deliveries SET next_attempt_at = ?, lease_holder = ?, lease_expires_at = ?"
                      " WHERE id = ?", [(now + lease_ms, holder, now + lease_ms, r["id"]) for r in chosen])
    return [_job(r, now, holder) for r in chosen]


def job_for(db: Database, delivery_id: int, now: int) -> Job:
    r = db.query_one(_JOB_SQL + " WHERE d.id = ?", (delivery_id,))
    if r is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return _job(r, now)


def next_due(db: Database, exclude: Collection[str] = ()) -> int | None:
    """The earliest due time of a pending delivery, leaving out the subscriptions in ``exclude``."""
    skip = f" AND subscription_id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    r = db.query_one("SELECT MIN(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending'" + skip,
                     tuple(exclude))
    return None if r is None else r[0]


def record_attempt(db: Database, job: Job, *, started_at: int, status: int | None, latency_ms: int,
                   error: str | None, response: str | None, outcome: str, next_attempt_at: int | None,
                   trigger: str = "scheduled", now: int, sent_by: str | None = None) -> bool:
    """One attempt and its consequence, atomically. ``outcome``: delivered | retry | failed | gone.

    The attempt is always recorded (it happened). Its consequence is applied only while ``job.holder`` still
    holds the delivery's lease: a notifier that outlived its lease (a process paused for longer than the
    lease) finds another notifier's lease and leaves the delivery's state to it. Returns False then."""
    if outcome not in ("delivered", "retry", "failed", "gone"):
        raise ValueError(f"unknown outcome {outcome!r}")
    with db.write() as c:
        r = c.execute("SELECT attempts, lease_holder FROM webhook_deliveries WHERE id = ?",
                      (job.delivery_id,)).fetchone()
        if r is None:  # deleted with its subscription meanwhile
            return False
        n = r[0] + 1
        c.execute("INSERT INTO webhook_attempts (delivery_id, attempt_no, trigger, started_at, status, latency_ms,"
                  " error, response, sent_by) VALUES (?,?,?,?,?,?,?,?,?)",
                  (job.delivery_id, n, trigger, started_at, status, latency_ms, error, response,
                   sent_by or job.holder))
        if job.holder is not None and r[1] != job.holder:
            c.execute("UPDATE webhook_deliveries SET attempts = ? WHERE id = ?", (n, job.delivery_id))
            log.warning("delivery %d: the lease of %s was taken over by %s during its attempt; the outcome"
                        " (%s) is left to the new holder", job.delivery_id, job.holder, r[1], outcome)
            return False
        free = ", lease_holder = NULL, lease_expires_at = NULL"
        if outcome == "delivered":
            c.execute("UPDATE webhook_deliveries SET state = 'delivered', attempts = ?, delivered_at = ?,"
                      " next_attempt_at = NULL, last_status = ?, last_error = NULL" + free + " WHERE id = ?",
                      (n, now, status, job.delivery_id))
        elif outcome == "retry":
            c.execute("UPDATE webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?" + free
                      + " WHERE id = ?", (n, status, error, job.delivery_id))
            c.execute("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ? WHERE id = ?"
                      " AND state != 'disabled'", (next_attempt_at, job.delivery_id))
        elif outcome == "failed":
            c.execute("UPDATE webhook_deliveries SET state = 'failed', attempts = ?, next_attempt_at = NULL,"
                      " last_status = ?, last_error = ?" + free + " WHERE id = ?", (n, status, error, job.delivery_id))
        else:  # gone
            c.execute("UPDATE webhook_deliveries SET attempts = ?, last_status = ?, last_error = ?" + free
                      + " WHERE id = ?", (n, status, error, job.delivery_id))
            _set_enabled(c, job.subscription_id, False, "receiver answered 410 Gone", now)
    return True


def redeliver(db: Database, delivery_id: int, now: int) -> dict[str, Any]:
    """Manual redelivery: the same event (same webhook-id) is sent again at once, whatever its state."""
    with db.write() as c:
        cur = c.execute("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ? WHERE id = ?",
                        (now, delivery_id))
        if cur.rowcount == 0:
            raise NotFound(f"no webhook delivery {delivery_id}")
    return get_delivery(db, delivery_id)


# ---------------------------------------------------------------- listings


def _delivery_dict(r: sqlite3.Row) -> dict[str, Any]:
    return {k: r[k] for k in ("id", "subscription_id", "event_id", "event_type", "state", "attempts",
                              "next_attempt_at", "created_at", "delivered_at", "last_status", "last_error")}


def get_delivery(db: Database, delivery_id: int) -> dict[str, Any]:
    r = db.query_one("SELECT * FROM webhook_deliveries WHERE id = ?", (delivery_id,))
    if r is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    return _delivery_dict(r)


def list_deliveries(db: Database, subscription_id: str | None = None, state: str | None = None,
                    event_id: str | None = None, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    where, params = [], []
    add_equal_filters(where, params, (("subscription_id", subscription_id), ("state", state),
                                      ("event_id", event_id)))
    sql = "SELECT * FROM webhook_deliveries"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
    return [_delivery_dict(r) for r in db.query(sql, (*params, limit, offset))]


def list_attempts(db: Database, delivery_id: int) -> list[dict[str, Any]]:
    get_delivery(db, delivery_id)
    return [dict(r) for r in db.query("SELECT id, delivery_id, attempt_no, trigger, started_at, status,"
                                      " latency_ms, error, response FROM webhook_attempts WHERE delivery_id = ?"
                                      " ORDER BY attempt_no", (delivery_id,))]
