-- A database made by the backend before the back office (commit 6201250, device/backend/store.py: terminals
-- add, status, record, put_subject), dumped with sqlite3's iterdump. tests/test_backoffice_migrations.py opens it
-- with today's backend, on SQLite and on PostgreSQL (the statements are valid for both).
BEGIN TRANSACTION;
CREATE TABLE attendance (
        event_id TEXT PRIMARY KEY, terminal TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, decision TEXT NOT NULL, subject TEXT, score DOUBLE PRECISION,
        match_source TEXT NOT NULL, reasons TEXT NOT NULL, liveness TEXT NOT NULL);
INSERT INTO "attendance" VALUES('11111111-1111-4111-8111-111111111111','gate-01',1772611200.0,1772611201.0,'accepted','emp-0001',0.97,'terminal','[{"code": "liveness.passed", "text": "the challenge passed"}]','{"blink": 0.4}');
INSERT INTO "attendance" VALUES('22222222-2222-4222-8222-222222222222','gate-01',1772640000.0,1772640001.0,'accepted','emp-0001',0.96,'terminal','[]','{}');
INSERT INTO "attendance" VALUES('33333333-3333-4333-8333-333333333333','gate-01',1772611500.0,1772611501.0,'accepted',NULL,0.81,'backend','[]','{}');
CREATE TABLE galleries (version BIGINT PRIMARY KEY, update_file BLOB NOT NULL);
CREATE TABLE quarantine (reason TEXT PRIMARY KEY, count BIGINT NOT NULL);
INSERT INTO "quarantine" VALUES('forged',1);
CREATE TABLE subjects (
        id TEXT PRIMARY KEY, display_name TEXT, added_at DOUBLE PRECISION NOT NULL, source TEXT NOT NULL);
INSERT INTO "subjects" VALUES('emp-0001','Ana Silva',1772000000.0,'photos');
CREATE TABLE terminals (
        id TEXT PRIMARY KEY, public_key TEXT NOT NULL, added_at DOUBLE PRECISION NOT NULL,
        state TEXT, status_at DOUBLE PRECISION, health TEXT, health_at DOUBLE PRECISION, gallery_version BIGINT);
INSERT INTO "terminals" VALUES('gate-01','AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',1772000000.0,'online',1772611000.0,NULL,NULL,3);
CREATE INDEX attendance_created ON attendance (created_at);
COMMIT;
