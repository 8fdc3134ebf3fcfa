"""Helpers the search tests share: suite files written from a dict, read-only store queries."""

import duckdb
import yaml


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
