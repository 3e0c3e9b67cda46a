"""Static checks of the ops files: alert rules and Prometheus config (promtool), dashboards."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .opstools import (
    ALERT_RULE_TESTS,
    ALERT_RULES,
    DASHBOARD_DIR,
    DASHBOARD_PROVISIONING,
    DASHBOARDS,
    DATASOURCE_PROVISIONING,
    DATASOURCE_UID,
    GRAFANA_BUILTINS,
    LABEL_VALUES,
    PROMETHEUS_CONFIG,
    iter_panels,
    load_dashboard,
    panel_queries,
    require_binary,
    run_tool,
    used_variables,
    variable_names,
)

# Grafana 9.0's schema; the dashboards must not be older (no graph/singlestat panels).
MIN_SCHEMA_VERSION = 36
PANEL_TYPES = {"timeseries", "stat"}
DASHBOARD_IDS = [p.name for p in DASHBOARDS]


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return f"\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_promtool_check_rules() -> None:
    promtool = require_binary("promtool")
    result = run_tool(promtool, "check", "rules", str(ALERT_RULES))
    assert result.returncode == 0, f"promtool check rules failed:{_output(result)}"
    assert "SUCCESS" in result.stdout


def test_promtool_check_config(tmp_path: Path) -> None:
    """The shipped config, with its rule file next to it, as installed in /etc/prometheus."""
    promtool = require_binary("promtool")
    shutil.copy(PROMETHEUS_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(ALERT_RULES, tmp_path / ALERT_RULES.name)
    result = run_tool(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, f"promtool check config failed:{_output(result)}"
    assert "1 rule files found" in result.stdout, result.stdout


def test_prometheus_config_scrapes_muxd_as_job_muxd() -> None:
    """Dashboards and the MuxdDown alert select job="muxd" on the default listen address."""
    text = PROMETHEUS_CONFIG.read_text(encoding="utf-8")
    assert re.search(r"^\s*-\s*job_name:\s*muxd\s*$", text, re.MULTILINE), text
    assert "127.0.0.1:9108" in text
    assert 'up{job="muxd"}' in ALERT_RULES.read_text(encoding="utf-8")


def test_alert_rules_unit_tests() -> None:
    """Each alert fires on a synthetic failure and a healthy fleet raises none."""
    promtool = require_binary("promtool")
    result = run_tool(promtool, "test", "rules", str(ALERT_RULE_TESTS))
    assert result.returncode == 0, f"promtool test rules failed:{_output(result)}"


def test_every_alert_has_a_unit_test() -> None:
    rules = ALERT_RULES.read_text(encoding="utf-8")
    alerts = set(re.findall(r"^\s*-\s*alert:\s*(\w+)", rules, re.MULTILINE))
    tested = set(re.findall(r'alertname="(\w+)"', ALERT_RULE_TESTS.read_text(encoding="utf-8")))
    assert alerts, "no alerts found"
    assert alerts <= tested, f"alerts without a unit test: {sorted(alerts - tested)}"


def test_both_dashboards_exist() -> None:
    assert {"muxd-fleet.json", "muxd-port.json"} <= set(DASHBOARD_IDS), DASHBOARD_DIR


@pytest.mark.parametrize("path", DASHBOARDS, ids=DASHBOARD_IDS)
def test_dashboard_parses_and_every_panel_has_queries(path: Path) -> None:
    dashboard = load_dashboard(path)
    problems: list[str] = []
    if dashboard.get("schemaVersion", 0) < MIN_SCHEMA_VERSION:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')} < {MIN_SCHEMA_VERSION}")
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("missing uid or title")
    panels = list(iter_panels(dashboard.get("panels", [])))
    if not panels:
        problems.append("no panels")
    rows = [p for p in dashboard.get("panels", []) if p.get("type") == "row"]
    ids = [p.get("id") for p in rows + panels]
    if None in ids or len(ids) != len(set(ids)):
        problems.append(f"panel ids missing or not unique: {ids}")
    for panel in panels:
        where = f"panel {panel.get('title')!r}"
        if panel.get("type") not in PANEL_TYPES:
            problems.append(f"{where}: type {panel.get('type')!r} not in {sorted(PANEL_TYPES)}")
        if not {"h", "w", "x", "y"} <= set(panel.get("gridPos", {})):
            problems.append(f"{where}: incomplete gridPos")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        for target in targets:
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{where} [{target.get('refId')}]: no expr")
            if target.get("datasource", panel.get("datasource")) != {
                "type": "prometheus",
                "uid": DATASOURCE_UID,
            }:
                problems.append(
                    f"{where} [{target.get('refId')}]: datasource is not uid prometheus"
                )
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", DASHBOARDS, ids=DASHBOARD_IDS)
def test_dashboard_variables_are_defined(path: Path) -> None:
    """Every $variable in a query is a Grafana builtin or a variable of the dashboard."""
    dashboard = load_dashboard(path)
    defined = variable_names(dashboard) | GRAFANA_BUILTINS
    undefined = [
        f"{query}: ${name}"
        for query in panel_queries(path)
        for name in sorted(used_variables(query.expr) - defined)
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        definition = variable.get("definition", "")
        query = variable.get("query")
        if isinstance(query, dict):  # Grafana 10+ may store the query as an object
            query = query.get("query")
        if query != definition:
            undefined.append(f"variable {variable['name']}: query {query!r} != {definition!r}")
        if not LABEL_VALUES.match(definition):
            undefined.append(f"variable {variable['name']}: not label_values(...): {definition}")
        if variable.get("datasource", {}).get("uid") != DATASOURCE_UID:
            undefined.append(f"variable {variable['name']}: datasource is not uid prometheus")
        undefined.extend(
            f"variable {variable['name']}: ${name}"
            for name in sorted(used_variables(definition) - defined)
        )
    assert not undefined, "\n".join(undefined)


def test_port_dashboard_selects_a_port() -> None:
    dashboard = load_dashboard(DASHBOARD_DIR / "muxd-port.json")
    port = next(v for v in dashboard["templating"]["list"] if v["name"] == "port")
    match = LABEL_VALUES.match(port["definition"])
    assert match is not None
    assert match["label"] == "port"
    assert (match["selector"] or "").startswith("muxd_port_up")
    assert all("$port" in q.expr for q in panel_queries(DASHBOARD_DIR / "muxd-port.json"))


def test_provisioning_matches_dashboards() -> None:
    """The provisioned datasource has the uid the dashboards use; the provider reads files."""
    datasource = DATASOURCE_PROVISIONING.read_text(encoding="utf-8")
    assert re.search(rf"^\s*uid:\s*{DATASOURCE_UID}\s*$", datasource, re.MULTILINE), datasource
    assert re.search(r"^\s*type:\s*prometheus\s*$", datasource, re.MULTILINE), datasource
    provider = DASHBOARD_PROVISIONING.read_text(encoding="utf-8")
    assert re.search(r"^\s*type:\s*file\s*$", provider, re.MULTILINE), provider
    assert re.search(r"^\s*path:\s*/\S+", provider, re.MULTILINE), provider
    uids = [load_dashboard(p)["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids)), uids
