# Shared helpers of the project scripts: make sure PostgreSQL's server
# binaries are installed (apt) and find them.

pg_bin_dir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
    return 1
}

ensure_pg_binaries() {
    if pg_bin_dir >/dev/null; then return 0; fi
    echo "PostgreSQL server binaries not found; installing them with apt" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql postgresql-client >/dev/null
    pg_bin_dir >/dev/null
}

# Runs a PostgreSQL binary as the postgres user when we are root.
as_pg_user() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
