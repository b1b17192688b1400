#!/usr/bin/env bash
# Does the work an operator and a client do stay flat as the files table grows? The same
# operations at 10,000, 100,000 and 1,000,000 files of one client, on PostgreSQL, through the
# release binary: `stowage stats`, `GET /ops/storage`, `GET /files` (the first page, the tenth
# page by following `next`, one state), and one `stowage sweep` pass that expires 1,000 due
# files. The report goes to bench/scale.txt.
#
#   scripts/test-services.sh bench/scale.sh      # starts PostgreSQL (and moto, unused)
#
# The rows are written by SQL (like bench/list-files.sh): 80 % promoted (a webhook per 10),
# 10 % staged and not yet due, 10 % expired tombstones younger than the retention, plus 1,000
# staged files past their deadline for the pass to expire. Objects are in a local directory
# (`fs:`); the 1,000 due files have none, which the pass treats as already deleted.
# SCALE_TIERS="10000 100000" for a shorter run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${STOWAGE_TEST_PG_URL:?run through scripts/test-services.sh}"
PSQL=${PSQL:-/usr/lib/postgresql/15/bin/psql}
OUT=bench/scale.txt
TIERS=${SCALE_TIERS:-10000 100000 1000000}
REPEAT=7

cargo build -q --release --locked --bin stowage
# SCALE_STOWAGE_BIN: another build to measure (e.g. an earlier commit).
STOWAGE=${SCALE_STOWAGE_BIN:-$(pwd)/target/release/stowage}
WORK=$(mktemp -d /tmp/stowage-scale.XXXXXX)
SERVE_PID=""
DB=""
cleanup() {
  set +e
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  [ -n "$DB" ] && "$PSQL" -q "$STOWAGE_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)"
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The median, in ms, of REPEAT runs of a command (its output discarded).
median_ms() {
  local times=()
  for _ in $(seq 1 "$REPEAT"); do
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    times+=("$(( (t1 - t0) / 1000 ))")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

fill() { # N: the tier's rows
  "$PSQL" -q -v ON_ERROR_STOP=1 "$URL" <<SQL
INSERT INTO webhooks (id, client_id, kind, user_id, payload, payload_hash, status, created_at, updated_at)
SELECT md5('w' || g)::uuid, 'acme', 'candidate', 'user-' || g, '{}', md5(g::text), 'processed',
       now() - interval '1 day', now() - interval '1 day'
FROM generate_series(1, $1 / 10) g;
INSERT INTO files (id, client_id, state, file_name, content_type, file_size, sha256, staging_key,
                   created_at, uploaded_at, expires_at, state_changed_at, webhook_id, slot,
                   promoted_key, bound_at, promoted_at, active_at, text_status)
SELECT md5('f' || g)::uuid, 'acme', s.state, 'cv-' || g || '.pdf', 'application/pdf', 200000,
       md5(g::text), 'acme/' || md5('f' || g)::uuid,
       t.at, t.at, CASE WHEN s.state = 'staged' THEN now() + interval '72 hours' ELSE t.at + interval '72 hours' END,
       CASE WHEN s.state = 'expired' THEN now() - interval '1 hour' ELSE t.at END,
       CASE WHEN s.state = 'promoted' THEN md5('w' || (g / 10 + 1))::uuid END,
       CASE WHEN s.state = 'promoted' THEN 'resume' END,
       CASE WHEN s.state = 'promoted' THEN 'acme/' || md5('f' || g)::uuid END,
       CASE WHEN s.state = 'promoted' THEN t.at END,
       CASE WHEN s.state = 'promoted' THEN t.at END,
       t.at,
       CASE WHEN s.state = 'promoted' THEN 'extracted' END
FROM generate_series(1, $1) g,
     LATERAL (SELECT CASE WHEN g % 10 = 8 THEN 'expired' WHEN g % 10 = 9 THEN 'staged'
                          ELSE 'promoted' END AS state) s,
     LATERAL (SELECT now() - interval '30 days' + g * (interval '29 days' / $1) AS at) t;
-- The pass's work: 1,000 staged files past their deadline.
INSERT INTO files (id, client_id, state, file_name, content_type, file_size, sha256, staging_key,
                   created_at, uploaded_at, expires_at, state_changed_at, active_at)
SELECT md5('due' || g)::uuid, 'acme', 'staged', 'due-' || g || '.pdf', 'application/pdf', 200000,
       md5(g::text), 'acme/' || md5('due' || g)::uuid, now() - interval '4 days',
       now() - interval '4 days', now() - interval '1 hour', now() - interval '4 days',
       now() - interval '4 days'
FROM generate_series(1, 1000) g;
VACUUM ANALYZE files;
VACUUM ANALYZE webhooks;
SQL
}

{
  echo "# The operators' and clients' reads, and one sweep pass, as the files table grows"
  echo "# $(date -u +%F) — bench/scale.sh, release build, $("$PSQL" -tA "$STOWAGE_TEST_PG_URL" -c 'SHOW server_version'), $(nproc) cores"
  echo "# median of $REPEAT runs in ms (curl's total time for HTTP; the process's wall time for the CLI,"
  echo "# its start and connection included); the pass: one run, expiring 1,000 due files"
  echo
  echo "| files | bytes a file in PostgreSQL (row and indexes) | stowage stats | GET /ops/storage | GET /files first page | tenth page | ?state=staged | sweep pass (1,000 expired) |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT"

for n in $TIERS; do
  DB="bench_scale_$$_$n"
  "$PSQL" -q "$STOWAGE_TEST_PG_URL" -c "CREATE DATABASE $DB"
  URL="${STOWAGE_TEST_PG_URL%/*}/$DB"
  export STOWAGE_DATABASE_URL=$URL STOWAGE_STORAGE="fs:$WORK/objects-$n"
  "$STOWAGE" migrate >/dev/null
  KEY=$("$STOWAGE" clients add acme --key bench --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')
  echo "scale: filling $n files" >&2
  fill "$n"
  bytes=$("$PSQL" -tA "$URL" -c "SELECT pg_total_relation_size('files') / count(*) FROM files")
  # The pass first (a starting `serve` may run one of its own).
  t0=$(date +%s%N)
  expired=$("$STOWAGE" sweep --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["expired"])')
  pass=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ "$expired" = 1000 ] || { echo "scale: the pass expired $expired files, not 1000" >&2; exit 1; }

  PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  # No scheduled pass while measuring: the one pass below is run by hand.
  STOWAGE_LISTEN=127.0.0.1:$PORT STOWAGE_SWEEP_SCHEDULE="0 0 0 1 1 *" STOWAGE_LOG=warn \
    "$STOWAGE" serve >"$WORK/serve-$n.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
  BASE=http://127.0.0.1:$PORT
  get() { curl -sf -H "X-API-Key: $KEY" -H "X-ATS-Client-ID: acme" "$BASE$1"; }
  # The tenth page's path, by following `next` from the first.
  PAGE=/files?limit=100
  for _ in $(seq 1 9); do
    PAGE=$(get "$PAGE" | python3 -c 'import json,sys; print(json.load(sys.stdin)["next"])')
  done
  stats=$(median_ms "$STOWAGE" stats)
  ops=$(median_ms curl -sf "$BASE/ops/storage")
  first=$(median_ms get "/files?limit=100")
  tenth=$(median_ms get "$PAGE")
  staged=$(median_ms get "/files?state=staged&limit=100")
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=""

  printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    "$(printf "%'d" "$n")" "$bytes" "$stats" "$ops" "$first" "$tenth" "$staged" "$pass" >>"$OUT"
  "$PSQL" -q "$STOWAGE_TEST_PG_URL" -c "DROP DATABASE $DB WITH (FORCE)"; DB=""
done
cat "$OUT"
