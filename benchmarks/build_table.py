"""Build the benchmark of record: the whole mini zoo's multi-fidelity table, resumably.

    nice -n 19 python -m benchmarks.build_table [--store bench/table.duckdb]
        [--suite suites/minizoo-full.yaml] [--workers 2] [--seeds 0 1 2]
        [--export benchmarks/tables/minizoo] [--plan]

Trains every candidate of the suite (all ``mini:`` encoders x all ``mini:`` LLMs) at
r in {1/16, 1/8, 1/4, 1/2, 1} for each seed, with the suite's recipe, scoring all six shapes
tasks per trial, and computes the clustering features Mordal (or any strategy) can ask for:
every encoder's features on every task, and every LLM's features through **every** encoder's
warmed-up projector (not only the medoids'), so a replay of any clustering of any subset of the
zoo finds them.

Work is split into chunks in priority order (seed 0 everywhere first, then seeds 1-2 at r = 1,
then the rest) and each chunk runs in a fresh process: a build that stops keeps every finished
chunk, and a rerun trains only what is missing (trials are content-addressed). After every
slice of trials (8 with 2 workers) and every chunk the store is exported to ``--export``
(``harness store export``), so the shipped table grows as the build goes; with ``--import`` first, a build on a fresh clone starts from the
shipped table and trains only what it lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, SUITES, TABLE, add_suite, arg_parser, trial_specs

TABLE_RUN = "table-seed{seed}"  # suite_name of the run that holds a seed's trials


def chunks(seeds: list[int]) -> list[dict]:
    """The build plan, most useful first: seed 0 of the ``minizoo.yaml`` candidates (the core
    48) at the ratios its search asks for, their clustering features, then the other 22
    candidates at those ratios and the whole zoo's features (so a search over the whole zoo
    replays), then r = 1/2 (no shipped suite's rungs ask for it), then the other seeds' r = 1
    (the ground truth is the mean over seeds at r = 1), their features, then their lower
    ratios."""
    plan = []
    if 0 in seeds:
        plan += [{"seed": 0, "ratio": r, "part": "core"} for r in (1.0, 1 / 16, 1 / 4, 1 / 8)]
        plan.append({"seed": 0, "features": True, "part": "core"})
        plan += [{"seed": 0, "ratio": r, "part": "extra"} for r in (1.0, 1 / 16, 1 / 4, 1 / 8)]
        plan.append({"seed": 0, "features": True, "part": "all"})
        plan += [{"seed": 0, "ratio": 1 / 2, "part": p} for p in ("core", "extra")]
    rest = [s for s in seeds if s != 0]
    plan += [{"seed": s, "ratio": 1.0, "part": "all"} for s in rest]
    plan += [{"seed": s, "features": True, "part": "all"} for s in rest]
    plan += [{"seed": s, "ratio": r, "part": "all"} for r in (1 / 16, 1 / 4, 1 / 8, 1 / 2) for s in rest]
    return plan


def part_of(suite, part: str):
    """The candidates (and zoo) of a chunk: ``core`` is suites/minizoo.yaml's zoo, ``extra``
    the table's other candidates, ``all`` every one."""
    from harness.suite import load_suite

    core = load_suite(SUITES / "minizoo.yaml").zoo
    pairs = {(c.vision_encoder, c.language_model) for c in load_suite(SUITES / "minizoo.yaml").candidates()}
    if part == "core":
        return [c for c in suite.candidates() if (c.vision_encoder, c.language_model) in pairs], core
    if part == "extra":
        return [c for c in suite.candidates() if (c.vision_encoder, c.language_model) not in pairs], suite.zoo
    return suite.candidates(), suite.zoo


def seeded_suite(suite, seed: int):
    return suite.model_copy(update={"seed": seed})


def run_chunk(args, chunk: dict) -> None:
    """One chunk in this process: train (or compute) what the store lacks, record the uses."""
    import torch
    from harness.store import Store

    from harness.suite import load_suite

    torch.set_num_threads(1)
    suite = seeded_suite(load_suite(args.suite), chunk["seed"])
    with Store.open(args.store, wait=600) as store:
        run_id = table_run(store, suite, chunk["seed"])
        candidates, zoo = part_of(suite, chunk.get("part", "all"))
        if chunk.get("finalize"):
            finalize(store)
        elif chunk.get("features"):
            compute_features(suite.model_copy(update={"zoo": zoo}), store, run_id)
        else:
            train_ratio(suite, store, run_id, chunk["ratio"], args.workers, candidates,
                        after_slice=lambda: checkpoint(store, args.export))


def checkpoint(store, out: str) -> None:
    """Finalize and export from inside a chunk, after every slice: a chunk of 70 trials at r = 1
    takes hours, and a session that ends mid-chunk keeps what its slices finished."""
    if not out:
        return
    from harness.store.exchange import export_store

    finalize(store)
    manifest = export_store(store, out, force=True, embeddings=False)
    print(f"  exported {sum(e['rows'] for e in manifest['tables'].values())} rows to {out}", flush=True)


def table_run(store, suite, seed: int) -> str:
    """The run that holds one seed's table rows (one per seed, reused by later chunks)."""
    name = TABLE_RUN.format(seed=seed)
    rows = store.query("select run_id from runs where suite_name = ? order by started_at", [name])
    if rows:
        return rows[0]["run_id"]
    run_id = store.start_run(suite_name=name, strategy="grid", ground_truth=True, seed=seed,
                             suite_hash=suite.fingerprint(), config=suite.model_dump(mode="json"),
                             plugin="benchmarks.build_table", plugin_version="1")
    store.finish_run(run_id, "done")
    return run_id


def train_ratio(suite, store, run_id: str, ratio: float, workers: int, candidates=None,
                after_slice=None) -> None:
    from harness.parallel import run_many

    from harness.trial import identify

    specs = trial_specs(suite, suite.seed, ratio, candidates)
    keys = [identify(s)[0] for s in specs]
    done = {k for k in keys if (store.get_trial(k) or {}).get("status") == "done"}
    missing = [s for s, k in zip(specs, keys) if k not in done]
    print(f"seed {suite.seed} r={ratio:g}, {len(specs)} candidates: {len(done)} stored, {len(missing)} to train", flush=True)
    # in slices, so a stop loses at most one slice per worker
    step = 4 * workers
    for i in range(0, len(missing), step):
        run_many(missing[i:i + step], store, run_id, workers)
        print(f"  {min(i + step, len(missing))}/{len(missing)}", flush=True)
        record_uses(store, run_id, keys)
        if after_slice is not None:
            after_slice()
    record_uses(store, run_id, keys)


def record_uses(store, run_id: str, keys) -> None:
    """The run names every trial it holds (an export by run finds them)."""
    used = {r["key"] for r in store.query("select key from run_uses where run_id = ? and kind = 'trial'",
                                          [run_id])}
    for key in keys:
        if key not in used and store.get_trial(key) is not None:
            store.record_use(run_id, "trial", key, reused=True)


def compute_features(suite, store, run_id: str) -> None:
    """Every encoder's clustering features and every LLM's features through every encoder's
    warmed projector, on every target task, with the suite's clustering settings."""
    from harness.strategies.mordal import MordalSearch

    search = suite.search
    # the default minibatch CKA (cka_batch 64) and the biased full-batch one (null): both replayable
    variants = [search.model_copy(update={"clustering": search.clustering.model_copy(
        update={"cka_batch": batch})}) for batch in (64, None)]
    # the phases are recomputed (from stored features) below: a rerun replaces the run's rows
    store.execute("delete from phase_costs where run_id = ?", [run_id])
    for target in suite.targets:
        for variant in variants:
            one = suite.model_copy(update={"targets": [target], "search": variant})
            strategy = MordalSearch(one, store, run_id)
            store.execute("delete from clusters where run_id = ?", [run_id])  # the features are the point
            start = time.perf_counter()
            encoders = list(one.zoo.vision_encoders)
            strategy.cluster_encoders(encoders)
            for encoder in encoders:
                strategy.cluster_llms(encoder, list(one.zoo.language_models))
            print(f"seed {suite.seed} features {target.task} cka_batch {variant.clustering.cka_batch}: "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


def finalize(store) -> None:
    """One grid run per seed (``table-grid-seed{s}``): it uses that seed's r = 1 trials (so its
    cost is that seed's grid) and ranks every task by the candidate's mean over every seed the
    table holds at r = 1 (the ground truth, with n and standard error in ``truth``)."""
    truth = store.query("""
        select t.encoder, t.llm, s.task, avg(s.value) as score, count(*) as n,
               coalesce(stddev_samp(s.value) / sqrt(count(*)), 0) as se
        from trials t join scores s using (trial_key)
        where t.sample_ratio = 1.0 and t.status = 'done'
          and t.trial_key in (select key from run_uses u join runs r using (run_id)
                              where r.suite_name like 'table-seed%' and u.kind = 'trial')
        group by all order by all""")
    seeds = [r["seed"] for r in store.query("select distinct seed from runs where suite_name like "
                                            "'table-seed%' order by seed")]
    for seed in seeds:
        name = f"table-grid-seed{seed}"
        rows = store.query("select run_id from runs where suite_name = ?", [name])
        with store.transaction():
            if rows:
                run_id = rows[0]["run_id"]
                store.execute("delete from rankings where run_id = ?", [run_id])
            else:
                run_id = store.start_run(suite_name=name, strategy="grid", ground_truth=True, seed=seed,
                                         plugin="benchmarks.build_table", plugin_version="1")
                store.finish_run(run_id, "done")
            keys = store.query("""
                select u.key from run_uses u join runs r using (run_id) join trials t on t.trial_key = u.key
                where r.suite_name = ? and u.kind = 'trial' and t.sample_ratio = 1.0 and t.status = 'done'
                  and u.key not in (select key from run_uses where run_id = ?)""",
                               [TABLE_RUN.format(seed=seed), run_id])
            for k in keys:
                store.record_use(run_id, "trial", k["key"], reused=True)
            have = {(r["encoder"], r["llm"]) for r in store.query("""
                select t.encoder, t.llm from run_uses u join trials t on t.trial_key = u.key
                where u.run_id = ? and u.kind = 'trial'""", [run_id])}
            by_task: dict = {}
            for r in truth:
                if (r["encoder"], r["llm"]) in have:
                    by_task.setdefault(r["task"], []).append(r)
            store.insert("rankings", [
                {"run_id": run_id, "task": task, "metric": "mean over seeds", "rank": i + 1,
                 "encoder": r["encoder"], "llm": r["llm"], "score": r["score"],
                 "measured_or_predicted": "measured", "sample_ratio": 1.0, "stage": "grid",
                 "plugin": "benchmarks.build_table", "plugin_version": "1"}
                for task, rs in by_task.items()
                for i, r in enumerate(sorted(rs, key=lambda r: (-r["score"], r["encoder"], r["llm"])))])
    print(f"  finalized: grid runs for seeds {seeds}, truth over {len(truth)} (candidate, task)",
          flush=True)


def export(args) -> None:
    if not args.export:
        return
    cmd = [sys.executable, "-m", "harness.cli", "store", "export", "--store", args.store,
           "--all", "--out", args.export, "--force", "--no-embeddings"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    print(f"  export: exit {done.returncode} {done.stdout.strip()[-300:]} {done.stderr.strip()[-300:]}",
          flush=True)


def main() -> None:
    parser = arg_parser(__doc__)
    add_suite(parser, "minizoo-full.yaml")
    parser.add_argument("--store", default=str(ROOT / "bench" / "table.duckdb"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--export", default=str(TABLE),
                        help="export the store here after every slice and chunk ('' for none)")
    parser.add_argument("--import", dest="import_from", default=None,
                        help="first import this exported table (e.g. the shipped one)")
    parser.add_argument("--plan", action="store_true", help="print the chunks and exit")
    parser.add_argument("--chunk", help=argparse.SUPPRESS)  # one chunk, as JSON (the driver's child)
    args = parser.parse_args()
    for var in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
        os.environ.setdefault(var, "1")  # the workers' per-task bars would fill the log
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.chunk:
        run_chunk(args, json.loads(args.chunk))
        return
    plan = chunks(args.seeds)
    if args.plan:
        for c in plan:
            print(json.dumps(c))
        return
    Path(args.store).parent.mkdir(parents=True, exist_ok=True)
    if args.import_from:
        subprocess.run([sys.executable, "-m", "harness.cli", "store", "import", args.import_from,
                        "--store", args.store], check=True)
    start = time.perf_counter()
    for chunk in plan:
        t0 = time.perf_counter()
        print(f"chunk {json.dumps(chunk)}", flush=True)
        done = subprocess.run([sys.executable, __file__, "--suite", args.suite, "--store", args.store,
                               "--workers", str(args.workers), "--export", args.export,
                               "--chunk", json.dumps(chunk)])
        print(f"chunk {json.dumps(chunk)}: exit {done.returncode} in {time.perf_counter() - t0:.0f} s "
              f"(total {time.perf_counter() - start:.0f} s)", flush=True)
        subprocess.run([sys.executable, __file__, "--suite", args.suite, "--store", args.store,
                        "--chunk", json.dumps({"seed": 0, "finalize": True})])
        export(args)


if __name__ == "__main__":
    main()
