"""``harness zoo``: list the miniature pretrained zoo and (re)build it from its recipes.

Added to the CLI by the built-in ``zoo`` plugin through ``register_commands``. Imports stay
light (no torch) until a build actually trains.
"""

from __future__ import annotations

import json
import sys
import time

import click


@click.group()
def zoo():
    """The miniature pretrained zoo (mini: encoders and LLMs): list it, rebuild it."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per component.")
def list_(as_json):
    """Every mini: component: objective, architecture, steps, and where its weights are."""
    from harness.plugins.zoo import recipes as z

    manifests = [(d, z.read_manifest(d)) for d in z.search_dirs()]
    rows = []
    for r in z.RECIPES.values():
        where, meta = None, {}
        for directory, manifest in manifests:
            entry = manifest.get(r.name)
            if entry and entry.get("hash") == r.hash and (directory / r.name).is_dir():
                where, meta = str(directory), entry
                break
        rows.append({"ref": r.ref, "kind": r.kind, "objective": r.objective,
                     "arch": _arch(r), "steps": r.steps, "hash": r.hash,
                     "params": meta.get("params"), "wall_seconds": meta.get("wall_seconds"),
                     "final_loss": meta.get("final_loss"), "weights": where, "doc": r.doc})
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, sort_keys=True))
        return
    header = ("ref", "objective", "arch", "steps", "params", "build s", "loss", "weights")
    table = [header] + [
        (row["ref"], row["objective"], row["arch"], str(row["steps"]),
         f"{row['params'] / 1e6:.2f}M" if row["params"] else "-",
         f"{row['wall_seconds']:.0f}" if row["wall_seconds"] is not None else "-",
         f"{row['final_loss']:.3f}" if row["final_loss"] is not None else "-",
         _short(row["weights"]) if row["weights"] else "missing: harness zoo build --only "
         + row["ref"].removeprefix("mini:"))
        for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())


def _arch(r) -> str:
    args = dict(r.arch_args)
    if "embed_dim" in args:
        return f"{r.arch.split('_')[0]} {args['embed_dim']}x{args['depth']}"
    if "hidden_size" in args and "num_hidden_layers" in args:
        return f"{r.arch.removesuffix('Config')} {args['hidden_size']}x{args['num_hidden_layers']}"
    if "n_embd" in args:
        return f"{r.arch.removesuffix('Config')} {args['n_embd']}x{args['n_layer']}"
    width = (args.get("channels") or args.get("dims") or ("?",))[-1]
    return f"{r.arch} w{width}"


def _short(path: str) -> str:
    from harness.plugins.zoo import recipes as z

    return "package" if path == str(z.PACKAGE_DIR) else path


@zoo.command()
@click.option("--only", "names", multiple=True, metavar="NAME",
              help="Build just this component (repeatable); default: all of them.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: 'zoo' next to the store).")
@click.option("--force", is_flag=True, help="Rebuild even when the folder holds this recipe.")
@click.option("--steps", type=int, default=None,
              help="Override every recipe's steps (a smoke test; loaders ignore the result).")
def build(names, out, force, steps):
    """Pretrain mini: components from their recipes (one CPU thread, deterministic)."""
    from harness.plugins.zoo import recipes as z
    from harness.plugins.zoo import train as zoo_train

    todo = [z.recipe(n) for n in names] if names else list(z.RECIPES.values())
    out_dir = out if out is not None else str(z.default_build_dir())
    click.echo(f"building {len(todo)} component(s) into {out_dir}", err=True)
    results = []
    for k, r in enumerate(todo, 1):
        label = f"[{k}/{len(todo)}] {r.ref}"
        click.echo(f"{label}: {r.objective}, {_arch(r)}, {steps if steps is not None else r.steps} steps",
                   err=True)
        meta = zoo_train.build(r.name, out=out_dir, steps=steps, force=force, progress=_progress(label))
        results.append(meta)
        if meta["cached"]:
            click.echo(f"{label}: up to date ({meta['hash']})", err=True)
        else:
            loss = "-" if meta["final_loss"] is None else f"{meta['final_loss']:.4f}"
            click.echo(f"{label}: built in {meta['wall_seconds']:.1f} s, final loss {loss}, "
                       f"{meta['params'] / 1e6:.2f}M params, {meta['bytes'] / 1e6:.2f} MB -> "
                       f"{meta['path']}", err=True)
    for meta in results:
        click.echo(json.dumps({k: meta[k] for k in ("ref", "hash", "cached", "wall_seconds",
                                                    "final_loss", "params", "path")},
                              sort_keys=True))


def _progress(label: str):
    """A plain progress line about every tenth of the steps (and at most every 15 seconds)."""
    start = time.perf_counter()
    state = {"last": 0.0}

    def report(step: int, total: int, loss: float) -> None:
        now = time.perf_counter() - start
        every = max(1, total // 10)
        if step == total or step % every == 0 or now - state["last"] > 15:
            state["last"] = now
            click.echo(f"{label}: step {step}/{total} loss {loss:.4f} ({now:.0f} s)", err=True)
            sys.stderr.flush()

    return report
