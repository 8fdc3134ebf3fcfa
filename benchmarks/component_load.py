"""How long loading a component takes in a warm process, against a trial (issue 14: would Ray
actors that keep components warm between trials measure faster?).

    python -m benchmarks.component_load

Prints the import time, warm load times of mini encoders and LLMs and of the alignment set,
and the shipped table's median trial wall time per sample ratio.
"""

import statistics
import sys
import time
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import TABLE, arg_parser, table_views


def main() -> None:
    arg_parser(__doc__).parse_args()
    t0 = time.perf_counter()
    from harness.trial import load_alignment, load_encoder, load_language_model

    imports = time.perf_counter() - t0
    load_encoder("mini:clip-vit-s")  # the first load imports the model classes
    load_language_model("mini:llama-qa")
    timed = {}
    for kind, load, refs in (("encoder", load_encoder, ["mini:clip-vit-m", "mini:sup-resnet", "mini:mae-vit"]),
                             ("LLM", load_language_model, ["mini:llama-mixed", "mini:qwen2-mixed", "mini:gpt2-mixed"])):
        times = []
        for ref in refs:
            start = time.perf_counter()
            load(ref)
            times.append(time.perf_counter() - start)
        timed[kind] = statistics.median(times)
    start = time.perf_counter()
    load_alignment("shapes:align", 4000, 0)
    align = time.perf_counter() - start
    con, _ = table_views(TABLE)
    walls = con.execute("select sample_ratio, median(wall_seconds) from trials group by 1 order by 1").fetchall()
    print(f"imports {imports:.1f} s; warm load median: encoder {timed['encoder']:.2f} s, LLM {timed['LLM']:.2f} s; "
          f"alignment set (4000, built once per process) {align:.2f} s")
    print("median trial wall time (shipped table): "
          + ", ".join(f"r={r:g} {w:.0f} s" for r, w in walls))


if __name__ == "__main__":
    main()
