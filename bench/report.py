#!/usr/bin/env python3
"""Renders bench/results.json (written by bench/run.sh) as bench/REPORT.md on stdout.

Every Stowage figure is shown beside the direct-to-S3 figure of the same run, as a ratio, with
the target from the benchmark issue. The hand-written analysis in bench/notes.md is appended.
"""
import json
import os
import sys

results = json.load(open(sys.argv[1]))
runs = results["runs"]


def get(name, field):
    run = runs.get(name)
    return None if run is None else run.get(field)


def fmt(value, digits=1):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


rows = []


def row(figure, stowage, reference, ref_name, target, higher_is_better=True, unit=""):
    r = ratio(stowage, reference)
    if r is None or target is None:
        verdict = "—"
    else:
        ok = r >= target if higher_is_better else r <= target
        verdict = ("met" if ok else "**missed**") + f" ({'≥' if higher_is_better else '≤'} {target})"
    rows.append(
        f"| {figure} | {fmt(stowage)}{unit} | {fmt(reference)}{unit} ({ref_name}) | {fmt(r, 2)} | {verdict} |"
    )


def sweep_rate():
    run = runs.get("sweep_stowage")
    if not run:
        return None
    seconds = run.get("expire_ms", 0) / 1000.0
    return run["objects_deleted"] / seconds if seconds > 0 else None


for c in (1, 16):
    row(f"200 KB uploads/s, {c} client{'s' if c > 1 else ''}", get(f"upload200k_c{c}_stowage", "per_s"),
        get(f"upload200k_c{c}_direct", "per_s"), "direct", 0.85 if c == 16 else None)
    row(f"200 KB upload p99 latency, {c} client{'s' if c > 1 else ''}", get(f"upload200k_c{c}_stowage", "p99_ms"),
        get(f"upload200k_c{c}_direct", "p99_ms"), "direct", 1.5 if c == 16 else None, higher_is_better=False, unit=" ms")
row("50 MB uploads, 4 clients, MB/s", get("upload50m_c4_stowage", "mb_per_s"), get("upload50m_c4_direct", "mb_per_s"),
    "direct", 0.9)
row("webhooks/s (bind + promote a 200 KB file), 16 clients", get("webhook_c16_stowage", "per_s"),
    get("webhook_c16_direct", "per_s"), "direct copy+delete", 0.8)
row("sweep deletions/s (the pass alone, files on disk)", sweep_rate(), get("sweep_direct", "per_s"),
    "direct DeleteObjects, 3 calls at a time", 0.8)
row("200 KB uploads/s, 16 clients, vs the peer", get("upload200k_c16_stowage", "per_s"),
    get("upload200k_c16_peer", "per_s"), "peer", 5.0)
row("peak RSS during 200 KB uploads, 16 clients, vs the peer", get("upload200k_c16_stowage", "peak_rss_mb"),
    get("upload200k_c16_peer", "peak_rss_mb"), "peer", 0.25, higher_is_better=False, unit=" MB")

row("direct path: 200 KB uploads/s, 16 clients", get("direct200k_c16_stowage-direct", "per_s"),
    get("direct200k_c16_presigned", "per_s"), "presigned PUT", 0.75)
row("direct path: 50 MB uploads, 16 clients, MB/s", get("direct50m_c16_stowage-direct", "mb_per_s"),
    get("direct50m_c16_presigned", "mb_per_s"), "presigned PUT", 0.9)


def cpu_of(name, proc):
    return (get(name, "cpu_ms_per_op") or {}).get(proc)


row("direct path: Stowage CPU ms per 50 MB upload vs per 200 KB", cpu_of("direct50m_c16_stowage-direct", "stowage"),
    cpu_of("direct200k_c16_stowage-direct", "stowage"), "per 200 KB", 1.2, higher_is_better=False, unit=" ms")
row("direct path: Stowage CPU ms per 50 MB upload vs per 2 MB (both past the one-request size)",
    cpu_of("direct50m_c16_stowage-direct", "stowage"),
    cpu_of("direct2m_c16_stowage-direct", "stowage"), "per 2 MB", 1.2, higher_is_better=False, unit=" ms")



def own_cpu(name):
    """Stowage's (every replica's) and PostgreSQL's CPU ms per operation of a run."""
    cpu = get(name, "cpu_ms_per_op")
    if not cpu:
        return None
    return sum(v for k, v in cpu.items() if k.startswith("stowage") or k == "postgres")


# Cost per operation (DESIGN §14).
row("webhooks: Stowage + PostgreSQL CPU ms per webhook vs the S3 server's per copy + delete",
    own_cpu("webhook_c16_stowage"), cpu_of("webhook_c16_direct", "s3"), "S3 server, direct copy+delete", 1.5,
    higher_is_better=False, unit=" ms")
row("200 KB uploads: Stowage + PostgreSQL CPU ms per upload vs the S3 server's per PUT",
    own_cpu("upload200k_c16_stowage"), cpu_of("upload200k_c16_direct", "s3"), "S3 server, direct PUT", 1.0,
    higher_is_better=False, unit=" ms")
for size, direct, proxied in (("200 KB", "direct200k_c16_stowage-direct", "upload200k_c16_stowage"),
                              ("2 MB", "direct2m_c16_stowage-direct", "upload2m_c16_stowage"),
                              ("50 MB", "direct50m_c16_stowage-direct", "upload50m_c16_stowage")):
    row(f"direct path: Stowage CPU ms per {size} upload vs per proxied {size} upload", cpu_of(direct, "stowage"),
        cpu_of(proxied, "stowage"), "proxied", 0.5, higher_is_better=False, unit=" ms")
# Erasure (no target in §14; its cost is in docs/capacity.md).
row("erasures/s (DELETE /files/{id} of a promoted 200 KB resume), 16 clients", get("erase_c16_stowage", "per_s"),
    get("erase_c16_direct", "per_s"), "direct DeleteObject", None)
row("erasures: Stowage + PostgreSQL CPU ms per erasure vs the S3 server's per DeleteObject",
    own_cpu("erase_c16_stowage"), cpu_of("erase_c16_direct", "s3"), "S3 server, direct DeleteObject", None,
    higher_is_better=False, unit=" ms")
backlog = runs.get("backlog_stowage") or {}
held = runs.get("backlog_held_stowage") or {}
row(f"text extraction: a backlog of {fmt(held.get('documents'))} promoted resumes drained/s vs the webhooks/s "
    "that promoted them (extraction held back meanwhile)", held.get("per_s"), held.get("webhooks_per_s"),
    "webhooks/s, 16 clients", 1.0)

rss50 = get("rss50m_c16_stowage", "peak_rss_mb")
rss1 = get("rss1m_c16_stowage", "peak_rss_mb")

m = results["machine"]
v = results["versions"]
out = []
out.append("# Stowage benchmark report\n")
out.append(f"Run {results['date']}{' (quick run: reduced counts)' if results.get('quick') else ''} with `bench/run.sh`.\n")
out.append("## Machine and versions\n")
out.append(f"- {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, Linux {m['kernel']}")
out.append(f"- {v['stowage']} (release build), {v['rustc']}")
out.append(f"- S3 server: s3s-fs {v['s3_fs'] if 's3_fs' in v else v['s3s_fs']} (signature checking, data on local disk); {v['postgres']}")
out.append("- CPU per operation counts each process tree, its children that ended during the run included")
out.append(f"- peer: @tus/server {v['tus_server']} + @tus/s3-store {v['tus_s3_store']} on Node {v['node']}")
out.append("- every process (S3 server, PostgreSQL, Stowage, the peer, the load generator) shares the same cores\n")
out.append("## Results (ratios to the same run)\n")
out.append("| figure | Stowage | reference | ratio | target |")
out.append("| --- | --- | --- | --- | --- |")
out.extend(rows)
out.append("")
out.append("Memory while uploading (peak resident set of the Stowage process, sampled every 10 ms):\n")
out.append(f"- 16 concurrent 50 MB uploads: **{fmt(rss50)} MB** (target ≤ 150 MB: {'met' if rss50 is not None and rss50 <= 150 else '**missed**'})")
out.append(f"- 16 concurrent 1 MB uploads: **{fmt(rss1)} MB** — memory does not grow with file size when these two are close\n")
scaling = []
have_scaling = False
for label, ours, ref in (("200 KB uploads (proxy)", "upload200k_c{}_stowage", "upload200k_c{}_direct"),
                         ("webhooks", "webhook_c{}_stowage", "webhook_c{}_direct"),
                         ("200 KB direct-path uploads", "direct200k_c{}_stowage-direct", "direct200k_c{}_presigned")):
    cells = []
    for c in (1, 16, 64):
        o, r = runs.get(ours.format(c)), runs.get(ref.format(c))
        if not o or not r:
            cells.append("—")
            continue
        cpu = o.get("cpu_ms_per_op") or {}
        own = (cpu.get("stowage") or 0) + (cpu.get("postgres") or 0)
        have_scaling = True
        cells.append(f"{fmt(o.get('per_s'), 0)}/s, {fmt(ratio(o.get('per_s'), r.get('per_s')), 2)}×, "
                     f"{fmt(own, 2)} ms")
    scaling.append(f"| {label} | " + " | ".join(cells) + " |")
if have_scaling:
    out.append("## From 1 to 16 to 64 clients\n")
    out.append("Each cell: Stowage's operations/s, its ratio to the reference of the same run (direct PUT,")
    out.append("copy + delete, presigned PUT), and Stowage + PostgreSQL CPU per operation.\n")
    out.append("| workload | 1 client | 16 clients | 64 clients |")
    out.append("| --- | --- | --- | --- |")
    out.extend(scaling)
    out.append("")
ev = runs.get("events_c16_stowage")
if ev:
    out.append("## Events (an endpoint registered, a receiver on 127.0.0.1)\n")
    out.append("The same workloads with one event endpoint subscribed to every type, as ratios to the")
    out.append("runs without endpoints earlier in this run (CPU includes the delivery worker's):\n")
    out.append("| figure | with an endpoint | without | ratio |")
    out.append("| --- | --- | --- | --- |")

    def pair(figure, with_, without, digits=1):
        out.append(f"| {figure} | {fmt(with_, digits)} | {fmt(without, digits)} | {fmt(ratio(with_, without), 2)} |")

    up, wh = ev.get("upload", {}), ev.get("webhook", {})
    base_up, base_wh = runs.get("upload200k_c16_stowage", {}), runs.get("webhook_c16_stowage", {})
    pair("200 KB uploads/s, 16 clients", up.get("per_s"), base_up.get("per_s"))
    pair("200 KB upload p99 ms", up.get("p99_ms"), base_up.get("p99_ms"))
    for proc in ("stowage", "postgres"):
        pair(f"{proc} CPU ms per upload", (up.get("cpu_ms_per_op") or {}).get(proc),
             (base_up.get("cpu_ms_per_op") or {}).get(proc), 2)
    pair("webhooks/s, 16 clients", wh.get("per_s"), base_wh.get("per_s"))
    for proc in ("stowage", "postgres"):
        pair(f"{proc} CPU ms per webhook", (wh.get("cpu_ms_per_op") or {}).get(proc),
             (base_wh.get("cpu_ms_per_op") or {}).get(proc), 2)
    e = ev.get("events", {})
    out.append("")
    out.append(f"Events: {fmt(e.get('received'))} of {fmt(e.get('expected'))} delivered, "
               f"**{fmt(e.get('per_s'))} events/s** from the first upload to the last delivery, "
               f"{fmt(e.get('duplicates'))} duplicates; {fmt(e.get('pending_when_load_ended'))} were still "
               f"pending when the load ended and arrived {fmt(e.get('drain_s'), 2)} s later.\n")
if backlog:
    out.append("## Text extraction keeping up\n")
    out.append(f"{fmt(backlog.get('documents'))} two-page text resumes promoted by webhooks at 16 clients "
               f"({fmt(backlog.get('webhooks_per_s'))} webhooks/s while extraction shares the cores); every text "
               f"recorded {fmt(backlog.get('drain_s'), 2)} s after the first webhook ({fmt(backlog.get('per_s'))}/s); "
               f"{fmt(backlog.get('left_after_webhooks'))} were pending when the webhooks stopped and drained at "
               f"**{fmt(backlog.get('backlog_per_s'))}/s**.\n")
if held:
    out.append(f"The same number promoted again with extraction held back (their jobs made not yet due "
               f"by a bench-only trigger) at {fmt(held.get('webhooks_per_s'))} webhooks/s, then released: "
               f"all {fmt(held.get('documents'))} texts recorded in {fmt(held.get('drain_s'), 2)} s, "
               f"**{fmt(held.get('per_s'))}/s**.\n")
r3 = {kind: runs.get(f"replicas3_{kind}_c16") for kind in ("upload200k", "webhook")}
if any(r3.values()):
    out.append("## Three replicas, one PostgreSQL\n")
    out.append("The same load spread round robin over three replicas, against the one-replica run; each")
    out.append("replica's CPU per operation of the whole load is its share of it:\n")
    out.append("| workload | 1 replica | 3 replicas | ratio | replica CPU ms per op (1 / 2 / 3) | PostgreSQL CPU ms per op (1 replica → 3) |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for kind, label, one in (("upload200k", "200 KB uploads/s", "upload200k_c16_stowage"),
                             ("webhook", "webhooks/s", "webhook_c16_stowage")):
        run3 = r3.get(kind)
        if not run3:
            continue
        cpu3 = run3.get("cpu_ms_per_op") or {}
        shares = " / ".join(fmt(cpu3.get(k), 2) for k in ("stowage", "stowage2", "stowage3"))
        out.append(f"| {label}, 16 clients | {fmt(get(one, 'per_s'))} | {fmt(run3.get('per_s'))} | "
                   f"{fmt(ratio(run3.get('per_s'), get(one, 'per_s')), 2)} | {shares} | "
                   f"{fmt(cpu_of(one, 'postgres'), 2)} → {fmt(cpu3.get('postgres'), 2)} |")
    conns = runs.get("replicas3_connections") or {}
    out.append(f"\nPostgreSQL connections held by the three replicas when the load ended: "
               f"{fmt(conns.get('connections'))} (budget: 3 × `STOWAGE_DATABASE_MAX_CONNECTIONS`, default 10).\n")
scan = runs.get("scan200k_c16_stowage")
if scan:
    base = runs.get("upload200k_c16_stowage", {})
    out.append("## Malware scanning (clamd, an offline signature database)\n")
    out.append("The 200 KB upload workload, 16 clients, through a Stowage that streams every upload to")
    out.append("clamd (`STOWAGE_CLAMD`), as ratios to the same workload without scanning in this run:\n")
    out.append("| figure | scanned | not scanned | ratio |")
    out.append("| --- | --- | --- | --- |")

    def scan_pair(figure, with_, without, digits=1):
        out.append(f"| {figure} | {fmt(with_, digits)} | {fmt(without, digits)} | {fmt(ratio(with_, without), 2)} |")

    scan_pair("200 KB uploads/s", scan.get("per_s"), base.get("per_s"))
    scan_pair("200 KB upload p99 ms", scan.get("p99_ms"), base.get("p99_ms"))
    scan_cpu, base_cpu = scan.get("cpu_ms_per_op") or {}, base.get("cpu_ms_per_op") or {}
    scan_pair("Stowage CPU ms per upload", scan_cpu.get("stowage"), base_cpu.get("stowage"), 2)
    own = (scan_cpu.get("stowage") or 0) + (scan_cpu.get("clamd") or 0)
    scan_pair("Stowage + clamd CPU ms per upload", own, base_cpu.get("stowage"), 2)
    out.append("")
out.append("## Every run\n")
out.append("| run | ok | errors | /s | MB/s | p50 ms | p90 ms | p99 ms | max ms | peak RSS MB |")
out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, run in sorted(runs.items()):
    if "per_s" not in run or "p50_ms" not in run:
        continue
    out.append(
        f"| {name} | {run['ok']} | {run['errors']} | {fmt(run['per_s'])} | {fmt(run['mb_per_s'])} | {fmt(run['p50_ms'])} | "
        f"{fmt(run['p90_ms'])} | {fmt(run['p99_ms'])} | {fmt(run['max_ms'])} | {fmt(run.get('peak_rss_mb'))} |"
    )
cpu_rows = [(n, r["cpu_ms_per_op"]) for n, r in sorted(runs.items()) if r.get("cpu_ms_per_op")]
if cpu_rows:
    out.append("\nCPU time per operation (ms), by process tree, from /proc (100 Hz ticks; \"all\" is every process")
    out.append("the script started — load generator, S3 server, Stowage, peer — PostgreSQL is separate):\n")
    names = ["all", "s3", "stowage", "postgres", "peer", "clamd"]
    out.append("| run | " + " | ".join(names) + " |")
    out.append("| --- |" + " --- |" * len(names))
    for n, cpu in cpu_rows:
        out.append(f"| {n} | " + " | ".join(fmt(cpu.get(k), 2) for k in names) + " |")
sweep = runs.get("sweep_stowage")
if sweep:
    out.append(
        f"\nSweep pass: {sweep['objects_deleted']:,} objects deleted and {sweep['expired']:,} rows expired in "
        f"{sweep.get('expire_ms', 0) / 1000:.2f} s of expiry (whole pass incl. reconciliation listing: "
        f"{sweep.get('pass_ms', 0) / 1000:.2f} s); direct: {fmt(get('sweep_direct', 'deleted'))} keys in "
        f"{fmt(get('sweep_direct', 'elapsed_s'), 2)} s. The main process is stopped during the pass (its worker "
        f"would deliver the pass's events meanwhile: the events workload's cost) and both deletions start after "
        f"`sync`."
    )
    cpu = sweep.get("cpu_ms_per_op") or {}
    if cpu:
        out.append(
            f"CPU of the whole pass per expiry: the pass {fmt(cpu.get('stowage'), 3)} ms, PostgreSQL "
            f"{fmt(cpu.get('postgres'), 3)} ms, the S3 server {fmt(cpu.get('s3'), 3)} ms (direct: the S3 server "
            f"{fmt((get('sweep_direct', 'cpu_ms_per_op') or {}).get('s3'), 3)} ms per delete). The pass also lists "
            f"both buckets for orphans, every object the earlier workloads left included: that listing is most of "
            f"the S3 server's figure here (`BENCH_ONLY='^sweep_'` runs, with only the sweep's objects, show the "
            f"expiry's own: bench/notes.md)."
        )
errors = [(n, str(r.get("first_error") or r.get("last_error"))[:160]) for n, r in runs.items() if r.get("errors")]
if errors:
    out.append("\nErrors seen: " + "; ".join(f"{n}: {e}" for n, e in errors))
out.append("\n## How to reproduce\n")
out.append("```sh\nbench/run.sh          # ~25 min after the first run's builds; BENCH_QUICK=1 for a smoke run\n```\n")
out.append("It starts the S3 server (s3s-fs's storage with TCP_NODELAY, bench/s3server), PostgreSQL, Stowage")
out.append("(release) and the peer on free loopback ports, runs the")
out.append("load generator (`bench/loadgen`) against each, stops them, and rewrites this file.")
out.append("For trying one change: `BENCH_ONLY=REGEX` runs the workloads whose names match and prints")
out.append("their figures instead of rewriting this file; `BENCH_STOWAGE_BIN=PATH` measures another build")
out.append("(an earlier commit) in the same harness; `BENCH_PGSS=1` writes PostgreSQL's time per")
out.append("statement (`pg_stat_statements`) to `bench/.work/statements.txt`; `BENCH_PERF=REGEX` profiles")
out.append("Stowage during the workloads whose names match (`bench/.work/perf-NAME.data`; `BENCH_PERF_ALL=1`:")
out.append("every process, the held backlog's drain as `backlog_held_drain`); `BENCH_NO_BUILD=1` measures the")
out.append("binaries as built; `BENCH_S3_ROOT=DIR` keeps the S3 server's objects under DIR; `BENCH_HOLD_TEXT=1`")
out.append("runs a workload without the text jobs it causes; `BENCH_KEEP=1` leaves the run's files.\n")
notes = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "notes.md")
if os.path.exists(notes):
    out.append(open(notes).read())
print("\n".join(out))
