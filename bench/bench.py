#!/usr/bin/env python3
"""wif-helper benchmark suite (driven by scripts/bench; standard library only).

Starts wif-emulator on 127.0.0.1 and measures, in one run, whole processes:

  1. cache hit: print-access-token and executable with a warm cache
  2. cold exchange (--no-cache): executable, print-access-token, print-identity-token
  3. the alternatives in a fresh process: Python google-auth with a native
     `aws1` config, and the Python original (gs-aws-to-gcp-workload-identity)
  4. bursts of 10/100/500 processes released together on a cold cache
  5. Python google-auth refreshing through `wif-helper generate-config`
  6. binary size and `wif-helper --version`

Wall times come from hyperfine -N (no shell) when it is installed, otherwise
from a posix_spawn/waitpid loop here; peak RSS from /usr/bin/time (%M) when it
is installed, otherwise it is not measured. Every
measured block also checks the emulator's request counters, so a "cache hit"
that quietly went upstream, or a "cold" run that did not, fails the run.

Exit status: 0 when every command worked and every burst made exactly one
upstream exchange with no failure; 1 otherwise. Missed performance targets are
reported, not failed on (timings on a shared 2-core machine are noisy).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SA_AUDIENCE = "https://bench.example.com"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class BenchError(Exception):
    """A command failed or an upstream count was wrong: the run is broken."""


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- emulator


class Emulator:
    def __init__(self, binary: Path, workdir: Path):
        self.err = open(workdir / "emulator.stderr", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=self.err,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("wif-emulator printed nothing; see " + self.err.name)
        self.info = json.loads(line)
        self.url = self.info["url"]
        if not self.url.startswith("http://127.0.0.1:"):
            raise BenchError(f"emulator is not on loopback: {self.url}")
        # The admin API is on loopback: never through a proxy.
        self._http = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str) -> dict:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with self._http.open(req, timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        self._call("POST", "/admin/reset")

    def stats(self) -> dict:
        return {k: v for k, v in self._call("GET", "/admin/stats").items() if v}

    def expect(self, what: str, expected: dict) -> None:
        got = self.stats()
        if got != {k: v for k, v in expected.items() if v}:
            raise BenchError(f"{what}: upstream calls {got}, expected {expected}")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the emulator has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def container_credentials(self) -> dict:
        req = urllib.request.Request(
            self.url + "/aws/container/credentials",
            headers={"Authorization": self.info["env"]["AWS_CONTAINER_AUTHORIZATION_TOKEN"]},
        )
        with self._http.open(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


# --------------------------------------------------------------------------- measuring


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": pct(values, 95),
        "min": min(values),
        "max": max(values),
    }


class Measurer:
    def __init__(self, workdir: Path, use_hyperfine: bool, use_gnu_time: bool):
        self.workdir = workdir
        self.hyperfine = shutil.which("hyperfine") if use_hyperfine else None
        self.gnu_time = "/usr/bin/time" if use_gnu_time and os.access("/usr/bin/time", os.X_OK) else None
        self.wall_tool = "hyperfine -N" if self.hyperfine else "posix_spawn+waitpid loop (bench.py)"
        self.rss_tool = "/usr/bin/time -f %M" if self.gnu_time else "not measured (no /usr/bin/time)"

    def _spawn_wait(self, argv: list[str], env: dict) -> float:
        """One run's wall seconds; raises on a non-zero exit."""
        with tempfile.TemporaryFile() as err:
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, err.fileno(), 2),
            ]
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            wall = time.perf_counter() - t0
            if os.waitstatus_to_exitcode(status) != 0:
                err.seek(0)
                raise BenchError(f"{shlex.join(argv)} failed: {err.read().decode(errors='replace')[:500]}")
        return wall

    def wall(self, argv: list[str], env: dict, runs: int, warmup: int, prepare: list[str] | None = None) -> list[float]:
        if self.hyperfine:
            out = self.workdir / "hyperfine.json"
            cmd = [self.hyperfine, "-N", "--style", "none", "--runs", str(runs), "--warmup", str(warmup),
                   "--export-json", str(out)]
            if prepare:
                cmd += ["--prepare", shlex.join(prepare)]
            cmd.append(shlex.join(argv))
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                raise BenchError(f"hyperfine failed on {shlex.join(argv)}: {r.stderr.strip()[:800]}")
            res = json.loads(out.read_text())["results"][0]
            if any(c != 0 for c in res.get("exit_codes", [])):
                raise BenchError(f"{shlex.join(argv)} exited non-zero under hyperfine")
            return list(res["times"])
        times = []
        for i in range(warmup + runs):
            if prepare:
                subprocess.run(prepare, env=env, check=True)
            w = self._spawn_wait(argv, env)
            if i >= warmup:
                times.append(w)
        return times

    def rss(self, argv: list[str], env: dict, runs: int, prepare: list[str] | None = None) -> list[int]:
        """Peak RSS in KiB per run, or [] without GNU time. (wait4's ru_maxrss
        of a child spawned from this Python process is no substitute: exec
        keeps the high-water mark of the pre-exec image, Python's own ~25 MB.)"""
        if not self.gnu_time:
            return []
        values = []
        for _ in range(runs):
            if prepare:
                subprocess.run(prepare, env=env, check=True)
            out = self.workdir / "time.out"
            r = subprocess.run([self.gnu_time, "-f", "%M", "-o", str(out), *argv], env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if r.returncode != 0:
                raise BenchError(f"{shlex.join(argv)} failed: {r.stderr.strip()[:500]}")
            values.append(int(out.read_text().strip().splitlines()[-1]))
        return values


# --------------------------------------------------------------------------- the bench


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.smoke = args.smoke
        self.bin = Path(args.bin_dir) / "wif-helper"
        self.emu_bin = Path(args.bin_dir) / "wif-emulator"
        self.python = args.python
        self.bench_dir = Path(__file__).resolve().parent
        self.work = Path(tempfile.mkdtemp(prefix="run-", dir=args.work_dir))
        os.chmod(self.work, 0o700)
        self.m = Measurer(self.work, use_hyperfine=not args.no_hyperfine, use_gnu_time=not args.no_gnu_time)
        self.rows: list[dict] = []
        self.bursts: list[dict] = []
        self.targets: list[dict] = []
        self.problems: list[str] = []
        self.emu: Emulator | None = None

    # -- helpers

    def n(self, full: int, smoke: int) -> int:
        return smoke if self.smoke else full

    def env(self, home: Path, **extra: str) -> dict:
        """The environment of every measured process: like tests/it/common, plus a
        proxy that goes nowhere so nothing can leave loopback unnoticed."""
        home.mkdir(parents=True, exist_ok=True)
        e = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL_STS": self.emu.url,
            "AWS_REGION": self.emu.info["env"]["AWS_REGION"],
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
            "AWS_ACCESS_KEY_ID": self.emu.info["env"]["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": self.emu.info["env"]["AWS_SECRET_ACCESS_KEY"],
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "GOOGLE_CLOUD_PROJECT": "wif-demo",
        }
        e.update(extra)
        return e

    def short(self, argv: list[str]) -> str:
        """The command as docs/performance.md shows it."""
        s = shlex.join(argv)
        reps = [
            (self.emu.url, "$URL"),
            (str(self.bin), "wif-helper"),
            (str(self.python or ""), "python") if self.python else ("\0", "\0"),
            (str(self.bench_dir) + "/", "bench/"),
            (str(self.work), "$WORK"),
            (self.oidc_provider, "$OIDC_PROVIDER"),
            (self.aws_provider, "$AWS_PROVIDER"),
            (self.sa, "$SA"),
        ]
        for a, b in reps:
            s = s.replace(a, b)
        return s

    def google_flags(self) -> list[str]:
        return ["--token-url", f"{self.emu.url}/google/sts/v1/token",
                "--iam-credentials-url", f"{self.emu.url}/google/iamcredentials"]

    def access_cmd(self, *extra: str, provider_type: str = "aws") -> list[str]:
        p = self.aws_provider if provider_type == "aws" else self.oidc_provider
        return [str(self.bin), "print-access-token", "--provider", p, "--service-account", self.sa,
                "--provider-type", provider_type, *self.google_flags(), *extra]

    def id_cmd(self, *extra: str) -> list[str]:
        return [str(self.bin), "print-identity-token", "--provider", self.aws_provider, "--service-account", self.sa,
                *self.google_flags(), "--audience", SA_AUDIENCE, *extra]

    def exec_cmd(self, *extra: str) -> list[str]:
        return [str(self.bin), "executable", "--provider", self.oidc_provider, *extra]

    def check_once(self, argv: list[str], env: dict, kind: str) -> None:
        """Runs the command once and checks its answer, since executable mode
        exits 0 even on failure and hyperfine only looks at exit codes."""
        r = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        out = r.stdout.strip()
        ok = r.returncode == 0
        if ok and kind == "executable":
            try:
                v = json.loads(out)
                ok = v.get("success") is True and v.get("id_token", "").count(".") == 2
            except ValueError:
                ok = False
        elif ok and kind == "token":
            ok = len(out.splitlines()) == 1 and len(out) > 10
        elif ok and kind == "version":
            ok = out.startswith("wif-helper ")
        if not ok:
            raise BenchError(f"{self.short(argv)}: status {r.returncode}, stdout {out[:300]!r}, stderr {r.stderr.strip()[:300]!r}")

    def measure(self, section: str, name: str, argv: list[str], env: dict, *, kind: str,
                runs: int, warmup: int, rss_runs: int, per_call: dict,
                prepare: list[str] | None = None, note: str = "", timings: bool = False) -> dict:
        """Checks once, then times runs (+warmup) and RSS, checking that the
        emulator saw exactly per_call × processes upstream calls."""
        if prepare:
            subprocess.run(prepare, env=env, check=True)
        self.check_once(argv, env, kind)
        tfile = self.work / "timings.jsonl"
        if timings:
            env = dict(env, BENCH_TIMINGS=str(tfile))
            tfile.write_text("")
        self.emu.reset()
        t0 = time.monotonic()
        cpu0 = self.emu.cpu_seconds()
        times = self.m.wall(argv, env, runs, warmup, prepare)
        emu_cpu = (self.emu.cpu_seconds() - cpu0) / (runs + warmup)
        self.emu.expect(f"{name} (wall)", {k: v * (runs + warmup) for k, v in per_call.items()})
        inside = None
        if timings:
            recs = [json.loads(x) for x in tfile.read_text().splitlines() if x.strip()][warmup:]
            if len(recs) != runs:
                raise BenchError(f"{name}: {len(recs)} in-process timings for {runs} runs")
            inside = {k: statistics.median(r[k] for r in recs) for k in recs[0]}
            env = {k: v for k, v in env.items() if k != "BENCH_TIMINGS"}
        self.emu.reset()
        rss = self.m.rss(argv, env, rss_runs, prepare) if rss_runs else []
        self.emu.expect(f"{name} (rss)", {k: v * len(rss) for k, v in per_call.items()})
        row = {
            "section": section, "name": name, "command": self.short(argv),
            "prepare": self.short(prepare) if prepare else "", "wall_tool": self.m.wall_tool,
            "rss_tool": self.m.rss_tool if rss else "", "wall_s": summary(times),
            "rss_kib": summary([float(x) for x in rss]) if rss else None,
            "upstream_per_process": per_call, "note": note, "in_process_ms": inside,
            "emulator_cpu_ms_per_process": emu_cpu * 1e3 if per_call else 0.0,
        }
        self.rows.append(row)
        w = row["wall_s"]
        log(f"   {name:<38} median {w['median'] * 1e3:8.2f} ms  p95 {w['p95'] * 1e3:8.2f} ms"
            f"  [{w['min'] * 1e3:.2f}–{w['max'] * 1e3:.2f}] n={w['n']}"
            + (f"  RSS {row['rss_kib']['median'] / 1024:.1f} MiB" if rss else "")
            + f"  ({time.monotonic() - t0:.1f}s)")
        return row

    def row(self, name: str) -> dict:
        return next(r for r in self.rows if r["name"] == name)

    def target(self, what: str, value: float, limit: float, unit: str, better: str = "lower") -> None:
        ok = value <= limit if better == "lower" else value >= limit
        self.targets.append({"target": what, "value": value, "limit": limit, "unit": unit, "ok": ok})

    # -- sections

    def section_hit(self) -> None:
        log("== 1. cache hit (warm cache)")
        home = self.work / "home-hit"
        env = self.env(home)
        runs, warm, rss = self.n(300, 20), self.n(20, 3), self.n(20, 3)
        # Warm the caches (this process is the one miss).
        self.check_once(self.access_cmd(), env, "token")
        self.check_once(self.exec_cmd(), env, "executable")
        self.measure("hit", "hit: print-access-token", self.access_cmd(), env, kind="token",
                     runs=runs, warmup=warm, rss_runs=rss, per_call={})
        self.measure("hit", "hit: executable", self.exec_cmd(), env, kind="executable",
                     runs=runs, warmup=warm, rss_runs=rss, per_call={})
        entry = sorted((home / ".cache" / "wif-helper").glob("access-*.json"))[0]
        cat = shutil.which("cat") or "/bin/cat"
        true = shutil.which("true") or "/bin/true"
        self.measure("hit", "floor: /bin/true", [true], env, kind="none",
                     runs=runs, warmup=warm, rss_runs=rss, per_call={},
                     note="process start and exit: the floor for any helper")
        self.measure("hit", "floor: cat <cache entry>", [cat, str(entry)], env, kind="none",
                     runs=runs, warmup=warm, rss_runs=rss, per_call={},
                     note="start a small process and read one small file")

    def section_cold(self) -> None:
        log("== 2. cold exchange (--no-cache)")
        env = self.env(self.work / "home-cold")
        runs, warm, rss = self.n(40, 5), self.n(3, 1), self.n(10, 2)
        self.measure("cold", "cold: executable (GetWebIdentityToken)", self.exec_cmd("--no-cache"), env,
                     kind="executable", runs=runs, warmup=warm, rss_runs=rss,
                     per_call={"sts:GetWebIdentityToken": 1})
        self.measure("cold", "cold: print-access-token", self.access_cmd("--no-cache"), env, kind="token",
                     runs=runs, warmup=warm, rss_runs=rss,
                     per_call={"google:sts.token": 1, "google:generateAccessToken": 1})
        self.measure("cold", "cold: print-identity-token", self.id_cmd("--no-cache"), env, kind="token",
                     runs=runs, warmup=warm, rss_runs=rss,
                     per_call={"google:sts.token": 1, "google:generateIdToken": 1})
        self.measure("cold", "cold: print-access-token --provider-type oidc",
                     self.access_cmd("--no-cache", provider_type="oidc"), env, kind="token",
                     runs=runs, warmup=warm, rss_runs=rss,
                     per_call={"sts:GetWebIdentityToken": 1, "google:sts.token": 1, "google:generateAccessToken": 1},
                     note="AWS JWT, then STS and IAM: the longest chain")
        if self.smoke:
            return
        # Diagnostic: the same cold runs with a one-certificate trust store.
        # Building the TLS client parses the system root store (the bundle and
        # then /etc/ssl/certs again), which is most of a cold run's CPU even
        # though the emulator speaks plain http.
        bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if bundle.is_file():
            pem = bundle.read_text(errors="replace")
            end = pem.find("-----END CERTIFICATE-----")
            if end > 0:
                one = self.work / "one-root.pem"
                one.write_text(pem[pem.find("-----BEGIN CERTIFICATE-----"):end + 25] + "\n")
                empty = self.work / "no-roots"
                empty.mkdir(exist_ok=True)
                tenv = dict(env, SSL_CERT_FILE=str(one), SSL_CERT_DIR=str(empty))
                note = "diagnostic: SSL_CERT_FILE=<one root> SSL_CERT_DIR=<empty dir>"
                self.measure("cold", "cold: executable, 1-root trust store", self.exec_cmd("--no-cache"), tenv,
                             kind="executable", runs=runs, warmup=warm, rss_runs=0,
                             per_call={"sts:GetWebIdentityToken": 1}, note=note)
                self.measure("cold", "cold: print-access-token, 1-root trust store", self.access_cmd("--no-cache"),
                             tenv, kind="token", runs=runs, warmup=warm, rss_runs=0,
                             per_call={"google:sts.token": 1, "google:generateAccessToken": 1}, note=note)

    def section_alternatives(self) -> None:
        log("== 3. the alternatives, one fresh process each")
        runs, warm, rss = 15, 2, 5
        home = self.work / "home-alt"
        env = self.env(home)
        cfg = self.work / "aws1.json"
        cfg.write_text(json.dumps({
            "type": "external_account",
            "audience": "//iam.googleapis.com/" + self.aws_provider,
            "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
            "token_url": f"{self.emu.url}/google/sts/v1/token",
            "service_account_impersonation_url": self.emu.info["service_account_impersonation_url"],
            "credential_source": {
                "environment_id": "aws1",
                "regional_cred_verification_url":
                    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            },
        }, indent=2))
        per = {"google:sts.token": 1, "google:generateAccessToken": 1}
        self.measure("alt", "google-auth aws1: one refresh", [self.python, str(self.bench_dir / "google_auth_refresh.py"), str(cfg)],
                     env, kind="token", runs=runs, warmup=warm, rss_runs=rss, per_call=per, timings=True,
                     note="google-auth 2.63.0, native aws1 config, env keys")
        # The original cannot sign with long-term keys (it puts a null
        # x-amz-security-token in the signed headers), so it gets temporary
        # credentials in the environment, as on Lambda.
        c = self.emu.container_credentials()
        self.emu.reset()
        oenv = self.env(home, AWS_ACCESS_KEY_ID=c["AccessKeyId"], AWS_SECRET_ACCESS_KEY=c["SecretAccessKey"],
                        AWS_SESSION_TOKEN=c["Token"])
        self.measure("alt", "original: get_oauth_token()",
                     [self.python, str(self.bench_dir / "original_wrapper.py"), self.emu.url, self.aws_provider, self.sa],
                     oenv, kind="token", runs=runs, warmup=warm, rss_runs=rss, per_call=per, timings=True,
                     note="gs-aws-to-gcp-workload-identity 0.1.2 (boto3 1.44.8), session credentials in env")

    def section_burst(self) -> None:
        log("== 4. bursts on a cold cache")
        sizes = [10] if self.smoke else [10, 100, 500]
        reps = 1 if self.smoke else 3
        paths = [("executable", {"sts:GetWebIdentityToken": 1}, "executable")]
        if not self.smoke:
            paths.append(("print-access-token", {"google:sts.token": 1, "google:generateAccessToken": 1}, "token"))
        for path, per, kind in paths:
            for n in sizes:
                results = []
                for rep in range(reps):
                    cache = self.work / f"burst-{path}-{n}-{rep}"
                    argv = (self.exec_cmd if path == "executable" else self.access_cmd)("--cache-dir", str(cache))
                    env = self.env(self.work / "home-burst")
                    self.emu.reset()
                    r = self.burst(n, argv, env, kind)
                    r["upstream"] = self.emu.stats()
                    r["exact_one_exchange"] = r["upstream"] == per
                    results.append(r)
                    if not r["exact_one_exchange"]:
                        self.problems.append(f"burst {path} x{n}: upstream {r['upstream']}, expected {per}")
                    if r["failures"]:
                        self.problems.append(f"burst {path} x{n}: {r['failures']} failures: {r['first_failure']}")
                walls = [r["wall_s"] for r in results]
                b = {
                    "path": path, "processes": n, "reps": reps, "wall_s": summary(walls),
                    "p50_finish_s": statistics.median(r["p50_finish_s"] for r in results),
                    "failures": sum(r["failures"] for r in results),
                    "upstream": [r["upstream"] for r in results],
                    "exact_one_exchange": all(r["exact_one_exchange"] for r in results),
                    "distinct_tokens": max(r["distinct_tokens"] for r in results),
                    "command": self.short(argv).replace(f"burst-{path}-{n}-{reps - 1}", f"burst-{path}-{n}-REP"),
                }
                self.bursts.append(b)
                log(f"   {path} x{n:<4} last done after median {b['wall_s']['median'] * 1e3:7.1f} ms"
                    f" [{b['wall_s']['min'] * 1e3:.1f}–{b['wall_s']['max'] * 1e3:.1f}]  failures {b['failures']}"
                    f"  upstream {b['upstream'][0]}  tokens {b['distinct_tokens']}")

    def burst(self, n: int, argv: list[str], env: dict, kind: str) -> dict:
        """Forks n children that block on a pipe, then releases them all at once
        (closing the pipe) and waits for the last. Spawning is not timed."""
        outdir = self.work / f"burst-out-{n}"
        outdir.mkdir(exist_ok=True)
        r, w = os.pipe()
        pids = {}
        for i in range(n):
            out = os.open(outdir / f"{i}.out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            err = os.open(outdir / f"{i}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            pid = os.fork()
            if pid == 0:  # child
                try:
                    os.close(w)
                    os.read(r, 1)  # EOF when the parent closes the write end
                    os.dup2(out, 1)
                    os.dup2(err, 2)
                    os.execve(argv[0], argv, env)
                finally:
                    os._exit(127)
            os.close(out)
            os.close(err)
            pids[pid] = i
        os.close(r)
        t0 = time.perf_counter()
        os.close(w)  # go
        finish, failures, first = [], 0, ""
        status_of = {}
        while len(status_of) < n:
            pid, status = os.wait()
            finish.append(time.perf_counter() - t0)
            status_of[pids[pid]] = os.waitstatus_to_exitcode(status)
        wall = max(finish)
        tokens = set()
        for i in range(n):
            out = (outdir / f"{i}.out").read_text().strip()
            ok = status_of[i] == 0
            tok = out
            if ok and kind == "executable":
                try:
                    v = json.loads(out)
                    ok = v.get("success") is True
                    tok = v.get("id_token", "")
                except ValueError:
                    ok = False
            ok = ok and len(tok) > 10
            if ok:
                tokens.add(tok)
            else:
                failures += 1
                first = first or f"status {status_of[i]} stdout {out[:200]!r} stderr {(outdir / f'{i}.err').read_text()[:200]!r}"
        return {"wall_s": wall, "p50_finish_s": statistics.median(finish), "failures": failures,
                "first_failure": first, "distinct_tokens": len(tokens)}

    def section_library(self) -> None:
        log("== 5. Python google-auth through wif-helper generate-config")
        runs, warm, rss = 15, 2, 5
        home = self.work / "home-lib"
        env = self.env(home, GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES="1")
        cache = self.work / "lib-cache"
        cfg = self.work / "generated.json"
        subprocess.run([str(self.bin), "generate-config", "--provider", self.oidc_provider, "--service-account", self.sa,
                        *self.google_flags(), "--output-file", str(cfg), "--cache-dir", str(cache), "--force",
                        # Opt-in (a single-identity config); the default has none, which is the
                        # "wif-helper cache warm" row.
                        "--executable-output-file", str(self.work / "lib-response.json")],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        output_file = json.loads(cfg.read_text())["credential_source"]["executable"]["output_file"]
        py = [self.python, str(self.bench_dir / "google_auth_refresh.py"), str(cfg)]
        lib = {"google:sts.token": 1, "google:generateAccessToken": 1}
        self.measure("lib", "google-auth via wif-helper: cold", py, env, kind="token", runs=runs, warmup=warm,
                     rss_runs=rss, per_call={**lib, "sts:GetWebIdentityToken": 1}, prepare=["rm", "-rf", str(cache)], timings=True,
                     note="no wif-helper cache, no output_file: library runs wif-helper, which calls AWS")
        self.measure("lib", "google-auth via wif-helper: wif-helper cache warm", py, env, kind="token", runs=runs,
                     warmup=warm, rss_runs=rss, per_call=lib, prepare=["rm", "-f", output_file], timings=True,
                     note="output_file removed: library runs wif-helper, a cache hit")
        self.measure("lib", "google-auth via wif-helper: output_file warm", py, env, kind="token", runs=runs,
                     warmup=warm, rss_runs=rss, per_call=lib, timings=True,
                     note="library reads output_file and does not run wif-helper")

    def section_binary(self) -> None:
        log("== 6. binary size and --version")
        size = self.bin.stat().st_size
        stripped = None
        strip = shutil.which("strip")
        if strip:
            tmp = self.work / "wif-helper.stripped"
            if subprocess.run([strip, "-o", str(tmp), str(self.bin)], stderr=subprocess.DEVNULL).returncode == 0:
                stripped = tmp.stat().st_size
        self.binary = {"path": self.short([str(self.bin)]), "bytes": size, "stripped_bytes": stripped,
                       "emulator_bytes": self.emu_bin.stat().st_size}
        log(f"   wif-helper {size / 1e6:.2f} MB (stripped: {stripped / 1e6 if stripped else float('nan'):.2f} MB)")
        env = self.env(self.work / "home-version")
        self.measure("binary", "wif-helper --version", [str(self.bin), "--version"], env, kind="version",
                     runs=self.n(300, 10), warmup=self.n(20, 2), rss_runs=self.n(20, 2), per_call={})

    # -- main

    def machine(self) -> dict:
        cpu = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        mem = ""
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal"):
                    mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
        except OSError:
            pass
        tools = {}
        if self.m.hyperfine:
            tools["hyperfine"] = subprocess.run([self.m.hyperfine, "--version"], capture_output=True, text=True).stdout.strip()
        tools["python"] = subprocess.run([self.python or sys.executable, "--version"], capture_output=True, text=True).stdout.strip()
        tools["wif-helper"] = subprocess.run([str(self.bin), "--version"], capture_output=True, text=True).stdout.strip()
        git = subprocess.run(["git", "-C", str(self.bench_dir.parent), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip()
        return {"nproc": os.cpu_count(), "cpu": cpu, "memory": mem, "kernel": platform.release(),
                "git": git or "unknown", "load_before": self.load_before, "load_after": os.getloadavg(),
                "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "tools": tools,
                "wall_tool": self.m.wall_tool, "rss_tool": self.m.rss_tool,
                "mode": "smoke" if self.smoke else "full", "binaries": str(self.bin.parent)}

    def run(self) -> int:
        started = time.monotonic()
        self.load_before = os.getloadavg()
        self.emu = Emulator(self.emu_bin, self.work)
        self.aws_provider = self.emu.info["aws_audience"].removeprefix("//iam.googleapis.com/")
        self.oidc_provider = self.emu.info["oidc_audience"].removeprefix("//iam.googleapis.com/")
        self.sa = self.emu.info["service_account"]
        try:
            sections = [self.section_hit, self.section_cold]
            if not self.smoke:
                sections.append(self.section_alternatives)
            sections.append(self.section_burst)
            if not self.smoke:
                sections.append(self.section_library)
            sections.append(self.section_binary)
            for s in sections:
                try:
                    s()
                except (BenchError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
                    self.problems.append(f"{s.__name__}: {type(e).__name__}: {e}")
                    log(f"   FAILED: {type(e).__name__}: {e}")
        finally:
            self.emu.stop()
        if not self.smoke:
            self.evaluate()
        self.elapsed = time.monotonic() - started
        result = {"machine": self.machine(), "rows": self.rows, "bursts": self.bursts,
                  "binary": getattr(self, "binary", None), "ratios": getattr(self, "ratios", []),
                  "targets": self.targets, "problems": self.problems, "elapsed_s": self.elapsed}
        out = Path(self.args.work_dir)
        name = "smoke" if self.smoke else "results"
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        md = render(result)
        (out / f"{name}.md").write_text(md)
        print(md)
        log(f"results: {out / (name + '.json')} and {name}.md; measured in {self.elapsed:.0f} s")
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        if self.problems:
            log("BROKEN:\n  " + "\n  ".join(self.problems))
            return 1
        return 0

    def evaluate(self) -> None:
        def get(name):
            return next((r for r in self.rows if r["name"] == name), None)

        ms = 1e3
        for name in ["hit: print-access-token", "hit: executable"]:
            r = get(name)
            if r:
                self.target(f"{name}: median wall ≤ 3 ms", r["wall_s"]["median"] * ms, 3, "ms")
                if r["rss_kib"]:
                    self.target(f"{name}: median peak RSS ≤ 12 MB", r["rss_kib"]["median"] / 1024, 12, "MiB")
        for name in ["cold: executable (GetWebIdentityToken)", "cold: print-access-token", "cold: print-identity-token"]:
            r = get(name)
            if r:
                self.target(f"{name}: median wall ≤ 30 ms", r["wall_s"]["median"] * ms, 30, "ms")
        ga, orig = get("google-auth aws1: one refresh"), get("original: get_oauth_token()")
        self.ratios = []
        pairs = [("hit: print-access-token", ga), ("hit: print-access-token", orig),
                 ("cold: print-access-token", ga), ("cold: print-access-token", orig),
                 ("hit: executable", ga)]
        for mine, alt in pairs:
            r = get(mine)
            if r and alt:
                ratio = alt["wall_s"]["median"] / r["wall_s"]["median"]
                self.ratios.append({"wif_helper": mine, "alternative": alt["name"], "alternative_over_wif_helper": ratio,
                                    "wif_helper_over_alternative": 1 / ratio})
        if ga and get("hit: print-access-token"):
            self.target("cache hit ≥ 100× faster than google-auth fresh-process refresh",
                        ga["wall_s"]["median"] / get("hit: print-access-token")["wall_s"]["median"], 100, "×", "higher")
        for b in self.bursts:
            if b["processes"] == 500:
                self.target(f"burst 500 ({b['path']}): last done ≤ 3 s (median of {b['reps']})", b["wall_s"]["median"], 3, "s")
                self.target(f"burst 500 ({b['path']}): upstream exchanges", 1 if b["exact_one_exchange"] else 0, 1, "exactly one", "higher")
                self.target(f"burst 500 ({b['path']}): failures", b["failures"], 0, "")
        binary = getattr(self, "binary", None)
        if binary:
            size = binary["stripped_bytes"] or binary["bytes"]
            self.target("stripped binary ≤ 15 MB", size / 1e6, 15, "MB")


# --------------------------------------------------------------------------- report


def render(res: dict) -> str:
    m = res["machine"]
    ms = 1e3
    lines = [
        f"## wif-helper benchmark ({m['mode']}), {m['date']}",
        "",
        f"Machine: {m['nproc']} CPUs, {m['cpu']}, {m['memory']} RAM, Linux {m['kernel']}. "
        f"Binaries: `{m['binaries']}` (tree {m['git']}). Wall time: {m['wall_tool']}; peak RSS: {m['rss_tool']}. "
        + ", ".join(f"{k}: {v}" for k, v in m["tools"].items()) + ". "
        + "Load average (1/5/15 min) before: " + "/".join(f"{x:.2f}" for x in m["load_before"])
        + ", after: " + "/".join(f"{x:.2f}" for x in m["load_after"]) + ".",
        "",
        "| # | measurement | median | p95 | min–max | n | peak RSS (median, max) | upstream calls / process | emulator CPU / process | command |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    sec = {"hit": "1", "cold": "2", "alt": "3", "lib": "5", "binary": "6"}
    for r in res["rows"]:
        w = r["wall_s"]
        rss = r["rss_kib"]
        rss_s = f"{rss['median'] / 1024:.1f} / {rss['max'] / 1024:.1f} MiB" if rss else ""
        up = ", ".join(f"{k.split(':')[1]} {v}" for k, v in r["upstream_per_process"].items()) or "none"
        cmd = f"`{r['command']}`" + (f" (prepare: `{r['prepare']}`)" if r["prepare"] else "")
        lines.append(f"| {sec.get(r['section'], '')} | {r['name']} | {w['median'] * ms:.2f} ms | {w['p95'] * ms:.2f} ms | "
                     f"{w['min'] * ms:.2f}–{w['max'] * ms:.2f} ms | {w['n']} | {rss_s} | {up} | "
                     f"{r['emulator_cpu_ms_per_process']:.1f} ms | {cmd} |")
    inside = [r for r in res["rows"] if r.get("in_process_ms")]
    if inside:
        lines += ["", "Inside the Python processes (medians; the rest of the wall time is the interpreter starting and exiting):", "",
                  "| measurement | wall | inside the process |", "|---|---:|---|"]
        for r in inside:
            parts = "; ".join(f"{k} {v:.1f} ms" for k, v in r["in_process_ms"].items())
            lines.append(f"| {r['name']} | {r['wall_s']['median'] * ms:.1f} ms | {parts} |")
    if res["ratios"]:
        lines += ["", "| wif-helper | alternative | alternative ÷ wif-helper (medians) |", "|---|---|---:|"]
        for q in res["ratios"]:
            lines.append(f"| {q['wif_helper']} | {q['alternative']} | {q['alternative_over_wif_helper']:.1f}× |")
    if res["bursts"]:
        lines += ["", "| # | burst | processes | runs | last done: median | min–max | median process done | failures | upstream calls (each run) | distinct tokens |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
        for b in res["bursts"]:
            w = b["wall_s"]
            up = "; ".join(", ".join(f"{k.split(':')[1]} {v}" for k, v in u.items()) for u in b["upstream"])
            lines.append(f"| 4 | {b['path']} | {b['processes']} | {b['reps']} | {w['median'] * ms:.0f} ms | "
                         f"{w['min'] * ms:.0f}–{w['max'] * ms:.0f} ms | {b['p50_finish_s'] * ms:.0f} ms | {b['failures']} | {up} | {b['distinct_tokens']} |")
        lines += ["", f"Burst command: `{res['bursts'][-1]['command']}` (fresh `--cache-dir` per run)."]
    if res.get("binary"):
        b = res["binary"]
        st = f"{b['stripped_bytes'] / 1e6:.2f} MB after `strip`" if b["stripped_bytes"] else "strip not available"
        lines += ["", f"Binary (6): `{b['path']}` is {b['bytes']:,} bytes ({b['bytes'] / 1e6:.2f} MB; {st}); "
                      f"wif-emulator {b['emulator_bytes'] / 1e6:.2f} MB."]
    if res["targets"]:
        lines += ["", "| target | measured | limit | met |", "|---|---:|---:|---|"]
        for t in res["targets"]:
            v = t["value"]
            vs = f"{v:.2f}" if isinstance(v, float) else str(v)
            lines.append(f"| {t['target']} | {vs} {t['unit']} | {t['limit']} {t['unit']} | {'yes' if t['ok'] else '**no**'} |")
    if res["problems"]:
        lines += ["", "Problems:", *[f"- {p}" for p in res["problems"]]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="few iterations, wif-helper paths and a burst of 10 only")
    ap.add_argument("--bin-dir", required=True, help="directory with wif-helper and wif-emulator")
    ap.add_argument("--python", help="venv python with google-auth and the Python original (full mode)")
    ap.add_argument("--work-dir", required=True, help="where results and scratch files go")
    ap.add_argument("--no-hyperfine", action="store_true", help="time with the built-in loop even if hyperfine exists")
    ap.add_argument("--no-gnu-time", action="store_true", help="skip peak RSS even if /usr/bin/time exists (tests the fallback)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    if not args.smoke and not args.python:
        ap.error("--python is required without --smoke")
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
