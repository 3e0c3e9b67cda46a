"""Shared helpers of the ops tests: the repository's ops files, Prometheus binaries, dashboards."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
DATASOURCE_PROVISIONING = REPO / "grafana" / "provisioning" / "datasources" / "muxd.yaml"
DASHBOARD_PROVISIONING = REPO / "grafana" / "provisioning" / "dashboards" / "muxd.yaml"
PROMETHEUS_DIR = REPO / "contrib" / "prometheus"
ALERT_RULES = PROMETHEUS_DIR / "muxd-alerts.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
ALERT_RULE_TESTS = Path(__file__).resolve().parent / "muxd-alerts.test.yml"

INSTALL_HINT = "install it with .ci/install-ops.sh (Debian package 'prometheus')"
# promtool runs in well under a second; this only stops a hung binary from hanging CI.
PROMTOOL_TIMEOUT = 30.0
# Interval between two looks at an external process (Prometheus, the demo) while waiting.
POLL_INTERVAL = 0.25

# The datasource every dashboard panel must use (see grafana/README.md).
DATASOURCE_UID = "prometheus"
# Variables Grafana defines itself; dashboard variables are read from each dashboard.
GRAFANA_BUILTINS = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
)
# $var, ${var}, ${var:format}, [[var]]
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\s*\)\s*$")

T = TypeVar("T")


def require_binary(name: str) -> str:
    """The path of a Prometheus tool; fails (never skips) the test when it is missing."""
    path = shutil.which(name)
    if path is None and os.access(f"/usr/bin/{name}", os.X_OK):
        path = f"/usr/bin/{name}"
    if path is None:
        pytest.fail(f"{name} not found on PATH or in /usr/bin: {INSTALL_HINT}", pytrace=False)
    return path


def run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
        check=False,
        cwd=REPO,
    )


def poll(check: Callable[[], T | None], *, timeout: float, what: Callable[[], str]) -> T:
    """Call ``check`` until it returns something other than None, for at most ``timeout`` s.

    Only for external processes, which offer nothing to wait on but their HTTP API.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what()}", pytrace=False)
        time.sleep(POLL_INTERVAL)


def load_dashboard(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name}: not a JSON object"
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data, including those inside (collapsed) rows."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels", []))
        else:
            yield panel


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref_id: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} [{self.ref_id}]: {self.expr}"


def panel_queries(path: Path) -> list[PanelQuery]:
    dashboard = load_dashboard(path)
    return [
        PanelQuery(path.name, panel.get("title", "?"), target.get("refId", "?"), target["expr"])
        for panel in iter_panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if isinstance(target.get("expr"), str)
    ]


def variable_names(dashboard: Mapping[str, Any]) -> set[str]:
    return {v["name"] for v in dashboard.get("templating", {}).get("list", [])}


def used_variables(text: str) -> set[str]:
    return {next(g for g in m.groups() if g) for m in VARIABLE.finditer(text)}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace Grafana variables the way Grafana would for a single selected value."""

    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in values:
            raise KeyError(f"no value for ${name} in {text!r}")
        return values[name]

    return VARIABLE.sub(one, text)
