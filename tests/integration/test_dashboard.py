"""The dashboard in a real headless Chromium (Debian's, driven by playwright): it loads from the engine's
port alone, shows a mapping created through boto3, updates as records flow, and shows the bisect tree of a
poison batch down to the record alone, its discard and its destination delivery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.integration.test_sqs import _map, _queue, _send, _sqs

REGION = "us-east-1"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})  # a laptop screen
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # nothing but the engine: a request elsewhere would fail without internet access
    outside: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith("http://127.0.0.1:") else outside.append(r.url))
    yield pg
    context.close()
    assert not errors, errors
    assert not outside, outside


def test_a_mapping_shows_and_updates_as_records_flow(
    page: Page, sqs_endpoint: str, start_engine: Any, unique_name: Any
) -> None:
    sqs = _sqs(sqs_endpoint)
    url, arn = _queue(sqs, unique_name("dash"))
    eng = start_engine(sqs_endpoint)
    uuid = _map(eng, arn, "fn-ok", BatchSize=10)
    page.goto(f"{eng.url}/dashboard")
    row = page.locator(f"#mappings tbody tr[data-uuid='{uuid}']")
    expect(row).to_contain_text("Enabled")
    expect(row).to_contain_text(arn)
    expect(row).to_contain_text("fn-ok")
    expect(row.locator("td").nth(6)).to_have_text("0")  # no record yet
    _send(sqs, url, [f"m{i}" for i in range(25)])
    expect(row.locator("td").nth(6)).to_have_text("25", timeout=15_000)  # polled, no reload
    row.click()
    expect(page.locator("#detail-uuid")).to_have_text(uuid)
    expect(page.locator("#invocations tbody tr").first).to_contain_text("success")
    # the charts are drawn (uPlot canvases), sized for the screen
    assert page.locator("#detail canvas").count() >= 3


def test_a_poison_batch_shows_its_bisect_tree(page: Page, poisoned: Any) -> None:
    with poisoned() as run:
        page.goto(f"{run.eng.url}/dashboard")
        page.locator(f"#mappings tbody tr[data-uuid='{run.uuid}']").click()
        expect(page.locator("#mappings tbody tr.selected")).to_contain_text("fn-stream_poison")
        # the first attempt of the batch of 16: its row in the recent invocations
        first = page.locator("#invocations tbody tr", has_text="function_error").last
        expect(first).to_contain_text("16")
        first.click()
        tree = page.locator("#tree li")
        expect(tree).to_have_count(11, timeout=10_000)
        depths = [int(d) for d in tree.evaluate_all("items => items.map(i => i.dataset.depth)")]
        outcomes = tree.evaluate_all("items => items.map(i => i.dataset.outcome)")
        # the batch of 16, then the halves holding the poison down to it alone (each first half first, its
        # ok sibling after), its discard and delivery, and last the batch's other half of 8
        assert outcomes == [
            "function_error",
            "function_error",
            "invoked",
            "function_error",
            "invoked",
            "function_error",
            "invoked",
            "function_error",
            "discarded",
            "destination_sent",
            "invoked",
        ]
        assert depths == [0, 1, 2, 2, 3, 3, 4, 4, 0, 0, 1]
        expect(page.locator("#tree")).to_contain_text("RetryAttemptsExhausted")
