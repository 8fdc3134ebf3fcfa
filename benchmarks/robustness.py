"""A battery of bad inputs, each run through the real CLI in a fresh folder:

    python -m benchmarks.robustness [--only suites|data|stores|sql] [--timeout 60] [--json]

Suites (YAML and field values, sizes far beyond any machine), LLaVA data files, damaged or
foreign stores and SQL statements that try to write. Each case runs ``harness ...`` as a user
would, under a memory cap (``RLIMIT_AS``, so a case that grows without bound fails instead of
taking the machine), and is judged:

- **clean**: a non-zero exit, no Python traceback, and a last line that says what is wrong;
- **traceback** / **hang** (past ``--timeout``) / **accepted** (exit 0 where it must fail);
- **raw control characters**: a bidi or C1 control character (U+202E, NEL) printed as it is;
- **store changed**: the store file (and every other file the case made) is compared byte for
  byte before and after; a failed command must leave it as it was (data loss: issue 31's
  ``export --force`` and ``forget`` cases, where a command that succeeds may change only the
  store, ``may_change``, and every other file must survive).

Prints one line per case, then the counts; exits 1 unless every case is clean and no store
changed. ``tests/end_to_end/test_robustness.py`` runs the same cases (``CASES``), marked ``long`` (CI runs them).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if not __package__:  # run as a file: import from the repository root, as python -m benchmarks.NAME does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import arg_parser

MEMORY_CAP = 8 * 2**30  # bytes of address space per case

TINY = """\
name: robust
seed: 0
zoo: {vision_encoders: [tiny:vit-p4], language_models: [tiny:gpt2]}
alignment: {dataset: "ALIGN", samples: 32}
vlm: {llm: full, optim: {lr: 1.0e-3, batch_size: 16, epochs: 1}}
targets: [{task: shapes:color, limit: 8}]
search: {strategy: grid}
device: cpu
"""


def suite_text(align: str = "shapes:align", **replace) -> str:
    text = TINY.replace("ALIGN", align)
    for old, new in replace.items():
        old = old.replace("__", " ")
        assert old in text, old
        text = text.replace(old, new)
    return text


@dataclass
class Case:
    name: str
    kind: str  # suites | data | stores | sql
    args: list  # CLI arguments; "{dir}" is the case's folder
    files: dict = field(default_factory=dict)  # relative path -> str | bytes | callable(dir)
    store: str | None = "s.duckdb"  # made (migrated, one table of rows) before the case runs
    ok: bool = False  # exit 0 is right here (a control: validation cannot see the problem)
    may_change: tuple = ()  # files a successful command writes (ok=True cases): not compared


def _suite_cases() -> list[Case]:
    big = 10**12
    values = {
        # YAML itself
        "empty file": "",
        "only a comment": "# nothing\n",
        "a list": "- a\n- b\n",
        "a scalar": "42\n",
        "NUL bytes": "name: x\0\0\n",
        "invalid yaml": "name: [unclosed\n",
        "tab indent": "name: x\nzoo:\n\tvision_encoders: []\n",
        "duplicate key": TINY.replace("ALIGN", "shapes:align") + "seed: 1\n",
        "anchor bomb": "a: &a [x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
                       "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
        "deep nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
        "latin-1 bytes": b"name: caf\xe9\n",
        "60000 unknown keys": TINY.replace("ALIGN", "shapes:align")
        + "".join(f"k{i}: {i}\n" for i in range(60000)),
        # fields
        "unknown key": suite_text() + "serach: {}\n",
        "wrong type seed": suite_text(**{"seed: 0": "seed: zero"}),
        "seed 2^70": suite_text(**{"seed: 0": f"seed: {2**70}"}),
        "seed negative": suite_text(**{"seed: 0": "seed: -1"}),
        "samples 10^12": suite_text(**{"samples: 32": f"samples: {big}"}),
        "samples 0": suite_text(**{"samples: 32": "samples: 0"}),
        "batch_size 10^12": suite_text(**{"batch_size: 16": f"batch_size: {big}"}),
        "epochs 10^9": suite_text(**{"epochs: 1": "epochs: 1000000000"}),
        "limit 10^12": suite_text(**{"limit: 8": f"limit: {big}"}),
        "shapes limit 10^7": suite_text(**{"limit: 8": "limit: 10000000"}),
        "shapes samples 10^7": suite_text(**{"samples: 32": "samples: 10000000"}),
        "lr NaN": suite_text(**{"lr: 1.0e-3": "lr: .nan"}),
        "lr infinite": suite_text(**{"lr: 1.0e-3": "lr: .inf"}),
        "projector 10^9 wide": suite_text(**{"llm: full": "llm: full, projector: mlp1000000000x_gelu"}),
        "LoRA r 10^9": suite_text(**{"llm: full": "llm: lora, lora: {r: 1000000000}"}),
        "grad_accum 10^12": suite_text(**{"epochs: 1": f"epochs: 1, grad_accum: {big}"}),
        "steps 10^12": suite_text(**{"epochs: 1": f"steps: {big}"}),
        "clustering samples 10^9": suite_text(**{"strategy: grid": "strategy: mordal, clustering: {samples: 1000000000}"}),
        "eta 10^12": suite_text(**{"strategy: grid": f"strategy: mordal, inter: {{eta: {big}}}"}),
        "top_k 10^12": suite_text(**{"strategy: grid": f"strategy: mordal, inter: {{top_k: {big}}}"}),
        "t_ve 2": suite_text(**{"strategy: grid": "strategy: mordal, clustering: {t_ve: 2}"}),
        "unknown encoder": suite_text(**{"tiny:vit-p4": "tiny:nope"}),
        "unknown family": suite_text(**{"tiny:vit-p4": "nofamily:x"}),
        "missing local encoder": suite_text(**{"tiny:vit-p4": "hf:/no/such/dir"}),
        "unknown llm": suite_text(**{"tiny:gpt2": "tiny:nope"}),
        "empty zoo": suite_text(**{"[tiny:vit-p4]": "[]"}),
        "duplicate encoders": suite_text(**{"[tiny:vit-p4]": "[tiny:vit-p4, tiny:vit-p4]"}),
        "unknown task": suite_text(**{"shapes:color": "shapes:nope"}),
        "no targets": suite_text(**{"[{task: shapes:color, limit: 8}]": "[]"}),
        "unknown strategy": suite_text(**{"strategy: grid": "strategy: nope"}),
        "unknown policy": suite_text(**{"strategy: grid": "strategy: mordal, inter: {policy: nope}"}),
        "unknown predictor": suite_text(**{"strategy: grid": "strategy: mordal, predictor: {name: nope}"}),
        "unknown device": suite_text(**{"device: cpu": "device: tpu"}),
        "unknown executor": suite_text() + "executor: nope\n",
        "bad alignment": suite_text(align="shapes:nope"),
        # where a suite may put its store (issue 31): inside its own folder only
        "store leaves the folder": suite_text() + "store: ../../x/s.duckdb\n",
        "store absolute": suite_text() + "store: /tmp/elsewhere/s.duckdb\n",
        "store a device": suite_text() + "store: /dev/full\n",
        # messages: the line of a `null:` key, control and bidi characters echoed escaped
        "null key": suite_text() + "null: x\n",
        "bidi name": suite_text(**{"name: robust": 'name: "ro\u202ebust\u2066"'}),
        # the classes behind those instances: every way out of the suite's folder, every kind
        # of control character a suite value can carry back to a terminal
        "store one level up": suite_text() + "store: ../s.duckdb\n",
        "store through a home tilde": suite_text() + "store: ~/s.duckdb\n",
        "store with a NUL": suite_text() + 'store: "s\\0.duckdb"\n',
        "store in /proc": suite_text() + "store: /proc/s.duckdb\n",
        "store empty": suite_text() + 'store: ""\n',
        "ANSI escape in name": suite_text(**{"name: robust": 'name: "\\e[31mred\\e[0m"'}),
        "NEL in name": suite_text(**{"name: robust": 'name: "ro\\Nbust"'}),
        "bidi in an encoder ref": suite_text(**{"tiny:vit-p4": '"tiny:vit\u202e-p4"'}),
        "C0 control in a task": suite_text(**{"shapes:color": '"shapes:co\\x07lor"'}),
        "line separator in name": suite_text(**{"name: robust": 'name: "ro\u2028bust"'}),
    }
    cases = []
    for name, text in values.items():
        for command in ("validate", "run"):
            args = [command, "{dir}/suite.yaml"] + (["--store", "{dir}/s.duckdb"] if command == "run" else [])
            cases.append(Case(f"suite {name} ({command})", "suites", args, {"suite.yaml": text}))
    cases.append(Case("suite file missing (run)", "suites", ["run", "{dir}/none.yaml", "--store", "{dir}/s.duckdb"]))
    cases.append(Case("suite is a folder (validate)", "suites", ["validate", "{dir}"]))
    cases.append(Case("suite is a symlink loop (validate)", "suites", ["validate", "{dir}/loop.yaml"],
                      {"prep": lambda d: (d / "loop.yaml").symlink_to(d / "loop.yaml")}))
    for seed in ("-1", "18446744073709551616", "9223372036854775808", "1e3", "nan"):
        cases.append(Case(f"replay --seed {seed}", "suites",
                          ["replay", "--from", "nope", "--suite", "{dir}/suite.yaml", "--seed", seed,
                           "--store", "{dir}/s.duckdb"], {"suite.yaml": suite_text()}))
    return cases


def _llava(entries) -> str:
    return json.dumps(entries)


def _png(directory: Path) -> None:
    from PIL import Image

    (directory / "img").mkdir(exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(directory / "img" / "a.png")


GOOD = {"id": "0", "image": "a.png", "conversations": [
    {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]}


def _data_cases() -> list[Case]:
    turns = GOOD["conversations"]
    variants = {
        "missing json": None,
        "empty json": "",
        "NUL json": "\0\0\0",
        "garbled json": "[{\"id\": ",
        "object not list": json.dumps(GOOD),
        "empty list": "[]",
        "entry not an object": "[1, 2]",
        "no conversations": _llava([{"id": "0", "image": "a.png"}]),
        "conversations not a list": _llava([{**GOOD, "conversations": "hi"}]),
        "one turn": _llava([{**GOOD, "conversations": turns[:1]}]),
        "turn order gpt first": _llava([{**GOOD, "conversations": turns[::-1]}]),
        "turn without value": _llava([{**GOOD, "conversations": [{"from": "human"}, turns[1]]}]),
        "no <image> token": _llava([{**GOOD, "conversations": [
            {"from": "human", "value": "What colour?"}, turns[1]]}]),
        "missing image": _llava([{**GOOD, "image": "gone.png"}]),
        "image outside folder": _llava([{**GOOD, "image": "../../etc/hostname"}]),
        "absolute image path": _llava([{**GOOD, "image": "/etc/hostname"}]),
        "image not an image": _llava([{**GOOD, "image": "text.png"}]),
        "id missing": _llava([{k: v for k, v in GOOD.items() if k != "id"}]),
    }
    cases = []
    for name, text in variants.items():
        files = {"prep": _png, "img/text.png": "not a png"}
        if text is not None:
            files["img/data.json"] = text
        suite = suite_text(align="llava:{dir}/img/data.json")
        for command in ("validate", "run"):
            args = [command, "{dir}/suite.yaml"] + (["--store", "{dir}/s.duckdb"] if command == "run" else [])
            cases.append(Case(f"llava {name} ({command})", "data", args, {**files, "suite.yaml": suite}))
    for command in ("validate", "run"):  # a relative path: validation cannot tell, the run must
        args = [command, "{dir}/suite.yaml"] + (["--store", "{dir}/s.duckdb"] if command == "run" else [])
        cases.append(Case(f"llava missing json, relative path ({command})", "data", args,
                          {"suite.yaml": suite_text(align="llava:img/none.json")},
                          ok=command == "validate"))
    return cases


def _damage_checksum(directory: Path) -> None:
    path = directory / "s.duckdb"
    data = bytearray(path.read_bytes())
    # every block after the 3 headers (4 KiB each): its 8-byte checksum, then its payload
    for start in range(3 * 4096, len(data), 256 * 1024):
        for i in range(start + 16, min(start + 16 + 2048, len(data))):
            data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(directory: Path) -> None:
    path = directory / "s.duckdb"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _sqlite(directory: Path) -> None:
    con = sqlite3.connect(directory / "lite.db")
    con.execute("create table t (a)")
    con.commit()
    con.close()


def _newer(directory: Path) -> None:
    import duckdb
    from harness.store import Store

    Store.open(directory / "new.duckdb").close()
    con = duckdb.connect(str(directory / "new.duckdb"))
    con.execute("insert into _migrations (name) values ('m999_from_the_future')")
    con.close()


def _readonly_dir(directory: Path) -> None:
    (directory / "ro").mkdir()
    os.chmod(directory / "ro", 0o500)


def _symlink(directory: Path) -> None:
    os.symlink(directory / "s.duckdb", directory / "link.duckdb")


def _export(directory: Path, change=None, extra: dict | None = None) -> None:
    """An export of the case's store at ``exp/``, its manifest changed by ``change``, and files
    added to it (``extra``)."""
    from harness.store import Store
    from harness.store.exchange import export_store

    with Store.open(directory / "s.duckdb", read_only=True) as st:
        export_store(st, directory / "exp")
    if change is not None:
        path = directory / "exp" / "manifest.json"
        manifest = json.loads(path.read_text())
        change(manifest)
        path.write_text(json.dumps(manifest))
    for rel, text in (extra or {}).items():
        (directory / "exp" / rel).write_text(text)


def _forged_checkpoint(directory: Path) -> None:
    """A trial with a checkpoint of its own, and an imported export whose forged trial row names
    that checkpoint as its own (issue 31: forgetting the forged trial deleted the other's)."""
    import duckdb
    from harness.store import Store
    from harness.store.exchange import export_store, import_export, sha256_file

    victim, fake = "a" * 64, "b" * 64
    with Store.open(directory / "s.duckdb") as st:
        run = st.query("select run_id from runs")[0]["run_id"]
        st.start_trial(victim, run_id=run, encoder="tiny:vit-p4", llm="tiny:gpt2", dataset_fingerprint="d",
                       sample_ratio=1.0, plugin="harness", plugin_version="0")
        ckpt = st.checkpoints_dir / victim / "trainable.safetensors"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_bytes(b"the victim's weights")
        st.finish_trial(victim, checkpoint_path=ckpt)
        export_store(st, directory / "exp")
    parquet = directory / "exp" / "trials.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * REPLACE ('{fake}' AS trial_key, 'checkpoints/{victim}/trainable.safetensors'"
                f" AS checkpoint_path) FROM read_parquet('{parquet}')) TO '{parquet}.new' (FORMAT PARQUET)")
    con.close()
    os.replace(f"{parquet}.new", parquet)
    manifest = json.loads((directory / "exp" / "manifest.json").read_text())
    manifest["tables"]["trials"]["sha256"] = sha256_file(parquet)
    (directory / "exp" / "manifest.json").write_text(json.dumps(manifest))
    with Store.open(directory / "s.duckdb") as st:
        import_export(st, directory / "exp")


def _damaged_wal(directory: Path) -> None:
    """The case's store with its last change only in its .wal, and that .wal damaged."""
    code = ("import os\nfrom harness.store import Store\n"
            f"st = Store.open({str(directory / 's.duckdb')!r})\n"
            "st.con.execute(\"SET wal_autocheckpoint = '1TB'\")\n"
            "st.con.execute(\"UPDATE runs SET suite_name = 'in the log'\")\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    wal = directory / "s.duckdb.wal"
    data = bytearray(wal.read_bytes())
    for i in range(60, len(data) - 8):
        data[i] ^= 0xFF
    wal.write_bytes(bytes(data))
    (directory / "s.duckdb.wal.bytes").write_bytes(bytes(data))  # (a .wal is not compared)


def _data_loss_cases() -> list[Case]:
    """Issue 31: commands that deleted or trusted what they should not; each must leave every
    file of the case's folder as it was (a forget may change only the store)."""
    force = ["store", "export", "--all", "--force", "--store", "{dir}/s.duckdb", "--out"]
    return [
        Case("export --force over the store's own folder", "stores", [*force, "{dir}"],
             {"manifest.json": "{}", "notes.txt": "my notes"}),
        Case("export --force over a project with a manifest.json", "stores", [*force, "{dir}/web"],
             {"web/manifest.json": '{"name": "web", "version": "1.0"}', "web/index.js": "go()\n"}),
        Case("export --force over an export holding another file", "stores", [*force, "{dir}/exp"],
             {"prep": lambda d: _export(d, extra={"notes.txt": "mine"})}),
        Case("export --force over an export whose manifest lists the store", "stores", [*force, "{dir}/exp"],
             {"prep": lambda d: _export(d, lambda m: m["tables"].update(
                 x={"file": "s.duckdb", "rows": 0, "sha256": "0" * 64}), extra={"s.duckdb": "precious"})}),
        Case("forget a trial imported with another trial's checkpoint path", "stores",
             ["store", "forget", "--key", "b" * 64, "--store", "{dir}/s.duckdb"],
             {"prep": _forged_checkpoint}, ok=True, may_change=("s.duckdb",)),
        Case("import a manifest with tables: []", "stores", ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m.update(tables=[]))}),
        Case("import a manifest entry without sha256", "stores",
             ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m["tables"]["runs"].pop("sha256"))}),
        Case("import a manifest with format_version \"9\"", "stores",
             ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m.update(format_version="9"))}),
        Case("import a manifest naming a file outside the export", "stores",
             ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m["tables"]["runs"].update(file="../s.duckdb"))}),
        Case("export --out /proc/x", "stores", ["store", "export", "--all", "--out", "/proc/x", "--store", "{dir}/s.duckdb"]),
        Case("export --out /", "stores", ["store", "export", "--all", "--force", "--out", "/", "--store", "{dir}/s.duckdb"]),
        Case("report --out /proc/x", "stores", ["report", "--out", "/proc/x", "--store", "{dir}/s.duckdb"]),
        Case("report --out under a file", "stores", ["report", "--out", "{dir}/s.duckdb/r", "--store", "{dir}/s.duckdb"]),
        # the class: every system root and pseudo-filesystem, for every command that writes a folder
        *[Case(f"{' '.join(cmd[:2])} --out {where}", "stores", [*cmd, where, "--store", "{dir}/s.duckdb"])
          for where in ("/", "/etc/harness-x", "/usr/x", "/sys/x", "/dev/x", "/proc/self/x")
          for cmd in (["report", "--out"], ["store", "export", "--all", "--force", "--out"])
          if (cmd[0], where) not in {("report", "/proc/x"), ("store", "/")}],
        Case("import a manifest that is a list", "stores", ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"exp/manifest.json": "[1, 2]"}),
        Case("import a manifest that is not JSON", "stores", ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"exp/manifest.json": "{not json"}),
        Case("import a manifest with negative rows", "stores",
             ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m["tables"]["runs"].update(rows=-1))}),
        Case("import a manifest with format_version 1.5", "stores",
             ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: _export(d, lambda m: m.update(format_version=1.5))}),
        Case("forget a key that is not stored (dry run)", "stores",
             ["store", "forget", "--key", "../../etc", "--dry-run", "--store", "{dir}/s.duckdb"]),
        Case("backup of a store named we\"ird", "stores",
             ["store", "backup", "{dir}/b.duckdb", "--store", '{dir}/we"ird.duckdb'], store='we"ird.duckdb', ok=True),
        Case("store is /dev/full", "stores", ["sql", "select 1", "--store", "/dev/full"], store=None),
        Case("damaged .wal: info", "stores", ["store", "info", "--store", "{dir}/s.duckdb"], {"prep": _damaged_wal}),
        Case("damaged .wal: check", "stores", ["store", "check", "--store", "{dir}/s.duckdb"], {"prep": _damaged_wal}),
        Case("damaged .wal: backup (from the main file)", "stores",
             ["store", "backup", "{dir}/b.duckdb", "--store", "{dir}/s.duckdb"], {"prep": _damaged_wal}, ok=True),
    ]


def _store_cases() -> list[Case]:
    c = _data_loss_cases()
    for damage, prep in (("checksum-damaged", _damage_checksum), ("truncated", _truncate)):
        for args in (["sql", "select * from runs"], ["store", "info"], ["run", "{dir}/suite.yaml"],
                     ["store", "backup", "{dir}/copy.duckdb"], ["store", "export", "--all", "--out", "{dir}/exp"],
                     ["store", "check"]):
            c.append(Case(f"{damage} store: {' '.join(a for a in args if '{' not in a)}", "stores",
                          [*args, "--store", "{dir}/s.duckdb"],
                          {"suite.yaml": suite_text(), "post": prep}))
    text = {"not a store": "hello, I am a text file\n" * 100}
    c += [
        Case("merge a text file", "stores", ["store", "merge", "{dir}/t.txt", "--store", "{dir}/s.duckdb"],
             {"t.txt": text["not a store"]}),
        Case("merge a SQLite file", "stores", ["store", "merge", "{dir}/lite.db", "--store", "{dir}/s.duckdb"],
             {"prep": _sqlite}),
        Case("merge a newer-schema store", "stores", ["store", "merge", "{dir}/new.duckdb", "--store", "{dir}/s.duckdb"],
             {"prep": _newer}),
        Case("merge a missing store", "stores", ["store", "merge", "{dir}/none.duckdb", "--store", "{dir}/s.duckdb"]),
        Case("merge into itself", "stores", ["store", "merge", "{dir}/s.duckdb", "--store", "{dir}/s.duckdb"]),
        Case("merge into itself via symlink", "stores", ["store", "merge", "{dir}/link.duckdb", "--store", "{dir}/s.duckdb"],
             {"post": _symlink}),
        Case("merge into itself via ..", "stores", ["store", "merge", "{dir}/ro/../s.duckdb", "--store", "{dir}/s.duckdb"],
             {"prep": lambda d: (d / "ro").mkdir()}),
        Case("backup to a read-only folder", "stores", ["store", "backup", "{dir}/ro/copy.duckdb", "--store", "{dir}/s.duckdb"],
             {"prep": _readonly_dir}) if os.geteuid() != 0 else
        Case("backup under a file", "stores", ["store", "backup", "{dir}/t.txt/copy.duckdb", "--store", "{dir}/s.duckdb"],
             {"t.txt": "a file"}),
        Case("backup onto the store", "stores", ["store", "backup", "{dir}/s.duckdb", "--store", "{dir}/s.duckdb"]),
        Case("sql on a text file", "stores", ["sql", "select 1", "--store", "{dir}/t.txt"], {"t.txt": text["not a store"]}),
        Case("info on a SQLite file", "stores", ["store", "info", "--store", "{dir}/lite.db"], {"prep": _sqlite}),
        Case("run on a SQLite file", "stores", ["run", "{dir}/suite.yaml", "--store", "{dir}/lite.db"],
             {"prep": _sqlite, "suite.yaml": suite_text()}),
        Case("store is a folder", "stores", ["sql", "select 1", "--store", "{dir}"]),
        Case("import a missing folder", "stores", ["store", "import", "{dir}/none", "--store", "{dir}/s.duckdb"]),
        Case("import a folder without manifest", "stores", ["store", "import", "{dir}/exp", "--store", "{dir}/s.duckdb"],
             {"exp/runs.parquet": "not parquet"}),
        Case("report of an unknown run", "stores", ["report", "nope", "--store", "{dir}/s.duckdb"]),
        Case("compare unknown runs", "stores", ["compare", "a", "b", "--store", "{dir}/s.duckdb"]),
        Case("sql on a missing store", "stores", ["sql", "select 1", "--store", "{dir}/no/s.duckdb"], store=None),
        Case("info on a missing store", "stores", ["store", "info", "--store", "{dir}/no/s.duckdb"], store=None),
    ]
    return c


SQL = [
    "ATTACH '{dir}/other.duckdb' AS o (READ_WRITE); DELETE FROM o.t",
    "ATTACH '{dir}/other.duckdb' AS o (READ_WRITE)",
    "COPY (SELECT 1) TO '{dir}/out.csv'",
    "COPY runs TO '{dir}/s.duckdb'",
    "EXPORT DATABASE '{dir}/dump'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "PRAGMA enable_external_access = true",
    "RESET lock_configuration",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "INSERT INTO runs (run_id) VALUES ('x')",
    "UPDATE runs SET status = 'x'",
    "DELETE FROM runs",
    "DROP TABLE runs",
    "ALTER TABLE runs ADD COLUMN x INT",
    "CHECKPOINT",
    "VACUUM",
    "BEGIN TRANSACTION",
    "DETACH s",
    "USE memory",
    "SELECT * FROM read_csv('{dir}/j.csv')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM glob('{dir}/*')",
    "SELECT * FROM '{dir}/j.csv'",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "SELECT 1; SELECT 2",
    "",
    ";",
    "SELEC 1",
    "SELECT * FROM no_such_table",
]


def _other(directory: Path) -> None:
    import duckdb

    con = duckdb.connect(str(directory / "other.duckdb"))
    con.execute("create table t as select 1 as a")
    con.close()
    (directory / "j.csv").write_text("a\n1\n")


def _sql_cases() -> list[Case]:
    return [Case(f"sql {q[:60]!r}", "sql", ["sql", q, "--store", "{dir}/s.duckdb"], {"prep": _other}) for q in SQL] + [
        # the limits harness sql runs under (issue 31): memory, and time (--timeout)
        Case("sql a 3 GB string", "sql", ["sql", "SELECT length(repeat('x', 3000000000))", "--store", "{dir}/s.duckdb"]),
        Case("sql past --timeout", "sql", ["sql", "SELECT count(*) FROM range(100000000000)", "--timeout", "1",
                                           "--store", "{dir}/s.duckdb"]),
    ]


def cases() -> list[Case]:
    return _suite_cases() + _data_cases() + _store_cases() + _sql_cases()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def _snapshot(directory: Path) -> dict:
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.suffix != ".wal":
            try:
                out[str(path.relative_to(directory))] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                pass
    return out


# C1 controls (NEL, ...), bidi overrides and isolates, line/paragraph separators: a message
# must show them escaped, never raw (they reorder or break the line a user reads)
_RAW = re.compile("[\x80-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\u061c]")


def run_case(case: Case, directory: Path, timeout: float) -> dict:
    """Prepare ``case`` in ``directory``, run it, judge it (see the module docstring)."""
    from harness.store import Store

    directory.mkdir(parents=True, exist_ok=True)
    if case.store:
        with Store.open(directory / case.store) as store:
            run = store.start_run(suite_name="before")
            store.finish_run(run, status="done")
    posts = []
    for rel, content in case.files.items():
        if rel in ("prep", "post"):
            (content(directory) if rel == "prep" else posts.append(content))
            continue
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content.replace("{dir}", str(directory)))
    for post in posts:
        post(directory)
    before = _snapshot(directory)
    args = [str(a).replace("{dir}", str(directory)) for a in case.args]
    env = {**os.environ, "HARNESS_LOAD_PLUGINS": "", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True,
                              text=True, timeout=timeout, env=env, cwd=directory,
                              preexec_fn=_limit_memory)
        code, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, err = None, (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    seconds = time.perf_counter() - start
    after = _snapshot(directory)
    changed = sorted(k for k in before if after.get(k) != before[k] and k not in case.may_change)
    last = next((line for line in reversed(err.strip().splitlines()) if line.strip()), "")
    if code is None:
        verdict = "hang"
    elif "Traceback (most recent call last)" in err or "MemoryError" in err:
        verdict = "traceback"
    elif _RAW.search(err):  # user text echoed with its control or bidi characters
        verdict = "raw control characters"
    elif code == 0:
        verdict = "clean" if case.ok else "accepted"
    elif code < 0:
        verdict = f"killed (signal {-code})"
    else:
        verdict = "clean"
    return {"case": case.name, "kind": case.kind, "verdict": verdict, "exit": code,
            "store_changed": changed, "seconds": round(seconds, 2), "message": last[:200]}


def main() -> int:
    import tempfile

    parser = arg_parser(__doc__)
    parser.add_argument("--only", choices=["suites", "data", "stores", "sql"], default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="one JSON line per case")
    parser.add_argument("-k", default=None, help="only cases whose name contains this")
    args = parser.parse_args()
    chosen = [c for c in cases() if (args.only is None or c.kind == args.only)
              and (args.k is None or args.k in c.name)]
    counts: dict = {}
    changed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(chosen):
            row = run_case(case, Path(tmp) / f"case{i}", args.timeout)
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
            changed += bool(row["store_changed"])
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                flag = "" if row["verdict"] == "clean" and not row["store_changed"] else "  <--"
                print(f"{row['verdict']:<10} {row['seconds']:>6.1f}s  {case.name:<58} "
                      f"{row['message'][:90]}{' CHANGED ' + ','.join(row['store_changed']) if row['store_changed'] else ''}{flag}",
                      flush=True)
    print(f"\n{len(chosen)} tried: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f"; store changed: {changed}")
    return 0 if counts.get("clean", 0) == len(chosen) and not changed else 1


if __name__ == "__main__":
    sys.exit(main())
