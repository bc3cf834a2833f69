#!/usr/bin/env python3
"""Rewrites the generated part of docs/BENCHMARKS.md from scripts/bench.sh's results.

Usage: bench_report.py RESULTS_DIR BENCHMARKS_MD

Only the text between `<!-- bench:sync:begin -->` and `<!-- bench:sync:end -->` is
replaced (the markers are appended at the end of the file when missing); every other
section, including other engineers', is left untouched.
"""
import json
import os
import subprocess
import sys

BEGIN, END = "<!-- bench:sync:begin -->", "<!-- bench:sync:end -->"


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def commit():
    try:
        h = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD"]) != 0
        return h + (" plus uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def n(x, d=0):
    if x is None:
        return "–"
    return f"{x:,.{d}f}"


def mem_gb(meminfo_line):
    try:
        return f"{int(meminfo_line.split()[1]) / 1024 / 1024:.0f} GB"
    except (IndexError, ValueError):
        return meminfo_line


def verdict(ok):
    return "met" if ok else "**missed**"


def log_text(st):
    if "change_log_bytes_per_visit" in st:
        # Results from before the change log indexed pushes (one row per change).
        return (f"{n(st['change_log_bytes_per_visit'])} B of change bytes in "
                f"{n(st['change_log_rows_per_visit'], 0)} rows")
    return (f"{n(st.get('change_log_rows_per_visit'), 1)} row(s) for {n(st.get('change_log_changes_per_visit'), 0)} changes, "
            f"{n(st.get('change_log_heads_bytes_per_visit'))} B of heads")


def render(sync, peer):
    m = sync["machine"]
    runs = sync["runs"]
    head = next(r for r in runs if r.get("headline"))
    lines = []
    lines.append(
        f"**Machine:** {m['cpus']} vCPU {m['cpu']}, {mem_gb(m['mem'])} RAM. "
        f"**Date:** {sync['date'][:10]}. **Commit:** `{commit()}`. Release build. "
        f"**Load average** (1/5/15 min) before: {' '.join(m['loadavg'].split()[:3])}, "
        f"after: {' '.join(sync['loadavg_after'].split()[:3])} (2 cores shared with other work)."
    )
    lines.append("")
    ing, lat = head["ingest"], head["ingest"]["latency"]
    inc = head.get("incremental", {})
    dev = head.get("initial_device", {})
    wire = head["initial_wire"]
    st = head.get("storage", {})
    lines += [
        "| scenario | measured | target | |",
        "|---|---|---|---|",
        f"| initial sync of a {n(head['visits'])}-visit territory to a fresh device (core `SyncClient` into a `DeviceStore` on disk) "
        f"| **{n(dev.get('visits_per_s'))} visits/s** ({n(dev.get('seconds'), 1)} s, {dev.get('rounds', '–')} round trips, {n(dev.get('bytes_down'))} B down; "
        f"CPU: device {n(dev.get('device_cpu_s'), 1)} s, server {n(dev.get('server_cpu_s'), 1)} s) "
        f"| ≥ 5,000 visits/s | {verdict((dev.get('visits_per_s') or 0) >= 5000)} |",
        f"| same, server and wire only (raw `POST /v1/sync` pages, no device store) "
        f"| {n(wire['visits_per_s'])} visits/s ({n(wire['seconds'], 2)} s, {wire['pages']} pages, {n(wire.get('documents'))} whole documents, "
        f"{n(wire['changes'])} changes, {n(wire['bytes_down'])} B JSON) | | |",
        f"| incremental sync of one changed line | {inc.get('rounds', '–')} round trip, {inc.get('bytes_up', '–')} B up (zstd), "
        f"{inc.get('bytes_down', '–')} B down{' (' + head['incremental_note'] + ')' if head.get('incremental_note') else ''} | 1; ≤ 400 / ≤ 300 | "
        f"{verdict(inc.get('rounds') == 1 and inc.get('bytes_up', 999) <= 400 and inc.get('bytes_down', 999) <= 300)} |",
        f"| ingest from {head['devices']} concurrent devices, SQLite ({n(ing['visits'])} visits, one request per visit) "
        f"| **{n(ing['visits_per_s'])} visits/s**; median {n(lat['median_ms'], 1)} ms, **p99 {n(lat['p99_ms'], 1)} ms** "
        f"(server CPU {n(ing['server_cpu_ms_per_visit'], 2)} ms/visit; the load generator on the same cores "
        f"{n(ing.get('client_cpu_ms_per_visit'), 2)} ms/visit) | ≥ 5,000; p99 ≤ 100 ms | "
        f"{verdict(ing['visits_per_s'] >= 5000 and lat['p99_ms'] <= 100)} |",
    ]
    for r in runs:
        if r["backend"] == "postgres":
            i, l = r["ingest"], r["ingest"]["latency"]
            lines.append(
                f"| same on PostgreSQL ({n(i['visits'])} visits, {r['devices']} devices) | **{n(i['visits_per_s'])} visits/s**; "
                f"median {n(l['median_ms'], 1)} ms, **p99 {n(l['p99_ms'], 1)} ms** | ≥ 5,000; p99 ≤ 100 ms | "
                f"{verdict(i['visits_per_s'] >= 5000 and l['p99_ms'] <= 100)} |"
            )
    if not any(r["backend"] == "postgres" for r in runs):
        lines.append("| same on PostgreSQL | not run (set `FIELDSYNC_BENCH_DATABASE_URL` or `FIELDSYNC_BENCH_PG=1`) | ≥ 5,000; p99 ≤ 100 ms | |")
    if st:
        lines.append(
            f"| storage per typical visit on the server (SQLite file / visits) | **{n(st['file_per_visit'])} B** "
            f"(document {n(st['doc_bytes_per_visit'])} B as stored; change log {log_text(st)}; the rest row, index and page overhead) | ≤ 4 KB | "
            f"{verdict(st['file_per_visit'] <= 4096)} |"
        )
    lines += ["", "Growth (each row a fresh server; one request per visit; latency per request):", ""]
    lines += [
        "| backend | visits | devices | ingest visits/s | median | p99 | server CPU / visit | load generator CPU / visit | server RSS peak | initial pull, wire, visits/s | bytes on server / visit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        i, l = r["ingest"], r["ingest"]["latency"]
        lines.append(
            f"| {r['backend']} | {n(r['visits'])} | {r['devices']} | {n(i['visits_per_s'])} | {n(l['median_ms'], 1)} ms | "
            f"{n(l['p99_ms'], 1)} ms | {n(i['server_cpu_ms_per_visit'], 2)} ms | {n(i.get('client_cpu_ms_per_visit'), 2)} ms | "
            f"{n(r.get('server_rss_hwm_mb'), 0)} MB | "
            f"{n(r['initial_wire']['visits_per_s'])} | {n(r.get('storage', {}).get('file_per_visit'))} |"
        )
    if peer:
        lines += ["", f"Peer comparison, same machine, same documents (Node {peer['node']}, `tests/peer/`):", ""]
        lines += [
            "| documents | ours push (visits/s) | peer push (docs/s) | push ours/peer | ours pull, device store | ours pull, wire | peer pull (docs/s) | pull ours/peer (device / wire) | bytes on server per doc, ours / peer |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size, p in sorted(peer["results"].items(), key=lambda kv: int(kv[0])):
            size = int(size)
            ours = next((r for r in runs if r["visits"] == size and r["backend"] == "sqlite" and r["devices"] == head["devices"]), None)
            if not ours:
                continue
            op = ours["ingest"]["visits_per_s"]
            if p.get("unfinished") and p.get("push_docs_per_s"):
                # The push finished, the pull did not.
                ow = ours["initial_wire"]["visits_per_s"]
                od = ours.get("initial_device", {}).get("visits_per_s")
                lines.append(
                    f"| {n(size)} | {n(op)} | {n(p['push_docs_per_s'])} | {op / p['push_docs_per_s']:.1f}× | {n(od)} | {n(ow)} | "
                    f"did not finish: {p['unfinished']} | | |"
                )
                continue
            if p.get("unfinished"):
                lines.append(f"| {n(size)} | {n(op)} | {p['unfinished']} | | | | | | |")
                continue
            ow = ours["initial_wire"]["visits_per_s"]
            od = ours.get("initial_device", {}).get("visits_per_s")
            ratio_d = f"{od / p['pull_docs_per_s']:.1f}×" if od else "–"
            pull = n(p["pull_docs_per_s"])
            if p.get("pull_unavailable"):
                # The peer gave up on some documents: its rate counts only those delivered.
                delivered = p.get("pull_delivered", size - p["pull_unavailable"])
                pull += f" (delivered {n(delivered)} of {n(size)}; {n(p['pull_unavailable'])} unavailable)"
            lines.append(
                f"| {n(size)} | {n(op)} | {n(p['push_docs_per_s'])} | {op / p['push_docs_per_s']:.1f}× | {n(od)} | {n(ow)} | "
                f"{pull} | {ratio_d} / {ow / p['pull_docs_per_s']:.1f}× | "
                f"{n(ours.get('storage', {}).get('file_per_visit'))} / {n(p['server_storage_per_doc'])} |"
            )
    return "\n".join(lines)


def main():
    res, md = sys.argv[1], sys.argv[2]
    sync = load(os.path.join(res, "sync.json"))
    if not sync:
        sys.exit(f"no {res}/sync.json: run scripts/bench.sh")
    peer = load(os.path.join(res, "peer.json"))
    block = f"{BEGIN}\n<!-- generated by scripts/bench.sh (scripts/bench_report.py); edits here are overwritten -->\n\n{render(sync, peer)}\n\n{END}"
    text = open(md).read()
    if BEGIN in text and END in text:
        pre = text[: text.index(BEGIN)]
        post = text[text.index(END) + len(END):]
        text = pre + block + post
    else:
        text = text.rstrip("\n") + "\n\n## Sync server and peer comparison\n\n" + block + "\n"
    open(md, "w").write(text)


if __name__ == "__main__":
    main()
