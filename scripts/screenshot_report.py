"""Screenshots of a comparison report in headless Chromium, at 1280 px and on a phone width, for docs/.

    python scripts/screenshot_report.py ragtune-demo/report.html docs/

Needs Debian's chromium and chromium-driver and the test extras (selenium). Prints, for each width, whether the
page or any of its tables scrolls sideways.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

WIDTHS = {"1280": (1280, 2400), "phone": (390, 2400)}
OVERFLOWING = ("return [...document.querySelectorAll('.scroll')].filter(e => e.scrollWidth > e.clientWidth + 1)"
               ".length")


def main(report: Path, out_dir: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--hide-scrollbars"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name, (width, height) in WIDTHS.items():
            browser.set_window_size(width, height)
            browser.get(report.resolve().as_uri())
            page = browser.execute_script("return document.documentElement.scrollWidth")
            target = out_dir / f"report-{name}.png"
            browser.get_screenshot_as_file(str(target))
            print(f"{target}: page {page} px wide in a {width} px window, "
                  f"{browser.execute_script(OVERFLOWING)} table(s) scrolling sideways")
    finally:
        browser.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
