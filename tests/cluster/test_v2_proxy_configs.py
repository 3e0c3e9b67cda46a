"""The load-balancer examples in contrib/proxy parse (``haproxy -c``, ``nginx -t``) and keep
every call under Onlinesim's 10 s limit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HAPROXY = REPO / "contrib" / "proxy" / "haproxy-cluster.cfg"
NGINX = REPO / "contrib" / "proxy" / "nginx-cluster.conf"
# Onlinesim's limit for an answer to GET_NUMBER, in seconds.
V1_LIMIT = 10.0
# A config check takes well under a second; this only stops a hung binary from hanging CI.
CHECK_TIMEOUT = 30.0
INSTALL_HINT = "install it with .ci/install-ops.sh (Debian packages haproxy, nginx-light)"


def binary(name: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if path is None:
        pytest.fail(f"{name} not found: {INSTALL_HINT}", pytrace=False)
    return path


def certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=partner.example.net", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=CHECK_TIMEOUT,
    )  # fmt: skip
    return cert, key


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s)?", value)
    assert match is not None, value
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def test_haproxy_example_parses_and_answers_within_the_limit(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    pem = tmp_path / "partner.pem"
    pem.write_text(cert.read_text() + key.read_text())
    text = HAPROXY.read_text(encoding="utf-8")
    config = tmp_path / "haproxy.cfg"
    config.write_text(text.replace("/etc/haproxy/certs/partner.pem", str(pem)))
    result = subprocess.run(
        [binary("haproxy"), "-c", "-f", str(config)],
        capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    timeouts = dict(re.findall(r"^\s*timeout (\S+) (\S+)", text, re.MULTILINE))
    assert seconds(timeouts["server"]) < V1_LIMIT
    assert seconds(timeouts["connect"]) + seconds(timeouts["server"]) <= V1_LIMIT + 1
    # Boxes are checked on /readyz (their operator endpoint), only unsent requests retried.
    assert "http-check send meth GET uri /readyz" in text
    assert re.search(r"^\s*retry-on conn-failure\s*$", text, re.MULTILINE)
    assert len(re.findall(r"^\s*server box\d", text, re.MULTILINE)) >= 2


def test_nginx_example_parses_and_answers_within_the_limit(tmp_path: Path) -> None:
    cert, key = certificate(tmp_path)
    text = NGINX.read_text(encoding="utf-8")
    site = tmp_path / "site.conf"
    site.write_text(
        text.replace("/etc/letsencrypt/live/partner.example.net/fullchain.pem", str(cert))
        .replace("/etc/letsencrypt/live/partner.example.net/privkey.pem", str(key))
        .replace("/var/log/nginx/", f"{tmp_path}/")
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  client_body_temp_path {tmp_path}/body;\n  proxy_temp_path {tmp_path}/proxy;\n"
        f"  access_log off;\n  include {site};\n}}\n"
    )
    result = subprocess.run(
        [binary("nginx"), "-t", "-q", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True, text=True, timeout=CHECK_TIMEOUT, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    directives = dict(re.findall(r"^\s*(proxy_\w+_timeout) (\S+);", text, re.MULTILINE))
    assert seconds(directives["proxy_read_timeout"]) < V1_LIMIT
    assert seconds(directives["proxy_connect_timeout"]) < V1_LIMIT
    # Only a box that could not be reached is replaced: a POST that reached one is never resent.
    assert re.search(r"^\s*proxy_next_upstream error;", text, re.MULTILINE)
    assert "non_idempotent" not in text
