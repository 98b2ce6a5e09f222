#!/usr/bin/env bash
# Starts allegro-scheduler. Without DATABASE_URL the service starts its own
# private PostgreSQL cluster under ALLEGRO_DATA_DIR (default .allegro-data)
# on 127.0.0.1:54329; this script only makes sure the PostgreSQL binaries are
# installed. Extra arguments go to `allegro-scheduler serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-postgres.sh
if [ -z "${DATABASE_URL:-}" ]; then
    ensure_pg_binaries
fi
exec cargo run --release --locked --bin allegro-scheduler -- serve "$@"
