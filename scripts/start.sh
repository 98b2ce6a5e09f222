#!/usr/bin/env bash
# Starts allegro-scheduler. Without DATABASE_URL the service starts its own
# private PostgreSQL cluster under ALLEGRO_DATA_DIR (default .allegro-data)
# on 127.0.0.1:54329; this script only makes sure the PostgreSQL binaries are
# installed, and loads a demo client. On first start the service gives the
# demo client an operator API key in $ALLEGRO_DATA_DIR/demo-operator.key and
# logs how to send it. Extra arguments go to `allegro-scheduler serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-postgres.sh
if [ -z "${DATABASE_URL:-}" ]; then
    ensure_pg_binaries
    # The embedded default is a development setup: give it a demo client
    # with a ledger and a DAILY schedule (set ALLEGRO_DEMO_CLIENT= to skip).
    export ALLEGRO_DEMO_CLIENT="${ALLEGRO_DEMO_CLIENT-demo}"
    # Development setup: the in-process stand-in core serves its control
    # service (fault injection) too.
    export ALLEGRO_STANDIN_CONTROL="${ALLEGRO_STANDIN_CONTROL-true}"
fi
[ -z "${ALLEGRO_DEMO_CLIENT:-}" ] && unset ALLEGRO_DEMO_CLIENT
if [ -z "${DATABASE_URL:-}" ] && [ -n "${ALLEGRO_DEMO_CLIENT:-}" ]; then
    echo "Calls need an API key: once started, send" \
        "-H \"authorization: Bearer \$(cat ${ALLEGRO_DATA_DIR:-.allegro-data}/demo-operator.key)\"" >&2
fi
exec cargo run --release --locked --bin allegro-scheduler -- serve "$@"
