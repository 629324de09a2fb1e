"""The reference backend (`faceonly backend`): the other end of the terminals' wire, and the back office an
operator runs a site with.

Ingest, one job per module: `config` (typed settings), `consumer` (the MQTT shared subscription), `ingest`
(verify, unseal, identify one message), `store` (attendance records, terminals, quarantine counts, the latest
gallery) over `db` (SQLite or PostgreSQL, `migrations`), `live` (the in-memory live view), `health` (its own
counters), `service` (wires them together) and `demo` (the whole system for `faceonly run`).

The back office (`office` builds it): `gallery_authority` (the one central gallery and its version counter),
`pusher` (purges and galleries to terminals), `enrol` (consent, checks, enrolment), `removal` and `purges`
(deactivate, erase, retention, receipts), `people`, `consent`, `corrections`, `attendance` with `timesheet`
(per person per day) and `export` (CSV, XLSX), `accounts` (staff, sessions, API tokens) and `audit` (the
chained log). The page: `web` with `web_people`, `web_attendance`, `web_admin` and `page/`.
"""
