"""What each clustering threshold produces on the mini zoo, from the shipped table's similarities.

    python -m benchmarks.thresholds [--table benchmarks/tables/minizoo] [--suite suites/minizoo-full.yaml]
                                    [--tasks shapes:color shapes:count]

The suite's zoo is clustered exactly as Mordal does in a search (encoders by CKA on the task's
images, then the LLMs through every encoder cluster's medoid), with each row's clustering
section in place of the suite's: the similarities are read from the table, nothing is trained
or embedded. Rows: the mini suites' floors (t_ve 0.75, t_llm 0.8), the paper's floors (0.7,
0.8; ``suites/mordal-paper.yaml``), and the same numbers read as distances (what the code did
before ``clustering.threshold_kind``), for the biased full-batch CKA and the paper's minibatch
CKA (batch 64). Prints the encoder clusters and, per encoder cluster, the LLM clusters; then
a table of cluster counts (encoder clusters, candidate clusters).
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import add_suite, add_table, arg_parser, imported_table, short, with_search

ROWS = {
    "mini suites: floors 0.75 / 0.8": {"threshold_kind": "min_similarity", "t_ve": 0.75, "t_llm": 0.8},
    "paper: floors 0.7 / 0.8": {"threshold_kind": "min_similarity", "t_ve": 0.7, "t_llm": 0.8},
    "paper's numbers as distances 0.7 / 0.8": {"threshold_kind": "max_distance", "t_ve": 0.7, "t_llm": 0.8},
}


def clusters_of(suite, store, sources: list[str]):
    """(encoder clusters, {medoid: LLM clusters}) of ``suite`` from stored similarities."""
    from harness.strategies.mordal import MordalSearch

    from harness.replay import ReplayExecutor

    run_id = store.start_run(suite_name=f"thresholds:{suite.name}", strategy="mordal", seed=suite.seed,
                             plugin="benchmarks.thresholds", plugin_version="1")
    executor = ReplayExecutor(store, run_id, sources)
    search = MordalSearch(suite=suite, store=store, run_id=run_id, executor=executor)
    encoders = search.cluster_encoders(list(suite.zoo.vision_encoders))
    llms = {c.medoid: search.cluster_llms(c.medoid, list(suite.zoo.language_models)) for c in encoders}
    store.finish_run(run_id, "done")
    return encoders, llms


def main() -> int:
    parser = arg_parser(__doc__)
    add_table(parser)
    add_suite(parser, "minizoo-full.yaml")
    parser.add_argument("--tasks", nargs="+", default=["shapes:color", "shapes:count"])
    args = parser.parse_args()

    import torch
    from harness.store import Store

    from harness.suite import load_suite

    torch.set_num_threads(2)
    suite = load_suite(args.suite)
    summary = []
    with imported_table(args.table) as (path, manifest), Store.open(path) as store:
        for task in args.tasks:
            for label, section in ROWS.items():
                for batch in (None, 64):
                    variant = with_search(suite, task, {"clustering": {**section, "cka_batch": batch}})
                    with contextlib.redirect_stdout(io.StringIO()):
                        encoders, llms = clusters_of(variant, store, manifest["runs"])
                    what = f"{label}, CKA {'minibatch 64' if batch else 'full batch'}"
                    print(f"\n## {task}: {what}")
                    for c in encoders:
                        groups = " | ".join(", ".join(map(short, k.members)) for k in llms[c.medoid])
                        print(f"  [{', '.join(map(short, c.members))}]  LLMs: {groups}")
                    n_candidates = sum(len(llms[c.medoid]) for c in encoders)
                    summary.append((task, what, len(encoders), n_candidates))
    print(f"\n{'task':<16}{'thresholds':<62}{'encoder clusters':>17}{'candidate clusters':>19}")
    for task, what, n_enc, n_cand in summary:
        print(f"{task:<16}{what:<62}{n_enc:>17}{n_cand:>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
