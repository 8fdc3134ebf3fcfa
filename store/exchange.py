"""Moving rows between stores: export to Parquet, import from it, merge another store.

An export is one folder: a Parquet file per table (written by DuckDB's own ``COPY ... (FORMAT
PARQUET)``) and ``manifest.json`` (format, harness version, migrations applied, source store id,
run ids, rows and sha256 per file). It is what a replay needs and nothing machine-bound:
checkpoint paths are cleared (they are relative to the source store's folder, whose files do not
travel), so an imported trial answers from its stored scores. An import never takes a path from
a file: a row's ``checkpoint_path`` is cleared on import, and on a merge kept only where it is the
one the trial's own content key derives (``checkpoints/<key>/trainable.safetensors``).
``--force`` replaces only a folder this code wrote: a harness export manifest and the files it
lists, nothing else, never the store in use.

Import and merge share one code path (:func:`merge_relations`): every table's rows go in by
content key (primary key; tables without one skip rows already present verbatim), so importing
twice adds nothing, inside one transaction, so any error leaves the store as it was. Which export
(or store) each added row came from is recorded in ``imports`` and ``imported_rows``.
Everything an import can check without writing (manifest, files, hashes, row counts, schema) is
checked before the store is opened for writing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from harness import __version__
from harness.errors import BadInput
from harness.paths import check_out_folder

from .errors import StoreError
from .files import check_store_file, damaged
from .migrations import MIGRATIONS, _sql_str, applied_migrations

FORMAT = "harness-store-export"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# bookkeeping of imports themselves, and the migration log: never exported
_NOT_EXPORTED = {"_migrations", "imports", "imported_rows", "store_meta"}
_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class ExportError(StoreError):
    """An export folder is unusable (missing, damaged, newer schema); nothing was written."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tables(con: duckdb.DuckDBPyConnection, database: str | None = None) -> list[str]:
    db = database or con.execute("SELECT current_database()").fetchone()[0]
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = 'main' "
        "ORDER BY table_name", [db]).fetchall()]


def columns(con: duckdb.DuckDBPyConnection, table: str, database: str | None = None) -> list[str]:
    db = database or con.execute("SELECT current_database()").fetchone()[0]
    return [r[0] for r in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE database_name = ? AND schema_name = 'main' "
        "AND table_name = ? ORDER BY column_index", [db, table]).fetchall()]


def primary_key(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    rows = con.execute(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = current_database() "
        "AND table_name = ? AND constraint_type = 'PRIMARY KEY'", [table]).fetchall()
    return list(rows[0][0]) if rows else []


# -- export ------------------------------------------------------------------------------------

def _selection(con, runs: Sequence[str] | None) -> dict[str, str]:
    """table -> WHERE clause choosing the rows a replay of ``runs`` needs (None: every row).

    A run's own rows (run_id), the trials, embeddings and similarities it used (``run_uses``)
    wherever they were produced, their scores, the components and datasets they name, and the
    ``runs`` rows of every run those rows name (so each row's provenance resolves)."""
    names = [t for t in tables(con) if t not in _NOT_EXPORTED]
    if runs is None:
        return {t: "true" for t in names}
    ids = ", ".join(_sql_str(r) for r in runs)
    used = f"(SELECT key FROM run_uses WHERE run_id IN ({ids}) AND kind = '{{kind}}')"
    where = {t: f"run_id IN ({ids})" for t in names if "run_id" in columns(con, t)}
    where["trials"] = f"run_id IN ({ids}) OR trial_key IN {used.format(kind='trial')}"
    where["scores"] = f"trial_key IN (SELECT trial_key FROM trials WHERE {where['trials']})"
    where["embeddings"] = f"run_id IN ({ids}) OR embedding_key IN {used.format(kind='embedding')}"
    where["similarities"] = (f"run_id IN ({ids}) OR similarity_key IN {used.format(kind='similarity')} "
                             f"OR (a_embedding IN (SELECT embedding_key FROM embeddings WHERE "
                             f"{where['embeddings']}) AND b_embedding IN (SELECT embedding_key FROM "
                             f"embeddings WHERE {where['embeddings']}))")
    fps = " UNION ".join([
        f"SELECT encoder_fingerprint FROM trials WHERE {where['trials']}",
        f"SELECT llm_fingerprint FROM trials WHERE {where['trials']}",
        f"SELECT component_fingerprint FROM embeddings WHERE {where['embeddings']}",
        f"SELECT a FROM similarities WHERE {where['similarities']}",
        f"SELECT b FROM similarities WHERE {where['similarities']}"])
    where["components"] = f"run_id IN ({ids}) OR fingerprint IN ({fps})"
    data = " UNION ".join([f"SELECT dataset_fingerprint FROM trials WHERE {where['trials']}",
                           f"SELECT dataset_fingerprint FROM embeddings WHERE {where['embeddings']}"])
    where["datasets"] = f"run_id IN ({ids}) OR fingerprint IN ({data})"
    named = " UNION ".join(f"SELECT run_id FROM \"{t}\" WHERE {w}" for t, w in where.items()
                           if t != "runs" and "run_id" in columns(con, t))
    where["runs"] = f"run_id IN ({ids}) OR run_id IN ({named})"
    return {t: where.get(t, "false") for t in names}


def store_id(con: duckdb.DuckDBPyConnection) -> str | None:
    if "store_meta" not in tables(con):
        return None
    row = con.execute("SELECT value FROM store_meta WHERE key = 'store_id'").fetchone()
    return row[0] if row else None


def export_store(store, out: str | os.PathLike, runs: Sequence[str] | None = None, *,
                 force: bool = False, embeddings: bool = True) -> dict[str, Any]:
    """Write the rows a replay of ``runs`` needs (None: the whole store) to the folder ``out``;
    return the manifest. The folder is written beside ``out`` and renamed into place, so a reader
    never sees half an export; ``force`` replaces an existing export. ``embeddings=False`` leaves
    the raw features out (megabytes per component and task) and keeps the similarities computed
    from them, which is all a clustering replay reads."""
    con = store.con
    out = check_out_folder(out)
    if out.is_symlink() or out.exists():
        if not force:
            raise BadInput(f"export folder {out} exists; pass --force to replace it, or choose another")
        _check_replaceable(out, store)
    if runs is not None:
        known = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
        unknown = [r for r in runs if r not in known]
        if unknown:
            raise StoreError(f"--run: no run {', '.join(map(repr, unknown))} in store {store.path}; "
                             "list them with: harness sql \"select run_id, suite_name from runs\"")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        raise BadInput(f"--out {out}: cannot create a folder there ({e.strerror}); "
                       "give a folder you can write") from None
    files: dict[str, dict[str, Any]] = {}
    try:
        for table, where in _selection(con, runs).items():
            if table == "embeddings" and not embeddings:
                where = "false"
            cols = columns(con, table)
            select = ", ".join("NULL::VARCHAR AS checkpoint_path" if (table, c) == ("trials", "checkpoint_path")
                               else f'"{c}"' for c in cols)
            key = primary_key(con, table)
            order = ", ".join(f'"{c}"' for c in (key or cols[:3]))
            path = tmp / f"{table}.parquet"
            con.execute(f'COPY (SELECT {select} FROM "{table}" WHERE {where} ORDER BY {order}) '
                        f"TO {_sql_str(str(path))} (FORMAT PARQUET, COMPRESSION ZSTD)")
            n = con.execute(f"SELECT count(*) FROM read_parquet({_sql_str(str(path))})").fetchone()[0]
            files[table] = {"file": path.name, "rows": n, "sha256": sha256_file(path)}
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "harness_version": __version__,
            "migrations": applied_migrations(con), "source_store": store_id(con),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "runs": sorted(runs) if runs is not None else
            [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY run_id").fetchall()],
            "selection": "runs" if runs is not None else "all",
            "checkpoints": "not exported (trials answer from their stored scores)",
            "embeddings": "exported" if embeddings else
            "not exported (similarities computed from them are; compute features with --fill-embeddings)",
            "tables": files,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            _remove_export(old)
        else:
            tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"cannot write the export to {out}: {e.strerror or e}; nothing was "
                         "replaced") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _check_replaceable(out: Path, store) -> None:
    """``--force`` replaces ``out`` only when it is an export this harness wrote: a folder (not a
    link) whose ``manifest.json`` is a harness export manifest and that holds nothing but the
    files that manifest lists, and not the store in use. Anything else is refused (BadInput),
    and nothing is touched."""
    refuse = f"--force: {out} is not a harness export folder ({{why}}); refusing to replace it: " \
             "choose another --out, or move that folder aside yourself"
    if out.is_symlink() or not out.is_dir():
        raise BadInput(refuse.format(why="a link or a file, not a folder"))
    if store is not None and getattr(store, "path", None) is not None:
        for f in (Path(store.path), Path(str(store.path) + ".wal")):
            real = Path(os.path.realpath(f))
            if real.is_relative_to(Path(os.path.realpath(out))):
                raise BadInput(refuse.format(why=f"it holds the store in use, {f}"))
    mpath = out / MANIFEST
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise BadInput(refuse.format(why=f"no {MANIFEST}")) from None
    except (OSError, UnicodeDecodeError, ValueError):
        raise BadInput(refuse.format(why=f"its {MANIFEST} is not readable JSON")) from None
    listed = _manifest_files(manifest)
    if listed is None:
        raise BadInput(refuse.format(why=f"its {MANIFEST} is not a {FORMAT} manifest"))
    allowed = {MANIFEST, *listed}
    for entry in os.scandir(out):
        if entry.name not in allowed:
            raise BadInput(refuse.format(why=f"it holds {entry.name!r}, which the export's manifest "
                                             "does not list"))
        if entry.is_symlink() or not entry.is_file(follow_symlinks=False):
            raise BadInput(refuse.format(why=f"{entry.name!r} is not a plain file"))


def _remove_export(folder: Path) -> None:
    """Delete a replaced export: the files its manifest lists and the manifest, then the folder
    if that left it empty (anything else that appeared meanwhile stays)."""
    try:
        listed = _manifest_files(json.loads((folder / MANIFEST).read_text())) or set()
    except (OSError, ValueError):
        listed = set()
    for name in (*sorted(listed), MANIFEST):
        try:
            (folder / name).unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def _manifest_files(manifest: Any) -> set[str] | None:
    """The file names a harness export manifest lists (``<table>.parquet``), or None when
    ``manifest`` is not one (format, version, fields)."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    version = manifest.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        return None
    entries = manifest.get("tables")
    if not isinstance(entries, dict):
        return None
    files = set()
    for table, entry in entries.items():
        if (not isinstance(table, str) or not _TABLE.fullmatch(table) or not isinstance(entry, dict)
                or entry.get("file") != f"{table}.parquet"):
            return None
        files.add(entry["file"])
    return files


# -- import ------------------------------------------------------------------------------------

def read_export(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of an export folder, after checking everything an import can check without a
    store: format, schema not newer than this harness, every file present, hashes, row counts,
    readable Parquet. Raises :class:`ExportError` naming the file and what is wrong."""
    folder = Path(folder).expanduser().absolute()
    mpath = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError(f"no export folder at {folder}")
    if not mpath.exists():
        raise ExportError(f"{folder} is not a store export: it has no {MANIFEST} "
                          "(write one with: harness store export --all --out DIR)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{mpath}: not readable JSON ({e}); re-export it") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{mpath}: not a {FORMAT} manifest")
    _check_manifest(manifest, mpath)
    if manifest["format_version"] > FORMAT_VERSION:
        raise ExportError(f"{mpath}: export format {manifest['format_version']} is newer than this "
                          f"harness reads ({FORMAT_VERSION}); upgrade harness (pip install -U harness)")
    known = {m.__name__ for m in MIGRATIONS}
    newer = [m for m in manifest.get("migrations", []) if m not in known]
    if newer:
        raise ExportError(f"{mpath}: exported by a newer harness ({manifest.get('harness_version')}), "
                          f"whose schema has migrations {', '.join(newer)} that this version does not "
                          "know; upgrade harness (pip install -U harness) to import it")
    con = duckdb.connect(":memory:")
    try:
        for table, entry in manifest.get("tables", {}).items():
            path = folder / entry["file"]
            if not path.exists():
                raise ExportError(f"{path}: missing from the export (the manifest lists {entry['rows']} "
                                  f"rows of table {table!r}); copy the whole folder again")
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                raise ExportError(f"{path}: sha256 {digest[:12]}... does not match the manifest's "
                                  f"{entry['sha256'][:12]}...: the file is damaged or was changed; "
                                  "copy the export again")
            try:
                n = con.execute(f"SELECT count(*) FROM read_parquet({_sql_str(str(path))})").fetchone()[0]
            except duckdb.Error as e:
                raise ExportError(f"{path}: not a readable Parquet file ({e})") from e
            if n != entry["rows"]:
                raise ExportError(f"{path}: {n} rows, the manifest says {entry['rows']}")
    finally:
        con.close()
    manifest["folder"] = str(folder)
    return manifest


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_manifest(manifest: dict, mpath: Path) -> None:
    """The fields an import reads, each of the type an export writes; ExportError naming the
    field otherwise (a hand-edited or foreign manifest)."""
    def bad(field: str, want: str) -> ExportError:
        return ExportError(f"{mpath}: field {field} must be {want}; the manifest is damaged or "
                           "was edited: export the store again")

    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise bad("format_version", f"a whole number (this harness writes {FORMAT_VERSION})")
    migrations = manifest.get("migrations", [])
    if not isinstance(migrations, list) or not all(isinstance(m, str) for m in migrations):
        raise bad("migrations", "a list of migration names")
    runs = manifest.get("runs", [])
    if not isinstance(runs, list) or not all(isinstance(r, str) for r in runs):
        raise bad("runs", "a list of run ids")
    entries = manifest.get("tables")
    if not isinstance(entries, dict):
        raise bad("tables", "a mapping of table name to {file, rows, sha256}")
    for table, entry in entries.items():
        where = f"tables.{table}" if _TABLE.fullmatch(table) else "tables"
        if not _TABLE.fullmatch(table):
            raise bad("tables", f"keyed by table names (lower-case letters, digits, '_'), not {table[:40]!r}")
        if not isinstance(entry, dict):
            raise bad(where, "a mapping with file, rows and sha256")
        if entry.get("file") != f"{table}.parquet":
            raise bad(f"{where}.file", f"{table + '.parquet'!r}, the file an export writes for it")
        if type(entry.get("rows")) is not int or entry["rows"] < 0:
            raise bad(f"{where}.rows", "a row count (a whole number >= 0)")
        if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
            raise bad(f"{where}.sha256", "the file's sha256 (64 hex digits)")


def merge_relations(store, relations: dict[str, str], *, source: dict[str, Any] | None = None,
                    source_columns: dict[str, list[str]] | None = None) -> dict[str, int]:
    """Insert the rows of each ``relations[table]`` (a SQL relation: ``read_parquet(...)`` or an
    attached store's table) that this store lacks, by primary key (or whole row where a table has
    none), in one transaction. With ``source`` (a description: kind, path, store id, manifest
    hash), the import and the key of every added row are recorded. Returns rows added per table."""
    store._require_writable("import or merge rows")
    con = store.con
    here = set(tables(con))
    unknown = sorted(set(relations) - here - _NOT_EXPORTED)
    if unknown:
        raise StoreError(f"the source has tables {', '.join(unknown)} that this store lacks; "
                         "upgrade harness (pip install -U harness) to import it")
    added: dict[str, int] = {}
    import_id = None
    with store.transaction():
        if source is not None:
            import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM imports").fetchone()[0]
            con.execute("INSERT INTO imports (import_id, kind, source_path, source_store, manifest_sha256, "
                        "source_harness_version, source_runs) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [import_id, source["kind"], source["path"], source.get("store"),
                         source.get("manifest_sha256"), source.get("harness_version"),
                         json.dumps(source.get("runs", []))])
        relations = dict(relations)
        if "trials" in relations:
            relations["trials"] = _own_checkpoints(con, relations["trials"], source_columns,
                                                   keep=source is None or source.get("kind") != "export")
        if "trials" in relations and "trials" in here:
            # a trial finished in the source replaces one that failed or never finished here
            # (its scores with it); a source trial that did not finish brings no scores, so a
            # failed trial never ends up with a score merged from a finished copy
            src = relations["trials"]
            upgrade = (f"SELECT d.trial_key FROM trials d JOIN {src} s ON s.trial_key = d.trial_key "
                       "WHERE d.status <> 'done' AND s.status = 'done'")
            replaced = con.execute(f"SELECT count(*) FROM ({upgrade})").fetchone()[0]
            if replaced:
                keys = f"SELECT trial_key FROM ({upgrade})"
                con.execute(f"CREATE OR REPLACE TEMP TABLE _harness_upgrade AS {keys}")
                for t in ("scores", "trials"):
                    if t in here:
                        con.execute(f"DELETE FROM {t} WHERE trial_key IN (SELECT trial_key FROM _harness_upgrade)")
                con.execute("DROP TABLE _harness_upgrade")
                added["trials replaced (unfinished here, done there)"] = replaced
            if "scores" in relations and "scores" in here:
                # the same score key with another value: this store's is kept; say how many
                conflicts = con.execute(
                    f"SELECT count(*) FROM scores d JOIN {relations['scores']} s USING (trial_key, task, metric)"
                    " WHERE abs(d.value - s.value) > 1e-12").fetchone()[0]
                if conflicts:
                    added["scores conflicting (this store's kept)"] = conflicts
            if "scores" in relations:
                relations["scores"] = (f"(SELECT * FROM {relations['scores']} WHERE trial_key IN "
                                       f"(SELECT trial_key FROM {src} WHERE status = 'done'))")
        # parents before children is not needed (no foreign keys), but runs first reads well
        for table in sorted(relations, key=lambda t: (t != "runs", t)):
            if table in _NOT_EXPORTED:
                continue
            rel = relations[table]
            src_cols = (source_columns or {}).get(table) or [
                r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
            dest_cols = columns(con, table)
            cols = [c for c in dest_cols if c in src_cols]  # an older export lacks newer columns
            names = ", ".join(f'"{c}"' for c in cols)
            pk = [c for c in primary_key(con, table) if c in cols]
            if pk:
                match = " AND ".join(f'd."{c}" IS NOT DISTINCT FROM src."{c}"' for c in pk)
                on = ", ".join(f'src."{c}"' for c in pk)
                picked = ", ".join(f'src."{c}"' for c in cols)
                new = (f"(SELECT DISTINCT ON ({on}) {picked} FROM {rel} src "
                       f'WHERE NOT EXISTS (SELECT 1 FROM "{table}" d WHERE {match}))')
            else:  # no key to conflict on: skip rows already here verbatim
                new = f'(SELECT {names} FROM {rel} EXCEPT SELECT {names} FROM "{table}")'
            key = pk or [c for c in cols if c != "data"]
            before = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            if import_id is not None:
                keyjson = "to_json(struct_pack(" + ", ".join(f'"{c}" := "{c}"' for c in key) + "))"
                con.execute(f"CREATE OR REPLACE TEMP TABLE _harness_new AS SELECT * FROM {new}")
                con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM _harness_new')
                con.execute(f"INSERT INTO imported_rows (import_id, table_name, row_key) "
                            f"SELECT ?, ?, CAST({keyjson} AS VARCHAR) FROM _harness_new", [import_id, table])
                con.execute("DROP TABLE _harness_new")
            else:
                con.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM {new}')
            added[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] - before
        if "runs" in relations and "ground_truth" in columns(con, "runs"):
            # runs from a source older than m013 read as m013 reads this store's old runs
            con.execute("UPDATE runs SET ground_truth = (strategy = 'grid') WHERE ground_truth IS NULL")
        if import_id is not None:
            con.execute("UPDATE imports SET rows_added = ? WHERE import_id = ?",
                        [json.dumps(added), import_id])
    return added


CHECKPOINT_FILE = "trainable.safetensors"  # harness.trial.save_checkpoint's file name


def canonical_checkpoint(trial_key: str) -> str:
    """Where a trial's checkpoint lives, relative to its store's folder: derived from its content
    key, never taken from a row another store or a file supplied."""
    return f"checkpoints/{trial_key}/{CHECKPOINT_FILE}"


def _own_checkpoints(con, relation: str, source_columns, *, keep: bool) -> str:
    """``relation`` (the source's trials) with ``checkpoint_path`` cleared, unless ``keep`` and it
    is the path the trial's own content key derives (a worker shard, a store merged from the
    same folder): an import never takes a path from a file, so no row can name another trial's
    (or any other) file, which ``store forget`` would otherwise delete."""
    cols = (source_columns or {}).get("trials") or [
        r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
    if "checkpoint_path" not in cols:
        return relation
    ok = ("checkpoint_path = 'checkpoints/' || trial_key || '/" + CHECKPOINT_FILE + "'"
          " AND regexp_full_match(trial_key, '[0-9A-Za-z_-]+')") if keep else "false"
    return (f"(SELECT * REPLACE (CASE WHEN {ok} THEN checkpoint_path END::VARCHAR AS checkpoint_path) "
            f"FROM {relation})")


def import_export(store, folder: str | os.PathLike, manifest: dict[str, Any] | None = None) -> dict[str, int]:
    """Merge an export folder into ``store`` by content key; returns rows added per table."""
    manifest = manifest or read_export(folder)
    folder = Path(manifest["folder"])
    relations = {t: f"read_parquet({_sql_str(str(folder / e['file']))})"
                 for t, e in manifest["tables"].items()}
    source = {"kind": "export", "path": str(folder), "store": manifest.get("source_store"),
              "manifest_sha256": sha256_file(folder / MANIFEST),
              "harness_version": manifest.get("harness_version"), "runs": manifest.get("runs", [])}
    try:
        return merge_relations(store, relations, source=source)
    except duckdb.Error as e:
        raise ExportError(f"import of {folder} failed, nothing was written: {e}") from e


def merge_store(store, other: str | os.PathLike, *, record: bool = True) -> dict[str, int]:
    """Merge another store file (same or older schema) into ``store``: the import path, reading
    the other store's tables instead of Parquet files. ``record=False`` (worker shards of this
    same store) skips the provenance rows."""
    other = Path(other).expanduser().absolute()
    if not other.exists():
        raise StoreError(f"no store at {other}")
    if store.path is not None and Path(store.path).exists() and os.path.samefile(other, store.path):
        raise StoreError(f"{other} is this store ({store.path}): a store cannot be merged into itself")
    check_store_file(other)
    con = store.con
    alias = "harness_merge_" + os.urandom(4).hex()
    try:
        con.execute(f"ATTACH {_sql_str(str(other))} AS {alias} (READ_ONLY)")
    except duckdb.Error as e:
        raise damaged(other, e) from None
    try:
        theirs = [t for t in tables(con, alias) if t not in _NOT_EXPORTED]
        newer = [m for m in con.execute(f"SELECT name FROM {alias}._migrations").fetchall()
                 if m[0] not in {m.__name__ for m in MIGRATIONS}] if "_migrations" in tables(con, alias) else []
        if newer:
            raise StoreError(f"store {other} was written by a newer harness (migrations "
                             f"{', '.join(m[0] for m in newer)}); upgrade harness to merge it")
        relations = {t: f'{alias}."{t}"' for t in theirs}
        cols = {t: columns(con, t, alias) for t in theirs}
        source = None
        if record:
            sid = con.execute(f"SELECT value FROM {alias}.store_meta WHERE key = 'store_id'").fetchone() \
                if "store_meta" in tables(con, alias) else None
            source = {"kind": "store", "path": str(other), "store": sid[0] if sid else None}
        return merge_relations(store, relations, source=source, source_columns=cols)
    finally:
        con.execute(f"DETACH {alias}")
