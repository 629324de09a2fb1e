"""The reference backend (`faceonly backend`): the other end of the terminals' wire.

One job per module: `config` (typed settings), `ingest` (verify, unseal, identify one message),
`store` (attendance records, terminals, quarantine counts, galleries: SQLite or PostgreSQL), `subjects`
(the central gallery, enrolment, pushes), `consumer` (the MQTT shared subscription), `live` (the in-memory
live view), `web` (the page, its API and the CSV export), `health` (its own counters), `service` (wires
them together) and `demo` (the whole system for `faceonly run`).
"""
