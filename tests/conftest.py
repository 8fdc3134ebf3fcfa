import os

import pytest

# Entry-point plugins installed on the developer's machine must not leak into the tests;
# tests that need one set HARNESS_LOAD_PLUGINS themselves.
os.environ["HARNESS_LOAD_PLUGINS"] = ""
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_store_env(monkeypatch, tmp_path):
    """No test writes to a developer's store: HARNESS_STORE points into the test's tmp dir."""
    monkeypatch.setenv("HARNESS_STORE", str(tmp_path / ".harness" / "store.duckdb"))
    from harness import plugin_manager

    plugin_manager.reset()
    yield
    plugin_manager.reset()


class Searched:
    """What :func:`searched_once` ran: ``folder`` (a store, ``s.duckdb``, holding a Mordal search
    and then the grid of its candidates, with ``suite.yaml`` and ``grid.yaml``), ``mordal_only``
    (a copy of that folder taken before the grid ran), the two run ids, the page ``harness run
    --report`` printed (relative to the folder) and what that first run said (``first``)."""

    def __init__(self, folder, mordal_only, mordal_run, grid_run, page, first):
        self.folder, self.mordal_only, self.page, self.first = folder, mordal_only, page, first
        self.mordal_run, self.grid_run = mordal_run, grid_run

    def copy(self, dest, mordal_only=False):
        """A copy of the folder (checkpoints and report included) at ``dest``; its store."""
        import shutil

        shutil.copytree(self.mordal_only if mordal_only else self.folder, dest)
        return dest / "s.duckdb"


# the search the session shares: helpers.search_suite with two warm-up steps (tests/end_to_end/
# test_costs.py checks the warm-ups are charged)
SHARED_SEARCH = {"search.clustering.warmup_steps": 2}


@pytest.fixture(scope="session")
def searched_once(tmp_path_factory):
    """One Mordal search (``harness run --report`` in a fresh store) and then the grid of the
    same candidates, run once per session; tests use copies (:func:`searched`, or module-scoped
    copies through :meth:`Searched.copy`)."""
    import shutil
    from pathlib import Path

    from helpers import invoke, last_run, search_suite

    folder = tmp_path_factory.mktemp("searched")
    store = folder / "s.duckdb"
    first = invoke("run", search_suite(folder, **SHARED_SEARCH), "--store", store, "--report")
    assert first.returncode == 0, first.stderr
    printed = [line for line in first.stdout.splitlines() if line.startswith("report: ")]
    assert len(printed) == 1, first.stdout
    mordal_run = last_run(store)[0]
    mordal_only = tmp_path_factory.mktemp("searched-mordal-only") / "searched"
    shutil.copytree(folder, mordal_only)
    grid_suite = search_suite(folder, "grid.yaml", **SHARED_SEARCH, **{"search.strategy": "grid"})
    grid = invoke("run", grid_suite, "--store", store)
    assert grid.returncode == 0, grid.stderr
    page = Path(printed[0].split(": ", 1)[1]).relative_to(folder)
    return Searched(folder, mordal_only, mordal_run, last_run(store)[0], page, first)


@pytest.fixture
def searched(searched_once, tmp_path):
    """A copy, in this test's folder, of the session's searched store (a finished Mordal search
    that trained every trial it used, then the grid of its candidates) with its checkpoints:
    (store, mordal suite, mordal run, grid suite, grid run)."""
    store = searched_once.copy(tmp_path / "searched")
    return store, store.parent / "suite.yaml", searched_once.mordal_run, store.parent / "grid.yaml", \
        searched_once.grid_run
