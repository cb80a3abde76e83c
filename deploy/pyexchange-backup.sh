#!/bin/sh
# A consistent logical dump of the exchange's database (pg_dump runs in one repeatable-read
# transaction), in the custom format so that pg_restore can restore in parallel; dumps older than
# KEEP_DAYS are deleted. The connection comes from PGHOST, PGPORT, PGUSER, PGDATABASE (PGPASSWORD or
# ~/.pgpass): PostgreSQL itself, not PgBouncer. See docs/operations.md, "Backups and restore".
set -eu
DIR=${BACKUP_DIR:-/var/backups/pyexchange}
KEEP_DAYS=${KEEP_DAYS:-14}
f="$DIR/exchange-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --compress=6 --file="$f.part"
mv "$f.part" "$f"
pg_restore --list "$f" >/dev/null  # the archive is readable to its end
find "$DIR" -name 'exchange-*.dump' -mtime +"$KEEP_DAYS" -delete
echo "$f"
