"""Embedding storage in DuckDB: float16 BLOB (what harness.store uses) versus FLOAT[] lists.

    python -m benchmarks.embedding_storage [--matrices 8] [--rows 512] [--dim 768]

Writes the same random-normal matrices (the shape of encoder features on a CKA sample set) into
a fresh file each way, checkpoints, and prints bytes on disk per 1M floats (file growth over an
empty store) and write/read seconds, reading back into numpy.

    blob_f16    one row per matrix: float16 bytes + shape (harness.store.embeddings)
    list_f32    one row per matrix: FLOAT[] of the flattened values, bound as a query parameter
    list_arrow  the same FLOAT[] table, written and read through Arrow (fastest FLOAT[] path)
    rows_f32    one row per matrix row: FLOAT[dim] (the relational layout), through Arrow

Figures on the dev box (2 CPU cores, DuckDB 2.0.0, 8 x 512 x 768 = 3.15M floats, 2 runs agree):

    layout      MB per 1M floats   write s   read s   max rel err
    blob_f16    2.08               0.07      0.04     4.9e-04
    list_f32    3.67               0.95      0.39     0
    list_arrow  6.42               0.37      0.03     0
    rows_f32    3.58               0.15      0.03     0

and at 4 x 2048 x 1024 = 8.4M floats: blob_f16 1.91 MB, 0.31 s / 0.13 s; list_f32 3.56 MB,
5.1 s / 1.2 s; rows_f32 3.56 MB, 0.44 s / 0.09 s. DuckDB compresses random float32 lists only
~10%, so float16 halves the bytes; writes are the fastest of all layouts and reads match the
Arrow paths without needing pyarrow. Its rounding (relative 5e-4) is far below what similarity
metrics resolve.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
from harness.store.embeddings import decode_array, encode_array

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arg_parser


def _size(path: Path) -> int:
    wal = Path(str(path) + ".wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _fresh(path: Path, ddl: str) -> tuple[duckdb.DuckDBPyConnection, int]:
    con = duckdb.connect(str(path))
    con.execute(ddl)
    con.execute("CHECKPOINT")
    return con, _size(path)


def _measure(path: Path, mats: list[np.ndarray], ddl: str, write_one, read_one,
             transaction: bool = False) -> tuple[int, float, float, list[np.ndarray]]:
    """(bytes the matrices added to a fresh file, write seconds, read seconds, what was read back):
    ``write_one(con, i, matrix)`` for each matrix (in one transaction with ``transaction``), a
    checkpoint, then ``read_one(con, i)`` for each."""
    con, base = _fresh(path, ddl)
    t = time.perf_counter()
    if transaction:
        con.execute("BEGIN")
    for i, m in enumerate(mats):
        write_one(con, i, m)
    if transaction:
        con.execute("COMMIT")
    con.execute("CHECKPOINT")
    write = time.perf_counter() - t
    size = _size(path) - base
    t = time.perf_counter()
    out = [read_one(con, i) for i in range(len(mats))]
    read = time.perf_counter() - t
    con.close()
    return size, write, read, out


def bench_blob(path: Path, mats: list[np.ndarray]) -> tuple[int, float, float, list[np.ndarray]]:
    def write(con, i, m):
        data, shape, dtype, enc = encode_array(m)
        con.execute("INSERT INTO e VALUES (?, ?, ?, ?, ?)", [i, shape, dtype, enc, data])

    def read(con, i):
        return decode_array(*con.execute("SELECT data, shape, dtype, encoding FROM e WHERE k = ?", [i]).fetchone())

    return _measure(path, mats, "CREATE TABLE e (k INTEGER PRIMARY KEY, shape BIGINT[], dtype VARCHAR,"
                                " encoding VARCHAR, data BLOB)", write, read, transaction=True)


def bench_list_params(path: Path, mats: list[np.ndarray]) -> tuple[int, float, float, list[np.ndarray]]:
    def write(con, i, m):
        con.execute("INSERT INTO e VALUES (?, ?, ?)", [i, list(m.shape), m.ravel()])

    def read(con, i):
        shape, v = con.execute("SELECT shape, v FROM e WHERE k = ?", [i]).fetchone()
        return np.asarray(v, dtype=np.float32).reshape(shape)

    return _measure(path, mats, "CREATE TABLE e (k INTEGER PRIMARY KEY, shape BIGINT[], v FLOAT[])",
                    write, read, transaction=True)


def bench_list(path: Path, mats: list[np.ndarray]) -> tuple[int, float, float, list[np.ndarray]]:
    import pyarrow as pa

    def write(con, i, m):
        # via Arrow: python-list parameters are ~10x slower still
        v = pa.ListArray.from_arrays(pa.array([0, m.size], type=pa.int32()), pa.array(m.ravel(), type=pa.float32()))
        con.register("frame", pa.table({"k": [i], "shape": [list(m.shape)], "v": v}))
        con.execute("INSERT INTO e SELECT k, shape, v FROM frame")
        con.unregister("frame")

    def read(con, i):
        tbl = con.sql("SELECT shape, v FROM e WHERE k = $k", params={"k": i}).to_arrow_table()
        shape = tbl.column("shape")[0].as_py()
        return tbl.column("v").combine_chunks().flatten().to_numpy().reshape(shape)

    return _measure(path, mats, "CREATE TABLE e (k INTEGER PRIMARY KEY, shape BIGINT[], v FLOAT[])", write, read)


def bench_rows(path: Path, mats: list[np.ndarray]) -> tuple[int, float, float, list[np.ndarray]]:
    dim = mats[0].shape[1]

    def write(con, i, m):
        # bulk insert through numpy -> DuckDB's python scan; the fastest path for many rows
        frame = {"k": np.full(len(m), i, dtype=np.int32), "r": np.arange(len(m), dtype=np.int32), "v": m}
        con.register("frame", _arrow(frame, dim))
        con.execute("INSERT INTO e SELECT * FROM frame")
        con.unregister("frame")

    def read(con, i):
        tbl = con.sql("SELECT v FROM e WHERE k = $k ORDER BY r", params={"k": i}).to_arrow_table()
        return tbl.column("v").combine_chunks().flatten().to_numpy().reshape(-1, dim)

    return _measure(path, mats, f"CREATE TABLE e (k INTEGER, r INTEGER, v FLOAT[{dim}])", write, read)


def _arrow(frame: dict, dim: int):
    import pyarrow as pa

    values = pa.array(frame["v"].ravel(), type=pa.float32())
    v = pa.FixedSizeListArray.from_arrays(values, dim)
    return pa.table({"k": frame["k"], "r": frame["r"], "v": v})


def main(argv: list[str] | None = None) -> int:
    ap = arg_parser(__doc__)
    ap.add_argument("--matrices", type=int, default=8)
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--dim", type=int, default=768)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal((args.rows, args.dim), dtype=np.float32) for _ in range(args.matrices)]
    n = sum(m.size for m in mats)
    print(f"duckdb {duckdb.__version__}, {args.matrices} x {args.rows} x {args.dim} = {n / 1e6:.2f}M floats")
    print(f"{'layout':10} {'MB/1M floats':>13} {'write s':>9} {'read s':>9} {'max rel err':>12}")
    with tempfile.TemporaryDirectory() as d:
        for name, fn in [("blob_f16", bench_blob), ("list_f32", bench_list_params),
                         ("list_arrow", bench_list), ("rows_f32", bench_rows)]:
            try:
                size, write, read, out = fn(Path(d) / f"{name}.duckdb", mats)
            except ImportError as e:  # rows_f32 needs pyarrow
                print(f"{name:10} skipped: {e}")
                continue
            err = max(float(np.max(np.abs(o - m) / np.maximum(np.abs(m), 1e-3))) for o, m in zip(out, mats))
            print(f"{name:10} {size / n:13.2f} {write:9.3f} {read:9.3f} {err:12.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
