"""Make the README's pictures from ``make demo``'s output, with the project's own commands.

    make demo && .venv/bin/python docs/make_images.py

- ``docs/img/demo_eval.png``: a frame of ``demo_out/eval.mp4`` (``avatar eval``'s side-by-side video);
- ``docs/img/viewer.png``: ``avatar view demo_out/subject`` in headless Chromium (Debian's, driven by
  Playwright), speaking one of its sample voices.

Only the demo's synthetic sample is pictured: no footage of a real person goes into the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_out"
IMG = ROOT / "docs" / "img"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def eval_frame(at_s: float = 0.6) -> None:
    with av.open(str(DEMO / "eval.mp4")) as c:
        for frame in c.decode(video=0):
            if frame.time >= at_s:
                rgb = frame.to_ndarray(format="rgb24")
                break
    cv2.imwrite(str(IMG / "demo_eval.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def viewer_screenshot() -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium: sudo apt-get install chromium")
    avatar = Path(sys.executable).with_name("avatar")
    proc = subprocess.Popen([str(avatar), "view", str(DEMO / "subject"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        while url is None:
            line = proc.stdout.readline()
            if not line:
                sys.exit("avatar view did not start")
            m = re.search(r"serving \S+ at (http://\S+)", line)
            url = m.group(1) if m else None
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1000, "height": 552})
            page.goto(url)
            page.wait_for_function("() => document.getElementById('clip').options.length > 0")
            page.click("[data-testid=start]")
            page.wait_for_function("() => window.viewerStats.shown > 5", timeout=60000)
            voice = page.evaluate("() => [...document.getElementById('clip').options].map(o => o.value)"
                                  ".find(v => v.startsWith('sample-')) || document.getElementById('clip').value")
            page.select_option("[data-testid=clip]", voice)
            page.click("[data-testid=play]")
            page.wait_for_function("() => window.viewerStats.latencyMs !== null", timeout=30000)
            time.sleep(1.5)
            page.screenshot(path=str(IMG / "viewer.png"))
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    if not (DEMO / "eval.mp4").exists():
        sys.exit("run `make demo` first")
    IMG.mkdir(parents=True, exist_ok=True)
    eval_frame()
    viewer_screenshot()
    print(f"wrote {IMG / 'demo_eval.png'} and {IMG / 'viewer.png'}")
