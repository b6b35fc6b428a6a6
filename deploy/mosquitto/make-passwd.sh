#!/bin/sh
# Write the Mosquitto password file from the secrets in the environment (run by the mosquitto-passwd
# service before the broker starts; the file lives in a named volume, never in the repository), then add the
# per-device users that `coldtrace mqtt-config` wrote to deploy/mosquitto/devices/passwd, if any.
set -eu
umask 077
f=/mosquitto/passwd/passwd
: > "$f"
mosquitto_passwd -b "$f" coldtrace "$MQTT_COLDTRACE_PASSWORD"
mosquitto_passwd -b "$f" devices "$MQTT_DEVICES_PASSWORD"
n=0
if [ -f /devices/passwd ]; then
  # the service users above always come from .env; every other line is one device's user
  grep -v -E '^(coldtrace|devices):' /devices/passwd >> "$f" || true
  n=$(grep -c -v -E '^(coldtrace|devices):' /devices/passwd || true)
fi
chown mosquitto:mosquitto "$f"
chmod 0600 "$f"
echo "mosquitto password file written: coldtrace, devices and ${n} device user(s)"
