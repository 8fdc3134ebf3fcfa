"""``harness report``: a real Mordal run and a real grid run of the same suite, their report
parsed as HTML (sections, images that decode, nothing external) and rendered in a real browser."""

import base64
import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import helpers
from PIL import Image
from helpers import ROOT, fetch, harness, invoke

SUITE = {**helpers.TINY_MORDAL, "name": "report-test"}

# what a Mordal run's page shows, in its order: the answer first, the similarity heatmaps last;
# a grid run's page has no clusters, rungs or fits
MORDAL_ORDER = ["answer", "header", "grid", "rungs", "fits", "cost", "compare", "encoder-similarity",
                "llm-similarity"]
MORDAL_SECTIONS = set(MORDAL_ORDER)
HINT = "no grid of these candidates is in the store"


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
def runs(searched_once, tmp_path_factory):
    """(store, mordal run, grid run, page printed by `harness run --report`): this module's copy
    of the session's searched store (tests/conftest.py): a Mordal run with --report, then a grid
    run of the same candidates."""
    store = searched_once.copy(tmp_path_factory.mktemp("report") / "searched")
    return store, searched_once.mordal_run, searched_once.grid_run, store.parent / searched_once.page


def test_run_report_flag_writes_the_page_beside_the_store(runs):
    store, mordal_run, _, page = runs
    assert page == store.parent / "reports" / mordal_run / "report.html" and page.is_file()
    # written before the grid existed: everything but the comparison
    assert parse(page).sections == [s for s in MORDAL_ORDER if s != "compare"]


def test_report_has_every_section_with_decodable_images_and_no_external_url(runs, tmp_path):
    store, mordal_run, grid_run, _ = runs
    before = fetch(store, "select count(*) from runs", one=True)
    out = invoke("report", mordal_run, "--store", store, "--out", tmp_path / "r")
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
    # three encoders, each its own cluster (t_ve 1): one LLM similarity matrix per encoder, all
    # three in one compact panel
    assert len(by_section["encoder-similarity"]) == 1 and len(by_section["llm-similarity"]) == 1
    assert "answer" not in by_section and "header" not in by_section
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
    page = Path(invoke("report", mordal_run, "--store", store, "--out", tmp_path).stdout.strip())
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
    out = invoke("report", grid_run, "--store", store, "--out", tmp_path / "g")
    assert out.returncode == 0, out.stderr
    assert parse(Path(out.stdout.strip())).sections == ["answer", "header", "grid", "cost"]
    out = invoke("report", "--history", "--store", store, "--out", tmp_path / "h")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip())
    parsed = parse(page)
    assert parsed.sections == ["header", "task-0"] and len(parsed.images) == 1
    assert mordal_run in page.read_text() and grid_run in page.read_text()


def test_report_of_another_strategy_shows_what_it_has(runs, tmp_path):
    """A gw-prescreen run (no clusters, rungs or fits) gets the sections it has data for."""
    store, _, grid_run, _ = runs
    suite = helpers.write_suite(tmp_path, SUITE, "gw.yaml", **{
        "search": {"strategy": "gw-prescreen", "options": {"samples": 16, "train_top": 1}}})
    out = invoke("run", suite, "--store", store, "--report")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    parsed = parse(page)
    assert parsed.sections == ["answer", "header", "grid", "cost", "compare"]
    assert grid_run in page.read_text() and len(parsed.images) == 3


def test_report_bad_input_is_a_clean_error(runs, tmp_path):
    store, mordal_run, _, _ = runs
    for args, words in ((["no-such-run"], "no run 'no-such-run'"),
                        ([mordal_run, "--compare", mordal_run], "that run is not a grid"),
                        (["--history", "--task", "shapes:nope"], "no run ranked task 'shapes:nope'"),
                        (["--task", "shapes:color"], "--task goes with --history")):
        out = invoke("report", *args, "--store", store, "--out", tmp_path / "x")
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
    empty = invoke("report", "--store", tmp_path / "none.duckdb")
    assert empty.returncode != 0 and "no store at" in empty.stderr and "Traceback" not in empty.stderr


def _section_html(text: str, key: str) -> str:
    start = text.index(f'<section id="{key}">')
    return text[start:text.index("</section>", start)]


def _drawn(monkeypatch, store, run_id, out, **kwargs):
    """``build_report`` in-process: the page and every figure it drew, by file name."""
    from harness import report_page
    from harness.store import Store

    figures = {}
    monkeypatch.setattr(report_page, "FIGURE_HOOK", lambda fig, name: figures.__setitem__(name, fig))
    with Store.open(store, read_only=True) as st:
        page = report_page.build_report(st, run_id, out=out, **kwargs)
    return page, figures


def test_the_answer_leads_and_the_similarity_heatmaps_come_last(runs, tmp_path):
    """Sections in order; the answer (harness.answer's sentences) before any figure."""
    from harness.answer import answer_of
    from harness.report_page import _code
    from harness.store import Store

    store, mordal_run, grid_run, _ = runs
    page = Path(invoke("report", mordal_run, "--store", store, "--out", tmp_path).stdout.strip())
    text = page.read_text()
    assert parse(page).sections == MORDAL_ORDER
    assert text.index('<section id="answer">') < text.index("<img")
    answer = _section_html(text, "answer")
    with Store.open(store, read_only=True) as st:
        lines = answer_of(st, mordal_run).lines
    assert lines[0].startswith("best VLM: ") and any(line.startswith("runner-up: ") for line in lines)
    assert any(line.startswith("pick vs runner-up: ") for line in lines)
    assert any(f"for the grid of 6 (run {grid_run})" in line for line in lines)  # the cost vs the grid
    for line in lines:
        assert _code(line) in answer, line
    assert HINT not in text  # a grid is in the store
    # the header no longer repeats the pick; it follows the answer
    assert "best VLM" not in _section_html(text, "header")


def test_the_grid_hint_appears_only_when_no_grid_is_stored(runs):
    """The page `harness run --report` wrote before the grid existed says how to get one."""
    from harness.answer import grid_hint
    from harness.report_page import _code

    _, mordal_run, _, first_page = runs
    answer = _section_html(first_page.read_text(), "answer")
    assert HINT in answer
    hint = grid_hint({"run_id": mordal_run})
    assert f'<p class="hint">{_code(hint)}</p>' in answer and "<code>" in _code(hint) and mordal_run in hint
    assert "(estimated)" in answer  # the grid-equivalent cost, estimated from the run's own trials
    assert HINT not in _section_html(first_page.read_text(), "grid")


def _titles(fig):
    suptitle = getattr(fig, "_suptitle", None)
    out = [suptitle] if suptitle is not None and suptitle.get_text() else []
    for ax in fig.axes:
        if ax.get_visible():
            out += [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
    return out


def test_no_legend_covers_a_title_or_an_axes(runs, tmp_path, monkeypatch):
    """Every figure of a Mordal page (with its comparison) and of a grid page: each legend lies
    inside the figure and off every title, suptitle and axes."""
    store, mordal_run, grid_run, _ = runs
    _, figures = _drawn(monkeypatch, store, mordal_run, tmp_path / "m")
    _, grid_figures = _drawn(monkeypatch, store, grid_run, tmp_path / "g")
    figures.update({f"grid-run {k}": v for k, v in grid_figures.items()})
    assert {"grid.png", "rungs.png", "fits.png", "cost.png", "compare.png", "llm-similarity.png",
            "encoder-similarity-0.png"} <= set(figures)
    with_legend = set()
    for name, fig in figures.items():
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
        for legend in legends:
            with_legend.add(name)
            box = legend.get_window_extent(renderer)
            page = fig.bbox
            assert (box.x0 >= page.x0 - 1 and box.y0 >= page.y0 - 1 and box.x1 <= page.x1 + 1
                    and box.y1 <= page.y1 + 1), (name, box, page)
            for title in _titles(fig):
                assert not box.overlaps(title.get_window_extent(renderer)), (name, title.get_text())
            for ax in fig.axes:
                if ax.get_visible() and legend.axes is not ax:
                    assert not box.overlaps(ax.get_window_extent(renderer)), (name, ax.get_title())
    assert {"grid.png", "rungs.png", "fits.png", "cost.png"} <= with_legend


def test_grid_colour_and_marks_follow_the_ranking(runs, tmp_path, monkeypatch):
    """The cell colour is the ranked score, the top of the scale where rank 1 is the highest; the
    #1 mark sits on the rank-1 candidate; the legend names how each score was obtained."""
    from harness.report_page import grid_figure
    from harness.store import Store

    store, mordal_run, _, _ = runs
    _, figures = _drawn(monkeypatch, store, mordal_run, tmp_path / "m")
    with Store.open(store, read_only=True) as st:
        ranking = st.query("select * from rankings where run_id = ? order by rank", [mordal_run])
    # the tiny zoo scores every candidate alike: a tie at the top is the top of the scale
    synthetic = [
        {"rank": 1, "encoder": "e:b", "llm": "l:a", "score": 0.354, "measured_or_predicted": "predicted",
         "sample_ratio": 1.0, "stage": "survivor"},
        {"rank": 2, "encoder": "e:a", "llm": "l:a", "score": 0.193, "measured_or_predicted": "measured",
         "sample_ratio": 0.25, "stage": "eliminated-inter"},
        {"rank": 3, "encoder": "e:a", "llm": "l:b", "score": 0.150, "measured_or_predicted": "measured",
         "sample_ratio": 1.0, "stage": "survivor"},
        {"rank": 4, "encoder": "e:b", "llm": "l:b", "score": None, "measured_or_predicted": "measured",
         "sample_ratio": None, "stage": "eliminated-inter"},
    ]
    grid_figure(synthetic, tmp_path, "synthetic.png", "synthetic")
    for rows, fig in ((ranking, figures["grid.png"]), (synthetic, figures["synthetic.png"])):
        ax = fig.axes[0]
        image = ax.get_images()[0]
        encoders = sorted({r["encoder"] for r in rows})
        llms = sorted({r["llm"] for r in rows})
        top = rows[0]
        if top["score"] is not None and top["score"] >= max(r["score"] for r in rows if r["score"] is not None):
            assert image.norm(top["score"]) == pytest.approx(1.0)
            assert tuple(image.to_rgba(top["score"])) == pytest.approx(tuple(image.get_cmap()(1.0)))
        for r in rows:
            cell = (llms.index(r["llm"]), encoders.index(r["encoder"]))
            marks = [t for t in ax.texts if t.get_text().split("\n")[0] == f"#{r['rank']}"]
            assert len(marks) == 1 and marks[0].get_position() == cell, (r, [m.get_position() for m in marks])
            if r["score"] is not None:
                assert image.get_array()[cell[1], cell[0]] == pytest.approx(r["score"])
    labels = [t.get_text() for legend in figures["synthetic.png"].legends for t in legend.get_texts()]
    assert labels == ["#1 (the pick)", "measured at r=1", "predicted for r=1 (scaling law)",
                      "measured at a lower ratio, then eliminated", "not trained (eliminated with its cluster)"]


def test_fits_show_measured_points_outside_the_fit(runs, tmp_path, monkeypatch):
    """A fit on r = 1/4 alone still shows the candidate's r = 1/2 score the run measured, hollow."""
    from harness.report_page import _fits, _other_points, fits_figure
    from harness.store import Store

    store, mordal_run, _, _ = runs
    with Store.open(store, read_only=True) as st:
        fit = _fits(st, mordal_run)[0]
        assert fit["others"] == []  # the real fit used every ratio the run measured (1/4 and 1/2)
        used = sorted(p["sample_ratio"] for p in fit["points"])
        assert used == [0.25, 0.5]
        narrow = {**fit, "points": [p for p in fit["points"] if p["sample_ratio"] == 0.25]}
        others = _other_points(st, mordal_run, narrow)
    assert [p["sample_ratio"] for p in others] == [0.5]
    figures = {}
    monkeypatch.setattr("harness.report_page.FIGURE_HOOK", lambda fig, name: figures.__setitem__(name, fig))
    fits_figure([{**narrow, "others": others}], tmp_path, "fits.png")
    ax = figures["fits.png"].axes[0]
    hollow = [line for line in ax.lines if line.get_markerfacecolor() == "white"]
    assert hollow and list(hollow[0].get_xdata()) == [0.5]
    labels = [t.get_text() for t in figures["fits.png"].legends[0].get_texts()]
    assert "measured, not used by the fit" in labels and "measured, used by the fit" in labels


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
    page = Path(invoke("report", mordal_run, "--store", store, "--out", tmp_path).stdout.strip())
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
    # the answer, the run's table and the candidate grid: far from a blank (all-white) or error page
    assert ink > 0.03 and colours > 100, (ink, colours)


@pytest.mark.slow
def test_quickstart_with_report(tmp_path):
    """The README's `harness run suites/quickstart.yaml --report`, for real (minutes)."""
    store = tmp_path / "s.duckdb"
    out = harness("run", ROOT / "suites" / "quickstart.yaml", "--store", store, "--report")
    assert out.returncode == 0, out.stderr
    page = Path(out.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    assert set(parse(page).sections) == MORDAL_SECTIONS - {"compare"}


def test_a_metric_registered_as_a_distance_is_drawn_as_one():
    """The report reads a metric's direction from its registration (issue 32): a third-party
    distance registered with is_distance=True, whose function carries no attribute."""
    from harness.plugin_manager import get_components
    from harness.registry import Entry
    from harness.report_page import _is_distance

    def plain_distance(a, b):
        return 0.0

    registry = get_components()["similarity_metric"]
    registry.add(Entry(kind="similarity_metric", name="test-dist", target=plain_distance,
                       plugin="test", version="0", is_distance=True))
    registry.add(Entry(kind="similarity_metric", name="test-sim", target=plain_distance,
                       plugin="test", version="0", is_distance=False))
    try:
        assert _is_distance("test-dist") and not _is_distance("test-sim")
        assert _is_distance("gw") and not _is_distance("cka")
    finally:  # the process's registry is shared with later tests
        registry._entries.pop("test-dist")
        registry._entries.pop("test-sim")
