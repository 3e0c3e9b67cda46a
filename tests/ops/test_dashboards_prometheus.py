"""Every dashboard query against a real Prometheus scraping a real ``muxd demo``.

Starts ``muxd demo`` (simulated modems, Onlinesim stand-in and the daemon in one process) and
Prometheus scraping it every second, with the shipped alert rules loaded. Once SMS are being
forwarded, every PromQL expression of every panel must be valid and return at least one series,
every template variable must resolve, and every alert rule must evaluate cleanly against
metrics that exist.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .opstools import (
    ALERT_RULES,
    DASHBOARDS,
    LABEL_VALUES,
    REPO,
    load_dashboard,
    panel_queries,
    poll,
    require_binary,
    substitute,
)

pytestmark = pytest.mark.timeout(90)

DEMO_PORTS = 8
DEMO_RATE = 20.0  # SMS/s injected by the simulator
DEMO_DURATION = 120.0  # longer than this module runs; the fixture stops the demo
SCRAPE_INTERVAL = "1s"
# Grafana's interval variables, replaced as Grafana would for a short time range. 30 s of 1 s
# scrapes give rate() plenty of samples.
INTERVALS = {"__rate_interval": "30s", "__interval": "15s"}

# Deadlines for the external processes.
DEMO_START_TIMEOUT = 30.0  # until the demo prints its metrics URL (ports initialised)
PROMETHEUS_READY_TIMEOUT = 15.0  # until /-/ready answers 200
DATA_TIMEOUT = 30.0  # until SMS are forwarded and rate() over the window sees them
RULES_TIMEOUT = 10.0  # until every rule group was evaluated on scraped data
HTTP_TIMEOUT = 5.0  # one request to Prometheus
STOP_TIMEOUT = 10.0  # SIGTERM to SIGKILL

METRICS_LINE = re.compile(r"^\s*metrics\s+(http://127\.0\.0\.1:(\d+)/metrics)\s*$")
METRIC_NAME = re.compile(r"\bmuxd_[a-z0-9_]+")


@dataclass
class Process:
    """A child process whose merged stdout/stderr is read line by line by a thread."""

    name: str
    proc: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, name: str, argv: list[str], **kwargs: Any) -> Process:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            **kwargs,
        )
        self = cls(name, proc)
        self.reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self.reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # universal newlines: the demo's \r summaries split too
            self.output.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                pytest.fail(
                    f"{self.name}: no line matching {pattern.pattern!r} within {timeout:g} s\n"
                    + self.tail(),
                    pytrace=False,
                )
            if line is None:
                pytest.fail(
                    f"{self.name} exited ({self.proc.wait()}) before printing "
                    f"{pattern.pattern!r}\n" + self.tail(),
                    pytrace=False,
                )
            match = pattern.match(line.rstrip("\n"))
            if match:
                return match

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            pytest.fail(
                f"{self.name} exited with {self.proc.returncode}\n" + self.tail(), pytrace=False
            )

    def tail(self, lines: int = 40) -> str:
        return f"--- last output of {self.name} ---\n" + "\n".join(self.output[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self.reader is not None:
            self.reader.join(STOP_TIMEOUT)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusApi:
    def __init__(self, base: str) -> None:
        self.base = base

    def get(self, path: str, **params: str) -> Any:
        """The ``data`` of an API answer; raises ValueError with Prometheus' error text."""
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            with exc:
                body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise ValueError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise ValueError(f"expected an instant vector, got {data['resultType']}")
        result: list[dict[str, Any]] = data["result"]
        return result

    def ready(self) -> bool | None:
        try:
            with urllib.request.urlopen(f"{self.base}/-/ready", timeout=HTTP_TIMEOUT) as resp:
                return True if resp.status == 200 else None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None


@dataclass(frozen=True)
class Stack:
    api: PrometheusApi
    instance: str  # the demo's instance label
    port: str  # a port label with every per-port series present
    values: dict[str, str]  # Grafana variable values for the dashboards


def _prometheus_config(target: str) -> str:
    return json.dumps(  # JSON is YAML
        {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {
                    "job_name": "muxd",
                    "scrape_interval": SCRAPE_INTERVAL,
                    "scrape_timeout": SCRAPE_INTERVAL,
                    "static_configs": [{"targets": [target]}],
                }
            ],
        },
        indent=2,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus_bin = require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("ops")
    processes: list[Process] = []
    try:
        demo = Process.start(
            "muxd demo",
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
        )
        processes.append(demo)
        match = demo.wait_for_line(METRICS_LINE, DEMO_START_TIMEOUT)
        instance = f"127.0.0.1:{match[2]}"

        config = workdir / "prometheus.yml"
        config.write_text(_prometheus_config(instance), encoding="utf-8")
        listen = f"127.0.0.1:{free_port()}"
        prometheus = Process.start(
            "prometheus",
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address={listen}",
                "--log.level=warn",
            ],
            cwd=workdir,
        )
        processes.append(prometheus)
        api = PrometheusApi(f"http://{listen}")

        def ready() -> bool | None:
            prometheus.check_running()
            return api.ready()

        poll(ready, timeout=PROMETHEUS_READY_TIMEOUT, what=lambda: f"prometheus on {listen}")

        # A port with every per-port series, once SMS flow end to end and rate() sees them.
        port_query = (
            f'muxd_port_up{{instance="{instance}"}} == 1'
            " and on (port) muxd_port_signal_dbm and on (port) muxd_port_last_sms_timestamp_seconds"
        )
        flowing = (
            f'sum(rate(muxd_sms_forwarded_total{{instance="{instance}"}}'
            f"[{INTERVALS['__rate_interval']}])) > 0"
        )

        def data() -> str | None:
            demo.check_running()
            prometheus.check_running()
            if not api.query(flowing):
                return None
            ports = sorted(s["metric"]["port"] for s in api.query(port_query))
            return ports[0] if ports else None

        port = poll(data, timeout=DATA_TIMEOUT, what=lambda: "forwarded SMS\n" + demo.tail(5))
        # The box's name, as muxd_box_info gives it (the $box variable's values).
        (info,) = api.query(f'muxd_box_info{{instance="{instance}"}}')
        box = info["metric"]["box"]
        values = {**INTERVALS, "box": box, "instance": instance, "port": port}
        yield Stack(api, instance, port, values)
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_every_panel_query_returns_series(stack: Stack, path: Path) -> None:
    queries = panel_queries(path)
    assert queries, f"{path.name}: no queries"
    failures: list[str] = []
    for query in queries:
        expr = substitute(query.expr, stack.values)
        try:
            result = stack.api.query(expr)
        except ValueError as exc:
            failures.append(f"INVALID  {query}\n         {exc}")
            continue
        if not result:
            failures.append(f"NO DATA  {query}\n         evaluated: {expr}")
    assert not failures, (
        f"{len(failures)} of {len(queries)} queries of {path.name} failed "
        f"(instance={stack.instance}, port={stack.port}):\n" + "\n".join(failures)
    )


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_template_variables_resolve(stack: Stack, path: Path) -> None:
    """label_values(selector, label) lists the demo's instance and port."""
    failures: list[str] = []
    for variable in load_dashboard(path)["templating"]["list"]:
        match = LABEL_VALUES.match(variable.get("definition", ""))
        assert match is not None, variable
        label = match["label"]
        selector = substitute(match["selector"] or "", stack.values)
        try:
            if selector:
                series = stack.api.get("/api/v1/series", **{"match[]": selector})
                values = {s[label] for s in series if label in s}
            else:
                values = set(stack.api.get(f"/api/v1/label/{label}/values"))
        except ValueError as exc:
            failures.append(f"${variable['name']}: {exc}")
            continue
        wanted = stack.values.get(variable["name"])
        if not values or (wanted is not None and wanted not in values):
            failures.append(f"${variable['name']}: {variable['definition']} -> {sorted(values)}")
    assert not failures, "\n".join(failures)


def test_alert_rules_evaluate_on_real_metrics(stack: Stack) -> None:
    """Prometheus loaded every rule, evaluates it without error, on metrics muxd exposes."""

    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = stack.api.get("/api/v1/rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(not r["lastEvaluation"].startswith("0001-") for r in rules)
        return rules if rules and done else None

    rules = poll(evaluated, timeout=RULES_TIMEOUT, what=lambda: "rule evaluation")
    names = set(stack.api.get("/api/v1/label/__name__/values"))
    problems = [
        f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"
    ]
    problems += [
        f"{r['name']}: unknown metric {name}"
        for r in rules
        for name in sorted(set(METRIC_NAME.findall(r["query"])) - names)
    ]
    shipped = re.findall(r"^\s*- alert:", ALERT_RULES.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(rules) == len(shipped), f"loaded {len(rules)} rules, the file has {len(shipped)}"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_box_variable_filters_every_panel_by_instance(stack: Stack, path: Path) -> None:
    """$box lists muxd_box_info's boxes; $instance is the targets of the chosen boxes, and
    every panel filters on $instance: a box chosen is its instance's series alone."""
    variables = {v["name"]: v for v in load_dashboard(path)["templating"]["list"]}
    assert variables["box"]["definition"] == "label_values(muxd_box_info, box)"
    instance = variables["instance"]["definition"]
    assert "muxd_box_info{box" in instance, instance
    assert "$box" in instance, instance
    match = LABEL_VALUES.match(instance)
    assert match is not None

    def instances(box: str) -> set[str]:
        selector = substitute(match["selector"], {**stack.values, "box": box})
        series = stack.api.get("/api/v1/series", **{"match[]": selector})
        return {s["instance"] for s in series}

    assert instances(stack.values["box"]) == {stack.instance}
    assert instances("no-such-box") == set()
    unfiltered = [q for q in panel_queries(path) if "$instance" not in q.expr]
    assert not unfiltered, "\n".join(map(str, unfiltered))
