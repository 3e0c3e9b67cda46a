"""The status page as a browser renders it: headless Chromium against a real ``muxd demo``.

Starts ``muxd demo`` (simulated modems, Onlinesim stand-in and the daemon in one process), waits
until SMS are forwarded, then has Debian's ``chromium`` load ``/``, run the page's script and dump
the resulting DOM, which must hold one ready row per port and the flow totals. Chromium is
required: when it is missing the test fails and names ``.ci/install-ops.sh``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from .opstools import REPO, poll

pytestmark = pytest.mark.timeout(120)

DEMO_PORTS = 8
DEMO_RATE = 10.0  # SMS/s injected by the simulator
DEMO_DURATION = 60.0  # longer than this module runs; the fixture stops the demo

CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "install it with .ci/install-ops.sh (Debian package 'chromium')"
# Headless and quiet: no sandbox (root in CI), no GPU, small /dev/shm is fine, and none of the
# background requests (component updates, sync, QUIC probes) that would go out on the network.
# --enable-logging puts the page's console (script errors, CSP violations) on stderr.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
)
# Virtual time the page gets to fetch the API and render (it polls every 2 s).
VIRTUAL_TIME_BUDGET_MS = 5000
WINDOW_SIZE = "1400,900"
MIN_SCREENSHOT_BYTES = 10 * 1024

# Deadlines for the external processes.
DEMO_START_TIMEOUT = 30.0  # until the demo prints its status URL (ports initialised)
FLOW_TIMEOUT = 30.0  # until /api/totals shows forwarded SMS
CHROMIUM_TIMEOUT = 60.0  # one Chromium run
HTTP_TIMEOUT = 5.0  # one request to the demo
STOP_TIMEOUT = 10.0  # SIGINT to SIGKILL

STATUS_LINE = re.compile(r"^\s*status page\s+(http://127\.0\.0\.1:\d+/)\s*$")
CONSOLE_LINE = re.compile(r":CONSOLE[:(\]].*")
NUMBER = re.compile(r"^\+7900\d{7}$")
VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})
VOID |= {"source", "track", "wbr"}


# -- a small DOM for Chromium's serialised output ----------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            node
            for node in self.iter()
            if (tag is None or node.tag == tag)
            and all(node.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def by_id(self, id_: str) -> Node:
        found = self.find(id=id_)
        assert len(found) == 1, f"expected one element #{id_}, found {len(found)}"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_dom(text: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root


def port_rows(dom: Node) -> list[dict[str, str]]:
    """The rendered ports table: one {column: text} per row, plus "@port" (the row's port)."""
    tbody = dom.by_id("port-rows")
    rows = []
    for tr in tbody.find("tr"):
        if "placeholder" in tr.attrs.get("class", ""):
            continue
        row = {"@port": tr.attrs.get("data-port", "")}
        for td in tr.find("td"):
            row[td.attrs["data-col"]] = td.text.strip()
        rows.append(row)
    return rows


def count(text: str) -> int:
    assert re.fullmatch(r"\d{1,3}(,\d{3})*", text), f"not a count: {text!r}"
    return int(text.replace(",", ""))


# -- the processes ------------------------------------------------------------------------------


def require_chromium() -> str:
    """Debian's chromium; fails (never skips) the test when it is missing."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        pytest.fail(f"chromium not found at {CHROMIUM} or on PATH: {INSTALL_HINT}", pytrace=False)
    return path


@dataclass
class Demo:
    proc: subprocess.Popen[str]
    url: str
    output: list[str]


@dataclass
class Browser:
    binary: str
    tmp: Path
    runs: int = 0

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        profile = self.tmp / f"profile-{self.runs}"  # a fresh, empty profile per run
        profile.mkdir()
        argv = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=CHROMIUM_TIMEOUT,
                check=False,
                cwd=self.tmp,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"chromium ran longer than {CHROMIUM_TIMEOUT:g} s: {argv}", pytrace=False)
        assert result.returncode == 0, f"chromium exited {result.returncode}:\n{result.stderr}"
        return result

    def dump_dom(self, url: str) -> Node:
        result = self.run(f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", "--dump-dom", url)
        # Script errors and CSP violations show up as console messages of the page.
        console = [m[0] for m in CONSOLE_LINE.finditer(result.stderr) if "127.0.0.1" in m[0]]
        assert console == [], "the page logged to its console:\n" + "\n".join(console)
        return parse_dom(result.stdout)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the demo stops cleanly on Ctrl-C
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)


def _totals(demo: Demo) -> dict[str, object] | None:
    if demo.proc.poll() is not None:
        pytest.fail(
            f"muxd demo exited with {demo.proc.returncode}:\n" + "\n".join(demo.output[-40:]),
            pytrace=False,
        )
    try:
        with urllib.request.urlopen(demo.url + "api/totals", timeout=HTTP_TIMEOUT) as resp:
            totals: dict[str, object] = json.load(resp)
    except OSError:
        return None
    forwarded = totals.get("forwarded")
    return totals if isinstance(forwarded, int) and forwarded > 0 else None


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    return Browser(require_chromium(), tmp_path_factory.mktemp("chromium"))


@pytest.fixture(scope="module")
def demo(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    workdir = tmp_path_factory.mktemp("demo")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "muxd",
            "demo",
            "--ports",
            str(DEMO_PORTS),
            "--rate",
            f"{DEMO_RATE:g}",
            "--duration",
            f"{DEMO_DURATION:g}",
        ],
        cwd=REPO,
        # The demo's state and pty links go under pytest's tmp dir, output is not buffered.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    output: list[str] = []
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # universal newlines: the demo's \r summaries split too
            output.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, name="read-demo", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + DEMO_START_TIMEOUT
        url = None
        while url is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(
                    f"muxd demo printed no status URL within {DEMO_START_TIMEOUT:g} s:\n"
                    + "\n".join(output[-40:]),
                    pytrace=False,
                )
            if line is None:
                pytest.fail(
                    f"muxd demo exited ({proc.wait()}) before printing its status URL:\n"
                    + "\n".join(output[-40:]),
                    pytrace=False,
                )
            match = STATUS_LINE.match(line.rstrip("\n"))
            url = match[1] if match else None
        running = Demo(proc, url, output)
        poll(
            lambda: _totals(running),
            timeout=FLOW_TIMEOUT,
            what=lambda: f"SMS forwarded by muxd demo ({url}api/totals)",
        )
        yield running
    finally:
        _stop(proc)
        reader.join(STOP_TIMEOUT)
        assert proc.stdout is not None
        proc.stdout.close()


# -- the tests ----------------------------------------------------------------------------------


def test_rendered_table_has_every_port_ready(demo: Demo, browser: Browser) -> None:
    dom = browser.dump_dom(demo.url)

    rows = port_rows(dom)
    expected = [f"port{i:03d}" for i in range(DEMO_PORTS)]
    assert [row["@port"] for row in rows] == expected, rows  # sorted by port
    for row in rows:
        assert row["port"] == row["@port"]
        assert row["state"] == "ready", row
        assert NUMBER.match(row["number"]), row
        assert re.fullmatch(r"-\d{2,3}", row["signal"]), row
        assert -113 <= int(row["signal"]) <= -51, row
        assert row["operator"], row
        count(row["sms"])
    assert len({row["number"] for row in rows}) == DEMO_PORTS

    assert count(dom.by_id("total-received").text) > 0
    assert count(dom.by_id("total-forwarded").text) > 0
    assert count(dom.by_id("total-parked").text) == 0
    assert dom.by_id("ports-total").text == str(DEMO_PORTS)
    assert dom.by_id("ports-sellable").text == str(DEMO_PORTS)
    assert dom.by_id("health").text == "healthy"
    assert dom.by_id("version").text.startswith("v")
    assert "ago" in dom.by_id("total-upstream").text or "now" in dom.by_id("total-upstream").text
    assert dom.by_id("alert").attrs.get("hidden") is not None  # no connection problem shown


def test_sort_and_filter_from_the_address(demo: Demo, browser: Browser) -> None:
    dom = browser.dump_dom(demo.url + "#sort=-signal")
    signals = [int(row["signal"]) for row in port_rows(dom)]
    assert len(signals) == DEMO_PORTS
    assert signals == sorted(signals, reverse=True)
    [th] = dom.find("th", data_key="signal")
    assert th.attrs.get("aria-sort") == "descending"

    dom = browser.dump_dom(demo.url + "#q=state:ready%20port003")
    assert [row["@port"] for row in port_rows(dom)] == ["port003"]
    assert dom.by_id("shown").text == f"1 of {DEMO_PORTS} ports"


def test_screenshot(demo: Demo, browser: Browser) -> None:
    png = browser.tmp / "status-page.png"
    browser.run(
        f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}",
        f"--window-size={WINDOW_SIZE}",
        f"--screenshot={png}",
        demo.url,
    )
    assert png.is_file()
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > MIN_SCREENSHOT_BYTES, f"{png}: only {len(data)} bytes"
