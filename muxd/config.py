"""Configuration: TOML file -> frozen msgspec Structs.

Unknown keys, wrong types and bad values fail at start with one line that names the file and
the key: ``FILE: section.key: what is wrong``.
"""

from __future__ import annotations

import difflib
import re
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect
from msgspec import Meta

from muxd.errors import ConfigError
from muxd.numbering import UssdQuery
from muxd.web_guard import is_loopback

# Onlinesim v2 batches: by default none waits to fill (activation codes are urgent): an SMS goes
# out at once when no request is in flight, and what arrives during one goes out together when
# it returns. ``batch_delay`` makes a batch wait to fill, at most this many seconds.
DEFAULT_BATCH_DELAY: float | None = None
# A batch kept waiting longer than this would outlive the codes it carries.
BATCH_DELAY_MAX = 60.0
DEFAULT_BATCH_MAX = 100
# Onlinesim wants the uptime proof (sendNumbersOnline or checkWork) every 5 minutes; 240 s,
# counted from the start of the previous one, keeps a slow answer or a retry inside the window.
NUMBERS_INTERVAL = 240.0

_S = TypeVar("_S", bound=msgspec.Struct)


class ModemsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ports: Annotated[list[str], Meta(min_length=1)]
    baudrate: Annotated[int, Meta(gt=0)] = 115200
    # Seconds between storage sweeps (AT+CMGL=4); +CMTI is only a hint.
    sweep_interval: Annotated[float, Meta(gt=0)] = 60.0
    # Seconds between rescans of the port globs for hot-plugged modems.
    rescan_interval: Annotated[float, Meta(gt=0)] = 30.0
    # v2: a number whose modem lost its registration stays listed this many seconds (0: it is
    # withdrawn at once); a short loss of network must not withdraw a number rented for months.
    unregistered_hold: Annotated[float, Meta(ge=0)] = 60.0


class NumbersConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    file: str | None = None
    # Own-number USSD queries per operator, tried when neither the file nor AT+CNUM knows.
    ussd: list[UssdQuery] = []


class UpstreamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    api_key: Annotated[str, Meta(min_length=1)]
    url: str = ""  # required with api = "v2"
    api: Literal["v2", "v1"] = "v2"
    numbers_mode: Literal["list", "incremental"] = "list"
    batch_max: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_BATCH_MAX
    # Absent or 0: adaptive (see DEFAULT_BATCH_DELAY); otherwise the longest a batch waits.
    batch_delay: Annotated[float, Meta(ge=0, le=BATCH_DELAY_MAX)] | None = DEFAULT_BATCH_DELAY
    numbers_interval: Annotated[float, Meta(gt=0)] = NUMBERS_INTERVAL
    rent: bool = False
    test: Literal["test1", "test2"] | None = None
    # Where Onlinesim's pages disagree (each defaults to the newest pages):
    # v1 PUSH_SMS `phone` as a digit string (current) or an integer (older pages, SMSHub).
    phone_type: Literal["string", "integer"] = "string"
    # v1 rent PUSH_SMS `service`: "rent" (current) or "RENT" (older page).
    rent_case: Literal["rent", "RENT"] = "rent"
    # checkWork: GET /api/resellers (the schema) or POST /api/resellers/checkWork; a 404/405
    # tries the other one, remembered in the state directory.
    check_work_method: Literal["GET", "POST"] = "GET"
    # v2: check listed numbers with checkNumber (banned, failed operations, rent finished),
    # one every check_interval seconds, each at most once an hour.
    check_numbers: bool = False
    check_interval: Annotated[float, Meta(ge=1)] = 10.0


class FilterRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # An SMS matches a service when its sender matches one of `senders` or its text one of
    # `text` (regular expressions, case-insensitive). Services without a rule match anything.
    senders: list[str] = []
    text: list[str] = []
    # Also the built-in patterns of this service (muxd.filter_library), when it has some.
    builtin: bool = False


class DenyRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # An SMS is denied when its whole sender matches one of `senders` or one of `text` is
    # found in its text (regular expressions, case-insensitive).
    senders: list[str] = []
    text: list[str] = []


class DenyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """SMS never forwarded (muxd.deny): named rules, inline and/or from a file of the same
    shape (``[rules.NAME]`` tables; a relative path is taken from the config file's directory).
    """

    rules: dict[str, DenyRule] = {}
    file: str = ""


class V1Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Onlinesim calls muxd (API v1); used when upstream.api = "v1"."""

    # Where muxd's partner server listens: one URL taking every action, plus per-method paths.
    listen: str = "127.0.0.1:8090"
    # PUSH_SMS webhooks (URLs given by partner support).
    push_sms_url: str = ""
    push_sms_rent_url: str = ""
    # Services offered in GET_SERVICES (names from Onlinesim's service list).
    services: list[str] = []
    rent: bool = False  # offer rent (GET_SERVICES rent counts, GET_NUMBER service "rent")
    # Answer of GET_NUMBER when no number fits: SMSHub's "NO_NUMBERS" or Onlinesim's "ERROR".
    no_numbers_status: Literal["NO_NUMBERS", "ERROR"] = "NO_NUMBERS"
    # A reservation without FINISH_ACTIVATION is released after 15 min + this grace.
    reservation_grace: Annotated[float, Meta(ge=0)] = 300.0
    # Only FINISH_ACTIVATION ends an operation (off). On: a reservation not finished after
    # 15 min + reservation_grace frees its number for sale; SMS are still pushed to it until
    # Onlinesim finishes it.
    reservation_expiry: bool = False
    # Where Onlinesim reaches the partner server from outside (behind NAT or a proxy); the
    # preflight checks it and prints the URLs to give partner support.
    public_url: str = ""
    # Open question: is the Bearer header sent by Onlinesim? Off: body key is enough.
    require_bearer: bool = False
    # Open question: gzip request bodies of PUSH_SMS (Content-Encoding: gzip)?
    gzip_push: bool = True
    # Name overrides: E.164 calling code -> country name, MCC+MNC -> operator name.
    countries: dict[str, str] = {}
    operators: dict[str, str] = {}
    # Optional local SMS filtering per service (by default Onlinesim filters).
    filter: dict[str, FilterRule] = {}
    # Onlinesim's docs are unclear: PUSH_SMS smsId is a stable id per SMS ("sms") or the
    # activationId.
    sms_id: Literal["sms", "activation"] = "sms"
    # Onlinesim's docs are unclear: retry PUSH_SMS answered IGNORED / SERVICE_BAN (default: final).
    retry_verdicts: bool = False
    # Onlinesim's docs are unclear: FINISH status 1 releases the number (Onlinesim) or, when true,
    # also stops offering it for that service (SMSHub).
    status1_blocks: bool = False
    # activationId size: 63 bits, or 53 for clients that read JSON numbers as doubles.
    id_bits: Annotated[int, Meta(ge=32, le=63)] = 63
    # PUSH_SMS delivered on any HTTP 200 (current pages) or only with status SUCCESS (older).
    push_success: Literal["http200", "status"] = "http200"
    # Services offered without a `filter` rule of their own use the built-in patterns
    # (muxd.filter_library) when it knows them.
    filter_library: bool = False
    # TLS for the partner server: PEM certificate (chain) and its unencrypted private key.
    # Unset: serve plain HTTP, behind a TLS reverse proxy when listening beyond loopback.
    tls_cert: str = ""
    tls_key: str = ""


class JournalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Delivered messages (and status reports) are deleted after this many days.
    retention_days: Annotated[float, Meta(gt=0)] = 7.0
    # A concatenated SMS still missing parts after this many seconds is delivered, flagged
    # incomplete, with a placeholder for each missing part (never dropped).
    reassembly_timeout: Annotated[float, Meta(gt=0)] = 1800.0


class HttpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9108"
    # Bearer token for everything but /healthz and /readyz (browsers: the Basic password);
    # required when `listen` is not a loopback address.
    token: str = ""
    # Host names (besides IP literals and localhost) the endpoint answers to (DNS rebinding).
    hosts: list[str] = []
    # Optional own listener serving /metrics alone, without the token (e.g. a private network).
    metrics_listen: str = ""


class ClusterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Several boxes sharing one partner account through PostgreSQL (absent: one box alone)."""

    # postgresql://user:password@host:port/database
    database: str
    # This box's name, unique in the cluster; empty: the host name.
    box: str = ""
    # Seconds a box's numbers count after its last heartbeat (a dead box leaves the counts).
    lease: Annotated[float, Meta(ge=3, le=3600)] = 15.0

    @property
    def box_name(self) -> str:
        return self.box or socket.gethostname()


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    state_dir: str
    modems: ModemsConfig
    upstream: UpstreamConfig
    numbers: NumbersConfig = NumbersConfig()
    journal: JournalConfig = JournalConfig()
    http: HttpConfig = HttpConfig()
    v1: V1Config = V1Config()
    cluster: ClusterConfig | None = None
    deny: DenyConfig = DenyConfig()


_PATH_RE = re.compile(r"at `\$\.?([^`]*)`")
_FIELD_RE = re.compile(r"field `([^`]+)`")


def _key_and_reason(err: msgspec.ValidationError) -> tuple[str, str]:
    """Turn msgspec's message into (dotted key, reason)."""
    text = str(err)
    match = _PATH_RE.search(text)
    path = match.group(1) if match else ""
    reason = text[: match.start()].rstrip(" -") if match else text
    field = _FIELD_RE.search(reason)
    if field and ("unknown field" in reason or "missing required field" in reason):
        path = f"{path}.{field.group(1)}" if path else field.group(1)
        reason = "unknown key" if "unknown field" in reason else "missing required key"
    path = re.sub(r"\[(\d+)\]", r"[\1]", path)
    if reason == "unknown key":
        parent, _, key = path.rpartition(".")
        close = difflib.get_close_matches(key, _known_keys(parent), n=1, cutoff=0.6)
        if close:
            reason = f"unknown key (did you mean {close[0]!r}?)"
    return path or "(top level)", reason


def _unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """``X | None`` -> X (the config's optional sections and values)."""
    if isinstance(info, msgspec.inspect.UnionType):
        rest = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return info


def _known_keys(parent: str) -> list[str]:
    """The keys the config accepts at the dotted ``parent`` path ("" is the top level)."""
    info: msgspec.inspect.Type = msgspec.inspect.type_info(Config)
    for part in [p for p in parent.replace("[...]", "[*]").split(".") if p]:
        name, *indexes = re.split(r"\[(?:\d+|\*)\]", part)  # [*]: a table's value
        info = _unwrap(info)
        if isinstance(info, msgspec.inspect.StructType):
            by_name = {f.encode_name: f.type for f in info.fields}
            if name not in by_name:
                return []
            info = by_name[name]
        elif isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        else:
            return []
        for _ in indexes:
            info = _unwrap(info)
            if isinstance(info, msgspec.inspect.DictType):
                info = info.value_type
                continue
            if not isinstance(info, msgspec.inspect.ListType):
                return []
            info = info.item_type
    info = _unwrap(info)
    if isinstance(info, msgspec.inspect.StructType):
        return [f.encode_name for f in info.fields]
    return []


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); raises ValueError with the reason."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    return host.strip("[]"), int(port_text)


def _check_values(cfg: Config) -> tuple[str, str] | None:
    url_re = r"^https?://[^/\s]+"
    if cfg.upstream.api == "v2" and not re.match(url_re, cfg.upstream.url):
        return "upstream.url", f"expected an http:// or https:// URL, got {cfg.upstream.url!r}"
    try:
        urlsplit(cfg.upstream.url).port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        return "upstream.url", f"{exc}: {cfg.upstream.url!r}"
    if not re.fullmatch(r"[\x21-\x7e]+", cfg.upstream.api_key):
        # It goes in an HTTP header: a space, a line break or a non-ASCII letter cannot.
        return "upstream.api_key", "expected printable ASCII without spaces or line breaks"
    if cfg.upstream.api == "v1" and cfg.upstream.test is not None:
        return "upstream.test", "Onlinesim's test mode exists only in API v2 (PUSH_SMS has none)"
    if cfg.upstream.api == "v1":
        try:
            parse_listen(cfg.v1.listen)
        except ValueError as exc:
            return "v1.listen", str(exc)
        if not re.match(url_re, cfg.v1.push_sms_url):
            return "v1.push_sms_url", f"expected an http(s) URL, got {cfg.v1.push_sms_url!r}"
        if cfg.v1.rent and not re.match(url_re, cfg.v1.push_sms_rent_url):
            return "v1.push_sms_rent_url", "required with v1.rent = true"
        if cfg.v1.public_url and not re.match(url_re, cfg.v1.public_url):
            return "v1.public_url", f"expected an http(s) URL, got {cfg.v1.public_url!r}"
        if not cfg.v1.services and not cfg.v1.rent:
            return "v1.services", "list at least one service (or enable v1.rent)"
        from muxd.filter_library import check_filters

        if (problem := check_filters(cfg.v1)) is not None:
            return problem
        if bool(cfg.v1.tls_cert) != bool(cfg.v1.tls_key):
            missing = "v1.tls_key" if cfg.v1.tls_cert else "v1.tls_cert"
            return missing, "set v1.tls_cert and v1.tls_key together"
        if cfg.v1.tls_cert:
            from muxd.upstream.v1.edge import tls_context

            try:
                tls_context(cfg.v1.tls_cert, cfg.v1.tls_key)
            except ValueError as exc:
                key, _, reason = str(exc).partition(": ")
                return key, reason
        for service, rule in cfg.v1.filter.items():
            for pattern in (*rule.senders, *rule.text):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    return f"v1.filter.{service}", f"invalid regular expression: {exc}"
    try:
        http_host, _ = parse_listen(cfg.http.listen)
    except ValueError as exc:
        return "http.listen", str(exc)
    if not cfg.http.token and not is_loopback(http_host):
        return "http.token", f"required when http.listen ({cfg.http.listen}) is not loopback"
    if cfg.http.metrics_listen:
        try:
            parse_listen(cfg.http.metrics_listen)
        except ValueError as exc:
            return "http.metrics_listen", str(exc)
    for i, pattern in enumerate(cfg.modems.ports):
        if not pattern.strip():
            return f"modems.ports[{i}]", "empty pattern"
    for i, query in enumerate(cfg.numbers.ussd):
        try:
            re.compile(query.regex)
        except re.error as exc:
            return f"numbers.ussd[{i}].regex", f"invalid regular expression: {exc}"
    if cfg.numbers.file is not None:
        path = Path(cfg.numbers.file)
        if not path.is_file():
            return "numbers.file", f"no such file: {path}"
    from muxd.deny import check_deny

    if (problem := check_deny(cfg.deny)) is not None:
        return problem
    if cfg.cluster is not None:
        return _check_cluster(cfg.cluster)
    return None


def _check_cluster(cluster: ClusterConfig) -> tuple[str, str] | None:
    from muxd.cluster.records import check_box_name

    if not re.match(r"^postgres(ql)?://[^\s]*$", cluster.database):
        shown = re.sub(r"://[^@/]*@", "://***@", cluster.database)  # never echo a password
        return "cluster.database", f"expected a postgresql:// URL, got {shown!r}"
    problem = check_box_name(cluster.box_name)
    if problem is not None:
        where = "" if cluster.box else " (the host name; set cluster.box)"
        return "cluster.box", problem + where
    return None


def load_toml(path: Path, struct: type[_S]) -> _S:
    """Read a TOML file into ``struct``; raise ConfigError naming the file and the key."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        return msgspec.convert(data, struct)
    except msgspec.ValidationError as exc:
        key, reason = _key_and_reason(exc)
        raise ConfigError(f"{path}: {key}: {reason}") from exc


def load(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError naming file and key."""
    path = Path(path)
    cfg = load_toml(path, Config)
    if cfg.deny.file and not Path(cfg.deny.file).is_absolute():
        # The deny file is found next to the config, whatever the working directory.
        deny = msgspec.structs.replace(cfg.deny, file=str(path.parent / cfg.deny.file))
        cfg = msgspec.structs.replace(cfg, deny=deny)
    problem = _check_values(cfg)
    if problem is not None:
        raise ConfigError(f"{path}: {problem[0]}: {problem[1]}")
    return cfg
