#!/bin/sh
# Write the Mosquitto password files from the secrets in the environment (run by the mosquitto-passwd
# service before the broker starts; the files live in a named volume, never in the repository):
#   collector-passwd  the collector's user `coldtrace` only (listener 1884)
#   passwd            `devices` (gateways), `devices-demo` (the demo simulator) and the per-device users that
#                     `coldtrace mqtt-config` wrote to deploy/mosquitto/devices/passwd, if any (listener 1883,
#                     where each user name is also the client id)
set -eu
umask 077
d=/mosquitto/passwd
: > "$d/collector-passwd"
mosquitto_passwd -b "$d/collector-passwd" coldtrace "$MQTT_COLDTRACE_PASSWORD"
f="$d/passwd"
: > "$f"
mosquitto_passwd -b "$f" devices "$MQTT_DEVICES_PASSWORD"
# the demo simulator's own user (same trust and secret as `devices`) so that it and a gateway are two sessions
mosquitto_passwd -b "$f" devices-demo "$MQTT_DEVICES_PASSWORD"
# never a service or collector user among the device users (an older mqtt-config put its collector there)
reserved='^(coldtrace|devices|devices-demo|coldtrace-collector|coldtrace-collector-[^:]*):'
n=0
if [ -f /devices/passwd ]; then
  grep -v -E "$reserved" /devices/passwd >> "$f" || true
  n=$(grep -c -v -E "$reserved" /devices/passwd || true)
fi
chown mosquitto:mosquitto "$f" "$d/collector-passwd"
chmod 0600 "$f" "$d/collector-passwd"
echo "mosquitto password files written: coldtrace (collector listener); devices, devices-demo and ${n} device user(s)"
