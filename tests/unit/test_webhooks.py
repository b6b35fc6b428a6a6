"""Pure webhook functions: bodies, Standard Webhooks signatures, retries, Retry-After, target safety (no
traffic: resolvers are stubs and check_target only judges addresses)."""

from __future__ import annotations

import base64
import ipaddress
import json
import random

import pytest

from coldtrace.core.errors import ConfigError
from coldtrace.core.model import HOUR, MINUTE, Alert
from coldtrace.core.subscriptions import matches
from coldtrace.services import webhooks as wh
from coldtrace.settings import load_settings

# The Standard Webhooks specification's own test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TS = 1614265330
SPEC_BODY = '{"test": 2432232314}'
SPEC_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _alert(**kw) -> Alert:
    d = dict(id="alert_1", type="excursion.alarm", severity="alarm", device_id="LOG-0001",
             ts=1_795_687_200_000, data={"limit_id": "high", "peak_c": 9.1}, shipment_id="SHP-1",
             excursion_id="exc_1")
    d.update(kw)
    return Alert(**d)


def test_sign_matches_the_specification_vector():
    assert wh.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY) == SPEC_SIG
    assert wh.sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY.encode()) == SPEC_SIG


def test_verify_accepts_good_and_refuses_tampered_old_or_foreign():
    h = wh.signed_headers([SPEC_SECRET], SPEC_ID, SPEC_TS, SPEC_BODY)
    assert h["webhook-signature"] == SPEC_SIG
    wh.verify(SPEC_SECRET, h, SPEC_BODY, now_s=SPEC_TS + 10)
    with pytest.raises(wh.SignatureError):
        wh.verify(SPEC_SECRET, h, SPEC_BODY.replace("2", "3"), now_s=SPEC_TS)
    with pytest.raises(wh.SignatureError):
        wh.verify(SPEC_SECRET, h, SPEC_BODY, now_s=SPEC_TS + 301)
    with pytest.raises(wh.SignatureError):
        wh.verify(wh.generate_secret(), h, SPEC_BODY, now_s=SPEC_TS)
    with pytest.raises(wh.SignatureError):
        wh.verify(SPEC_SECRET, {"webhook-id": SPEC_ID}, SPEC_BODY, now_s=SPEC_TS)


def test_rotation_sends_two_signatures_each_verifiable_by_its_own_secret():
    old, new = wh.generate_secret(), wh.generate_secret()
    h = wh.signed_headers([new, old], "msg_x", 1000, b"{}")
    assert len(h["webhook-signature"].split(" ")) == 2
    wh.verify(old, h, b"{}", now_s=1000)
    wh.verify(new, h, b"{}", now_s=1000)


@pytest.mark.parametrize("n", [24, 32, 64])
def test_generated_secrets_have_the_prefix_and_the_size(n):
    s = wh.generate_secret(n)
    assert s.startswith("whsec_")
    assert len(base64.b64decode(s[6:])) == n
    assert wh.secret_key(s) == base64.b64decode(s[6:])
    assert wh.generate_secret(n) != s


@pytest.mark.parametrize("bad", ["nope", "whsec_!!!", "whsec_" + base64.b64encode(b"x" * 8).decode(),
                                 "whsec_" + base64.b64encode(b"x" * 65).decode()])
def test_bad_secrets_are_refused(bad):
    with pytest.raises(wh.InvalidSecret):
        wh.secret_key(bad)
    with pytest.raises(wh.InvalidSecret):
        wh.generate_secret(16)


def test_event_body_and_outbox_row_are_stable_and_complete():
    a = _alert()
    body = wh.event_body(a)
    assert body["type"] == "excursion.alarm"
    assert body["timestamp"] == "2026-11-26T10:00:00.000Z"
    assert body["data"]["alert_id"] == "alert_1" and body["data"]["severity"] == "alarm"
    assert body["data"]["device_id"] == "LOG-0001" and body["data"]["shipment_id"] == "SHP-1"
    assert body["data"]["peak_c"] == 9.1
    event_id, type_, alert_id, payload, created = wh.outbox_row(a, created_at=5)
    assert (type_, alert_id, created) == ("excursion.alarm", "alert_1", 5)
    assert json.loads(payload) == body
    assert wh.outbox_row(a, created_at=5) == (event_id, type_, alert_id, payload, created)
    assert wh.outbox_row(_alert(id="alert_2"))[0] != event_id
    assert wh.outbox_row(a)[4] == a.ts


def test_retry_schedule_is_the_documented_one_with_bounded_jitter():
    rng = random.Random(7)
    expected = [0, 5_000, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR, 20 * HOUR,
                24 * HOUR]
    for attempts, base in enumerate(expected):
        for _ in range(50):
            d = wh.next_attempt_delay(attempts, rng)
            assert 0.9 * base <= d <= 1.1 * base
    assert wh.next_attempt_delay(10, rng) is None
    spread = {wh.next_attempt_delay(3, rng) for _ in range(20)}
    assert len(spread) > 1


def test_retry_after_replaces_the_schedule_but_is_clamped():
    assert wh.next_attempt_delay(1, retry_after_ms=120_000) == 120_000
    assert wh.next_attempt_delay(1, retry_after_ms=0) == 1_000
    assert wh.next_attempt_delay(1, retry_after_ms=10 * 24 * HOUR) == 24 * HOUR
    assert wh.next_attempt_delay(10, retry_after_ms=5_000) is None


def test_parse_retry_after_seconds_and_http_dates():
    now = 1_795_687_200_000  # 2026-11-26T10:00:00Z
    assert wh.parse_retry_after("120", now) == 120_000
    assert wh.parse_retry_after(" 0 ", now) == 0
    assert wh.parse_retry_after("Thu, 26 Nov 2026 10:01:00 GMT", now) == 60_000
    assert wh.parse_retry_after("Thu, 26 Nov 2026 09:00:00 GMT", now) == 0
    assert wh.parse_retry_after(None, now) is None
    assert wh.parse_retry_after("soon", now) is None
    assert wh.parse_retry_after("", now) is None


def test_filters_by_type_severity_and_device():
    f = {"event_types": ["excursion.*", "device.offline"], "min_severity": "alarm", "device_ids": ["A"]}
    assert matches(f, "excursion.alarm", "alarm", "A")
    assert matches(f, "device.offline", "critical", "A")
    assert not matches(f, "device.online", "critical", "A")
    assert not matches(f, "excursion.alarm", "warning", "A")
    assert not matches(f, "excursion.alarm", "alarm", "B")
    assert matches({}, "calibration.due", "info", None)


def _resolver(table):
    def resolve(host, port):
        return table[host]
    return resolve


@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "gopher://x", "http://", "https://user:pw@example.com/",
    "http://127.0.0.1:8080/", "http://[::1]/", "http://10.1.2.3/", "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/",
    "http://0.0.0.0/", "http://100.64.0.1/", "http://internal.example/", "http://evil.example/",
])
def test_unsafe_targets_are_refused(url):
    r = _resolver({"internal.example": ["10.0.0.5"], "evil.example": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(wh.UnsafeTarget):
        wh.check_target(url, resolver=r)


def test_public_targets_pass_and_private_ones_pass_when_listed():
    r = _resolver({"hooks.example": ["93.184.216.34"], "localhost": ["127.0.0.1", "::1"],
                   "hooks.site.lan": ["10.9.8.7"]})
    t = wh.check_target("https://hooks.example/in", resolver=r)
    assert (t.scheme, t.host, t.port, t.addresses) == ("https", "hooks.example", 443, ("93.184.216.34",))
    loopback = ["127.0.0.0/8", "::1"]
    assert wh.check_target("http://localhost:9000/h", loopback, r).addresses == ("127.0.0.1", "::1")
    assert wh.check_target("http://127.0.0.1:9/", loopback, r).addresses == ("127.0.0.1",)
    with pytest.raises(wh.UnsafeTarget, match="allowed_private_targets"):  # 10/8 is not in that list
        wh.check_target("http://hooks.site.lan/", loopback, r)
    assert wh.check_target("http://hooks.site.lan/", ["hooks.site.lan"], r).addresses == ("10.9.8.7",)
    assert wh.check_target("http://10.9.8.7/", ["10.9.0.0/16"], r).addresses == ("10.9.8.7",)
    with pytest.raises(wh.UnsafeTarget):  # a host entry allows that name only, not its address typed in
        wh.check_target("http://10.9.8.7/", ["hooks.site.lan"], r)
    for url in ("http://0.0.0.0/", "http://224.0.0.1/", "http://[ff02::1]/"):  # never unspecified/multicast
        with pytest.raises(wh.UnsafeTarget, match="never allowed"):
            wh.check_target(url, ["0.0.0.0/0", "::/0"], r)


def _teredo(client: str) -> str:
    """A Teredo address (2001::/32) whose client part is ``client`` (stored bit-inverted, RFC 4380)."""
    inverted = int(ipaddress.IPv4Address(client)) ^ 0xFFFFFFFF
    return str(ipaddress.IPv6Address((0x20010000 << 96) | (0x41_36_E3_78 << 64) | inverted))


# Every IPv6 transition form of 127.0.0.1 and 169.254.169.254 is judged as that IPv4 address.
LOOPBACK_FORMS = ["2002:7f00:1::1", "64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "::ffff:127.0.0.1", "::127.0.0.1",
                  "::ffff:0:7f00:1", _teredo("127.0.0.1")]
METADATA_FORMS = ["2002:a9fe:a9fe::", "64:ff9b::a9fe:a9fe", "::ffff:169.254.169.254", "::169.254.169.254",
                  "::ffff:0:a9fe:a9fe", _teredo("169.254.169.254")]


@pytest.mark.parametrize("addr", LOOPBACK_FORMS)
def test_ipv6_transition_forms_of_loopback_are_internal(addr):
    assert wh.effective_address(ipaddress.ip_address(addr)) == ipaddress.IPv4Address("127.0.0.1")
    with pytest.raises(wh.UnsafeTarget, match=r"= 127\.0\.0\.1"):
        wh.check_target(f"http://[{addr}]/")  # the 6to4 case among them: refused with no allow-list
    r = _resolver({"rebind.example": ["93.184.216.34", addr]})
    with pytest.raises(wh.UnsafeTarget):  # also as one of several DNS answers
        wh.check_target("http://rebind.example/", resolver=r)
    listed = wh.check_target(f"http://[{addr}]/", ["127.0.0.0/8"])  # listed: allowed
    assert listed.addresses == (str(ipaddress.ip_address(addr)),)


@pytest.mark.parametrize("addr", METADATA_FORMS + ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254",
                                                   "100.100.100.200", "168.63.129.16", "192.0.0.192"])
def test_link_local_and_metadata_addresses_are_never_allowed(addr):
    host = f"[{addr}]" if ":" in addr else addr
    with pytest.raises(wh.UnsafeTarget, match="never allowed"):
        wh.check_target(f"http://{host}/", ["0.0.0.0/0", "::/0", "metadata.google.internal"])
    r = _resolver({"metadata.google.internal": [addr]})
    with pytest.raises(wh.UnsafeTarget, match="never allowed"):  # not even through a listed host name
        wh.check_target("http://metadata.google.internal/", ["metadata.google.internal"], r)


def test_public_addresses_behind_transition_forms_pass():
    for addr in ("2002:5db8:d822::1", "64:ff9b::5db8:d822", "2606:4700::1111"):
        assert wh.check_target(f"https://[{addr}]/").addresses == (addr,)


@pytest.mark.parametrize("entry", ["169.254.0.0/16", "169.254.169.254", "fe80::/64", "fd00:ec2::254",
                                   "100.100.100.200/32", "224.0.0.0/8", "not a host", "10.0.0.0/33"])
def test_allow_list_entries_that_can_never_apply_are_refused(entry):
    with pytest.raises(ValueError, match="allowed_private_targets"):
        wh.TargetPolicy.parse([entry])
    with pytest.raises(ConfigError, match="allowed_private_targets"):
        load_settings(webhooks={"allowed_private_targets": [entry]})


def test_the_replaced_switch_now_means_loopback_only(caplog):
    ws = load_settings(webhooks={"allow_private_targets": True}).webhooks
    assert ws.allowed_private_targets == ["127.0.0.0/8", "::1/128"]
    assert "allowed_private_targets" in caplog.text  # the warning names the new setting
    wh.check_target("http://127.0.0.1:9/", ws.allowed_private_targets)
    with pytest.raises(wh.UnsafeTarget):  # what it used to allow beyond loopback is refused now
        wh.check_target("http://10.1.2.3/", ws.allowed_private_targets)
    assert load_settings(webhooks={"allowed_private_targets": "10.0.0.0/8, hooks.lan"}
                         ).webhooks.allowed_private_targets == ["10.0.0.0/8", "hooks.lan"]


def test_status_line_keeps_the_first_line_only_printable_and_short():
    import httpx

    from coldtrace.services.delivery import STATUS_LINE_CAP, status_line

    plain = httpx.Response(503, extensions={"http_version": b"HTTP/1.1", "reason_phrase": b"Service Unavailable"})
    assert status_line(plain) == "HTTP/1.1 503 Service Unavailable"
    nasty = httpx.Response(200, extensions={"http_version": b"HTTP/1.1",
                                            "reason_phrase": b"OK\x1b[2J" + b"A" * 500})
    line = status_line(nasty)
    assert line.startswith("HTTP/1.1 200 OK[2J") and "\x1b" not in line and len(line) == STATUS_LINE_CAP
