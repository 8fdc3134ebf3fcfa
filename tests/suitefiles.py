"""Helpers the search tests share: suite files written from a dict, read-only store queries."""

import duckdb
import yaml

# Mordal over 3 x 2 tiny models on shapes:color, everything small enough to run in seconds;
# the suite the search, report and Ray tests start from.
TINY_MORDAL = {
    "name": "tiny-mordal",
    "seed": 0,
    "zoo": {"vision_encoders": ["tiny:vit-p4", "tiny:vit-p8", "tiny:resnet"],
            "language_models": ["tiny:gpt2", "tiny:mistral"]},
    "alignment": {"dataset": "shapes:color", "samples": 32},
    "vlm": {"llm": "full", "optim": {"lr": 1e-3, "batch_size": 16, "epochs": 1}},
    "targets": [{"task": "shapes:color", "limit": 8}],
    "search": {"strategy": "mordal",
               # a similarity floor of 1: every encoder its own cluster, so LLMs are clustered
               # once per encoder; a floor of 0.2 for LLMs (a distance cut of 0.8)
               "clustering": {"samples": 16, "warmup_steps": 1, "t_ve": 1.0, "t_llm": 0.2},
               # intra from 1/4: its rungs stop at 1/2, so the survivor is predicted, not measured
               "inter": {"top_k": 2, "min_ratio": 0.5}, "intra": {"top_k": 1, "min_ratio": 0.25},
               "predictor": {"r0": 0.5, "points": 2}},
    "device": "cpu",
}


def write_suite(tmp_path, base: dict, name="suite.yaml", **changes):
    """``base`` with dotted-key changes (``"search.inter.top_k": 2``) written as a suite file."""
    suite = yaml.safe_load(yaml.safe_dump(base))
    for dotted, value in changes.items():
        node = suite
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(suite))
    return path


def fetch(store, sql: str, params=(), one: bool = False):
    """Rows of ``sql`` on a store file opened read-only (the first row with ``one``)."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        cur = con.execute(sql, list(params))
        return cur.fetchone() if one else cur.fetchall()
    finally:
        con.close()
