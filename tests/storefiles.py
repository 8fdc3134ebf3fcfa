"""Small real stores built row by row (no training): for the data-loss and fault tests."""

import hashlib
import json
from pathlib import Path

from harness.store import Store


def key(n: int) -> str:
    return hashlib.sha256(f"trial {n}".encode()).hexdigest()


def make_store(path: Path, trials: int = 2, checkpoint_paths: dict | None = None) -> list[str]:
    """A store at ``path`` with one finished run and ``trials`` done trials, each with a score
    and its checkpoint folder (``checkpoints/<key>/trainable.safetensors``) beside the store.
    ``checkpoint_paths``: key -> a stored path other than the trial's own (a forged row)."""
    keys = [key(i) for i in range(trials)]
    with Store.open(path) as st:
        run = st.start_run(suite_name="made", strategy="grid", seed=0)
        for i, k in enumerate(keys):
            st.start_trial(k, run_id=run, encoder=f"tiny:e{i}", llm="tiny:gpt2", dataset_fingerprint="d" * 64,
                           sample_ratio=1.0, plugin="harness", plugin_version="0")
            ckpt = st.checkpoints_dir / k / "trainable.safetensors"
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            ckpt.write_bytes(b"weights of " + k.encode())
            st.finish_trial(k, status="done", wall_seconds=1.0, samples_seen=10, checkpoint_path=ckpt)
            st.put_scores(k, [{"task": "shapes:color", "metric": "acc", "value": 0.5}], run_id=run,
                          plugin="harness", plugin_version="0")
        for k, stored in (checkpoint_paths or {}).items():
            st.con.execute("UPDATE trials SET checkpoint_path = ? WHERE trial_key = ?", [stored, k])
        st.finish_run(run, "done")
    return keys


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (but DuckDB's .wal) and its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix != ".wal"}


def rewrite_manifest(folder: Path, change) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def forge_parquet(folder: Path, table: str, sql: str) -> None:
    """Replace ``table``'s Parquet file of an export by ``sql`` over it (``t``), and make the
    manifest agree (rows, sha256): a forged export that passes every check."""
    import duckdb
    from harness.store.exchange import sha256_file

    path = folder / f"{table}.parquet"
    tmp = folder / f"{table}.new"
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    con.execute(f"COPY ({sql}) TO '{tmp}' (FORMAT PARQUET)")
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{tmp}')").fetchone()[0]
    con.close()
    tmp.replace(path)

    def change(m):
        m["tables"][table].update(rows=rows, sha256=sha256_file(path))

    rewrite_manifest(folder, change)
