"""Adapters to the outside world that are not the store: serial readers, the embedded MQTT broker, the
broker's access files, PDF rendering."""
