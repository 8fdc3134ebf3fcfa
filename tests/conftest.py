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
