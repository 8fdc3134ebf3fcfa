"""`harness store forget` and `harness run --refresh / --no-reuse` on a real store: what goes is
computed again, nothing else changes, bad selectors change nothing."""

import helpers
from helpers import digest, fetch, invoke

SUITE = {**helpers.TINY_MORDAL, "name": "forget-test",
         "zoo": {"vision_encoders": ["tiny:vit-p4", "tiny:vit-p8"], "language_models": ["tiny:gpt2"]},
         "search": {"strategy": "grid"}}


def trained_by_last_run(store):
    return fetch(store, "select t.encoder from run_uses u join trials t on t.trial_key = u.key where"
                 " u.kind = 'trial' and not u.reused and u.run_id = (select run_id from runs order by"
                 " started_at desc limit 1) order by 1")


def test_forget_a_component_then_refresh_and_no_reuse(tmp_path):
    store = tmp_path / "s.duckdb"
    suite = helpers.write_suite(tmp_path, SUITE)
    assert invoke("run", suite, "--store", store).returncode == 0
    keys = dict(fetch(store, "select encoder, trial_key from trials"))
    ckpt = {e: tmp_path / "checkpoints" / k for e, k in keys.items()}
    assert all(p.is_dir() for p in ckpt.values())

    # bad selectors: one line naming the selector, exit 2, the store file untouched
    before = digest(store)
    for args, said in ((["--component", "tiny:nope"], "--component 'tiny:nope'"),
                       (["--key", "abc"], "at least 8 characters"),
                       (["--run", "no-such-run"], "--run 'no-such-run'"), ([], "say what to forget")):
        out = invoke("store", "forget", *args, "--store", store)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, out.stderr
    dry = invoke("store", "forget", "--component", "tiny:vit-p4", "--dry-run", "--store", store)
    assert dry.returncode == 0 and dry.stdout.startswith("would forget: trials 1, scores 1")
    assert digest(store) == before and ckpt["tiny:vit-p4"].is_dir()

    out = invoke("store", "forget", "--component", "tiny:vit-p4", "--store", store)
    assert out.returncode == 0 and "trials 1" in out.stdout
    assert [e for e, in fetch(store, "select encoder from trials")] == ["tiny:vit-p8"]
    assert not ckpt["tiny:vit-p4"].exists() and ckpt["tiny:vit-p8"].is_dir()
    assert fetch(store, "select count(*) from scores where trial_key = ?", [keys["tiny:vit-p4"]], one=True) == (0,)
    # the next run trains only what was forgotten, to the same scores (same seed)
    assert invoke("run", suite, "--store", store).returncode == 0
    assert trained_by_last_run(store) == [("tiny:vit-p4",)]
    assert dict(fetch(store, "select encoder, trial_key from trials")) == keys

    refreshed = invoke("run", suite, "--store", store, "--refresh", "tiny:vit-p8")
    assert refreshed.returncode == 0 and "forgot what the store held for tiny:vit-p8" in refreshed.stderr
    assert trained_by_last_run(store) == [("tiny:vit-p8",)]
    assert invoke("run", suite, "--store", store, "--refresh", "tiny:other").returncode == 2
    assert invoke("run", suite, "--store", store, "--no-reuse").returncode == 0
    assert trained_by_last_run(store) == [("tiny:vit-p4",), ("tiny:vit-p8",)]

    # a run forgotten: its records go, the trials it only reused stay
    last = fetch(store, "select run_id from runs order by started_at desc limit 1", one=True)[0]
    runs = fetch(store, "select count(*) from runs", one=True)[0]
    out = invoke("store", "forget", "--run", last, "--store", store)
    assert out.returncode == 0 and "runs 1" in out.stdout and "rankings" in out.stdout
    assert fetch(store, "select count(*) from runs", one=True)[0] == runs - 1
    assert fetch(store, "select count(*) from trials", one=True) == (0,)  # that run had trained both


def test_forgetting_a_trial_forgets_the_trials_continued_from_it(tmp_path):
    from harness.store import Store
    from harness.store.forget import forget

    from harness.scoring import Target
    from harness.training import TrainConfig
    from harness.trial import TrialSpec, run_trial

    spec = TrialSpec(encoder="tiny:vit-p4", llm="tiny:gpt2", alignment="shapes:align", samples=48, seed=2, device="cpu", ratio=1.0,
                     after=(0.25, 0.5), targets=(Target("shapes:count", limit=8),),
                     train=TrainConfig(llm="lora", batch_size=16, epochs=1, schedule="constant", warmup=0.0))
    with Store.open(tmp_path / "s.duckdb") as st:
        run_trial(spec, st, st.start_run(suite_name="chain"))
        (low,) = st.query("select trial_key from trials where sample_ratio = 0.25")
        assert forget(st, keys=[low["trial_key"][:12]], dry_run=True) == {"trials": 3, "scores": 3}
        assert forget(st, keys=[low["trial_key"][:12]]) == {"trials": 3, "scores": 3}
        assert st.query("select count(*) as n from trials")[0]["n"] == 0
        # a component's features go with it (by fingerprint prefix), other components' stay
        import numpy as np

        fps = [r["fingerprint"] for r in st.query("select fingerprint from components order by kind")]
        run = st.start_run(suite_name="features")
        for fp in fps:
            st.put_embedding(f"emb-{fp}", np.ones((4, 2)), component_fingerprint=fp, dataset_fingerprint="d",
                             layer="tokens", run_id=run, plugin="test", plugin_version="0")
        assert forget(st, components=[fps[0][:12]]) == {"embeddings": 1}
        assert [r["k"] for r in st.query("select embedding_key as k from embeddings")] == [f"emb-{fps[1]}"]


# -- a checkpoint path from a file deletes nothing (issue 31) --------------------------------------

def test_an_imported_trial_naming_another_trials_checkpoint_deletes_nothing_when_forgotten(tmp_path):
    from helpers import forge_parquet, key, make_store

    mine = tmp_path / "mine" / "s.duckdb"
    mine.parent.mkdir()
    victim, _ = make_store(mine)
    victim_ckpt = mine.parent / "checkpoints" / victim / "trainable.safetensors"
    other = tmp_path / "other" / "o.duckdb"
    other.parent.mkdir()
    make_store(other, trials=1)
    fake = key(99)
    exp = tmp_path / "exp"
    assert invoke("store", "export", "--all", "--out", exp, "--store", other).returncode == 0
    # a forged export: a trial of its own whose checkpoint_path names the victim's file
    forge_parquet(exp, "trials", f"SELECT * REPLACE ('{fake}' AS trial_key, "
                                 f"'checkpoints/{victim}/trainable.safetensors' AS checkpoint_path) FROM t")
    imported = invoke("store", "import", exp, "--store", mine)
    assert imported.returncode == 0, imported.output
    assert fetch(mine, "select checkpoint_path from trials where trial_key = ?", [fake], one=True) == (None,)
    dry = invoke("store", "forget", "--key", fake, "--dry-run", "--store", mine)
    assert dry.returncode == 0 and "would delete" not in dry.output, dry.output
    out = invoke("store", "forget", "--key", fake, "--store", mine)
    assert out.returncode == 0 and "trials 1" in out.output, out.output
    assert victim_ckpt.read_bytes() == b"weights of " + victim.encode()
    assert fetch(mine, "select count(*) from trials where trial_key = ?", [victim], one=True) == (1,)


def test_a_merged_store_brings_only_checkpoint_paths_its_keys_derive(tmp_path):
    from helpers import key, make_store

    victim_store = tmp_path / "s.duckdb"
    victim, _ = make_store(victim_store, trials=2)
    (tmp_path / "far").mkdir()
    far = make_store(tmp_path / "far" / "g.duckdb", trials=3,
                     checkpoint_paths={key(2): f"checkpoints/{victim}/trainable.safetensors"})
    assert invoke("store", "merge", tmp_path / "far" / "g.duckdb", "--store", victim_store).returncode == 0
    assert fetch(victim_store, "select checkpoint_path from trials where trial_key = ?", [far[2]], one=True) == (None,)
    assert fetch(victim_store, "select checkpoint_path from trials where trial_key = ?", [victim], one=True) == (
        f"checkpoints/{victim}/trainable.safetensors",)


def test_forget_deletes_only_the_forgotten_trials_own_folder_and_dry_run_lists_it(tmp_path):
    from harness.store import Store
    from helpers import make_store, snapshot

    store = tmp_path / "s.duckdb"
    victim, fake = make_store(store, checkpoint_paths={})
    # a row already in a store (written before this fix) that names the victim's checkpoint
    with Store.open(store) as st:
        st.con.execute("UPDATE trials SET checkpoint_path = ? WHERE trial_key = ?",
                       [f"checkpoints/{victim}/trainable.safetensors", fake])
    (tmp_path / "notes.txt").write_text("mine")
    dry = invoke("store", "forget", "--key", fake, "--dry-run", "--store", store)
    lines = dry.output.splitlines()
    assert dry.returncode == 0 and lines[0].startswith("would forget: trials 1, scores 1"), dry.output
    assert lines[1:] == [f"would delete {tmp_path / 'checkpoints' / fake / 'trainable.safetensors'}"]
    before = snapshot(tmp_path)
    out = invoke("store", "forget", "--key", fake, "--store", store)
    assert out.returncode == 0, out.output
    after = snapshot(tmp_path)
    gone = sorted(set(before) - set(after))
    assert gone == [f"checkpoints/{fake}/trainable.safetensors"]
    assert (tmp_path / "checkpoints" / victim / "trainable.safetensors").is_file()
    # a trial's folder that a remaining row names is kept
    second = tmp_path / "second" / "s.duckdb"
    second.parent.mkdir()
    kept, forgotten = make_store(second, checkpoint_paths={})
    with Store.open(second) as st:
        st.con.execute("UPDATE trials SET checkpoint_path = ? WHERE trial_key = ?",
                       [f"checkpoints/{forgotten}/trainable.safetensors", kept])
    dry = invoke("store", "forget", "--key", forgotten, "--dry-run", "--store", second)
    assert dry.returncode == 0 and "would delete" not in dry.output, dry.output
    assert invoke("store", "forget", "--key", forgotten, "--store", second).returncode == 0
    assert (second.parent / "checkpoints" / forgotten / "trainable.safetensors").is_file()
