#!/usr/bin/env bash
# The built-in demo: a private MariaDB (binlog ROW/FULL/FULL) and PostgreSQL, a `shop` database
# with sample data, and ferry copying it (backfill) and then streaming a live write load while
# this script shows progress. Ends after DEMO_SECONDS (default 45) with a row-for-row comparison,
# or on Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEMO_SECONDS="${DEMO_SECONDS:-45}"
MY_PORT="${FERRY_MYSQL_PORT:-13306}"
PG_PORT="${FERRY_PG_PORT:-15432}"
export FERRY_SOURCE_PASSWORD=ferry

say() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }
my() { mariadb --no-defaults -h127.0.0.1 -P"$MY_PORT" -uroot "$@"; }
pg() { psql -X -q -h127.0.0.1 -p"$PG_PORT" -Upostgres "$@"; }

say "Starting the private MariaDB and PostgreSQL (scripts/dev-db.sh)"
scripts/dev-db.sh start

say "Building ferry (release)"
cargo build --release --quiet
FERRY=target/release/ferry

say "Creating the demo database shop on MariaDB with sample data"
my <<'SQL'
DROP DATABASE IF EXISTS shop;
CREATE DATABASE shop;
USE shop;
CREATE TABLE users (
  id BIGINT UNSIGNED PRIMARY KEY AUTO_INCREMENT,
  email VARCHAR(190) NOT NULL UNIQUE,
  name VARCHAR(100),
  balance DECIMAL(12,2) NOT NULL DEFAULT 0,
  status ENUM('active','blocked','deleted') NOT NULL DEFAULT 'active',
  tags SET('vip','beta','newsletter') NOT NULL DEFAULT '',
  created DATETIME(6) NOT NULL,
  seen TIMESTAMP(3) NULL,
  bio TEXT,
  prefs JSON
);
CREATE TABLE orders (
  user_id BIGINT UNSIGNED NOT NULL,
  order_no INT NOT NULL,
  amount DECIMAL(14,4) NOT NULL,
  qty SMALLINT UNSIGNED NOT NULL,
  ordered DATE NOT NULL,
  note VARCHAR(200),
  PRIMARY KEY (user_id, order_no)
);
SQL

say "Creating the target database ferry_demo on PostgreSQL"
pg -c "DROP DATABASE IF EXISTS ferry_demo" -c "CREATE DATABASE ferry_demo" >/dev/null
rm -rf .ferry-dev/state/demo

say "ferry validate (preflight: binlog settings, privileges, keys, target)"
"$FERRY" validate --config config.toml

say "Writing sample data on MariaDB (200,000 users, 600,000 orders) before ferry starts"
my shop <<'SQL'
INSERT INTO users (email, name, balance, status, tags, created, seen, bio, prefs)
SELECT CONCAT('user', seq, '@example.com'), CONCAT('User ', seq), (seq % 10000) / 100,
       ELT(1 + seq % 3, 'active', 'blocked', 'deleted'), ELT(1 + seq % 4, '', 'vip', 'beta,newsletter', 'vip,beta'),
       '2024-01-01 00:00:00' + INTERVAL seq SECOND, FROM_UNIXTIME(1700000000 + seq),
       CONCAT('bio of user ', seq), JSON_OBJECT('lang', ELT(1 + seq % 2, 'en', 'fr'), 'n', seq)
FROM seq_1_to_200000;
INSERT INTO orders SELECT 1 + seq % 200000, seq, seq * 1.2345, seq % 500, '2024-01-01' + INTERVAL (seq % 365) DAY,
       CONCAT('order ', seq) FROM seq_1_to_600000;
SQL
say "ferry plan (read-only: measures both databases, writes the migration plan to .ferry-dev/demo-plan.md)"
"$FERRY" plan --config config.toml --sample-seconds 3 --output .ferry-dev/demo-plan.md
sed -n '/^## Summary/,/^## Current state/p' .ferry-dev/demo-plan.md | sed '$d'

say "Starting ferry run (log: .ferry-dev/demo-ferry.log)"
"$FERRY" run --config config.toml >.ferry-dev/demo-ferry.log 2>&1 &
FERRY_PID=$!
LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null || true
  kill -TERM "$FERRY_PID" 2>/dev/null || true
  wait "$FERRY_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; say "Interrupted"; exit 130' INT
for _ in $(seq 1 50); do
  "$FERRY" status --config config.toml >/dev/null 2>&1 && break
  kill -0 "$FERRY_PID" 2>/dev/null || { cat .ferry-dev/demo-ferry.log; exit 1; }
  sleep 0.2
done

say "Starting a live write load while ferry backfills, then streams"
(
  i=0
  while true; do
    i=$((i + 1))
    # Random keys are drawn once per statement (RAND() in a WHERE clause would scan the table).
    my shop -e "SET @u = 1 + FLOOR(RAND() * 200000), @o = 1 + FLOOR(RAND() * 200000), @d = 1 + FLOOR(RAND() * 200000);
      BEGIN;
      UPDATE users SET balance = balance + 1.25, seen = NOW(3) WHERE id = @u;
      INSERT INTO orders VALUES (@o, 100000 + $i, 9.99, 1, CURDATE(), 'live');
      DELETE FROM orders WHERE user_id = @d AND order_no < 1000 LIMIT 1;
      INSERT INTO users (email, created) VALUES (CONCAT('live', $i, '@example.com'), NOW(6));
      COMMIT;" || true
    sleep 0.05
  done
) &
LOAD_PID=$!

END=$((SECONDS + DEMO_SECONDS))
while [ $SECONDS -lt $END ]; do
  sleep 3
  clear 2>/dev/null || true
  printf 'ferry demo — %ss left (Ctrl-C stops); in a browser: http://127.0.0.1:9187/\n\n' $((END > SECONDS ? END - SECONDS : 0))
  "$FERRY" status --config config.toml || true
  # PostgreSQL is counted first, so it never shows rows the MariaDB count has not seen yet.
  dst=$(pg -At -F ' ' ferry_demo -c "SELECT (SELECT count(*) FROM shop.users), (SELECT count(*) FROM shop.orders)")
  src=$(my -N shop -e "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM orders)" | tr '\t' ' ')
  printf '\n  rows (users orders)   PostgreSQL: %s   MariaDB: %s\n' "$dst" "$src"
done

say "Stopping the load and letting ferry catch up"
kill "$LOAD_PID" 2>/dev/null || true
wait "$LOAD_PID" 2>/dev/null || true
LOAD_PID=""
for _ in $(seq 1 60); do
  st=$("$FERRY" status --config config.toml --json 2>/dev/null || true)
  echo "$st" | grep -q '"caught_up": true' && break
  sleep 1
done
"$FERRY" status --config config.toml || true

say "Comparing MariaDB and PostgreSQL row for row"
my -N shop -e "SELECT id, email, name, balance, status, tags, DATE_FORMAT(created,'%Y-%m-%d %H:%i:%s.%f') FROM users ORDER BY id" | md5sum | cut -d' ' -f1 > .ferry-dev/demo-src.md5
pg -At -F $'\t' ferry_demo -c "SELECT id, email, coalesce(name,'NULL'), balance, status, tags, to_char(created,'YYYY-MM-DD HH24:MI:SS.US') FROM shop.users ORDER BY id" | md5sum | cut -d' ' -f1 > .ferry-dev/demo-dst.md5
if cmp -s .ferry-dev/demo-src.md5 .ferry-dev/demo-dst.md5; then
  say "users: identical ($(my -N shop -e 'SELECT COUNT(*) FROM users') rows)"
else
  say "users differ between source and target — see .ferry-dev/demo-ferry.log"
  exit 1
fi

say "ferry verify (chunk checksums inside both databases, plus 100 random rows compared value by value)"
"$FERRY" verify --config config.toml --sample 100
say "Demo done."
