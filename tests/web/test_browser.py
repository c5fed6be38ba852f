"""`tunedeck web` in a real browser: headless Chromium (the distribution's chromium and
chromium-driver, driven by Selenium) opens the printed URL, and what it shows is read from its
screenshot with tesseract. The packages are installed where missing (as root, with apt);
where they cannot be, the tests skip and say why."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from tunedeck.core.rundir import find_runs

from .conftest import TITLES, TUNEDECK, eventually

PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver", "tesseract": "tesseract-ocr"}
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900")


def _apt_install(packages: list[str]) -> str:
    """Install ``packages``; '' when done, else why not."""
    if os.geteuid() != 0:
        return "not root, so apt cannot install them"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "install", "-y", "-q", *packages], ["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", *packages]):
        done = subprocess.run(step, capture_output=True, text=True, env=env)
        if step[1] == "install" and done.returncode == 0:
            return ""
    return (done.stderr.strip().splitlines() or ["apt-get failed"])[-1]


@pytest.fixture(scope="session")
def browser_tools() -> None:
    missing = [package for tool, package in PACKAGES.items() if not shutil.which(tool)]
    if missing:
        why = _apt_install(missing)
        if why:
            pytest.skip(f"headless Chromium checks need {' '.join(missing)} ({why}): "
                        f"apt-get install {' '.join(missing)}")


@pytest.fixture
def chromium(browser_tools, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    (tmp_path / "downloads").mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(tmp_path / "downloads"),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    with contextlib.suppress(Exception):  # a test may have closed the browser itself
        driver.quit()


def read_screen(driver, path) -> str:
    """What the tab shows, as text: its screenshot (kept at ``path``) read by tesseract."""
    driver.save_screenshot(str(path))
    done = subprocess.run(["tesseract", str(path), "-"], capture_output=True, text=True)
    return done.stdout


async def test_chromium_shows_the_five_panes_at_once(web, chromium, tmp_path):
    server = web()
    chromium.get(server.url)
    screenshot = tmp_path / "tunedeck-web.png"  # kept with the test's files, to look at

    def titles_shown():
        text = read_screen(chromium, screenshot)
        return text if all(title in text for title in TITLES) else None

    text = await eventually(titles_shown, "the five pane titles in the screenshot")
    print(f"screenshot: {screenshot}")
    assert all(title in text for title in TITLES)
    # No click was needed: nothing here clicked, and the page has drawn the app's output.
    assert "-first-byte" in chromium.execute_script("return document.body.className")
    assert len(server.apps()) == 1


async def test_a_run_started_in_chromium_survives_closing_the_tab(web, web_project, chromium,
                                                                 stop_runs, tmp_path, isolated_home):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = web()
    chromium.get(server.url)
    screenshot = tmp_path / "before-the-run.png"
    await eventually(lambda: "starts a run" in read_screen(chromium, screenshot), "the form")
    [app] = server.apps()
    chromium.execute_script("document.querySelector('.xterm-helper-textarea').focus()")
    ActionChains(chromium).key_down(Keys.CONTROL).send_keys("r").key_up(Keys.CONTROL).perform()
    [run] = await eventually(lambda: [r for r in find_runs(web_project / "runs")
                                      if r.state() == "running"], "the run started from the page")
    chromium.quit()  # the tab (and the browser) closed

    await eventually(lambda: not server.apps(), "the closed tab's app to exit")
    listing = subprocess.run([TUNEDECK, "runs", "--root", str(web_project / "runs")],
                             capture_output=True, text=True, env={"TUNEDECK_HOME": str(isolated_home)})
    assert run.name in listing.stdout and "running" in listing.stdout, listing.stdout
    assert app not in server.apps()


async def test_a_transcript_saved_in_chromium_is_downloaded_by_it(web, web_project, chromium, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = web()
    chromium.get(server.url)
    screenshot = tmp_path / "chat.png"

    def shows(text: str):
        return lambda: text in read_screen(chromium, screenshot)

    await eventually(shows("starts a run"), "the form")
    chromium.execute_script("document.querySelector('.xterm-helper-textarea').focus()")
    ActionChains(chromium).send_keys("5").perform()
    await eventually(shows("Compare"), "the Chat pane and its keys")
    ActionChains(chromium).send_keys("who are you" + Keys.ENTER).perform()
    await eventually(shows("answered"), "the answer")
    ActionChains(chromium).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()

    # No popup to allow, no click: the browser saves the file the app delivers.
    [downloaded] = await eventually(lambda: list((tmp_path / "downloads").glob("chat-*.json")),
                                    "the transcript in the browser's downloads")
    [saved] = list((web_project / "chats").glob("chat-*.json"))
    assert downloaded.name == saved.name
    assert downloaded.read_text() == saved.read_text()
