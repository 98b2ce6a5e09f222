#!/usr/bin/env bash
# Runs every test of the project against a real PostgreSQL.
#
# The database used: ALLEGRO_TEST_DATABASE_URL when set; else the server on
# 127.0.0.1:5432 when it answers as user postgres without a password; else a
# private cluster this script initialises under target/test-pg and starts on
# 127.0.0.1:54330 (installing PostgreSQL with apt first if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib-postgres.sh

answers() {
    local bin
    bin="$(pg_bin_dir)" || return 1
    "$bin/psql" "$1" -tAc 'SELECT 1' >/dev/null 2>&1
}

if [ -z "${ALLEGRO_TEST_DATABASE_URL:-}" ]; then
    ensure_pg_binaries
    default_url="postgres://postgres@127.0.0.1:5432/postgres"
    if answers "$default_url"; then
        export ALLEGRO_TEST_DATABASE_URL="$default_url"
    else
        bin="$(pg_bin_dir)"
        data="$PWD/target/test-pg"
        port=54330
        mkdir -p "$data"
        if [ ! -f "$data/PG_VERSION" ]; then
            [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$data"
            as_pg_user "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 >/dev/null
        fi
        if ! as_pg_user "$bin/pg_ctl" status -D "$data" >/dev/null 2>&1; then
            as_pg_user "$bin/pg_ctl" start -w -D "$data" -l "$data/server.log" \
                -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=300" >/dev/null
        fi
        export ALLEGRO_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    fi
fi
echo "tests use PostgreSQL at $ALLEGRO_TEST_DATABASE_URL"

# The console's browser tests drive headless Chromium through chromedriver:
# install them when missing, and run one chromedriver for the whole run.
if ! command -v chromedriver >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ]; then
    echo "installing chromium and chromium-driver with apt" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if [ -z "${ALLEGRO_WEBDRIVER_URL:-}" ]; then
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    chromedriver --port="$port" >/dev/null 2>&1 &
    driver=$!
    trap 'kill "$driver" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    export ALLEGRO_WEBDRIVER_URL="http://127.0.0.1:$port"
fi
# promtool and prometheus check deploy/ and scrape a test server.
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing the Debian package prometheus (promtool) for the deploy/ tests"
        apt-get install -y -qq prometheus >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1; } ||
            echo "WARNING: could not install prometheus; its tests will be skipped"
    else
        echo "WARNING: promtool/prometheus missing; install the Debian package prometheus"
    fi
fi
cargo test --locked --all-targets "$@"
