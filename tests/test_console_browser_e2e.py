"""The console in a real browser (Debian's chromium driven by Playwright, nothing downloaded): after a chain run
on the test session's local cloud, open the overview, follow a dataset to its run, open the pending review,
approve it with a reason, and see the champion and the ledger change. Any JavaScript error fails the test; each
page is saved as a screenshot under the test's temporary directory (and, with TOLLGATE_SCREENSHOTS=DIR, there:
the README's pictures come from this test)."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import wine_frame
from tests.test_chain_e2e import tollgate
from tests.test_recovery_e2e import wait_for
from tollgate import inference, tracing

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("TOLLGATE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed: `apt-get install chromium` (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it and requires this test")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_a_review_approved_in_the_browser_changes_the_champion_and_the_ledger(browser, local_cloud, tmp_path):
    frame = wine_frame(300, seed=3)
    data = tmp_path / "vintage.csv"
    frame.to_csv(data, index=False)
    raw = yaml.safe_load(inference.infer(frame, "vintage", "cultivar", with_baseline=False))
    raw["policy"] = {"threshold": 0.5, "min_holdout_rows": 100_000}   # too few rows: a person decides
    spec = tmp_path / "vintage.yaml"
    spec.write_text(yaml.safe_dump(raw))
    assert tollgate(local_cloud, "spec", "push", str(spec)).returncode == 0
    dropped = tollgate(local_cloud, "drop", str(data), "--dataset", "vintage", "--wait", "--json")
    run = json.loads(dropped.stdout)
    assert run["decision"] == "review", run
    wait_for(lambda: any(s["name"] == "decider" for s in tracing.local_spans(local_cloud.home / "traces",
                                                                              run["run_id"])),
             timeout=30, what="the decider's span")   # it is exported as the decider's handler returns

    shots = Path(os.environ.get("TOLLGATE_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(120_000)
    base = local_cloud.env()["TOLLGATE_CONSOLE_URL"]

    page.goto(base)
    assert "vintage" in page.locator("#datasets").inner_text()
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)
    page.click("#datasets >> text=vintage")
    assert page.locator("#serving").inner_text() == "nothing"
    page.screenshot(path=str(shots / "console-dataset.png"), full_page=True)
    page.click(f"#runs >> text={run['run_id']}")
    assert page.locator("#decision").inner_text() == "review"
    spans = page.locator("#spans").inner_text()   # the run's trace, from the notification to the decision
    assert all(step in spans for step in ("ingest", "validator", "trainer", "evaluator", "decider")), spans
    page.screenshot(path=str(shots / "console-run.png"), full_page=True)

    page.click("text=review pending")
    page.fill("textarea[name=reason]", "the cultivars are well separated; approved in the browser test")
    page.screenshot(path=str(shots / "console-review.png"), full_page=True)
    page.click("#approve")
    page.wait_for_url(f"**/runs/{run['run_id']}")
    assert page.locator("#decision").inner_text() == "promote"

    page.goto(f"{base}/datasets/vintage")
    assert page.locator("#serving").inner_text() == "v1"
    ledger = page.locator("#ledger").inner_text()
    assert "approved" in ledger and "approved in the browser test" in ledger
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    page.fill("#served-at-form input[name=at]", now)            # what served at T, with the time picker
    page.click("#served-at-form button")
    assert "v1" in page.locator("#served-at").inner_text()
    page.screenshot(path=str(shots / "console-dataset-after.png"), full_page=True)
    page.close()
    assert errors == [], errors
    status = json.loads(tollgate(local_cloud, "status", "--json").stdout)
    [vintage] = [d for d in status["datasets"] if d["dataset"] == "vintage"]
    assert vintage["champion"]["version"] == 1 and status["console_url"] == base
