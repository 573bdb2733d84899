#!/usr/bin/env python3
"""Benchmark harness for docker-credential-slothbox, against the tests' own AWS fixture
(moto behind the counting, throttling proxy, and the IMDS fixture) on 127.0.0.1.

Prints Markdown tables and writes them to bench/RESULTS.md:
  1. wall time (median, p95) and peak RSS of list, get on a cache hit, cold get via SSM,
     cold get via ECR, and the process-start floor; docker-credential-ecr-login on its own
     cache-hit path side by side, with the ratio;
  2. 1, 10 and 50 concurrent cold gets of one registry: wall time and upstream calls;
  3. a fleet simulation: boxes x pulls helper processes against a proxy that throttles
     GetParameter above a set rate, with and without the cache.
"""

import argparse
import base64
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGION = "eu-west-1"


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def feed(proc, text):
    """Writes stdin as docker does; a command that never reads it (list) is fine."""
    try:
        proc.stdin.write(text.encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass


def run_once(argv, stdin, env):
    """One process: wall seconds, rusage peak RSS in KiB, exit code, stdout."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    feed(proc, stdin)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss, proc.returncode, out


def peak_rss_kib(argv, stdin, env):
    """Peak RSS through GNU time: a child forked straight from this Python process would
    report Python's own RSS, which the kernel carries across exec as the high-water mark."""
    with tempfile.NamedTemporaryFile("r") as out:
        _, _, code, _ = run_once(["/usr/bin/time", "-f", "%M", "-o", out.name] + argv, stdin, env)
        return int(out.read().strip().splitlines()[-1]) if code == 0 else 0


def measure(argv, stdin, env, runs, warmup=3):
    for _ in range(warmup):
        run_once(argv, stdin, env)
    walls = []
    for _ in range(runs):
        wall, _, code, out = run_once(argv, stdin, env)
        if code != 0:
            sys.exit(f"benchmark command failed ({code}): {argv} <<< {stdin!r}: {out!r}")
        walls.append(wall * 1000)
    rss = [peak_rss_kib(argv, stdin, env) / 1024 for _ in range(5)]
    return {"median": statistics.median(walls), "p95": percentile(walls, 95),
            "rss": statistics.median(rss)}


class Fixture:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests/fixtures/aws_fixture.py")],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.urls = json.loads(self.proc.stdout.readline())

    def control(self, path, doc=None):
        data = None if doc is None else json.dumps(doc).encode()
        with urllib.request.urlopen(urllib.request.Request(self.urls["imds"] + path, data=data)) as r:
            return json.loads(r.read() or b"{}")

    def calls(self):
        return self.control("/__fixture/calls")

    def reset(self):
        self.control("/__fixture/reset", {})

    def put_secret(self, name, value):
        import boto3
        ssm = boto3.client("ssm", region_name=REGION, endpoint_url=self.urls["moto"],
                           aws_access_key_id="bench", aws_secret_access_key="bench")
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def ecr_login_cache(home, account, access_key_id):
    """Primes docker-credential-ecr-login's own file cache, as its first successful call
    would leave it (its key: region, base64 of the access key id followed by an MD5 of
    nothing, and the registry id), so that its cache-hit path can be timed."""
    import hashlib
    checksum = base64.b64encode(access_key_id.encode() + hashlib.md5(b"").digest()).decode()
    now = datetime.datetime.now(datetime.timezone.utc)
    token = base64.b64encode(f"AWS:{account}-auth-token".encode()).decode()
    entry = {
        "AuthorizationToken": token,
        "RequestedAt": now.isoformat(),
        "ExpiresAt": (now + datetime.timedelta(hours=12)).isoformat(),
        "ProxyEndpoint": f"https://{account}.dkr.ecr.{REGION}.amazonaws.com",
        "Service": "ecr",
    }
    os.makedirs(os.path.join(home, ".ecr"), mode=0o700, exist_ok=True)
    with open(os.path.join(home, ".ecr", "cache.json"), "w") as f:
        json.dump({"Registries": {f"{REGION}-{checksum}-{account}": entry}, "Version": "1.0"}, f)


def concurrent(binary, env, host, n):
    start = time.perf_counter()
    procs = []
    for _ in range(n):
        p = subprocess.Popen([binary, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, env=env)
        feed(p, host)
        procs.append(p)
    ok = 0
    for p in procs:
        p.stdout.read()
        ok += p.wait() == 0
    return (time.perf_counter() - start) * 1000, ok


def fleet(binary, base_env, fixture, host, boxes, pulls, rate, cached, shm):
    """boxes x pulls processes at once, each box with its own memory-backed cache."""
    fixture.reset()
    fixture.control("/__fixture/rate", {"target": "AmazonSSM.GetParameter", "rate": rate, "burst": rate})
    start = time.perf_counter()
    procs = []
    for box in range(boxes):
        env = dict(base_env)
        if cached:
            runtime = os.path.join(shm, f"box{box}")
            os.makedirs(runtime, mode=0o700, exist_ok=True)
            env.update(SLOTHBOX_CACHE="runtime-dir", XDG_RUNTIME_DIR=runtime)
        else:
            env["SLOTHBOX_CACHE"] = "off"
        for _ in range(pulls):
            p = subprocess.Popen([binary, "get"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, env=env)
            feed(p, host)
            procs.append(p)
    done = {}
    while len(done) < len(procs):
        for i, p in enumerate(procs):
            if i not in done and p.poll() is not None:
                done[i] = (p.returncode, (time.perf_counter() - start) * 1000)
        time.sleep(0.002)
    times = [t for code, t in done.values() if code == 0]
    calls = fixture.calls()
    return {
        "ok": len(times), "n": len(procs),
        "p50": percentile(times, 50) if times else float("nan"),
        "p95": percentile(times, 95) if times else float("nan"),
        "max": max(times) if times else float("nan"),
        "calls": calls.get("AmazonSSM.GetParameter", 0),
        "throttled": calls.get("throttled:AmazonSSM.GetParameter", 0),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/docker-credential-slothbox"))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--boxes", type=int, default=20)
    parser.add_argument("--pulls", type=int, default=10)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--output", default=os.path.join(ROOT, "bench/RESULTS.md"))
    args = parser.parse_args()
    binary = os.path.abspath(args.binary)
    ecr_login = shutil.which("docker-credential-ecr-login")
    if ecr_login is None:
        sys.exit("docker-credential-ecr-login is not installed (apt-get install amazon-ecr-credential-helper)")

    fixture = Fixture()
    home = tempfile.mkdtemp(prefix="slothbox-bench-")
    shm = tempfile.mkdtemp(prefix="slothbox-bench-", dir="/dev/shm")
    try:
        config = os.path.join(home, "credentials.json")
        parameter = "/slothbox/registry-credentials/bench"
        fixture.put_secret(parameter, "bench-secret-" + os.urandom(8).hex())
        registries = ["bench.example"] + [f"concurrent{n}.example" for n in (1, 10, 50)] + ["fleet.example"]
        with open(config, "w") as f:
            json.dump({"credentials": [
                {"id": f"rc_{i}", "type": "token", "registry": r, "username": "bench", "parameter": parameter}
                for i, r in enumerate(registries)]}, f)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
            "SLOTHBOX_CONFIG": config,
            "AWS_ENDPOINT_URL": fixture.urls["aws"],
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": fixture.urls["imds"],
            "AWS_CONFIG_FILE": os.path.join(home, "none"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "none"),
            "SLOTHBOX_CACHE": "runtime-dir", "XDG_RUNTIME_DIR": shm,
        }
        cold = dict(env, SLOTHBOX_CACHE="off")
        ecr_host = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
        ecr_env = {"PATH": env["PATH"], "HOME": home, "AWS_REGION": REGION,
                   "AWS_ACCESS_KEY_ID": "AKIABENCHMARK0000001", "AWS_SECRET_ACCESS_KEY": "bench"}
        ecr_login_cache(home, "123456789012", ecr_env["AWS_ACCESS_KEY_ID"])
        run_once([binary, "get"], "bench.example", env)  # prime our cache

        rows = [
            ("process-start floor (`/bin/true`)", measure(["/bin/true"], "", env, args.runs)),
            ("`list`", measure([binary, "list"], "unused", env, args.runs)),
            ("`get`, cache hit (SSM entry)", measure([binary, "get"], "bench.example", env, args.runs)),
            ("`get`, cold via SSM (IMDS + GetParameter)", measure([binary, "get"], "bench.example", cold, args.runs)),
            ("`get`, cold via ECR (IMDS + GetAuthorizationToken)", measure([binary, "get"], ecr_host, cold, args.runs)),
            ("`docker-credential-ecr-login get`, its cache hit", measure([ecr_login, "get"], ecr_host, ecr_env, args.runs)),
        ]
        ours = rows[2][1]["median"]
        theirs = rows[5][1]["median"]

        concurrency = []
        for n in (1, 10, 50):
            fixture.reset()
            wall, ok = concurrent(binary, env, f"concurrent{n}.example", n)
            calls = fixture.calls().get("AmazonSSM.GetParameter", 0)
            concurrency.append((n, wall, ok, calls))

        fleets = [("without cache", fleet(binary, env, fixture, "fleet.example", args.boxes, args.pulls,
                                          args.rate, False, shm)),
                  ("with cache", fleet(binary, env, fixture, "fleet.example", args.boxes, args.pulls,
                                       args.rate, True, shm))]
    finally:
        fixture.stop()
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    version = subprocess.run([binary, "version"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} by `scripts/bench.sh` on "
        f"{platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}); {version}; "
        f"AWS is moto on 127.0.0.1 behind the tests' proxy, credentials from the IMDS fixture. "
        f"{args.runs} runs per row after 3 warm-up runs.",
        "",
        "## One process",
        "",
        "| command | median ms | p95 ms | peak RSS MiB (median of 5) |",
        "|---|---:|---:|---:|",
    ]
    for name, m in rows:
        lines.append(f"| {name} | {m['median']:.2f} | {m['p95']:.2f} | {m['rss']:.1f} |")
    lines += [
        "",
        f"Cache hit, docker-credential-ecr-login over docker-credential-slothbox (median): "
        f"**{theirs / ours:.2f}x** ({theirs:.2f} ms vs {ours:.2f} ms).",
        "",
        "## Concurrent cold `get`s of one registry (cache on)",
        "",
        "| processes | wall ms | succeeded | upstream GetParameter calls |",
        "|---:|---:|---:|---:|",
    ]
    for n, wall, ok, calls in concurrency:
        lines.append(f"| {n} | {wall:.1f} | {ok} | {calls} |")
    lines += [
        "",
        f"## Fleet simulation: {args.boxes} boxes x {args.pulls} concurrent pulls, GetParameter throttled above "
        f"{args.rate:g}/s",
        "",
        "| | succeeded | p50 ms | p95 ms | max ms | upstream calls (incl. retries) | throttled answers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in fleets:
        lines.append(f"| {name} | {f['ok']}/{f['n']} | {f['p50']:.0f} | {f['p95']:.0f} | {f['max']:.0f} | "
                     f"{f['calls']} | {f['throttled']} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
