#!/usr/bin/env python3
"""bench.py: run workloads under each allocator and compare them.

Two commands:

  bench.py suite   [--quick | --full] [--runs N] [--workloads A,B] [--allocators A,B]
                   [--build DIR] [--out DIR]
      the workloads in bench/ (speed and fragmentation) under the system
      heap, tessera, mimalloc, jemalloc and tcmalloc; results in
      out/bench/: results.md, results.json, plots (SVG and PNG)

  bench.py compare [--runs N] [--allocators A,B] [--build DIR] [--out DIR] -- COMMAND ARGS...
      the same comparison for any program (what scripts/tessera-compare
      runs); results in out/compare/

How a run is measured.  Every run is one process started by runmon (built
in bench/), which sets LD_PRELOAD for that process only, samples its VmRSS
every few ms and takes peak RSS (ru_maxrss) and CPU time from wait4.
hyperfine starts runmon and times the whole process; its JSON export gives
the wall time.  Runs are interleaved: each round runs every allocator once,
in an order rotated from round to round, so that drift of a shared machine
hits all of them alike.  Figures are medians over the rounds; the spread is
(max - min) / median.

A run that exits non-zero or is killed stops everything with a message that
names the workload and the allocator: a failed run never becomes a figure.
So does a run whose preload did not take (the workload reports which heap
served malloc; for other programs, runmon checks /proc/PID/maps).

Allocator libraries are found with dpkg -L (packages libmimalloc2.0,
libjemalloc2, libtcmalloc-minimal4 or libgoogle-perftools4), then
ldconfig -p; BENCH_LIB_TESSERA, BENCH_LIB_MIMALLOC, BENCH_LIB_JEMALLOC and
BENCH_LIB_TCMALLOC override the paths.  A library that is not there is
reported and its rows say "skipped".
"""

import argparse
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALLOCATORS = ["system", "tessera", "mimalloc", "jemalloc", "tcmalloc"]
MIB = 1048576.0

# name -> (Debian packages to ask dpkg, pattern of the library's path)
LIB_SOURCES = {
    "mimalloc": (["libmimalloc2.0"], r"/libmimalloc\.so\.[0-9.]+$"),
    "jemalloc": (["libjemalloc2"], r"/libjemalloc\.so\.[0-9]+$"),
    "tcmalloc": (["libtcmalloc-minimal4", "libgoogle-perftools4"],
                 r"/libtcmalloc(_minimal)?\.so\.[0-9]+$"),
}

# ---------------------------------------------------------------------------
# Workloads
#
# name, program in bench/, kind, environment.  "speed" workloads are judged
# by time; "frag" ones print phase lines and are judged by RSS / live after
# the settle phase.  full_only: run by --full, left out of the quick mode.
# ---------------------------------------------------------------------------

WORKLOADS = [
    ("st_mixed", "st_mixed", "speed", {}, False),
    ("st_strbuild", "st_strbuild", "speed", {}, False),
    ("st_tree", "st_tree", "speed", {}, False),
    ("st_kvmap", "st_kvmap", "speed", {}, False),
    ("mt_churn", "mt_churn", "speed", {"BENCH_THREADS": "4"}, False),
    ("mt_churn_t2", "mt_churn", "speed", {"BENCH_THREADS": "2"}, True),
    ("mt_churn_t16", "mt_churn", "speed", {"BENCH_THREADS": "16"}, True),
    ("mt_prodcons", "mt_prodcons", "speed", {"BENCH_THREADS": "4"}, False),
    ("mt_prodcons_t16", "mt_prodcons", "speed", {"BENCH_THREADS": "16"}, True),
    ("mt_falseshare", "mt_falseshare", "speed", {"BENCH_THREADS": "4"}, False),
    ("mt_falseshare_t16", "mt_falseshare", "speed", {"BENCH_THREADS": "16"}, True),
    ("frag_everyother", "frag_everyother", "frag", {}, False),
    ("frag_sizeshift", "frag_sizeshift", "frag", {}, False),
    ("frag_threadchurn", "frag_threadchurn", "frag", {"BENCH_THREADS": "8"}, False),
    ("frag_growing", "frag_growing", "frag", {}, False),
    ("frag_soak", "frag_soak", "frag", {}, False),
]

MODES = {
    # runs per speed workload, per fragmentation workload, and the settings
    "quick": {"speed_runs": 3, "frag_runs": 2, "env": {
        "BENCH_SCALE": "1", "BENCH_BUDGET_MB": "64", "BENCH_SETTLE_MS": "1000", "BENCH_IDLE_MS": "1500", "BENCH_SECONDS": "6"}},
    "full": {"speed_runs": 5, "frag_runs": 3, "env": {
        "BENCH_SCALE": "3", "BENCH_BUDGET_MB": "64", "BENCH_SETTLE_MS": "11000", "BENCH_IDLE_MS": "3000", "BENCH_SECONDS": "32"}},
    # for the runner's own tests: seconds in all
    "tiny": {"speed_runs": 1, "frag_runs": 1, "env": {
        "BENCH_SCALE": "0.02", "BENCH_BUDGET_MB": "2", "BENCH_SETTLE_MS": "50", "BENCH_IDLE_MS": "50", "BENCH_SECONDS": "0.3"}},
}


class BenchError(Exception):
    pass


def say(msg):
    print(msg, flush=True)


def warn(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Finding the allocators
# ---------------------------------------------------------------------------

def dpkg_files(pkg):
    try:
        out = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=False)
    except OSError:
        return []
    return out.stdout.split() if out.returncode == 0 else []


def find_library(name, build):
    """(path or None, why) for one allocator; system is the empty preload."""
    if name == "system":
        return "", "the C library's malloc (no preload)"
    var = "BENCH_LIB_" + name.upper()
    override = os.environ.get(var, "")
    if override:
        if os.path.isfile(override):
            return os.path.abspath(override), "%s=%s" % (var, override)
        return None, "library not found at %s (set by %s)" % (override, var)
    if name == "tessera":
        path = os.path.join(build, "libtessera.so")
        if os.path.isfile(path):
            return os.path.abspath(path), "built in %s" % build
        return None, "library not found: %s is not built (bash scripts/bench.sh builds it)" % path
    pkgs, pattern = LIB_SOURCES[name]
    for pkg in pkgs:
        hits = sorted((f for f in dpkg_files(pkg) if re.search(pattern, f) and os.path.isfile(f)), key=len)
        if hits:
            return hits[0], "package %s" % pkg
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=False).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        path = line.split("=>")[-1].strip()
        if re.search(pattern, path) and os.path.isfile(path):
            return path, "ldconfig -p"
    return None, "library not found (package %s)" % " or ".join(pkgs)


def find_allocators(wanted, build):
    """[(name, path or None, why)] in the order of ALLOCATORS; reports what is skipped."""
    found = []
    for name in ALLOCATORS:
        if name not in wanted:
            continue
        path, why = find_library(name, build)
        if path is None:
            warn("%s: %s; skipped" % (name, why))
        found.append((name, path, why))
    if not any(p is not None for _, p, _ in found):
        raise BenchError("no allocator left to run")
    return found


# ---------------------------------------------------------------------------
# Running: hyperfine around runmon, one round at a time
# ---------------------------------------------------------------------------

def parse_kv(path):
    res = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                res[k] = v
    return res


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + l for l in lines[-n:])


def run_round(label, command, env, allocs, order, rundir, interval_ms, runmon, check_heap):
    """Run `command` once under each allocator in `order` (one hyperfine
    call); return {alloc: run record}.  Raises BenchError on any failure."""
    os.makedirs(rundir, exist_ok=True)
    cmds, names = [], []
    for name in order:
        lib = allocs[name]
        base = os.path.join(rundir, name)
        argv = [runmon, "-p", lib, "-i", str(interval_ms), "-s", base + ".rss", "-r", base + ".result",
                "-o", base + ".out", "-e", base + ".err", "--"] + command
        for ext in (".result", ".out", ".err", ".rss"):
            if os.path.exists(base + ext):
                os.remove(base + ext)
        cmds.append(shlex.join(argv))
        names.append(name)
    jpath = os.path.join(rundir, "hyperfine.json")
    hf = ["hyperfine", "-N", "--runs", "1", "--warmup", "0", "--style", "none", "--export-json", jpath]
    for name, cmd in zip(names, cmds):
        hf += ["-n", name, cmd]
    proc = subprocess.run(hf, env=env, capture_output=True, text=True)
    records = {}
    for name in names:
        base = os.path.join(rundir, name)
        if not os.path.exists(base + ".result"):
            if proc.returncode != 0:
                break   # hyperfine stopped before this one; the failing run is named below
            raise BenchError("%s under %s: runmon wrote no result (%s)" % (label, name, proc.stderr.strip()))
        res = parse_kv(base + ".result")
        exit_code, sig = int(res["exit"]), int(res["signal"])
        if exit_code != 0 or sig != 0:
            how = "was killed by signal %d" % sig if sig else "exited with status %d" % exit_code
            raise BenchError("%s under %s %s; no figure is reported for a failed run.\n"
                             "  command: %s\n  its stderr (%s.err):\n%s"
                             % (label, name, how, shlex.join(command), base, tail(base + ".err")))
        err_text = open(base + ".err", errors="replace").read()
        if "cannot be preloaded" in err_text or res.get("preload_mapped") == "no":
            raise BenchError("%s under %s: the preload of %s did not take effect:\n%s"
                             % (label, name, allocs[name], tail(base + ".err")))
        out_text = open(base + ".out", errors="replace").read()
        if check_heap:
            m = re.search(r"^heap: (\S+)", out_text, re.M)
            heap = m.group(1) if m else "(none reported)"
            if heap != name:
                raise BenchError("%s under %s: the workload ran on the %s heap instead: the preload "
                                 "did not take effect" % (label, name, heap))
        records[name] = {"result": res, "out": out_text, "series": base + ".rss"}
    if proc.returncode != 0:
        raise BenchError("%s: hyperfine failed (exit %d):\n%s" % (label, proc.returncode, proc.stderr.strip()))
    with open(jpath) as f:
        hj = json.load(f)
    for r in hj["results"]:
        records[r["command"]]["time"] = r["times"][0] if r.get("times") else r["mean"]
    for name in names:
        if "time" not in records[name]:
            raise BenchError("%s under %s: hyperfine reported no time" % (label, name))
    return records


def run_figures(rec):
    res = rec["result"]
    fig = {
        "time_s": rec["time"],
        "cpu_s": float(res["user_s"]) + float(res["sys_s"]),
        "peak_rss_mib": int(res["maxrss_kib"]) / 1024.0,
        "final_rss_mib": int(res["final_rss_kib"]) / 1024.0,
        "samples": int(res["samples"]),
    }
    phases = []
    for m in re.finditer(r"^phase (\S+) live_bytes=(\d+) rss_bytes=(\d+) t_ms=(\d+)", rec["out"], re.M):
        phases.append({"phase": m.group(1), "live_bytes": int(m.group(2)), "rss_bytes": int(m.group(3)),
                       "t_ms": int(m.group(4))})
    if phases:
        fig["phases"] = phases
        settle = [p for p in phases if p["phase"] == "settle"]
        if settle and settle[-1]["live_bytes"] > 0:
            s = settle[-1]
            fig["settle_live_mib"] = s["live_bytes"] / MIB
            fig["settle_rss_mib"] = s["rss_bytes"] / MIB
            fig["rss_per_live"] = s["rss_bytes"] / s["live_bytes"]
        idle = [p for p in phases if p["phase"] == "idle"]
        if idle and idle[-1]["live_bytes"] > 0:
            fig["idle_rss_per_live"] = idle[-1]["rss_bytes"] / idle[-1]["live_bytes"]
    m = re.search(r"^rss_slope_bytes_per_s: (-?\d+)", rec["out"], re.M)
    if m:
        fig["rss_slope_mib_per_s"] = int(m.group(1)) / MIB
    return fig


def median(xs):
    return statistics.median(xs) if xs else None


def summarise(runs):
    """Medians over the runs of one workload under one allocator."""
    out = {"runs": runs}
    for key in ("time_s", "cpu_s", "peak_rss_mib", "final_rss_mib", "rss_per_live", "idle_rss_per_live",
                "settle_live_mib", "settle_rss_mib", "rss_slope_mib_per_s"):
        vals = [r[key] for r in runs if key in r]
        if vals:
            out[key] = median(vals)
            if key in ("time_s", "peak_rss_mib", "rss_per_live"):
                m = median(vals)
                out[key + "_spread"] = (max(vals) - min(vals)) / m if m else 0.0
    return out


# ---------------------------------------------------------------------------
# Output: Markdown, JSON, gnuplot
# ---------------------------------------------------------------------------

def machine_info():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    libc = " ".join(platform.libc_ver()) or "unknown libc"
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "libc": libc}


def git_commit():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def ratio(a, b):
    return a / b if a is not None and b else None


def geomean(xs):
    xs = [x for x in xs if x is not None and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def wide_table(lines, title, names, rows, key, spec, extra):
    """One row per workload, one column per allocator, then tessera's ratios."""
    lines += ["### " + title, ""]
    head = "| workload | " + " | ".join(names) + " | " + " | ".join(h for h, _ in extra) + " |"
    lines += [head, "|---|" + "---:|" * (len(names) + len(extra))]
    for wname, res in rows:
        cells = []
        for n in names:
            r = res.get(n)
            cells.append("skipped" if r is None else fmt(r.get(key), spec))
        ex = [fmt(f(res), ".2f") for _, f in extra]
        lines.append("| %s | %s | %s |" % (wname, " | ".join(cells), " | ".join(ex)))
    lines.append("")



def prepare_run(args, build):
    """The allocators asked for (an unknown name is an error), the libraries
    of those found, a fresh output folder, and the environment without a
    preload of the caller's."""
    wanted_a = args.allocators.split(",") if args.allocators else ALLOCATORS
    for a in wanted_a:
        if a not in ALLOCATORS:
            raise BenchError("unknown allocator %s (known: %s)" % (a, ", ".join(ALLOCATORS)))
    allocs = find_allocators(wanted_a, build)
    libs = {a: p for a, p, _ in allocs if p is not None}
    present = [a for a, p, _ in allocs if p is not None]
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "data"), exist_ok=True)
    rundir = os.path.join(out, "runs")
    shutil.rmtree(rundir, ignore_errors=True)
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return allocs, libs, present, out, rundir, env

def write_suite_outputs(out, meta, allocs, results, plots):
    names = [a for a, _, _ in allocs]
    present = [a for a, p, _ in allocs if p is not None]
    json_doc = {"meta": meta, "allocators": {a: {"library": p, "status": "ok" if p is not None else "skipped",
                                                 "why": why} for a, p, why in allocs},
                "workloads": results}
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(json_doc, f, indent=1)

    def r_of(res, a, key):
        return res.get(a, {}).get(key) if res.get(a) else None

    speed = [(w, r["results"]) for w, r in results.items()]
    frag = [(w, r["results"]) for w, r in results.items() if r["kind"] == "frag"]
    lines = ["# tessera benchmark results", ""]
    lines.append("Mode **%s**: %s.  Commit %s, %s." % (meta["mode"], meta["mode_text"], meta["commit"], meta["date"]))
    mi = meta["machine"]
    lines.append("Machine: %s CPUs (%s), Linux %s, %s." % (mi["cpus"], mi["cpu"], mi["kernel"], mi["libc"]))
    lines.append("")
    for a, p, why in allocs:
        lines.append("- %s: %s" % (a, ("`%s` (%s)" % (p, why)) if p else ("skipped: " + why)) if a != "system"
                     else "- system: glibc malloc, no preload")
    lines.append("")
    lines.append("Time: median wall seconds of the whole process (hyperfine).  Peak RSS: median "
                 "ru_maxrss (wait4), MiB.  RSS/live: the resident set (VmRSS, a page mapped at two addresses by meshing counted once) over the bytes the workload holds, "
                 "after its settle period.  Spread: (max - min) / median over the runs.")
    lines.append("")
    t = lambda res, a: r_of(res, a, "time_s")
    extra_t = [("tessera / system", lambda res: ratio(t(res, "tessera"), t(res, "system"))),
               ("tessera / mimalloc", lambda res: ratio(t(res, "tessera"), t(res, "mimalloc")))]
    wide_table(lines, "Time (s)", names, speed, "time_s", ".3f", extra_t)
    pk = lambda res, a: r_of(res, a, "peak_rss_mib")
    extra_r = [("tessera / system", lambda res: ratio(pk(res, "tessera"), pk(res, "system"))),
               ("tessera / mimalloc", lambda res: ratio(pk(res, "tessera"), pk(res, "mimalloc")))]
    wide_table(lines, "Peak RSS (MiB)", names, speed, "peak_rss_mib", ".1f", extra_r)

    lines += ["Geometric means over the workloads, relative to the system heap:", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, key in (("time", "time_s"), ("peak RSS", "peak_rss_mib")):
        cells = []
        for a in names:
            if a not in present:
                cells.append("skipped")
                continue
            cells.append(fmt(geomean([ratio(r_of(res, a, key), r_of(res, "system", key)) for _, res in speed]),
                             ".2f"))
        lines.append("| %s | %s |" % (label, " | ".join(cells)))
    lines.append("")

    if frag:
        lines += ["### Fragmentation: RSS / live after settle", ""]
        lines += ["| workload | live (MiB) | " + " | ".join(names) + " | best other | tessera vs best other |",
                  "|---|---:|" + "---:|" * (len(names) + 2)]
        for w, res in frag:
            live = next((res[a].get("settle_live_mib") for a in names if res.get(a)), None)
            cells = ["skipped" if res.get(a) is None else fmt(res[a].get("rss_per_live"), ".2f") for a in names]
            others = [res[a]["rss_per_live"] for a in names
                      if a != "tessera" and res.get(a) and res[a].get("rss_per_live") is not None]
            best = min(others) if others else None
            tr = r_of(res, "tessera", "rss_per_live")
            lines.append("| %s | %s | %s | %s | %s |" % (w, fmt(live, ".1f"), " | ".join(cells), fmt(best, ".2f"),
                                                      fmt(ratio(tr, best), ".2f")))
        lines.append("")
        idle = [(w, res) for w, res in frag if any(res.get(a) and "idle_rss_per_live" in res[a] for a in names)]
        if idle:
            lines += ["### Fragmentation: RSS / live after the idle period (right after the work, no call at all "
                      "for BENCH_IDLE_MS, before the settle period)", ""]
            lines += ["| workload | " + " | ".join(names) + " | tessera: idle / settle |",
                      "|---|" + "---:|" * (len(names) + 1)]
            for w, res in idle:
                cells = ["skipped" if res.get(a) is None else fmt(res[a].get("idle_rss_per_live"), ".2f")
                         for a in names]
                t = res.get("tessera") or {}
                lines.append("| %s | %s | %s / %s |" % (w, " | ".join(cells), fmt(t.get("idle_rss_per_live"), ".2f"),
                                                       fmt(t.get("rss_per_live"), ".2f")))
            lines.append("")
        soak = [(w, res) for w, res in frag if any(res.get(a) and "rss_slope_mib_per_s" in res[a] for a in names)]
        for w, res in soak:
            lines += ["RSS slope of %s (each size cycle's peak RSS against time, the first cycle left out; MiB/s, 0 is flat): %s." % (
                w, ", ".join("%s %s" % (a, "skipped" if res.get(a) is None else
                                         fmt(res[a].get("rss_slope_mib_per_s"), "+.2f")) for a in names)), ""]

    lines += ["### Every workload and allocator", ""]
    lines += ["| workload | allocator | time (s) | spread | vs system | vs mimalloc | CPU (s) | peak RSS (MiB) "
              "| vs system | vs mimalloc | final RSS (MiB) | RSS/live after settle | runs |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for w, res in speed:
        for a in names:
            r = res.get(a)
            if r is None:
                why = next(why for n, _, why in allocs if n == a)
                lines.append("| %s | %s | skipped: %s | | | | | | | | | | 0 |" % (w, a, why))
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
                w, a, fmt(r["time_s"], ".3f"), fmt(100 * r["time_s_spread"], ".0f") + " %",
                fmt(ratio(r["time_s"], r_of(res, "system", "time_s")), ".2f"),
                fmt(ratio(r["time_s"], r_of(res, "mimalloc", "time_s")), ".2f"),
                fmt(r["cpu_s"], ".2f"), fmt(r["peak_rss_mib"], ".1f"),
                fmt(ratio(r["peak_rss_mib"], r_of(res, "system", "peak_rss_mib")), ".2f"),
                fmt(ratio(r["peak_rss_mib"], r_of(res, "mimalloc", "peak_rss_mib")), ".2f"),
                fmt(r["final_rss_mib"], ".1f"), fmt(r.get("rss_per_live"), ".2f") if "rss_per_live" in r else "-",
                len(r["runs"])))
    lines.append("")
    if plots:
        lines += ["Plots: " + ", ".join("[%s](%s)" % (p, p) for p in plots if p.endswith(".svg")), ""]
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("\n".join(lines))
    return "\n".join(lines)


COLORS = {"system": "#555555", "tessera": "#d62728", "mimalloc": "#1f77b4", "jemalloc": "#2ca02c",
          "tcmalloc": "#ff7f0e"}


def gnuplot(script, out_base, what):
    """Render `script` (without a terminal) to out_base.svg and .png."""
    made = []
    for term, ext in (("svg size 900,480 dynamic font 'sans,12' background '#ffffff'", "svg"),
                      ("pngcairo size 1000,540 font 'sans,11'", "png")):
        full = "set terminal %s noenhanced\nset output '%s.%s'\n%s\n" % (term, out_base, ext, script)
        p = subprocess.run(["gnuplot"], input=full, capture_output=True, text=True)
        if p.returncode != 0:
            warn("bench: gnuplot failed on %s (%s): %s" % (what, ext, p.stderr.strip()))
        else:
            made.append(os.path.basename(out_base) + "." + ext)
    return made


def plot_bars(out, name, title, ylabel, rows, names, key, norm, log=False):
    """Clustered bars: one cluster per workload, one bar per allocator."""
    data = os.path.join(out, "data", name + ".dat")
    with open(data, "w") as f:
        for w, res in rows:
            base = res.get(norm, {}).get(key) if norm and res.get(norm) else 1.0
            vals = []
            for a in names:
                v = res.get(a, {}).get(key) if res.get(a) else None
                vals.append("%.4f" % (v / base) if v is not None and base else "NaN")
            f.write(w + " " + " ".join(vals) + "\n")
    cols = ", ".join("'%s' using %d:xtic(1) title '%s' lc rgb '%s'" % (data if i == 0 else "", i + 2, a, COLORS[a])
                     for i, a in enumerate(names))
    script = """set title '%s'
set ylabel '%s'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set key below horizontal
set grid ytics
set xtics rotate by -30 scale 0
set yrange [0:*]
%s
plot %s
""" % (title, ylabel, "set logscale y\nset yrange [*:*]" if log else "", cols)
    return gnuplot(script, os.path.join(out, name), name)


def plot_series(out, name, title, series, live=None):
    """RSS over time, one line per allocator (from runmon's samples)."""
    parts = []
    for a, path in series:
        if path and os.path.exists(path) and os.path.getsize(path) > 0:
            parts.append("'%s' using 1:($2/1024) with lines lw 2 lc rgb '%s' title '%s'" % (path, COLORS[a], a))
    if live:
        data = os.path.join(out, "data", name + "_live.dat")
        with open(data, "w") as f:
            for t_s, mib in live:
                f.write("%.4f %.4f\n" % (t_s, mib))
        parts.append("'%s' using 1:2 with steps lw 2 dt 2 lc rgb '#000000' title 'live (counted by the workload)'"
                     % data)
    if not parts:
        return []
    script = """set title '%s'
set xlabel 'seconds'
set ylabel 'RSS (MiB)'
set key below horizontal
set grid
set yrange [0:*]
plot %s
""" % (title, ", ".join(parts))
    return gnuplot(script, os.path.join(out, name), name)


# ---------------------------------------------------------------------------
# suite
# ---------------------------------------------------------------------------

def cmd_suite(args):
    build = os.path.abspath(args.build)
    bindir = os.path.join(build, "bench")
    runmon = os.path.join(bindir, "runmon")
    if not os.access(runmon, os.X_OK):
        raise BenchError("%s is not built (bash scripts/bench.sh builds it)" % runmon)
    if shutil.which("hyperfine") is None:
        raise BenchError("hyperfine not found (bash scripts/deps.sh bench installs it)")
    mode = MODES[args.mode]
    wanted_w = args.workloads.split(",") if args.workloads else None
    known = {w[0] for w in WORKLOADS}
    for w in wanted_w or []:
        if w not in known:
            raise BenchError("unknown workload %s (known: %s)" % (w, ", ".join(sorted(known))))
    workloads = [w for w in WORKLOADS if (w[0] in wanted_w if wanted_w else (args.mode == "full" or not w[4]))]
    allocs, libs, present, out, rundir, env = prepare_run(args, build)
    for stale in os.listdir(out):
        if stale.endswith((".svg", ".png")):
            os.remove(os.path.join(out, stale))
    env.update(mode["env"])
    speed_runs = args.runs or mode["speed_runs"]
    frag_runs = args.runs or mode["frag_runs"]
    rounds = max(speed_runs, frag_runs)
    mode_text = ("%d runs per speed workload, %d per fragmentation workload, settle %s ms, idle %s ms, soak %s s, "
                 "fragmentation budget %s MiB, work scale %s" % (speed_runs, frag_runs, env["BENCH_SETTLE_MS"],
                                                                 env["BENCH_IDLE_MS"], env["BENCH_SECONDS"],
                                                                 env["BENCH_BUDGET_MB"], env["BENCH_SCALE"]))
    say("bench: %s mode: %d workloads under %s; %s" % (args.mode, len(workloads), ", ".join(present), mode_text))
    t_start = time.time()
    runs = {w[0]: {a: [] for a in present} for w in workloads}
    series = {w[0]: {} for w in workloads}
    for rnd in range(rounds):
        for wname, prog, kind, wenv, _ in workloads:
            if rnd >= (speed_runs if kind == "speed" else frag_runs):
                continue
            k = (rnd + sum(map(ord, wname))) % len(present)
            order = present[k:] + present[:k]
            renv = dict(env)
            renv.update(wenv)
            rdir = os.path.join(rundir, wname, "r%d" % (rnd + 1))
            recs = run_round(wname, [os.path.join(bindir, prog)], renv, libs, order, rdir, args.interval,
                             runmon, True)
            cells = []
            for a in order:
                fig = run_figures(recs[a])
                if kind == "frag" and "rss_per_live" not in fig:
                    raise BenchError("%s under %s printed no settle phase" % (wname, a))
                runs[wname][a].append(fig)
                series[wname].setdefault(a, recs[a]["series"])
                cells.append("%s %.2fs %.0fM%s" % (a, fig["time_s"], fig["peak_rss_mib"],
                                                   " %.2fx" % fig["rss_per_live"] if "rss_per_live" in fig else ""))
            say("  round %d/%d %-18s %s" % (rnd + 1, rounds, wname, "  ".join(cells)))
    elapsed = time.time() - t_start

    results = {}
    for wname, prog, kind, wenv, _ in workloads:
        res = {a: (summarise(runs[wname][a]) if a in present else None) for a in (x for x, _, _ in allocs)}
        results[wname] = {"kind": kind, "program": prog, "env": wenv, "results": res}
    meta = {"mode": args.mode, "mode_text": mode_text, "settings": {k: env[k] for k in mode["env"]},
            "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(),
            "elapsed_s": round(elapsed, 1), "interval_ms": args.interval}

    plots = []
    if shutil.which("gnuplot") is None:
        warn("bench: gnuplot not found (bash scripts/deps.sh bench installs it); no plots")
    else:
        names = [a for a, _, _ in allocs if a in present]
        rows = [(w, r["results"]) for w, r in results.items()]
        if "system" in present:
            plots += plot_bars(out, "time", "Wall time relative to the system heap (lower is better)",
                               "time / system heap", rows, names, "time_s", "system")
            plots += plot_bars(out, "peak_rss", "Peak RSS relative to the system heap (lower is better)",
                               "peak RSS / system heap", rows, names, "peak_rss_mib", "system")
        frag_rows = [(w, r["results"]) for w, r in results.items() if r["kind"] == "frag"]
        if frag_rows:
            plots += plot_bars(out, "rss_per_live", "RSS / live bytes after settle (lower is better; 1 is no waste)",
                               "RSS / live", frag_rows, names, "rss_per_live", None)
        for w, r in results.items():
            if r["kind"] != "frag":
                continue
            live = []
            first = runs[w][present[0]][0] if runs[w][present[0]] else None
            if first and "phases" in first:
                live = [(0.0, 0.0)] + [(p["t_ms"] / 1000.0, p["live_bytes"] / MIB) for p in first["phases"]]
            plots += plot_series(out, "rss_" + w, "%s: RSS over time (round 1)" % w,
                                 [(a, series[w].get(a)) for a in names], live)
    table = write_suite_outputs(out, meta, allocs, results, plots)
    say("")
    say(table)
    say("bench: %s mode took %.0f s; results in %s/results.md and results.json%s"
        % (args.mode, elapsed, os.path.relpath(out), ", plots %s/*.svg and *.png" % os.path.relpath(out)
           if plots else ""))
    return 0


# ---------------------------------------------------------------------------
# compare: any command
# ---------------------------------------------------------------------------

def cmd_compare(args):
    command = args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BenchError("no command given: tessera-compare [--runs N] -- COMMAND ARGS...")
    build = os.path.abspath(args.build)
    runmon = os.path.join(build, "bench", "runmon")
    if not os.access(runmon, os.X_OK):
        raise BenchError("%s is not built" % runmon)
    if shutil.which("hyperfine") is None:
        raise BenchError("hyperfine not found (bash scripts/deps.sh bench installs it)")
    exe = shutil.which(command[0])
    if exe is None:
        raise BenchError("command not found: %s" % command[0])
    allocs, libs, present, out, rundir, env = prepare_run(args, build)
    label = shlex.join(command)
    say("tessera-compare: %s, %d runs under each of %s" % (label, args.runs, ", ".join(present)))
    runs = {a: [] for a in present}
    first_series = {}
    for rnd in range(args.runs):
        k = rnd % len(present)
        order = present[k:] + present[:k]
        recs = run_round("the command `%s`" % label, command, env, libs, order, os.path.join(rundir, "r%d" % (rnd + 1)),
                         args.interval, runmon, False)
        cells = []
        for a in order:
            fig = run_figures(recs[a])
            runs[a].append(fig)
            first_series.setdefault(a, recs[a]["series"])
            cells.append("%s %.2fs %.1fM" % (a, fig["time_s"], fig["peak_rss_mib"]))
        say("  round %d/%d  %s" % (rnd + 1, args.runs, "  ".join(cells)))
    res = {a: (summarise(runs[a]) if a in present else None) for a, _, _ in allocs}
    names = [a for a, _, _ in allocs]

    def g(a, key):
        return res[a].get(key) if res.get(a) else None

    lines = ["# tessera-compare: `%s`" % label, ""]
    mi = machine_info()
    lines.append("%d runs per allocator, interleaved; medians.  Machine: %s CPUs (%s), Linux %s.  %s." % (
        args.runs, mi["cpus"], mi["cpu"], mi["kernel"], time.strftime("%Y-%m-%d %H:%M")))
    lines.append("")
    lines.append("| allocator | time (s) | spread | vs system | vs mimalloc | CPU (s) | peak RSS (MiB) | vs system "
                 "| vs mimalloc | final RSS (MiB) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for a in names:
        r = res.get(a)
        if r is None:
            why = next(why for n, _, why in allocs if n == a)
            lines.append("| %s | skipped: %s | | | | | | | | |" % (a, why))
            continue
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            a, fmt(r["time_s"], ".3f"), fmt(100 * r["time_s_spread"], ".0f") + " %",
            fmt(ratio(r["time_s"], g("system", "time_s")), ".2f"),
            fmt(ratio(r["time_s"], g("mimalloc", "time_s")), ".2f"), fmt(r["cpu_s"], ".2f"),
            fmt(r["peak_rss_mib"], ".1f"), fmt(ratio(r["peak_rss_mib"], g("system", "peak_rss_mib")), ".2f"),
            fmt(ratio(r["peak_rss_mib"], g("mimalloc", "peak_rss_mib")), ".2f"), fmt(r["final_rss_mib"], ".1f")))
    lines.append("")
    lines.append("Time: wall seconds of the whole process (hyperfine).  Peak RSS: ru_maxrss from wait4.  "
                 "Final RSS: the last VmRSS sample (every %d ms) before the process ended." % args.interval)
    plots = []
    if shutil.which("gnuplot") is None:
        warn("tessera-compare: gnuplot not found (bash scripts/deps.sh bench installs it); no plot")
    else:
        plots = plot_series(out, "rss", "RSS over time: %s (round 1)" % label[:60].replace("'", ""),
                            [(a, first_series.get(a)) for a in names if a in present])
    if plots:
        lines += ["", "RSS over time: [rss.svg](rss.svg), rss.png"]
    lines.append("")
    table = "\n".join(lines)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(table)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"command": command, "runs": args.runs, "machine": mi,
                   "allocators": {a: {"library": p, "status": "ok" if p is not None else "skipped", "why": why}
                                  for a, p, why in allocs},
                   "results": res}, f, indent=1)
    say("")
    say(table)
    say("tessera-compare: results in %s/results.md and results.json%s" % (
        os.path.relpath(out), ", plot %s/rss.svg and rss.png" % os.path.relpath(out) if plots else ""))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suite", help="the workloads in bench/ under each allocator")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick", help="a first look (default)")
    g.add_argument("--full", dest="mode", action="store_const", const="full", help="a real session")
    g.add_argument("--tiny", dest="mode", action="store_const", const="tiny", help="seconds: the runner's tests")
    s.set_defaults(mode="quick")
    s.add_argument("--runs", type=int, default=0, help="runs per workload and allocator (default: by mode)")
    s.add_argument("--workloads", default="", help="comma-separated names (default: all of the mode)")
    s.add_argument("--allocators", default="", help="comma-separated (default: %s)" % ",".join(ALLOCATORS))
    s.add_argument("--build", default=os.path.join(ROOT, "build", "bench"), help="the build tree")
    s.add_argument("--out", default=os.path.join(ROOT, "out", "bench"), help="where results go")
    s.add_argument("--interval", type=int, default=5, help="RSS sampling interval, ms (default 5)")
    c = sub.add_parser("compare", help="any command under each allocator")
    c.add_argument("--runs", type=int, default=3, help="runs per allocator (default 3)")
    c.add_argument("--allocators", default="", help="comma-separated (default: %s)" % ",".join(ALLOCATORS))
    c.add_argument("--build", default=os.path.join(ROOT, "build", "bench"), help="the build tree")
    c.add_argument("--out", default=os.path.join(ROOT, "out", "compare"), help="where results go")
    c.add_argument("--interval", type=int, default=5, help="RSS sampling interval, ms (default 5)")
    c.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = ap.parse_args()
    if getattr(args, "runs", 1) < 0 or (args.cmd == "compare" and args.runs < 1):
        ap.error("--runs must be at least 1")
    try:
        return cmd_suite(args) if args.cmd == "suite" else cmd_compare(args)
    except BenchError as e:
        warn("%s: FAILED: %s" % ("bench" if args.cmd == "suite" else "tessera-compare", e))
        return 1


if __name__ == "__main__":
    sys.exit(main())
