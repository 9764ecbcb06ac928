"""Headless Chromium for the HTML report tests (Debian's chromium and chromium-driver,
driven by selenium; nothing is downloaded at run time).

Where .ci/run installs the browser (root with apt-get) or under CI, a missing browser
fails the test loudly; elsewhere it skips with the reason and the command that fixes it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
INSTALL = "apt-get install -y chromium chromium-driver && pip install -e '.[test]'"


def required() -> bool:
    return bool(os.environ.get("CI")) or (os.geteuid() == 0 and shutil.which("apt-get") is not None)


def _missing(why: str):
    if required():
        pytest.fail(f"the browser test needs {why} ({INSTALL}); .ci/run installs it", pytrace=False)
    pytest.skip(f"{why} is missing: {INSTALL}")


def chromium():
    """A headless Chromium page of 1400x1000 CSS pixels that resolves no host name (the
    report must open offline)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("the selenium package")
    binary = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
    driver = shutil.which(DRIVER)
    if binary is None or driver is None:
        _missing("Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


OVERLAPS = """
const out = [];
for (const svg of document.querySelectorAll('svg.chart')) {
  const frame = svg.getBoundingClientRect();
  const boxes = [...svg.querySelectorAll('text.point-label, text.bar-label')].map(t => [t.textContent, t.getBoundingClientRect()]);
  for (const [name, b] of boxes) {
    if (b.left < frame.left - 0.5 || b.right > frame.right + 0.5 || b.top < frame.top - 0.5 || b.bottom > frame.bottom + 0.5)
      out.push(['clipped', name]);
  }
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i][1], b = boxes[j][1];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
      out.push(['overlap', boxes[i][0], boxes[j][0]]);
  }
}
return out;
"""

LOOK = """
const labels = document.querySelectorAll('svg text.point-label').length;
const points = document.querySelectorAll('svg g.point').length;
const sections = [...document.querySelectorAll('section')].map(s => [s.id, s.querySelector('h2').textContent,
  s.getBoundingClientRect().height > 0]);
const wrapped = [...document.querySelectorAll('td.num')].filter(td => {
  const r = document.createRange(); r.selectNodeContents(td); return r.getClientRects().length > 1; })
  .map(td => td.textContent);
return {labels, points, sections, wrapped, resources: performance.getEntriesByType('resource').length,
        width: document.documentElement.scrollWidth, inner: window.innerWidth};
"""


def look(driver, path: Path) -> dict:
    """What a reader sees of the page at `path`: labels, sections, wrapped numbers, what it
    loaded from elsewhere, overlaps, console errors."""
    driver.get(path.resolve().as_uri())
    seen = driver.execute_script(LOOK)
    seen["overlaps"] = driver.execute_script(OVERLAPS)
    seen["console"] = [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    return seen
