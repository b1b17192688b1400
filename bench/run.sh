#!/usr/bin/env bash
# Stowage's benchmark: the same workloads straight to S3 ("direct", the limit), through Stowage
# (release build, PostgreSQL), and through a peer upload server (@tus/server + @tus/s3-store), all
# against one S3 server (s3s-fs's storage, bench/s3server) in the same run. Starts everything it
# needs on 127.0.0.1, stops it all, and writes bench/results.json and bench/REPORT.md.
#
#   bench/run.sh            # full run
#   BENCH_QUICK=1 bench/run.sh   # smaller counts, for trying the harness
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
TOOLS=$ROOT/bench/.tools
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
WORK=$(mktemp -d /tmp/stowage-bench.XXXXXX)
RESULTS=$WORK/results
mkdir -p "$RESULTS"
log() { echo "bench: $*" >&2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

PIDS=()
PGDATA=""
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  [ -n "$PGDATA" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1
  [ -n "$PGDATA" ] && rm -rf "$(dirname "$PGDATA")"
  # BENCH_KEEP=1: the run's files (Stowage's stderr among them) are left in $WORK.
  [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
  if [ -n "${BENCH_S3_ROOT:-}" ] && [ -n "${S3ROOT:-}" ]; then rm -rf "$S3ROOT"; fi
}
trap cleanup EXIT INT TERM

wait_http() { # URL
  for _ in $(seq 1 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  log "no answer from $1"; return 1
}

# --- tools -------------------------------------------------------------------------------------
# The S3 server: s3s-fs's storage served with TCP_NODELAY (bench/s3server); BENCH_S3=s3s-fs for
# the s3s-fs binary as published, whose small responses can wait ~40 ms for a delayed ACK.
S3SERVER=$TOOLS/s3server-target/release/bench-s3server
S3_SERVED_BY="(bench/s3server, TCP_NODELAY)"
[ "${BENCH_S3:-}" = s3s-fs ] && S3_SERVED_BY="(the s3s-fs binary)"
if [ "${BENCH_S3:-}" = s3s-fs ]; then
  if [ ! -x "$TOOLS/bin/s3s-fs" ]; then
    log "installing s3s-fs 0.14.1 (once, ~4 min)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked --root "$TOOLS" >/dev/null
  fi
else
  log "building the S3 server (bench/s3server; ~4 min the first time)"
  cargo build --release --locked --manifest-path bench/s3server/Cargo.toml \
    --target-dir "$TOOLS/s3server-target" 2>&1 | tail -1 >&2
fi
if [ ! -x "$PGBIN/initdb" ]; then
  log "installing postgresql-15"; apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null
fi
if [ ! -d bench/peer/node_modules/@tus/server ]; then
  log "installing the peer (npm ci)"; (cd bench/peer && npm ci --no-audit --no-fund >/dev/null 2>&1)
fi
# BENCH_NO_BUILD=1: measure the release binaries as they are (an A/B of copies made earlier, while
# the sources change).
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  log "building release binaries"
  cargo build --release --locked -p stowage -p stowage-bench 2>&1 | tail -1 >&2
fi
BENCH=$ROOT/target/release/stowage-bench
# BENCH_STOWAGE_BIN: another build of Stowage to measure (e.g. an earlier commit), same harness.
STOWAGE=${BENCH_STOWAGE_BIN:-$ROOT/target/release/stowage}

# --- services ----------------------------------------------------------------------------------
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
S3PORT=$(free_port)
# BENCH_S3_ROOT=DIR: the S3 server keeps its objects in a directory made under DIR (removed at
# the end) instead of beside the run's other files, on PostgreSQL's file system.
S3ROOT=$WORK/s3
[ -n "${BENCH_S3_ROOT:-}" ] && S3ROOT=$(mktemp -d "$BENCH_S3_ROOT/stowage-bench-s3.XXXXXX")
mkdir -p "$S3ROOT"
if [ "${BENCH_S3:-}" = s3s-fs ]; then
  "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$S3PORT" --access-key bench --secret-key benchsecret "$S3ROOT" \
    >"$WORK/s3s.log" 2>&1 &
else
  "$S3SERVER" 127.0.0.1 "$S3PORT" bench benchsecret "$S3ROOT" >"$WORK/s3s.log" 2>&1 &
fi
S3_PID=$!; PIDS+=($S3_PID)
wait_http "http://127.0.0.1:$S3PORT/"
export BENCH_S3_ENDPOINT=http://127.0.0.1:$S3PORT
"$BENCH" make-buckets direct-staging direct-files peer stowage-staging stowage-files >/dev/null
log "S3 server (${BENCH_S3:-bench/s3server}) on 127.0.0.1:$S3PORT"

# BENCH_PGSS=1: PostgreSQL counts its time per statement (pg_stat_statements, planning too);
# the statements that cost most are written to bench/.work/statements.txt at the end.
PGSS_OPTS=""
[ "${BENCH_PGSS:-0}" = 1 ] && PGSS_OPTS="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on"
PGPORT=$(free_port)
PGBASE=$(mktemp -d /tmp/stowage-bench-pg.XXXXXX); [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGBASE"
PGDATA=$PGBASE/data
as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync --no-instructions >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGBASE/server.log" -w -t 30 \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGBASE -c max_connections=200 -c shared_buffers=256MB $PGSS_OPTS" start >/dev/null
log "PostgreSQL on 127.0.0.1:$PGPORT (fsync on: the durable configuration)"

export STOWAGE_DATABASE_URL=postgres://postgres@127.0.0.1:$PGPORT/postgres
if [ -n "$PGSS_OPTS" ]; then
  psql -q "$STOWAGE_DATABASE_URL" -c "CREATE EXTENSION pg_stat_statements" >/dev/null
  pgss_report() {
    mkdir -p bench/.work
    psql "$STOWAGE_DATABASE_URL" -c "SELECT calls, round(total_exec_time::numeric, 1) AS exec_ms, \
        round(total_plan_time::numeric, 1) AS plan_ms, \
        round(((total_exec_time + total_plan_time) / NULLIF(calls, 0))::numeric, 3) AS ms_per_call, \
        left(regexp_replace(query, '\s+', ' ', 'g'), 110) AS statement \
      FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25" \
      >bench/.work/statements.txt
    log "wrote bench/.work/statements.txt"
  }
fi
export STOWAGE_STORAGE=s3 STOWAGE_S3_ENDPOINT=$BENCH_S3_ENDPOINT STOWAGE_S3_FORCE_PATH_STYLE=true
# One API key drives every workload: no per-key request limit for the benchmark.
export STOWAGE_SWEEP_SCHEDULE="0 0 0 1 1 *" STOWAGE_UPLOAD_TTL=24h RUST_LOG=warn STOWAGE_RATE_LIMIT=0 STOWAGE_MAX_CONCURRENT_UPLOADS=0
# The events workload's receiver listens on 127.0.0.1.
export STOWAGE_EVENTS_ALLOW_PRIVATE=true
# Starts a Stowage process on a free port; sets STOWAGE_PID and STOWAGE_URL.
start_stowage() {
  local port; port=$(free_port)
  STOWAGE_LISTEN=127.0.0.1:$port "$STOWAGE" serve >>"$WORK/stowage.out" 2>>"$WORK/stowage.err" &
  STOWAGE_PID=$!; PIDS+=($STOWAGE_PID)
  STOWAGE_URL=http://127.0.0.1:$port
  wait_http "$STOWAGE_URL/healthz"
}
stop_pid() { kill "$1" 2>/dev/null; for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$1"; }
start_stowage
MAIN_PID=$STOWAGE_PID MAIN_URL=$STOWAGE_URL
export BENCH_STOWAGE_URL=$STOWAGE_URL BENCH_CLIENT_ID=default
BENCH_API_KEY=$(grep -o 'stw_[0-9a-f_]*' "$WORK/stowage.out" | head -1); export BENCH_API_KEY
log "Stowage at $STOWAGE_URL (pid $MAIN_PID)"
# BENCH_HOLD_TEXT=1 (a diagnostic): no text job becomes due in this run, so a workload is
# measured without the extraction its webhooks cause (held jobs are not counted as left; do not
# combine it with the backlog workloads, which hold and release jobs themselves).
if [ "${BENCH_HOLD_TEXT:-0}" = 1 ]; then
  psql -q "$STOWAGE_DATABASE_URL" -c "CREATE FUNCTION bench_hold_all_jobs() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN NEW.run_at := 'infinity'; RETURN NEW; END \$\$;
    CREATE TRIGGER bench_hold_all_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION bench_hold_all_jobs()"
fi

PPORT=$(free_port)
PEER_PORT=$PPORT PEER_BUCKET=peer S3_ENDPOINT=$BENCH_S3_ENDPOINT node bench/peer/server.mjs >"$WORK/peer.log" 2>&1 &
PEER_PID=$!; PIDS+=($PEER_PID)
export BENCH_PEER_URL=http://127.0.0.1:$PPORT/files
wait_http "http://127.0.0.1:$PPORT/files"
log "peer on 127.0.0.1:$PPORT (pid $PEER_PID)"

# --- workloads ---------------------------------------------------------------------------------
Q=${BENCH_QUICK:-0}
n() { if [ "$Q" = 1 ]; then echo "$2"; else echo "$1"; fi; }
# BENCH_ONLY=REGEX runs only the workloads whose names match (for trying one change; the report
# is then printed, not written).
ONLY=${BENCH_ONLY:-}
wanted() { [ -z "$ONLY" ] || [[ $1 =~ $ONLY ]]; }
# BENCH_PERF=REGEX profiles the main Stowage process (`perf record -g`) during the workloads
# whose names match: bench/.work/perf-NAME.data. Release builds keep no frame pointers: for
# call stacks, BENCH_PERF_CALLGRAPH=dwarf (and a lower BENCH_PERF_FREQ, e.g. 199).
# Before a workload through Stowage: wait (up to 5 minutes) until the texts and events earlier
# workloads left behind are done, so that no workload pays for the one before it.
# Counts are asked on one psql session (`stowage-bench wait-zero`, `--cpu-until-sql`): a psql
# started per poll cost ~30 ms of CPU and a PostgreSQL backend's start on the cores the measured
# work shares (bench/notes.md).
settle() {
  local waited
  waited=$("$BENCH" wait-zero --sql "SELECT (SELECT count(*) FROM jobs WHERE kind = 'extract_text' AND run_at < 'infinity') + (SELECT count(*) FROM deliveries WHERE status = 'pending')")
  [[ $waited == *'"left":0'* ]] || log "still pending after 5 minutes, going on: $waited"
}
# BENCH_PERF_ALL=1: every process on the machine instead (PostgreSQL's backends and the
# extraction processes too; `perf report --sort comm,dso,symbol`). The held backlog's drain is
# named backlog_held_drain.
PERF_PID=""
perf_start() { # NAME
  PERF_PID=""
  if [ -n "${BENCH_PERF:-}" ] && [[ $1 =~ $BENCH_PERF ]]; then
    mkdir -p bench/.work
    local who=(-p "$MAIN_PID"); [ "${BENCH_PERF_ALL:-0}" = 1 ] && who=(-a)
    perf record -F "${BENCH_PERF_FREQ:-999}" --call-graph "${BENCH_PERF_CALLGRAPH:-fp}" "${who[@]}" \
      -o "bench/.work/perf-$1.data" >/dev/null 2>&1 &
    PERF_PID=$!
  fi
}
perf_stop() { if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; fi; }
run() { # NAME ARGS...
  local name=$1; shift
  wanted "$name" || return 0
  [[ $name == *stowage* || $name == replicas* ]] && settle
  log "$name"
  perf_start "$name"
  "$BENCH" "$@" >"$RESULTS/$name.json"
  perf_stop
}
KB200=204800
# A webhook's CPU includes the text extraction it causes: counted until every text is recorded.
# Texts still to record are counted from the jobs table (a job goes with its text's record), not
# from `files`: polled every 20 ms inside the measured window, a count over every file was a
# sequential scan that PostgreSQL's CPU figure carried.
TEXTS_LEFT="SELECT count(*) FROM jobs WHERE kind = 'extract_text' AND run_at < 'infinity'"
# Whether any is left (1 or 0), for the polls inside measured windows: it stops at the first job
# instead of counting them all (a count over the jobs table every 20 ms was ~2 % of the machine's
# CPU during the held drain, on PostgreSQL's account; bench/notes.md).
TEXTS_ANY="SELECT count(*) FROM (SELECT 1 FROM jobs WHERE kind = 'extract_text' AND run_at < 'infinity' LIMIT 1) j"
MB50=52428800
# Webhooks promote a 200 KB resume whose text is read (bench/resume_pdf.py: two pages of text
# and an embedded font's worth of bytes), as an ATS's would be; uploads send synthetic bodies.
python3 bench/resume_pdf.py $KB200 >"$WORK/resume200k.pdf"
export BENCH_DOCUMENT=$WORK/resume200k.pdf

sync  # a previous run's files (deleted at its end) are written out before the first workload
for t in direct stowage peer; do run "warmup_$t" upload --target $t --size $KB200 --concurrency 8 --count 200; done
for t in direct stowage peer; do
  run "upload200k_c1_$t" upload --target $t --size $KB200 --concurrency 1 --count "$(n 500 100)"
done
PGPID=$(head -1 "$PGDATA/postmaster.pid")
# CPU per operation by process tree; "all" is everything this script started except PostgreSQL
# (which daemonizes): load generator, S3 server, Stowage, the peer.
CPU="s3=$S3_PID,postgres=$PGPID,stowage=$MAIN_PID,all=$$"
run upload200k_c16_direct upload --target direct --size $KB200 --concurrency 16 --count "$(n 4000 500)" --cpu "$CPU"
run upload200k_c16_stowage upload --target stowage --size $KB200 --concurrency 16 --count "$(n 4000 500)" --rss-pid "$MAIN_PID" --cpu "$CPU"
run upload200k_c16_peer upload --target peer --size $KB200 --concurrency 16 --count "$(n 1000 200)" --rss-pid "$PEER_PID" --cpu "$CPU,peer=$PEER_PID"
for t in direct stowage; do
  run "upload50m_c4_$t" upload --target $t --size $MB50 --concurrency 4 --count "$(n 16 8)" --cpu "$CPU"
done
# Proxied uploads of the direct path's other sizes, for its CPU per upload against the proxy's.
run upload2m_c16_stowage upload --target stowage --size 2097152 --concurrency 16 --count "$(n 400 100)" --cpu "$CPU"
run upload50m_c16_stowage upload --target stowage --size $MB50 --concurrency 16 --count "$(n 48 16)" --cpu "$CPU"
# Direct uploads: Stowage's direct path (declare, presigned PUT, complete) against presigned PUTs
# the load generator makes itself (the limit of that path), 200 KB and 50 MB, 16 clients.
for t in presigned stowage-direct; do
  run "direct200k_c16_$t" upload --target $t --size $KB200 --concurrency 16 --count "$(n 4000 500)" --cpu "$CPU"
  run "direct50m_c16_$t" upload --target $t --size $MB50 --concurrency 16 --count "$(n 48 16)" --cpu "$CPU"
  # Past the size completed from one GET (1 MiB): HEAD and ranged reads, as for 50 MB.
  run "direct2m_c16_$t" upload --target $t --size 2097152 --concurrency 16 --count "$(n 400 100)" --cpu "$CPU"
done
# How the figures move with the number of clients: 1, 16 (above) and 64.
for c in 1 64; do
  for t in direct stowage; do
    run "upload200k_c${c}_${t}" upload --target $t --size $KB200 --concurrency $c --count "$(n $([ $c = 1 ] && echo 500 || echo 4000) 100)" --cpu "$CPU"
    run "webhook_c${c}_${t}" webhook --target $t --size $KB200 --concurrency $c --count "$(n $([ $c = 1 ] && echo 300 || echo 2000) 100)" --cpu "$CPU" --cpu-until-sql "$TEXTS_ANY"
  done
  for t in presigned stowage-direct; do
    run "direct200k_c${c}_$t" upload --target $t --size $KB200 --concurrency $c --count "$(n $([ $c = 1 ] && echo 300 || echo 2000) 100)" --cpu "$CPU"
  done
done
# Peak memory, each in a fresh process so that one workload's heap does not show in the other.
for spec in "rss1m_c16_stowage 1048576 160" "rss50m_c16_stowage $MB50 16"; do
  set -- $spec
  start_stowage
  BENCH_STOWAGE_URL=$STOWAGE_URL run "$1" upload --target stowage --size "$2" --concurrency 16 --count "$3" --rss-pid "$STOWAGE_PID"
  stop_pid "$STOWAGE_PID"
done
for t in direct stowage; do
  run "webhook_c16_$t" webhook --target $t --size $KB200 --concurrency 16 --count "$(n 2000 300)" --cpu "$CPU" --cpu-until-sql "$TEXTS_ANY"
done
# Erasures: DELETE /files/{id} of a promoted 200 KB resume (its text recorded), against
# DeleteObject of a promoted object — what erasing it must do on S3 at least. The files are
# staged and promoted first, not measured.
for t in direct stowage; do
  run "erase_c16_$t" erase --target $t --size $KB200 --concurrency 16 --count "$(n 1000 200)" --cpu "$CPU" --settle-sql "$TEXTS_ANY"
done
# Text extraction keeping up with promotion: 2,000 two-page text resumes (bench/resume_pdf.py)
# promoted by webhooks, 16 clients, then the time from the first webhook until every text is
# recorded; the drain rate is reported beside the webhook rate of the same workload.
if wanted backlog_stowage; then
  python3 bench/resume_pdf.py >"$WORK/resume.pdf"
  BACKLOG_N=$(n 2000 300)
  settle
  BACKLOG_T0=$(date +%s.%N)
  BENCH_DOCUMENT=$WORK/resume.pdf run backlog_webhooks_stowage webhook --target stowage --size 0 \
    --concurrency 16 --count "$BACKLOG_N" --cpu "$CPU"
  BACKLOG_T1=$(date +%s.%N)
  BACKLOG_LEFT=$(psql -tAq "$STOWAGE_DATABASE_URL" -c "$TEXTS_LEFT")
  "$BENCH" wait-zero --sql "$TEXTS_ANY" >/dev/null
  python3 - "$BACKLOG_T0" "$BACKLOG_T1" "$(date +%s.%N)" "$RESULTS/backlog_webhooks_stowage.json" "$BACKLOG_N" "$BACKLOG_LEFT" \
    "$(psql -tAq "$STOWAGE_DATABASE_URL" -c "SELECT count(*) FROM files WHERE text_status = 'extracted'")" \
    >"$RESULTS/backlog_stowage.json" <<'PYEOF'
import json, sys
t0, t1, t2 = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
webhooks, n, left, extracted = json.load(open(sys.argv[4])), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
# per_s: every text recorded, from the first webhook; backlog_per_s: what was still pending when
# the webhooks stopped, drained with the cores to itself.
print(json.dumps({"documents": n, "extracted": extracted, "drain_s": round(t2 - t0, 3),
                  "per_s": round(n / (t2 - t0), 1), "left_after_webhooks": left,
                  "backlog_per_s": round(left / (t2 - t1), 1) if left and t2 > t1 else None,
                  "webhooks_per_s": webhooks.get("per_s")}))
PYEOF
  log "backlog_stowage: $(cat "$RESULTS/backlog_stowage.json")"
  # The same 2,000 promoted while extraction is held back (a bench-only trigger makes their
  # jobs not yet due), then released at once: the whole backlog drains with the cores to
  # itself, beside the rate at which the webhooks promoted it.
  settle
  psql -q "$STOWAGE_DATABASE_URL" -c "CREATE FUNCTION bench_hold_jobs() RETURNS trigger LANGUAGE plpgsql AS \$\$
    BEGIN NEW.run_at := 'infinity'; RETURN NEW; END \$\$;
    CREATE TRIGGER bench_hold_jobs BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION bench_hold_jobs()"
  BENCH_DOCUMENT=$WORK/resume.pdf run backlog_held_webhooks_stowage webhook --target stowage --size 0 \
    --concurrency 16 --count "$BACKLOG_N" --cpu "$CPU"
  HELD=$(psql -tAq "$STOWAGE_DATABASE_URL" -c "SELECT count(*) FROM jobs WHERE run_at = 'infinity'")
  psql -q "$STOWAGE_DATABASE_URL" -c "DROP TRIGGER bench_hold_jobs ON jobs; DROP FUNCTION bench_hold_jobs()"
  HELD_TICKS=$("$BENCH" cpu-ticks "$MAIN_PID" "$PGPID" "$S3_PID")
  # Released and counted down on one session: the seconds from the release to the last text.
  perf_start backlog_held_drain
  HELD_WAIT=$("$BENCH" wait-zero --first "UPDATE jobs SET run_at = now() WHERE run_at = 'infinity'" --sql "$TEXTS_ANY")
  perf_stop
  python3 - "$HELD_WAIT" "$HELD" "$RESULTS/backlog_held_webhooks_stowage.json" \
    "$HELD_TICKS" "$("$BENCH" cpu-ticks "$MAIN_PID" "$PGPID" "$S3_PID")" \
    >"$RESULTS/backlog_held_stowage.json" <<'PYEOF'
import json, sys
waited, held = json.loads(sys.argv[1]), int(sys.argv[2])
webhooks = json.load(open(sys.argv[3]))
# CPU per document drained: Stowage (its extraction processes included), PostgreSQL, S3 server.
ms = [(a - b) * 10.0 / max(held, 1) for a, b in zip(json.loads(sys.argv[5]), json.loads(sys.argv[4]))]
seconds = waited["seconds"] if waited.get("left") == 0 else None
print(json.dumps({"documents": held, "drain_s": round(seconds, 3) if seconds else None,
                  "per_s": round(held / seconds, 1) if seconds else None,
                  "webhooks_per_s": webhooks.get("per_s"),
                  "cpu_ms_per_op": dict(zip(("stowage", "postgres", "s3"), ms))}))
PYEOF
  log "backlog_held_stowage: $(cat "$RESULTS/backlog_held_stowage.json")"
fi

# Several replicas against one PostgreSQL: the 200 KB upload and webhook workloads at 16
# clients, spread round robin over three replicas (each with its worker, sweeper and default
# connection budget), against the one-replica runs above; each replica's CPU is its share of the
# same load, and the connections PostgreSQL holds are counted when the load ends.
if wanted replicas3; then
  REPLICA_URLS=$MAIN_URL REPLICA_CPU="s3=$S3_PID,postgres=$PGPID,stowage=$MAIN_PID" REPLICA_PIDS=()
  for r in 2 3; do
    start_stowage
    REPLICA_URLS="$REPLICA_URLS,$STOWAGE_URL" REPLICA_CPU="$REPLICA_CPU,stowage$r=$STOWAGE_PID"
    REPLICA_PIDS+=("$STOWAGE_PID")
  done
  BENCH_STOWAGE_URL=$REPLICA_URLS run replicas3_upload200k_c16 upload --target stowage --size $KB200 \
    --concurrency 16 --count "$(n 4000 500)" --cpu "$REPLICA_CPU,all=$$"
  BENCH_STOWAGE_URL=$REPLICA_URLS run replicas3_webhook_c16 webhook --target stowage --size $KB200 \
    --concurrency 16 --count "$(n 2000 300)" --cpu "$REPLICA_CPU,all=$$" --cpu-until-sql "$TEXTS_ANY"
  psql -tAq "$STOWAGE_DATABASE_URL" -c "SELECT json_build_object('connections', count(*)) FROM pg_stat_activity \
    WHERE backend_type = 'client backend' AND application_name <> 'psql'" >"$RESULTS/replicas3_connections.json"
  for pid in "${REPLICA_PIDS[@]}"; do stop_pid "$pid"; done
fi

# The same upload and webhook workloads with an event endpoint registered (ratios to the two above).
run events_c16_stowage events --size $KB200 --concurrency 16 --uploads "$(n 4000 500)" --webhooks "$(n 2000 300)" --cpu "$CPU" --cpu-until-sql "$TEXTS_ANY"

# Malware scanning: the 200 KB upload workload through a Stowage that streams every upload to
# clamd (Debian's clamav-daemon, an offline signature database: EICAR), against the same workload
# without scanning above (upload200k_c16_stowage). clamd's CPU is counted beside Stowage's.
if wanted scan200k_c16_stowage; then
  if ! command -v clamd >/dev/null; then
    log "installing clamav-daemon"; apt-get update -qq && apt-get install -y -qq clamav-daemon >/dev/null
  fi
  CLAMPORT=$(free_port)
  mkdir -p "$WORK/clamd/db"
  EICAR_HEX=$(printf '%s%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$' 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')
  echo "Bench.EICAR:0:*:$EICAR_HEX" >"$WORK/clamd/db/bench.ndb"
  printf '%s\n' "Foreground yes" "DatabaseDirectory $WORK/clamd/db" "TCPSocket $CLAMPORT" \
    "TCPAddr 127.0.0.1" "StreamMaxLength 100M" "MaxThreads 16" >"$WORK/clamd/clamd.conf"
  [ "$(id -u)" -eq 0 ] && echo "User root" >>"$WORK/clamd/clamd.conf"
  clamd -c "$WORK/clamd/clamd.conf" >"$WORK/clamd/out.log" 2>&1 &
  CLAMD_PID=$!; PIDS+=($CLAMD_PID)
  for _ in $(seq 1 300); do
    python3 -c "import socket;s=socket.create_connection(('127.0.0.1',$CLAMPORT),timeout=1);s.sendall(b'zPING\0');exit(0 if s.recv(8).startswith(b'PONG') else 1)" 2>/dev/null && break
    sleep 0.1
  done
  STOWAGE_CLAMD=tcp://127.0.0.1:$CLAMPORT start_stowage
  BENCH_STOWAGE_URL=$STOWAGE_URL run scan200k_c16_stowage upload --target stowage --size $KB200 --concurrency 16 \
    --count "$(n 4000 500)" --cpu "s3=$S3_PID,postgres=$PGPID,stowage=$STOWAGE_PID,clamd=$CLAMD_PID,all=$$"
  stop_pid "$STOWAGE_PID"
fi

# Sweep: 20,000 files staged through a second Stowage process whose TTL is one second (same
# database and buckets), then one pass of `stowage sweep` on the main configuration, with an
# event endpoint registered (every expiry writes its event and a delivery).
SWEEP_N=$(n 20000 2000)
if wanted sweep_stowage; then
STOWAGE_UPLOAD_TTL=1s start_stowage
BENCH_STOWAGE_URL=$STOWAGE_URL run sweep_fill_stowage upload --target stowage --size 1024 --concurrency 16 --count "$SWEEP_N"
stop_pid "$STOWAGE_PID"
# The outbox on: an endpoint subscribed to every event, so each expiry writes its event and a
# delivery (to a closed port: the pass itself delivers nothing; the main process's worker tries).
SWEEP_ENDPOINT=$(curl -sS --fail-with-body -X POST "$BENCH_STOWAGE_URL/event-endpoints" -H "X-API-Key: $BENCH_API_KEY" \
  -H "X-ATS-Client-ID: $BENCH_CLIENT_ID" -H 'Content-Type: application/json' \
  -d '{"url": "http://127.0.0.1:9/sweep-bench"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 1.5
# The pass alone: the main process's worker would start delivering (failing) the pass's events
# while it runs, which is the events workload's cost, not the sweeper's.
[ "${BENCH_SWEEP_ALONE:-1}" = 1 ] && stop_pid "$MAIN_PID"
sync  # both deletions start with the fill's files written out (the direct one below too)
# CPU of the pass (the `stowage sweep` process), of PostgreSQL and of the S3 server, per expiry.
SWEEP_TICKS=$("$BENCH" cpu-ticks "$S3_PID" "$PGPID")
python3 -c 'import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    subprocess.run(sys.argv[3:], stdout=out, stderr=open(sys.argv[2], "a"))
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print((u.ru_utime + u.ru_stime) * 1000)' "$RESULTS/sweep_stowage.json" "$WORK/stowage.err" "$STOWAGE" sweep --json \
  >"$WORK/sweep_cpu_ms"
python3 -c 'import json, sys
path, ms, before, after = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
r = json.load(open(path)); n = max(r["expired"], 1)
ticks = [(int(a) - int(b)) * 10.0 / n for a, b in zip(after, before)]
r["cpu_ms_per_op"] = {"stowage": ms / n, "s3": ticks[0], "postgres": ticks[1]}
json.dump(r, open(path, "w"))' "$RESULTS/sweep_stowage.json" "$(cat "$WORK/sweep_cpu_ms")" "$SWEEP_TICKS" "$("$BENCH" cpu-ticks "$S3_PID" "$PGPID")"
if [ "${BENCH_SWEEP_ALONE:-1}" = 1 ]; then
  start_stowage; MAIN_PID=$STOWAGE_PID MAIN_URL=$STOWAGE_URL BENCH_STOWAGE_URL=$STOWAGE_URL
fi
curl -sS --fail-with-body -X DELETE "$BENCH_STOWAGE_URL/event-endpoints/$SWEEP_ENDPOINT" -H "X-API-Key: $BENCH_API_KEY" \
  -H "X-ATS-Client-ID: $BENCH_CLIENT_ID" >/dev/null
log "sweep_stowage"
run sweep_fill_direct fill-direct --prefix sweep --count "$SWEEP_N"
sync
run sweep_direct delete-direct --prefix sweep --concurrency 3 --cpu "s3=$S3_PID,postgres=$PGPID,all=$$"
fi
[ -n "$PGSS_OPTS" ] && pgss_report
if [ -n "$ONLY" ]; then
  for f in "$RESULTS"/*.json; do
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sys.argv[2], "per_s", r.get("per_s"), "p50_ms", r.get("p50_ms"), "p99_ms", r.get("p99_ms"), "max_ms", r.get("max_ms"), "cpu_ms_per_op", r.get("cpu_ms_per_op"), "events", r.get("events"), "peak_rss_mb", r.get("peak_rss_mb"))' "$f" "$(basename "$f" .json)"
  done
  if [ -f "$RESULTS/sweep_stowage.json" ]; then  # deletions/s as the report counts them
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("sweep_stowage deleted_per_s", round(r["objects_deleted"] / max(r["expire_ms"], 1) * 1000, 1), "expired", r["expired"], "expire_ms", r["expire_ms"])' "$RESULTS/sweep_stowage.json"
  fi
  exit 0
fi

# --- report ------------------------------------------------------------------------------------
{
  echo "{"
  echo "\"machine\": {\"cores\": $(nproc), \"mem_gib\": $(awk '/MemTotal/{printf "%.1f", $2/1048576}' /proc/meminfo), \"kernel\": \"$(uname -r)\", \"cpu\": \"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //;s/"//g')\"},"
  echo "\"versions\": {\"stowage\": \"$("$STOWAGE" --version)\", \"rustc\": \"$(rustc --version)\", \"node\": \"$(node --version)\", \"s3s_fs\": \"0.14.1 ${S3_SERVED_BY}\", \"postgres\": \"$("$PGBIN/postgres" --version)\", \"tus_server\": \"$(node -p "require('./bench/peer/node_modules/@tus/server/package.json').version")\", \"tus_s3_store\": \"$(node -p "require('./bench/peer/node_modules/@tus/s3-store/package.json').version")\"},"
  echo "\"quick\": $([ "$Q" = 1 ] && echo true || echo false),"
  echo "\"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
  echo "\"runs\": {"
  first=1
  for f in "$RESULTS"/*.json; do
    [ $first = 1 ] || echo ","
    first=0
    printf '"%s": %s' "$(basename "$f" .json)" "$(cat "$f")"
  done
  echo "}}"
} >bench/results.json
python3 bench/report.py bench/results.json >bench/REPORT.md
log "wrote bench/results.json and bench/REPORT.md"
