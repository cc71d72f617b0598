"""A real headless browser for tests: Debian's chromium (installed by .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "test-artifacts"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("HPO_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium not found and HPO_REQUIRE_BROWSER=1 (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    return exe


def _run(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def render(url: str, budget_ms: int = 15000) -> tuple[str, list[str]]:
    """The DOM after scripts ran, and the page's console errors."""
    result = _run(["--enable-logging=stderr", "--v=0", f"--virtual-time-budget={budget_ms}",
                   "--dump-dom", url])
    errors = [line for line in result.stderr.splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    return result.stdout, errors


def screenshot(url: str, name: str, size: str = "1400,1000", budget_ms: int = 15000) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / name
    path.unlink(missing_ok=True)
    _run([f"--window-size={size}", f"--virtual-time-budget={budget_ms}",
          f"--screenshot={path}", url])
    assert path.is_file() and path.stat().st_size > 10_000, f"no screenshot at {path}"
    return path
