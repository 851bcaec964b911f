#!/usr/bin/env python3
"""Benchmark of `wif-helper metadata-server` (driven by scripts/bench; standard library only).

Starts wif-emulator, `wif-helper metadata-server` and `fixed-body-server` (the
limit: the same HTTP stack answering a fixed body of the same size and doing
nothing else) on 127.0.0.1, warms one access token, then measures with wrk,
side by side in one run, alternating the two servers:

  1. one keep-alive connection (wrk -t1 -c1): p50 and p99 latency;
  2. 64 keep-alive connections (wrk -t2 -c64): requests/s, p50 and p99;
  3. memory: the server's RSS when idle with a warm token, and its growth over
     at least 100,000 further requests.

Every request carries `Metadata-Flavor: Google` and asks for the access token;
every answer must be 200 (wrk counts the others as errors, and any makes the
run fail), and the emulator must have seen exactly one exchange at the end:
every measured token came from memory.

Smoke mode (--smoke, run by scripts/test): no wrk; 500 keep-alive requests to
each server with http.client, the same checks, a refused request, and a clean
SIGTERM exit. A few seconds.

Exit status: 1 when a check fails; missed targets are reported, not failed on.
"""
from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
MB = 1_000_000


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


class Server:
    """A process that prints one JSON line with `listen` (or `url`) when ready."""

    def __init__(self, argv: list[str], env: dict, workdir: Path, name: str):
        self.name = name
        self.err = open(workdir / f"{name}.stderr", "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err,
                                     stdin=subprocess.DEVNULL, env=env)
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"{name} printed nothing; see {self.err.name}")
        self.info = json.loads(line)
        self.addr = self.info.get("listen") or self.info["url"].removeprefix("http://")
        if not self.addr.startswith("127.0.0.1:"):
            raise BenchError(f"{name} is not on loopback: {self.addr}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def admin(emu: Server, path: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{emu.addr}{path}", timeout=10) as r:
        return {k: v for k, v in json.loads(r.read()).items() if v}


# --------------------------------------------------------------------------- wrk

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def seconds(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise BenchError(f"cannot read the duration {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def wrk(addr: str, threads: int, conns: int, duration: int) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency",
            "-H", "Metadata-Flavor: Google", f"http://{addr}{TOKEN_PATH}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    res = {"command": " ".join(a if " " not in a else repr(a) for a in argv)}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if not m:
            raise BenchError(f"wrk printed no {pct}% latency:\n{out}")
        res[f"p{pct}_s"] = seconds(m.group(1))
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"^\s+(\d+) requests in", out, re.M)
    res["requests"] = int(m.group(1)) if m else 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if bad or errors:
        raise BenchError(f"wrk saw failures:\n{out}")
    return res


# --------------------------------------------------------------------------- the bench


class MetadataBench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.smoke = args.smoke
        bins = Path(args.bin_dir)
        self.bin, self.emu_bin, self.fixed_bin = bins / "wif-helper", bins / "wif-emulator", bins / "fixed-body-server"
        self.work = Path(tempfile.mkdtemp(prefix="mds-", dir=args.work_dir))
        os.chmod(self.work, 0o700)
        self.problems: list[str] = []
        self.targets: list[dict] = []
        self.results: dict = {}

    def env(self, emu: Server) -> dict:
        home = self.work / "home"
        home.mkdir(exist_ok=True)
        e = emu.info["env"]
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL_STS": emu.info["url"], "AWS_REGION": e["AWS_REGION"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
            "AWS_ACCESS_KEY_ID": e["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": e["AWS_SECRET_ACCESS_KEY"],
            "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
        }

    def mds_argv(self, emu: Server) -> list[str]:
        url = emu.info["url"]
        return [str(self.bin), "metadata-server", "--listen", "127.0.0.1:0",
                "--provider", emu.info["aws_audience"].removeprefix("//iam.googleapis.com/"),
                "--service-account", emu.info["service_account"],
                "--token-url", f"{url}/google/sts/v1/token",
                "--iam-credentials-url", f"{url}/google/iamcredentials",
                "--cache-dir", str(self.work / "cache")]

    def target(self, what: str, value: float, limit: float, unit: str, better: str = "lower") -> None:
        met = value <= limit if better == "lower" else value >= limit
        self.targets.append({"target": what, "value": value, "limit": limit, "unit": unit, "met": met})

    def keepalive_requests(self, server: Server, n: int, check_token: bool) -> set[str]:
        """n GETs on one keep-alive connection; every answer must be 200."""
        host, port = server.addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        tokens = set()
        for _ in range(n):
            conn.request("GET", TOKEN_PATH, headers={"Metadata-Flavor": "Google"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise BenchError(f"{server.name}: {r.status} {body[:200]!r}")
            if check_token:
                if r.getheader("Metadata-Flavor") != "Google":
                    raise BenchError(f"{server.name}: no Metadata-Flavor header")
                tokens.add(json.loads(body)["access_token"])
        conn.close()
        return tokens

    def refused_without_header(self, server: Server) -> None:
        host, port = server.addr.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", TOKEN_PATH)
        status = conn.getresponse().status
        conn.close()
        if status != 403:
            raise BenchError(f"a request without Metadata-Flavor got {status}, not 403")

    def run(self) -> int:
        started = time.monotonic()
        load_before = os.getloadavg()
        emu = Server([str(self.emu_bin), "--port", "0"], {"PATH": os.environ.get("PATH", "")}, self.work, "emulator")
        fixed = mds = None
        try:
            fixed = Server([str(self.fixed_bin), "--port", "0"], {"PATH": os.environ.get("PATH", "")}, self.work,
                           "fixed-body-server")
            mds = Server(self.mds_argv(emu), self.env(emu), self.work, "metadata-server")
            tokens = self.keepalive_requests(mds, 1, True)
            expected = {"google:sts.token": 1, "google:generateAccessToken": 1}
            if admin(emu, "/admin/stats") != expected:
                raise BenchError(f"warm-up: upstream calls {admin(emu, '/admin/stats')}, expected {expected}")
            time.sleep(0.5)
            self.results["idle_rss_kib"] = mds.rss_kib()
            self.results["fixed_idle_rss_kib"] = fixed.rss_kib()
            if self.smoke:
                self.smoke_checks(mds, fixed, tokens)
            else:
                self.measure(mds, fixed)
            if admin(emu, "/admin/stats") != expected:
                raise BenchError(f"after the measurements: upstream calls {admin(emu, '/admin/stats')}, "
                                 f"expected still {expected} (every token from memory)")
        except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError, http.client.HTTPException) as e:
            self.problems.append(f"{type(e).__name__}: {e}")
            log(f"   FAILED: {type(e).__name__}: {e}")
        finally:
            for s in (mds, fixed):
                if s:
                    code = s.stop()
                    if s is mds and code != 0:
                        self.problems.append(f"metadata-server exited {code} on SIGTERM, not 0")
            emu.stop()
        if not self.smoke:
            self.evaluate()
        result = {
            "machine": {
                "nproc": os.cpu_count(), "kernel": platform.release(), "load_before": load_before,
                "load_after": os.getloadavg(), "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                "wrk": (subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines() or [""])[0]
                if shutil.which("wrk") else None,
                "git": subprocess.run(["git", "-C", str(Path(__file__).resolve().parent.parent), "describe", "--always",
                                       "--dirty"], capture_output=True, text=True).stdout.strip(),
                "mode": "smoke" if self.smoke else "full", "binaries": str(self.bin.parent),
            },
            "results": self.results, "targets": self.targets, "problems": self.problems,
            "elapsed_s": time.monotonic() - started,
        }
        out = Path(self.args.work_dir)
        name = "metadata-smoke" if self.smoke else "metadata"
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        md = render(result)
        (out / f"{name}.md").write_text(md)
        print(md)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        if self.problems:
            log("BROKEN:\n  " + "\n  ".join(self.problems))
            return 1
        return 0

    def smoke_checks(self, mds: Server, fixed: Server, warm: set[str]) -> None:
        t0 = time.monotonic()
        tokens = self.keepalive_requests(mds, 500, True)
        self.results["smoke_mds_500_s"] = time.monotonic() - t0
        if tokens != warm:
            raise BenchError(f"500 requests got {len(tokens)} different tokens")
        t0 = time.monotonic()
        self.keepalive_requests(fixed, 500, False)
        self.results["smoke_fixed_500_s"] = time.monotonic() - t0
        self.refused_without_header(mds)

    def measure(self, mds: Server, fixed: Server) -> None:
        if not shutil.which("wrk"):
            raise BenchError("wrk is not installed (Debian package wrk; scripts/bench installs it as root)")
        d, reps = self.args.duration, self.args.reps
        runs: dict[str, list[dict]] = {"mds_c1": [], "fixed_c1": [], "mds_c64": [], "fixed_c64": []}
        # A short load first, so per-thread allocator arenas and connection
        # buffers exist before memory growth is measured.
        wrk(mds.addr, 2, 64, 2)
        wrk(fixed.addr, 2, 64, 2)
        self.results["warm_rss_kib"] = mds.rss_kib()
        for rep in range(reps):
            for key, server, t, c in [("fixed_c1", fixed, 1, 1), ("mds_c1", mds, 1, 1),
                                      ("fixed_c64", fixed, 2, 64), ("mds_c64", mds, 2, 64)]:
                log(f"== {server.name}: {c} connection(s), {d} s (round {rep + 1} of {reps})")
                runs[key].append(wrk(server.addr, t, c, d))
        self.results["runs"] = runs
        for key, rs in runs.items():
            self.results[key] = {
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_s": statistics.median(r["p50_s"] for r in rs),
                "p99_s": statistics.median(r["p99_s"] for r in rs),
                "p99_worst_s": max(r["p99_s"] for r in rs),
                "requests": sum(r["requests"] for r in rs),
                "command": rs[0]["command"].replace(mds.addr, "$MDS").replace(fixed.addr, "$FIXED"),
            }
        # Memory growth over at least 100,000 more requests.
        rps = self.results["mds_c64"]["rps"] or 10_000
        secs = max(3, math.ceil(110_000 / rps) + 1)
        before = mds.rss_kib()
        r = wrk(mds.addr, 2, 64, secs)
        after = mds.rss_kib()
        self.results["growth"] = {"before_kib": before, "after_kib": after, "requests": r["requests"],
                                  "command": r["command"].replace(mds.addr, "$MDS")}
        if r["requests"] < 100_000:
            self.problems.append(f"the memory run made only {r['requests']} requests, not 100,000")

    def evaluate(self) -> None:
        r = self.results
        if "mds_c1" not in r:
            return
        ms = 1e3
        self.target("1 keep-alive connection: p50 ≤ 0.3 ms", r["mds_c1"]["p50_s"] * ms, 0.3, "ms")
        self.target("1 keep-alive connection: p99 ≤ 1 ms", r["mds_c1"]["p99_s"] * ms, 1.0, "ms")
        self.target("64 connections: ≥ 10,000 requests/s", r["mds_c64"]["rps"], 10_000, "req/s", "higher")
        self.target("64 connections: ≥ half the fixed-body server's requests/s",
                    r["mds_c64"]["rps"] / r["fixed_c64"]["rps"], 0.5, "×", "higher")
        self.target("64 connections: p99 ≤ 1.5 × the fixed-body server's p99",
                    r["mds_c64"]["p99_s"] / r["fixed_c64"]["p99_s"], 1.5, "×")
        self.target("idle RSS ≤ 15 MB", r["idle_rss_kib"] * 1024 / MB, 15, "MB")
        g = r["growth"]
        self.target(f"RSS growth over {g['requests']:,} requests < 1 MB",
                    (g["after_kib"] - g["before_kib"]) * 1024 / MB, 1, "MB")


def render(res: dict) -> str:
    m, r = res["machine"], res["results"]
    lines = [f"# metadata-server benchmark ({m['mode']})", "",
             f"{m['date']}, tree {m['git']}, {m['nproc']} CPUs, Linux {m['kernel']}, "
             f"load {m['load_before'][0]:.2f} before; {m['wrk'] or 'no wrk'}; binaries {m['binaries']}", ""]
    if "mds_c1" in r:
        lines += ["| | metadata-server | fixed-body server (the limit) |", "|---|---:|---:|"]
        for key, label in [("c1", "1 connection"), ("c64", "64 connections")]:
            a, b = r[f"mds_{key}"], r[f"fixed_{key}"]
            lines.append(f"| {label}: requests/s | {a['rps']:,.0f} | {b['rps']:,.0f} |")
            lines.append(f"| {label}: p50 | {a['p50_s'] * 1e3:.3f} ms | {b['p50_s'] * 1e3:.3f} ms |")
            lines.append(f"| {label}: p99 (worst round) | {a['p99_s'] * 1e3:.3f} ms ({a['p99_worst_s'] * 1e3:.3f}) "
                         f"| {b['p99_s'] * 1e3:.3f} ms ({b['p99_worst_s'] * 1e3:.3f}) |")
        lines += ["", f"Commands: `{r['mds_c1']['command']}`, `{r['mds_c64']['command']}` (and the same against "
                      "`$FIXED`); medians of the rounds."]
        g = r["growth"]
        lines += ["", f"RSS: idle {r['idle_rss_kib'] / 1024:.1f} MiB (fixed-body server "
                      f"{r['fixed_idle_rss_kib'] / 1024:.1f} MiB); after a 2 s warm-up load "
                      f"{r['warm_rss_kib'] / 1024:.1f} MiB; {g['before_kib'] / 1024:.1f} → {g['after_kib'] / 1024:.1f} "
                      f"MiB over {g['requests']:,} requests (`{g['command']}`)."]
    else:
        lines += [f"Idle RSS {r.get('idle_rss_kib', 0) / 1024:.1f} MiB; 500 keep-alive requests: "
                  f"metadata-server {r.get('smoke_mds_500_s', 0):.2f} s, fixed-body server "
                  f"{r.get('smoke_fixed_500_s', 0):.2f} s (http.client, not a measurement)."]
    if res["targets"]:
        lines += ["", "| target | measured | met |", "|---|---:|---|"]
        for t in res["targets"]:
            lines.append(f"| {t['target']} | {t['value']:.3f} {t['unit']} | {'yes' if t['met'] else '**no**'} |")
    if res["problems"]:
        lines += ["", "Problems:"] + [f"- {p}" for p in res["problems"]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="no wrk: 500 requests per server and the checks")
    ap.add_argument("--bin-dir", required=True, help="directory with wif-helper, wif-emulator and fixed-body-server")
    ap.add_argument("--work-dir", required=True, help="where results and scratch files go")
    ap.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="rounds of the four wrk runs (default 3)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    return MetadataBench(args).run()


if __name__ == "__main__":
    sys.exit(main())
