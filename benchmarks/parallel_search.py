"""A grid and its Mordal search with executors local, processes and ray, side by side in one run;
then a two-node Ray cluster on this machine (loopback) with a worker killed mid-search.

    python -m benchmarks.parallel_search [--suite suites/quickstart.yaml] [--workers 2]
                                         [--strategies grid mordal mordal-asha]
                                         [--skip-cluster] [--out bench/parallel]

Each (executor, strategy) pair runs the suite from an empty store of its own (so each trains
everything it needs), as ``harness run`` does, and prints wall seconds, the ratio to ``local``,
trials trained, and whether its ranking equals ``local``'s (candidates, order and scores).
``ray`` starts a local instance of ``--workers`` CPUs. The cluster part starts
``ray start --head --num-cpus 1`` and a second ``ray start --address 127.0.0.1:PORT --num-cpus 1``
(two raylets, loopback only), runs the grid across both, SIGKILLs one trial worker once, and
checks that nothing was lost (every candidate done) or repeated (each trial trained once) and
that the ranking equals ``local``'s. JSON lines, then a table.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, SUITES, arg_parser


def _suite(base: dict, folder: Path, strategy: str, executor, workers: int = 1) -> Path:
    data = json.loads(json.dumps(base))
    data["search"]["strategy"] = strategy
    if strategy == "mordal-asha":  # Mordal with ASHA at `workers` trials in flight, both stages
        data["search"]["strategy"] = "mordal"
        for stage in ("inter", "intra"):
            data["search"].setdefault(stage, {}).update(policy="asha", options={"workers": workers})
    data["executor"] = executor
    data["name"] = f"{data['name']}-{strategy}"
    path = folder / f"{strategy}-{executor if isinstance(executor, str) else executor['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(suite: Path, store: Path, env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--store", str(store)],
                         capture_output=True, text=True, env=env)
    return time.perf_counter() - start, out


def _facts(store: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    try:
        ranking = con.execute("select rank, encoder, llm, round(score, 6), measured_or_predicted from rankings"
                              " order by rank").fetchall()
        trained = con.execute("select count(*) from run_uses where kind = 'trial' and not reused").fetchone()[0]
        keys = con.execute("select count(*), count(distinct trial_key) from trials").fetchone()
        done = con.execute("select count(*) from trials where status = 'done'").fetchone()[0]
        nodes = con.execute("select count(distinct node) from trials").fetchone()[0]
    finally:
        con.close()
    return {"ranking": ranking, "trained": trained, "trials": keys[0], "distinct": keys[1], "done": done,
            "nodes": nodes}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workers() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::_trial_task"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def cluster_part(base: dict, folder: Path, env: dict, reference: list) -> dict:
    ray = str(Path(sys.executable).with_name("ray"))
    # `ray start` clusters authenticate with a token (~/.ray/auth_token): every node and the driver
    env = {**env, "RAY_AUTH_MODE": "token"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    subprocess.run([ray, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
                   check=True, capture_output=True, env=env)
    try:
        subprocess.run([ray, "start", "--address", address, *common], check=True, capture_output=True, env=env)
        suite = _suite(base, folder, "grid", {"name": "ray", "address": address, "retries": 2})
        store = folder / "cluster.duckdb"
        killed = []

        def killer():
            deadline = time.time() + 1800
            while not killed and time.time() < deadline:
                pids = _workers()
                if pids:
                    time.sleep(2.0)  # mid-trial
                    try:
                        os.kill(pids[0], signal.SIGKILL)
                        killed.append(pids[0])
                    except ProcessLookupError:
                        continue
                time.sleep(0.1)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        seconds, out = _run(suite, store, env)
        thread.join(timeout=1)
        if out.returncode != 0:
            raise SystemExit(f"cluster run failed:\n{out.stderr[-3000:]}")
        facts = _facts(store)
        candidates = len(base["zoo"]["vision_encoders"]) * len(base["zoo"]["language_models"])
        return {"part": "two-node cluster, one worker killed", "seconds": round(seconds, 1),
                "worker_killed": bool(killed), "retried": "retrying" in out.stderr,
                "nodes_used": facts["nodes"], "trials_done": facts["done"], "candidates": candidates,
                "nothing_lost": facts["done"] == candidates,
                "nothing_repeated": facts["trained"] == facts["distinct"] == candidates,
                "same_ranking_as_local": facts["ranking"] == reference}
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env)


def main(argv=None) -> int:
    parser = arg_parser(__doc__)
    parser.add_argument("--suite", type=Path, default=SUITES / "quickstart.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "parallel")
    parser.add_argument("--strategies", nargs="+", default=["grid", "mordal"],
                        help="grid, mordal, mordal-asha (ASHA in both stages with --workers trials in flight)")
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(args.suite.read_text())
    env = {**os.environ, "HARNESS_WORKERS": str(args.workers), "TQDM_DISABLE": "1"}
    executors = ["local", "processes", {"name": "ray", "address": "local", "num_cpus": args.workers}]
    rows, reference = [], {}
    for strategy in args.strategies:
        local_seconds = None
        for executor in executors:
            name = executor if isinstance(executor, str) else executor["name"]
            store = args.out / f"{strategy}-{name}.duckdb"
            for p in (store, Path(str(store) + ".wal")):
                p.unlink(missing_ok=True)
            seconds, out = _run(_suite(base, args.out, strategy, executor, args.workers), store, env)
            if out.returncode != 0:
                raise SystemExit(f"{strategy} with {name} failed:\n{out.stderr[-3000:]}")
            facts = _facts(store)
            if name == "local":
                local_seconds, reference[strategy] = seconds, facts["ranking"]
            row = {"strategy": strategy, "executor": name, "seconds": round(seconds, 1),
                   "vs_local": round(local_seconds / seconds, 2), "trained": facts["trained"],
                   "same_ranking_as_local": facts["ranking"] == reference[strategy]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    cluster = None
    if not args.skip_cluster and "grid" in reference:
        cluster = cluster_part(base, args.out, env, reference["grid"])
        print(json.dumps(cluster), flush=True)

    from rich.console import Console
    from rich.table import Table

    table = Table("strategy", "executor", "seconds", "speedup vs local", "trained", "same ranking as local",
                  title=f"{args.suite.name}, {args.workers} workers, one run")
    for r in rows:
        table.add_row(r["strategy"], r["executor"], f"{r['seconds']:.1f}", f"{r['vs_local']:.2f}x",
                      str(r["trained"]), "yes" if r["same_ranking_as_local"] else "NO")
    Console(width=140).print(table)
    if cluster:
        print(f"two-node cluster: {cluster['trials_done']}/{cluster['candidates']} done on "
              f"{cluster['nodes_used']} nodes in {cluster['seconds']}s; worker killed: {cluster['worker_killed']}, "
              f"retried: {cluster['retried']}; nothing lost: {cluster['nothing_lost']}, nothing repeated: "
              f"{cluster['nothing_repeated']}, same ranking as local: {cluster['same_ranking_as_local']}")
    ok = all(r["same_ranking_as_local"] for r in rows) and (
        cluster is None or (cluster["nothing_lost"] and cluster["nothing_repeated"] and cluster["same_ranking_as_local"]))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
