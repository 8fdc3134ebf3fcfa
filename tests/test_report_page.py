"""``harness report``: a real Mordal run and a real grid run of the same suite, their report
parsed as HTML (sections, images that decode, nothing external) and rendered in a real browser."""

import base64
import io
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import suitefiles
from PIL import Image
from suitefiles import fetch

ROOT = Path(__file__).parents[1]

SUITE = {**suitefiles.TINY_MORDAL, "name": "report-test"}

# what a Mordal run's page shows; a grid run's page has no clusters, rungs or fits
MORDAL_SECTIONS = {"header", "encoder-similarity", "llm-similarity", "grid", "rungs", "fits", "cost", "compare"}


def harness(*args):
    return subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


class Page(HTMLParser):
    """Sections (by id), images (src, alt, data-file) and every URL-valued attribute."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.urls, self.tags = [], [], [], []
        self.section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "section":
            self.section = attrs.get("id")
            self.sections.append(self.section)
        if tag == "img":
            self.images.append({**attrs, "section": self.section})
        for name in ("src", "href", "action", "data", "poster"):
            if attrs.get(name):
                self.urls.append(attrs[name])


def parse(page: Path) -> Page:
    p = Page()
    p.feed(page.read_text(encoding="utf-8"))
    return p


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(store, mordal run, grid run, page printed by `harness run --report`)."""
    tmp = tmp_path_factory.mktemp("report")
    store = tmp / "s.duckdb"
    mordal = suitefiles.write_suite(tmp, SUITE, "mordal.yaml")
    grid = suitefiles.write_suite(tmp, SUITE, "grid.yaml", **{"search.strategy": "grid"})
    first = harness("run", mordal, "--store", store, "--report")
    assert first.returncode == 0, first.stderr
    printed = [line for line in first.stdout.splitlines() if line.startswith("report: ")]
    assert len(printed) == 1, first.stdout
    mordal_run = fetch(store, "select run_id from runs where strategy = 'mordal'", one=True)[0]
    second = harness("run", grid, "--store", store)
    assert second.returncode == 0, second.stderr
    grid_run = fetch(store, "select run_id from runs where strategy = 'grid'", one=True)[0]
    return store, mordal_run, grid_run, Path(printed[0].split(": ", 1)[1])


def test_run_report_flag_writes_the_page_beside_the_store(runs):
    store, mordal_run, _, page = runs
    assert page == store.parent / "reports" / mordal_run / "report.html" and page.is_file()
    # written before the grid existed: everything but the comparison
    assert set(parse(page).sections) == MORDAL_SECTIONS - {"compare"}


def test_report_has_every_section_with_decodable_images_and_no_external_url(runs, tmp_path):
    store, mordal_run, grid_run, _ = runs
    before = fetch(store, "select count(*) from runs", one=True)
    out = harness("report", mordal_run, "--store", store, "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip())
    assert page == tmp_path / "r" / "report.html"
    parsed = parse(page)
    assert set(parsed.sections) == MORDAL_SECTIONS  # the grid in the store is found by itself
    assert "script" not in parsed.tags and "link" not in parsed.tags and "iframe" not in parsed.tags
    assert all(u.startswith("data:image/png;base64,") for u in parsed.urls), \
        [u[:40] for u in parsed.urls if not u.startswith("data:")]
    by_section = {}
    for img in parsed.images:
        by_section.setdefault(img["section"], []).append(img)
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert data == (page.parent / img["data-file"]).read_bytes()  # the PNG beside the page
        image = Image.open(io.BytesIO(data))
        image.verify()
        width, height = Image.open(io.BytesIO(data)).size
        assert 300 <= width <= 3000 and 150 <= height <= 4000, (img["data-file"], width, height)
        assert img["alt"]
    # three encoders, each its own cluster (t_ve 1): one LLM similarity matrix per encoder
    assert len(by_section["encoder-similarity"]) == 1 and len(by_section["llm-similarity"]) == 3
    for key in ("grid", "rungs", "fits", "cost", "compare"):
        assert len(by_section[key]) == 1, key
    text = page.read_text()
    assert mordal_run in text and grid_run in text and "runner-up" in text
    assert fetch(store, "select count(*) from runs", one=True) == before  # read-only


def test_report_figures_match_the_store(runs, tmp_path):
    """The page's numbers are the store's: top-1 and tau of the comparison, the fitted
    candidates, the cost total; the fit's interval brackets the prediction."""
    from harness.report import compare
    from harness.report_page import _cost_parts, _fits
    from harness.store import Store

    store, mordal_run, grid_run, _ = runs
    page = Path(harness("report", mordal_run, "--store", store, "--out", tmp_path).stdout.strip())
    text = page.read_text()
    with Store.open(store, read_only=True) as st:
        row = compare(st, mordal_run, grid_run)[0]
        fits = _fits(st, mordal_run)
        parts = _cost_parts(st, mordal_run, "mordal")
        charged = st.query("select samples from run_costs where run_id = ?", [mordal_run])[0]["samples"]
    assert f"weighted Kendall tau (top 10) {row['weighted_tau_top10']:.3f}" in text
    assert ("top-1: <b>hit</b>" if row["top1"] else "top-1: <b>miss</b>") in text
    assert fits and all(f["lower"] <= f["predicted"] <= f["upper"] for f in fits)
    assert all(f["measured"] is not None for f in fits)  # the grid trained every candidate at r = 1
    # every charged sample is in one part of the cost breakdown, and nowhere twice
    assert sum(p["trained_samples"] + p["reused_samples"] for p in parts) == charged
    assert f"{charged:,} training samples" in text


def test_grid_report_and_history(runs, tmp_path):
    store, mordal_run, grid_run, _ = runs
    out = harness("report", grid_run, "--store", store, "--out", tmp_path / "g")
    assert out.returncode == 0, out.stderr
    assert set(parse(Path(out.stdout.strip())).sections) == {"header", "grid", "cost"}
    out = harness("report", "--history", "--store", store, "--out", tmp_path / "h")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip())
    parsed = parse(page)
    assert parsed.sections == ["header", "task-0"] and len(parsed.images) == 1
    assert mordal_run in page.read_text() and grid_run in page.read_text()


def test_report_of_another_strategy_shows_what_it_has(runs, tmp_path):
    """A gw-prescreen run (no clusters, rungs or fits) gets the sections it has data for."""
    store, _, grid_run, _ = runs
    suite = suitefiles.write_suite(tmp_path, SUITE, "gw.yaml", **{
        "search": {"strategy": "gw-prescreen", "options": {"samples": 16, "train_top": 1}}})
    out = harness("run", suite, "--store", store, "--report")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    parsed = parse(page)
    assert set(parsed.sections) == {"header", "grid", "cost", "compare"}
    assert grid_run in page.read_text() and len(parsed.images) == 3


def test_report_bad_input_is_a_clean_error(runs, tmp_path):
    store, mordal_run, _, _ = runs
    for args, words in ((["no-such-run"], "no run 'no-such-run'"),
                        ([mordal_run, "--compare", mordal_run], "that run is not a grid"),
                        (["--history", "--task", "shapes:nope"], "no run ranked task 'shapes:nope'"),
                        (["--task", "shapes:color"], "--task goes with --history")):
        out = harness("report", *args, "--store", store, "--out", tmp_path / "x")
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
    empty = harness("report", "--store", tmp_path / "none.duckdb")
    assert empty.returncode != 0 and "no store at" in empty.stderr and "Traceback" not in empty.stderr


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_report_renders_in_a_real_browser(runs, tmp_path):
    """Headless Chromium (installed by .ci/run) renders the page; the screenshot is not blank."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (.ci/run installs Debian's `chromium` with apt; "
                    "install it to run this test)")
    store, mordal_run, _, _ = runs
    page = Path(harness("report", mordal_run, "--store", store, "--out", tmp_path).stdout.strip())
    shot = tmp_path / "shot.png"
    out = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                          f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2000)
    pixels = np.asarray(image).reshape(-1, 3).astype(int)
    ink = float((pixels.sum(axis=1) < 600).mean())
    colours = len({tuple(p) for p in pixels[::7]})
    # text, tables and the first heatmaps: far from a blank (all-white) or error page
    assert ink > 0.03 and colours > 100, (ink, colours)


@pytest.mark.slow
def test_quickstart_with_report(tmp_path):
    """The README's `harness run suites/quickstart.yaml --report`, for real (minutes)."""
    store = tmp_path / "s.duckdb"
    out = harness("run", ROOT / "suites" / "quickstart.yaml", "--store", store, "--report")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert set(parse(page).sections) == MORDAL_SECTIONS - {"compare"}
