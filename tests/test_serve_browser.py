"""The page of `bertfit serve` in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) types two texts, clicks, and finds the labels, score bars and highlighted words; uploads a CSV and checks
the file it downloads. Skipped, saying so, where Chromium is not installed (`.ci/run` installs it).

SERVE_SCREENSHOT=docs/serve-page.png saves a screenshot of the page with its results.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not CHROMIUM.is_file() or not Path(DRIVER).is_file():
    pytest.skip("no Chromium here (/usr/bin/chromium, chromedriver): apt-get install chromium chromium-driver",
                allow_module_level=True)  # fmt: skip
pytest.importorskip("fastapi", reason="serving needs: pip install 'bertfit[serve]'")
pytest.importorskip("selenium", reason="the browser test needs selenium (requirements-dev.lock)")
pytest.importorskip("captum", reason="the page's highlighted words need: pip install 'bertfit[explain]'")
import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from bertfit.prediction.classifier import Classifier  # noqa: E402
from bertfit.serving import ServeConfig, create_app  # noqa: E402

TEXTS = ["a great film and i love it", "the plot was awful and boring", "<b>bold</b> & good"]


@pytest.fixture(scope="module")
def clf(tiny_trained: Path) -> Classifier:
    return Classifier.from_pretrained(tiny_trained, dtype="fp32")


@pytest.fixture(scope="module")
def url(tiny_trained: Path, clf: Classifier):
    """The app under uvicorn in a thread of this process, on a free port of the loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(tiny_trained, ServeConfig(dtype="fp32", port=port), classifier=clf)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(600):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    window = "--window-size=1000,1300"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", window):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})  # fmt: skip
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_typed_texts_get_their_labels_bars_and_highlighted_words(browser, url: str, clf: Classifier) -> None:
    browser.get(url + "/")
    box = browser.find_element(By.ID, "texts")
    box.send_keys("\n".join(TEXTS))
    browser.find_element(By.ID, "label-button").click()
    WebDriverWait(browser, 60).until(lambda d: "shaded" in d.find_element(By.ID, "status").text)
    results = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert [r.find_element(By.CSS_SELECTOR, ".pred .label").text for r in results] == [
        p["label"] for p in clf.predict(TEXTS)
    ]
    explained = clf.explain(TEXTS)
    for result, e in zip(results, explained):
        assert len(result.find_elements(By.CSS_SELECTOR, ".bar-row")) == len(clf.labels)
        words = result.find_elements(By.CSS_SELECTOR, ".text .w")
        assert [w.text for w in words] == e.words
        strongest = max(words, key=lambda w: abs(float(w.get_attribute("data-attribution"))))
        assert strongest.text == max(zip(e.words, e.attributions), key=lambda wa: abs(wa[1]))[0]
    assert results[2].find_element(By.CSS_SELECTOR, ".text").text == TEXTS[2]  # shown as typed, never as HTML
    assert browser.find_elements(By.CSS_SELECTOR, "#results b") == []
    if os.environ.get("SERVE_SCREENSHOT"):
        browser.save_screenshot(os.environ["SERVE_SCREENSHOT"])


def test_the_keyboard_alone_labels_texts(browser, url: str, clf: Classifier) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.get(url + "/")
    box = browser.find_element(By.ID, "texts")
    box.send_keys("so sad and bad")
    box.send_keys(Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter in the box submits, as the page says
    WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .pred .label"))
    label = browser.find_element(By.CSS_SELECTOR, "#results .pred .label").text
    assert label == clf.predict(["so sad and bad"])[0]["label"]
    assert browser.switch_to.active_element.get_attribute("id") == "texts"


def test_an_uploaded_csv_downloads_labelled(browser, url: str, clf: Classifier, downloads: Path, tmp_path) -> None:
    source = tmp_path / "reviews.csv"
    source.write_text("id,text\n1,a great film\n2,awful and sad\n3,\n4,i love it\n")
    browser.get(url + "/")
    browser.find_element(By.ID, "file").send_keys(str(source))
    browser.find_element(By.ID, "file-button").click()
    link = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "download").is_displayed() and
                                            d.find_element(By.ID, "download"))  # fmt: skip
    assert link.text == "Download reviews.labelled.csv"
    link.click()
    target = downloads / "reviews.labelled.csv"
    WebDriverWait(browser, 30).until(lambda d: target.is_file() and not list(downloads.glob("*.crdownload")))
    clf.predict_file(source, tmp_path / "expected.csv")
    assert target.read_text() == (tmp_path / "expected.csv").read_text()
