#!/usr/bin/env bash
# Private MariaDB (binlog ROW / FULL / FULL) and PostgreSQL instances for ferry's demo, tests and
# benchmarks. Data lives under .ferry-dev/ in the project; ports are private (never 3306/5432), so
# the machine's default database servers are neither used nor touched.
#
#   scripts/dev-db.sh install   install missing Debian packages (one apt-get update, then by name)
#   scripts/dev-db.sh start     create (first time) and start both servers; idempotent
#   scripts/dev-db.sh stop      stop both servers
#   scripts/dev-db.sh env       print the environment variables tests and the demo read
#   scripts/dev-db.sh reset     stop, delete the data directories, start fresh
#
# FERRY_DEV_TLS=1 (when the data directories are first created) also gives both servers a
# certificate from a CA made with openssl under $DEV/tls (TLS offered, not required), as the TLS
# benchmark needs: use another FERRY_DEV_DIR and ports beside the usual instances.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV="${FERRY_DEV_DIR:-$ROOT/.ferry-dev}"
MY_PORT="${FERRY_MYSQL_PORT:-13306}"
PG_PORT="${FERRY_PG_PORT:-15432}"
MY_DIR="$DEV/mariadb"
PG_DIR="$DEV/postgres"
TLS_DIR="$DEV/tls"
MY_SOCK="$MY_DIR/mysqld.sock"

log() { printf '\033[1m[dev-db]\033[0m %s\n' "$*" >&2; }
die() { printf '[dev-db] error: %s\n' "$*" >&2; exit 1; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] || die "PostgreSQL server binaries not found (run: scripts/dev-db.sh install)"
  echo "$d"
}

install_packages() {
  local need=()
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
  command -v mariadb >/dev/null 2>&1 || need+=(mariadb-client)
  ls -d /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
  command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
  command -v cc >/dev/null 2>&1 || need+=(build-essential)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  # tests/tls.rs generates its certificates with openssl.
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # tests/service.rs checks the unit file with systemd-analyze verify.
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  # tests/ddl.rs runs a real pt-online-schema-change against the private MariaDB.
  command -v pt-online-schema-change >/dev/null 2>&1 || need+=(percona-toolkit)
  # tests/dashboard.rs renders the dashboard page in headless Chromium.
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  local updated=0
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    as_root apt-get update -qq
    updated=1
    # Installing the server packages may start the machine's default instances; ferry never uses them.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # PostGIS for the PostgreSQL major the private instance runs (tests/spatial.rs maps spatial
  # columns to PostGIS geometry; the extension is created only in the tests' own databases).
  local major
  major=$(basename "$(dirname "$(pg_bin)")")
  if [ ! -f "/usr/share/postgresql/$major/extension/postgis.control" ] || ! ls "/usr/lib/postgresql/$major/lib/"postgis-3*.so >/dev/null 2>&1; then
    log "installing Debian package: postgresql-$major-postgis-3"
    [ "$updated" = 1 ] || as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-$major-postgis-3" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    die "Rust is not installed: install it with rustup (https://rustup.rs), then re-run"
  fi
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io"
    cargo install --locked cargo-nextest
  fi
}

# The servers run as their own service users when we are root (PostgreSQL refuses root), and as the
# invoking user otherwise.
svc_user() {
  if [ "$(id -u)" = 0 ]; then echo "$1"; else id -un; fi
}

run_as() {
  local user="$1"; shift
  if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

check_traversable() {
  local user="$1" dir="$2"
  if ! run_as "$user" test -x "$dir"; then
    die "user '$user' cannot reach $dir; put the project (or FERRY_DEV_DIR) where '$user' can traverse"
  fi
}

mysql_up() { mariadb --no-defaults -uroot -S "$MY_SOCK" -e 'SELECT 1' >/dev/null 2>&1; }
pg_up() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; }

# A CA and a server certificate for 127.0.0.1/localhost (once), for FERRY_DEV_TLS=1.
make_certs() {
  [ -f "$TLS_DIR/server.pem" ] && return
  mkdir -p "$TLS_DIR"
  log "making a CA and a server certificate in $TLS_DIR"
  (
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=ferry dev CA" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile san.ext -out server.pem >/dev/null 2>&1
  ) || die "openssl could not make the certificates"
}

start_mariadb() {
  local user; user=$(svc_user mysql)
  mkdir -p "$MY_DIR"
  if [ ! -d "$MY_DIR/data/mysql" ]; then
    log "initialising MariaDB in $MY_DIR (port $MY_PORT)"
    mkdir -p "$MY_DIR/data" "$MY_DIR/binlog"
    cat >"$MY_DIR/my.cnf" <<CNF
[mariadbd]
datadir=$MY_DIR/data
socket=$MY_SOCK
pid-file=$MY_DIR/mariadbd.pid
log-error=$MY_DIR/mariadbd.err
port=$MY_PORT
bind-address=127.0.0.1
skip-name-resolve
server-id=1
log-bin=$MY_DIR/binlog/mariadb-bin
binlog_format=ROW
binlog_row_image=FULL
binlog_row_metadata=FULL
binlog_checksum=CRC32
max_binlog_size=256M
max_allowed_packet=1G
max_connections=300
innodb_buffer_pool_size=1G
innodb_log_file_size=512M
innodb_flush_log_at_trx_commit=2
sync_binlog=0
character-set-server=utf8mb4
collation-server=utf8mb4_general_ci
default-time-zone=+00:00
CNF
    if [ "${FERRY_DEV_TLS:-0}" = 1 ]; then
      make_certs
      cp "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$MY_DIR/"
      printf 'ssl_ca=%s\nssl_cert=%s\nssl_key=%s\n' "$MY_DIR/ca.pem" "$MY_DIR/server.pem" "$MY_DIR/server.key" >>"$MY_DIR/my.cnf"
    fi
    chown -R "$user" "$MY_DIR"
    check_traversable "$user" "$MY_DIR"
    run_as "$user" mariadb-install-db --defaults-file="$MY_DIR/my.cnf" --auth-root-authentication-method=normal \
      --skip-test-db >"$MY_DIR/install.log" 2>&1 || { cat "$MY_DIR/install.log" >&2; die "mariadb-install-db failed"; }
  fi
  if ! mysql_up; then
    log "starting MariaDB on 127.0.0.1:$MY_PORT"
    check_traversable "$user" "$MY_DIR"
    (cd / && run_as "$user" setsid /usr/sbin/mariadbd --defaults-file="$MY_DIR/my.cnf" >/dev/null 2>&1 &)
    for _ in $(seq 1 60); do mysql_up && break; sleep 0.5; done
    mysql_up || { tail -n 30 "$MY_DIR/mariadbd.err" >&2; die "MariaDB did not start"; }
  fi
  mariadb --no-defaults -uroot -S "$MY_SOCK" <<'SQL'
CREATE USER IF NOT EXISTS 'ferry'@'%' IDENTIFIED BY 'ferry';
CREATE USER IF NOT EXISTS 'ferry'@'localhost' IDENTIFIED BY 'ferry';
GRANT ALL PRIVILEGES ON *.* TO 'ferry'@'%';
GRANT ALL PRIVILEGES ON *.* TO 'ferry'@'localhost';
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL
}

start_postgres() {
  local user bin; user=$(svc_user postgres); bin=$(pg_bin)
  mkdir -p "$PG_DIR"
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "initialising PostgreSQL in $PG_DIR (port $PG_PORT)"
    mkdir -p "$PG_DIR/data"
    chown -R "$user" "$PG_DIR"
    chmod 700 "$PG_DIR/data"
    check_traversable "$user" "$PG_DIR"
    run_as "$user" "$bin/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    cat >>"$PG_DIR/data/postgresql.conf" <<CONF
port = $PG_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PG_DIR'
max_connections = 200
shared_buffers = 512MB
max_wal_size = 4GB
timezone = 'UTC'
CONF
    if [ "${FERRY_DEV_TLS:-0}" = 1 ]; then
      make_certs
      cp "$TLS_DIR/ca.pem" "$TLS_DIR/server.pem" "$TLS_DIR/server.key" "$PG_DIR/data/"
      chown "$user" "$PG_DIR/data/ca.pem" "$PG_DIR/data/server.pem" "$PG_DIR/data/server.key"
      chmod 600 "$PG_DIR/data/server.key"
      printf "ssl = on\nssl_ca_file = 'ca.pem'\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n" >>"$PG_DIR/data/postgresql.conf"
    fi
  fi
  # Logical decoding for the rollback's reverse stream (data directories made before it get it
  # appended, and a running server is restarted once to take it).
  if ! grep -q '^wal_level' "$PG_DIR/data/postgresql.conf"; then
    printf 'wal_level = logical\nmax_replication_slots = 64\nmax_wal_senders = 64\n' >>"$PG_DIR/data/postgresql.conf"
    if pg_up; then
      log "restarting PostgreSQL for wal_level = logical"
      (cd / && run_as "$user" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 restart -m fast >/dev/null)
    fi
  fi
  if ! pg_up; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    check_traversable "$user" "$PG_DIR"
    (cd / && run_as "$user" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/postgres.log" -w -t 60 start >/dev/null) \
      || { tail -n 30 "$PG_DIR/postgres.log" >&2; die "PostgreSQL did not start"; }
  fi
}

stop_all() {
  if [ -f "$MY_DIR/mariadbd.pid" ] && mysql_up; then
    log "stopping MariaDB"
    kill "$(cat "$MY_DIR/mariadbd.pid")" 2>/dev/null || true
    for _ in $(seq 1 60); do mysql_up || break; sleep 0.5; done
  fi
  if [ -f "$PG_DIR/data/PG_VERSION" ] && pg_up; then
    log "stopping PostgreSQL"
    (cd / && run_as "$(svc_user postgres)" "$(pg_bin)/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null) || true
  fi
}

# Drops the databases earlier test runs left on the private servers (each test makes its own
# `t_*` pair, and a failed test keeps its pair for inspection until the next run).
drop_test_dbs() {
  local d n=0
  # A cutover arms a logical replication slot in its database; DROP DATABASE refuses while one exists.
  psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc \
    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database LIKE 't\\_%' AND NOT active" >/dev/null
  for d in $(psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -Atc \
      "SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'"); do
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "DROP DATABASE IF EXISTS \"$d\" WITH (FORCE)" >/dev/null
    n=$((n + 1))
  done
  for d in $(mariadb --no-defaults -uroot -S "$MY_SOCK" -N -e \
      "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 't\\_%'"); do
    mariadb --no-defaults -uroot -S "$MY_SOCK" -e "DROP DATABASE IF EXISTS \`$d\`"
    n=$((n + 1))
  done
  [ "$n" = 0 ] || log "dropped $n databases left by earlier test runs"
}

print_env() {
  cat <<ENV
export FERRY_TEST_MYSQL_URL=mysql://root@127.0.0.1:$MY_PORT
export FERRY_TEST_PG_URL=postgresql://postgres@127.0.0.1:$PG_PORT/postgres
export FERRY_TEST_MYSQL_PORT=$MY_PORT
export FERRY_TEST_PG_PORT=$PG_PORT
ENV
}

case "${1:-start}" in
  install) install_packages ;;
  start) install_packages; start_mariadb; start_postgres; log "MariaDB 127.0.0.1:$MY_PORT, PostgreSQL 127.0.0.1:$PG_PORT" ;;
  stop) stop_all ;;
  env) print_env ;;
  drop-test-dbs) drop_test_dbs ;;
  reset) stop_all; rm -rf "$MY_DIR" "$PG_DIR"; install_packages; start_mariadb; start_postgres ;;
  *) die "usage: $0 install|start|stop|env|reset|drop-test-dbs" ;;
esac
