"""Services: the use cases (ingest pipeline, shipments, calibration sessions, alerts, delivery, audit, auth).
They hold no SQL text: they call the store's modules (coldtrace/store/) through the ports."""
