#!/usr/bin/env bash
# GET /files with a million rows: the query plan and timings of the listing query on PostgreSQL.
#
#   scripts/test-services.sh bench/list-files.sh      # starts PostgreSQL (and moto, unused)
#
# Creates a database, migrates it with `stowage migrate`, inserts 1,000,000 files for one client
# (plus 200,000 for another, a webhook per 10 files), then runs the statement the service runs
# for a first page, a page deep in the list, a page filtered by state and one filtered by
# user_id, each with EXPLAIN (ANALYZE, BUFFERS). The report goes to bench/list-files.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STOWAGE_TEST_PG_URL:?run through scripts/test-services.sh}"
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
OUT=bench/list-files.txt

cargo build -q --bin stowage
DB="bench_list_$$"
"$PSQL" -q "$STOWAGE_TEST_PG_URL" -c "CREATE DATABASE $DB"
URL="${STOWAGE_TEST_PG_URL%/*}/$DB"
trap '"$PSQL" -q "$STOWAGE_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"' EXIT
STOWAGE_DATABASE_URL="$URL" target/debug/stowage migrate >/dev/null

"$PSQL" -q -v ON_ERROR_STOP=1 "$URL" <<'SQL'
INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, status, created_at, updated_at)
SELECT md5('w' || g)::uuid, CASE WHEN g <= 100000 THEN 'acme' ELSE 'globex' END, 'candidate',
       'user-' || g, '{}', md5(g::text), 'processed', now(), now()
FROM generate_series(1, 120000) g;
INSERT INTO files (id, client_id, state, file_name, content_type, file_size, sha256, staging_key,
                   created_at, uploaded_at, expires_at, state_changed_at, webhook_id, slot,
                   promoted_key, bound_at, promoted_at, active_at)
SELECT md5('f' || g)::uuid, c.client, s.state, 'cv-' || g || '.pdf', 'application/pdf', 200000,
       md5(g::text), c.client || '/' || md5('f' || g)::uuid,
       t.at, t.at, t.at + interval '72 hours', t.at,
       CASE WHEN s.state = 'promoted' THEN md5('w' || (g / 10 + 1))::uuid END,
       CASE WHEN s.state = 'promoted' THEN 'resume' END,
       CASE WHEN s.state = 'promoted' THEN c.client || '/' || md5('f' || g)::uuid END,
       CASE WHEN s.state = 'promoted' THEN t.at END,
       CASE WHEN s.state = 'promoted' THEN t.at END,
       t.at
FROM generate_series(1, 1200000) g,
     LATERAL (SELECT CASE WHEN g <= 1000000 THEN 'acme' ELSE 'globex' END AS client) c,
     LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'promoted' WHEN g % 10 = 1 THEN 'expired'
                          ELSE 'staged' END AS state) s,
     LATERAL (SELECT timestamptz '2026-01-01' + g * interval '7 seconds' AS at) t;
ANALYZE files;
ANALYZE webhooks;
SQL

# The service's statements (src/repo/sql.rs, list_files), one per filter, parameters filled in.
query() {
  local filter="" params="text, timestamptz, uuid, bigint" args="$1, $4, $5, 21"
  if [ "$2" != NULL ]; then filter="AND state = \$5"; params="$params, text"; args="$args, $2"; fi
  if [ "$3" != NULL ]; then
    local n=5; [ "$2" != NULL ] && n=6
    filter="$filter AND webhook_id IN (SELECT id FROM webhooks WHERE client_id = \$1 AND user_id = \$$n)"
    params="$params, text"; args="$args, $3"
  fi
  cat <<SQL
PREPARE page($params) AS
SELECT id, client_id, state, file_name, created_at FROM files
WHERE client_id = \$1 $filter AND (created_at, id) < (\$2, \$3)
ORDER BY created_at DESC, id DESC LIMIT \$4;
\\timing on
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE page($args);
SQL
}

{
  echo "# GET /files on PostgreSQL: 1,000,000 files of one client, 200,000 of another"
  echo "# $(date -u +%F) — $("$PSQL" -tA "$URL" -c 'SHOW server_version')"
  for case in \
    "first page|'acme'|NULL|NULL|'9999-12-31'|'ffffffff-ffff-ffff-ffff-ffffffffffff'" \
    "page 25,000 (half a million rows in)|'acme'|NULL|NULL|'2026-01-01'::timestamptz + 500000 * interval '7 seconds'|'00000000-0000-0000-0000-000000000000'" \
    "state=promoted, first page|'acme'|'promoted'|NULL|'9999-12-31'|'ffffffff-ffff-ffff-ffff-ffffffffffff'" \
    "user_id=user-4242|'acme'|NULL|'user-4242'|'9999-12-31'|'ffffffff-ffff-ffff-ffff-ffffffffffff'" \
    "state=expired and user_id=user-4242|'acme'|'expired'|'user-4242'|'9999-12-31'|'ffffffff-ffff-ffff-ffff-ffffffffffff'"; do
    IFS='|' read -r name client state user at id <<<"$case"
    echo
    echo "## $name"
    # Warm once, then the measured run.
    query "$client" "$state" "$user" "$at" "$id" | "$PSQL" -q "$URL" >/dev/null
    query "$client" "$state" "$user" "$at" "$id" | "$PSQL" -q "$URL" | grep -v '^$'
  done
} | tee "$OUT"
