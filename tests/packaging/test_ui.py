"""`modelreg ui` in a real browser: Debian's Chromium, driven by Playwright.

`make test` installs Chromium (system-deps); where it is missing the tests are skipped,
saying why. MODELREG_UI_SCREENSHOTS=DIR keeps the screenshots (docs/ui.md shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("jinja2")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
POLICY = """
[stages.production]
exclusive = true
require_approvals = 1
four_eyes = true
require_checks = ["latency"]
"""
SCIENTIST, ENGINEER = "scientist@example.com", "engineer@example.com"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ui")
    assert run_cli("init", root).returncode == 0
    store = root / ".modelreg"
    (store / "config.toml").write_text(POLICY)
    for i, mae in enumerate((44.1, 41.7, 42.9), start=1):
        f = root / f"model-{i}.bin"
        f.write_bytes(f"weights {i}\n".encode())
        done = run_cli("register", "forecast", f, "--no-git", "-p", f"alpha={i / 2}",
                       "-m", f"mae={mae}", "-t", "team=forecasting", registry=store,
                       env={"MODELREG_ACTOR": SCIENTIST})
        assert done.returncode == 0, done.stderr
    return store


@pytest.fixture(scope="module")
def ui(store: Path) -> Iterator[str]:
    env = {**os.environ, "MODELREG_DIR": str(store), "MODELREG_ACTOR": ENGINEER}
    proc = subprocess.Popen([sys.executable, "-m", "modelreg", "ui", "--port", "0"], env=env,
                            text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "modelreg ui at" not in line:
        proc.kill()
        raise AssertionError(line + proc.stderr.read())
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    yield line.strip().rsplit(" ", 1)[1].rstrip("/")
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (make test installs Debian's chromium)")
    with sync_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield instance
        instance.close()


def shot(page: Any, name: str, tmp_path: Path) -> None:
    keep = os.environ.get("MODELREG_UI_SCREENSHOTS")
    target = Path(keep) if keep else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)


def events(store: Path) -> list[dict[str, Any]]:
    done = run_cli("history", "forecast", "--json", registry=store)
    assert done.returncode == 0, done.stderr
    found: list[dict[str, Any]] = json.loads(done.stdout)["events"]
    return found


def test_find_a_model_read_its_lineage_and_approve(store: Path, ui: str, browser: Any,
                                                   tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(ui + "/")
    shot(page, "models", tmp_path)
    page.click("text=forecast")
    assert page.locator("h1").inner_text() == "forecast"
    assert page.locator("svg.chart").count() == 1
    shot(page, "versions", tmp_path)
    page.click("a[href='/models/forecast/2']")
    lineage = page.locator("#lineage").inner_text()
    assert "param alpha" in lineage and "1.0" in lineage
    assert "metric mae" in lineage and "41.7" in lineage
    before = len(events(store))
    page.select_option("#approve-form select[name=stage]", "production")
    page.fill("#approve-form input[name=reason]", "numbers look right")
    page.click("#approve")
    page.wait_for_selector("text=approve: done.")
    assert "approval for production" in page.locator("#checks").inner_text()
    shot(page, "version", tmp_path)
    after = events(store)
    assert len(after) == before + 1
    assert after[0]["action"] == "approve"
    assert after[0]["actor"] == ENGINEER
    page.close()


def test_a_refused_promotion_shows_why_and_changes_nothing(store: Path, ui: str,
                                                           browser: Any,
                                                           tmp_path: Path) -> None:
    page = browser.new_page()
    page.goto(ui + "/models/forecast/3")
    page.select_option("#promote-stage", "staging")
    page.click("#promote")
    page.wait_for_selector("text=promote: done.")
    assert "staging" in page.locator("h1").inner_text()
    before = events(store)
    page.select_option("#promote-stage", "production")
    page.click("#promote")
    box = page.locator("#refused")
    box.wait_for()
    text = box.inner_text()
    assert "promote refused; nothing was changed." in text
    assert "latency" in text  # the required check has no result
    assert "approval" in text  # and nobody approved it
    shot(page, "refused", tmp_path)
    assert events(store) == before
    page.close()


def test_the_page_follows_the_store(store: Path, ui: str, browser: Any) -> None:
    page = browser.new_page()
    page.goto(ui + "/models/forecast/1")
    assert "development" in page.locator("h1").inner_text()
    done = run_cli("promote", "forecast@1", "--to", "staging", registry=store,
                   env={"MODELREG_ACTOR": SCIENTIST})
    assert done.returncode == 0, done.stderr
    page.wait_for_function(
        "document.querySelector('h1').textContent.includes('staging')", timeout=15000)
    page.close()


def test_forms_need_their_csrf_token(store: Path, ui: str) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(ui + "/models/forecast/1/archive", data=b"reason=x",
                                 method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=30)  # noqa: S310 - loopback
    assert refused.value.code == 403
    assert events(store)[0]["action"] != "archive"


def test_other_addresses_need_a_flag_and_a_token(store: Path) -> None:
    done = run_cli("ui", "--host", "0.0.0.0", "--port", "0", registry=store)  # noqa: S104
    assert done.returncode == 2
    assert "--allow-remote" in done.stderr
