"""The reference backend (`faceonly backend`): the other end of the terminals' wire.

One job per module: `config` (typed settings), `ingest` (verify, unseal, identify one message),
`store` (SQLite / PostgreSQL), `attendance` (records and CSV), `subjects` (the central gallery, enrolment),
`consumer` (the MQTT shared subscription), `live` (the in-memory live view), `web` (the page and its API),
`health` (its own counters) and `service` (wires them together).
"""
