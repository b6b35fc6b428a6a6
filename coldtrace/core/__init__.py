"""The pure core: data model, payload codecs, excursion/MKT/calibration/health rules. No I/O: nothing here
imports sqlite3, sockets, serial ports, MQTT, HTTP or the store; time comes in as an argument (Clock)."""
