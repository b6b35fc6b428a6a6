#!/bin/sh
# Write the Mosquitto password file from the secrets in the environment (run by the mosquitto-passwd
# service before the broker starts; the file lives in a named volume, never in the repository).
set -eu
umask 077
f=/mosquitto/passwd/passwd
: > "$f"
mosquitto_passwd -b "$f" coldtrace "$MQTT_COLDTRACE_PASSWORD"
mosquitto_passwd -b "$f" devices "$MQTT_DEVICES_PASSWORD"
chown mosquitto:mosquitto "$f"
chmod 0600 "$f"
echo "mosquitto password file written for users: coldtrace, devices"
