"""The collector's cheaper MQTT 5 properties decode received PUBLISH packets exactly as paho's own do."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.mqtt import LeanProperties

TOPIC = b"coldtrace/v1/devices/LOG-1/readings"
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)  # MQTT strings


def publish_packet(props: Properties | None, payload: bytes, mid: int = 7) -> bytes:
    packed = props.pack() if props is not None else b"\x00"
    return struct.pack("!H", len(TOPIC)) + TOPIC + struct.pack("!H", mid) + packed + payload


def decode_both(pkt: bytes):
    assert _packet.Properties is LeanProperties  # importing collector.mqtt installed it
    lean = _packet.decode_publish(0x32, pkt, MQTTProtocolVersion.MQTTv5)
    _packet.Properties = Properties
    try:
        plain = _packet.decode_publish(0x32, pkt, MQTTProtocolVersion.MQTTv5)
    finally:
        _packet.Properties = LeanProperties
    return lean, plain


@given(payload=st.binary(max_size=200), content_type=st.none() | text,
       user=st.lists(st.tuples(text, text), max_size=3), expiry=st.none() | st.integers(0, 2**32 - 1),
       alias=st.none() | st.integers(1, 65535))
def test_same_properties_topic_mid_and_payload_as_paho(payload, content_type, user, expiry, alias) -> None:
    props = Properties(PacketTypes.PUBLISH)
    if content_type is not None:
        props.ContentType = content_type
    for pair in user:
        props.UserProperty = pair
    if expiry is not None:
        props.MessageExpiryInterval = expiry
    if alias is not None:
        props.TopicAlias = alias
    lean, plain = decode_both(publish_packet(props, payload))
    assert isinstance(lean.properties, Properties) and type(lean.properties) is LeanProperties
    assert lean.properties.json() == plain.properties.json()
    assert str(lean.properties) == str(plain.properties)
    assert (lean.topic, lean.mid, lean.qos, lean.payload) == (plain.topic, plain.mid, plain.qos, plain.payload)
    assert hasattr(lean.properties, "TopicAlias") == (alias is not None)


def test_no_properties_is_empty_and_sets_nothing() -> None:
    lean, plain = decode_both(publish_packet(None, b'{"v":1}', mid=9))
    assert lean.properties.isEmpty() and plain.properties.isEmpty()
    assert lean.payload == b'{"v":1}' and lean.mid == 9
    assert not hasattr(lean.properties, "UserProperty")


def test_a_property_twice_is_refused_as_paho_refuses_it() -> None:
    one = Properties(PacketTypes.PUBLISH)
    one.ContentType = "a"
    packed = one.pack()
    body = packed[1:]  # the property itself, without its length
    twice = bytes([len(body) * 2]) + body + body
    pkt = struct.pack("!H", len(TOPIC)) + TOPIC + struct.pack("!H", 1) + twice + b"x"
    with pytest.raises(Exception) as lean_err:
        _packet.decode_publish(0x32, pkt, MQTTProtocolVersion.MQTTv5)
    _packet.Properties = Properties
    try:
        with pytest.raises(Exception) as plain_err:
            _packet.decode_publish(0x32, pkt, MQTTProtocolVersion.MQTTv5)
    finally:
        _packet.Properties = LeanProperties
    assert type(lean_err.value) is type(plain_err.value)
