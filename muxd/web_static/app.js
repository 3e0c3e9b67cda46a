// muxd status page: polls the JSON API and renders it. Plain DOM, no dependencies.
// Every value from the API reaches the page through textContent or an attribute, never as HTML.
"use strict";

(function () {
  const POLL_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const RATE_WINDOW_S = 30; // flow rates are averaged over this many seconds of samples
  const RATE_MIN_S = 4; // ... and shown once the samples span this long
  const UPSTREAM_WARN_S = 300; // the publisher talks upstream at least every 5 minutes
  const UPSTREAM_STALE_S = 900; // /readyz calls the upstream unreachable after this long
  const STATES = ["ready", "initializing", "opening", "backoff", "gone"];

  const $ = (id) => document.getElementById(id);
  const numberFormat = new Intl.NumberFormat("en-US");
  const collator = new Intl.Collator("en", { numeric: true, sensitivity: "base" });

  const view = { key: "port", dir: 1, filter: "" };
  const data = { ports: null, totals: null, outbox: null, health: null, ready: null };
  let samples = []; // [uptime_s, received, forwarded] for the rates
  let skewMs = 0; // server clock minus browser clock, from the Date header
  let lastOk = null; // Date.now() of the last complete refresh
  let lastError = null;

  // -- formatting ---------------------------------------------------------------------------

  function fmtInt(n) {
    return typeof n === "number" && isFinite(n) ? numberFormat.format(n) : "–";
  }

  function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    if (s < 60) return s + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    const h = Math.floor(m / 60);
    if (h < 48) return h + "h " + (m % 60) + "m";
    return Math.floor(h / 24) + "d " + (h % 24) + "h";
  }

  function serverNow() {
    return (Date.now() + skewMs) / 1000;
  }

  function fmtAge(epoch) {
    if (typeof epoch !== "number") return null;
    const age = serverNow() - epoch;
    return age < 1 ? "just now" : fmtDuration(age) + " ago";
  }

  function fmtTime(epoch) {
    return typeof epoch === "number" ? new Date(epoch * 1000).toLocaleString() : "";
  }

  function fmtRate(perSecond) {
    if (perSecond >= 1) return perSecond.toFixed(1) + " /s";
    return (perSecond * 60).toFixed(1) + " /min";
  }

  function operatorText(p) {
    const sim = p.operator === null || p.operator === undefined ? "" : String(p.operator);
    const net = p.network || "";
    if (!sim) return net;
    if (!net || net === sim) return sim;
    return sim + " on " + net; // roaming, or the network answers with a name
  }

  // -- DOM helpers --------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function stateClass(state) {
    return STATES.includes(state) ? "state-" + state : "state-unknown";
  }

  // -- the ports table ----------------------------------------------------------------------

  // One row's values: what is shown, what is sorted on, what the filter sees.
  function rowModel(p) {
    const lastSmsAge = typeof p.last_sms_at === "number" ? serverNow() - p.last_sms_at : null;
    return {
      p: p,
      sort: {
        port: p.port,
        state: STATES.indexOf(p.state) === -1 ? STATES.length : STATES.indexOf(p.state),
        signal: typeof p.signal_dbm === "number" ? p.signal_dbm : null,
        operator: operatorText(p) || null,
        number: p.number || null,
        sms: p.sms_received,
        last_sms: lastSmsAge,
        error: p.last_error || null,
      },
      fields: {
        port: p.port,
        path: p.path,
        state: p.state,
        operator: operatorText(p),
        number: p.number || "",
        error: p.last_error || "",
        model: p.model || "",
        imei: p.imei || "",
        iccid: p.iccid || "",
      },
    };
  }

  function compareValues(a, b) {
    if (typeof a === "number" && typeof b === "number") return a - b;
    return collator.compare(String(a), String(b));
  }

  function compareRows(a, b) {
    const x = a.sort[view.key];
    const y = b.sort[view.key];
    // Missing values go last in both directions.
    if (x === null && y !== null) return 1;
    if (y === null && x !== null) return -1;
    const c = x === null ? 0 : compareValues(x, y) * view.dir;
    return c !== 0 ? c : collator.compare(a.p.port, b.p.port);
  }

  // Whitespace-separated terms, all must match; "key:value" looks in one field only.
  function matches(row, filter) {
    const terms = filter.toLowerCase().split(/\s+/).filter(Boolean);
    const all = Object.values(row.fields).join("\u0000").toLowerCase();
    return terms.every((term) => {
      const colon = term.indexOf(":");
      if (colon > 0) {
        const key = term.slice(0, colon);
        if (Object.prototype.hasOwnProperty.call(row.fields, key)) {
          return row.fields[key].toLowerCase().includes(term.slice(colon + 1));
        }
      }
      return all.includes(term);
    });
  }

  function signalCell(dbm) {
    const td = el("td", "num signal");
    td.dataset.col = "signal";
    if (typeof dbm !== "number") {
      td.append(el("span", "muted", "–"));
      return td;
    }
    // -51 dBm and better is full scale, -113 dBm the floor of AT+CSQ.
    const level = dbm >= -73 ? 4 : dbm >= -83 ? 3 : dbm >= -93 ? 2 : dbm >= -103 ? 1 : 0;
    const bars = el("span", "bars level-" + level);
    bars.setAttribute("aria-hidden", "true");
    for (let i = 1; i <= 4; i++) bars.append(el("i", i <= level ? "on" : ""));
    td.append(bars, el("span", "dbm", String(dbm)));
    return td;
  }

  function renderRow(row) {
    const p = row.p;
    const tr = el("tr", "row-" + stateClass(p.state));
    tr.dataset.port = p.port;

    const port = el("td", "port mono", p.port);
    port.dataset.col = "port";
    port.title = [p.path, p.model, p.imei && "IMEI " + p.imei, p.iccid && "ICCID " + p.iccid]
      .filter(Boolean)
      .join("\n");

    const state = el("td", "state");
    state.dataset.col = "state";
    const badge = el("span", "badge " + stateClass(p.state), p.state);
    badge.title =
      (p.registered ? "registered" : "not registered") +
      (p.since ? "\nSIM up since " + fmtTime(p.since) : "");
    state.append(badge);

    const op = el("td", "operator", operatorText(p) || "–");
    op.dataset.col = "operator";
    op.title = "SIM operator (MCC+MNC) / network from AT+COPS?";

    const marker = p.sellable ? " sellable" : p.number ? " unsellable" : " muted";
    const number = el("td", "number mono" + marker);
    number.dataset.col = "number";
    number.textContent = p.number || "–";
    number.title = p.sellable
      ? "on sale (source: " + p.number_source + ")"
      : "not on sale: " +
        (p.state !== "ready"
          ? "port not ready"
          : !p.registered
            ? "not registered"
            : !p.number
              ? "number unknown"
              : "country unknown");
    // v2 checkNumber (upstream.check_numbers): what Onlinesim says about the number.
    const health = p.health;
    if (health && (health.banned || health.replace || health.errors > 0)) {
      const note = health.replace
        ? "replace SIM"
        : health.banned
          ? "banned"
          : health.errors + " failed";
      number.append(el("span", "health has-error", " · " + note));
      number.title +=
        "\nOnlinesim: " +
        (health.status_text || "status " + health.status) +
        ", " + health.errors + " failed operations" +
        (health.banned ? ", banned" : "") +
        (health.replace ? ", rent finished: replace the SIM" : "");
    }

    const sms = el("td", "num", fmtInt(p.sms_received));
    sms.dataset.col = "sms";

    const age = fmtAge(p.last_sms_at);
    const lastSms = el("td", "age" + (age ? "" : " muted"), age || "–");
    lastSms.dataset.col = "last_sms";
    if (age) lastSms.title = fmtTime(p.last_sms_at);

    const error = el("td", "error" + (p.last_error ? " has-error" : " muted"));
    error.dataset.col = "error";
    error.textContent = p.last_error || "–";
    error.title =
      (p.last_error ? p.last_error + "\n" : "") +
      "AT timeouts " + p.at_timeouts + " · resyncs " + p.resyncs;

    tr.append(port, state, signalCell(p.signal_dbm), op, number, sms, lastSms, error);
    return tr;
  }

  function placeholder(text) {
    const tr = el("tr", "placeholder");
    const td = el("td", "", text);
    td.colSpan = 8;
    tr.append(td);
    return tr;
  }

  // True while the user has text selected in the table (copying a number or an ICCID): the
  // periodic refresh leaves the rows alone then, sorting and filtering still redraw them.
  function selectingInTable() {
    const selection = window.getSelection();
    return (
      selection !== null &&
      !selection.isCollapsed &&
      selection.rangeCount > 0 &&
      $("port-rows").contains(selection.getRangeAt(0).commonAncestorContainer)
    );
  }

  function renderTable() {
    const tbody = $("port-rows");
    if (data.ports === null) return;
    const rows = data.ports.map(rowModel);
    const shown = rows.filter((row) => matches(row, view.filter)).sort(compareRows);
    const fragment = document.createDocumentFragment();
    for (const row of shown) fragment.append(renderRow(row));
    if (rows.length === 0) fragment.append(placeholder("no ports found yet"));
    else if (shown.length === 0) fragment.append(placeholder("no port matches the filter"));
    tbody.replaceChildren(fragment);
    setText(
      "shown",
      shown.length === rows.length
        ? rows.length + " ports"
        : shown.length + " of " + rows.length + " ports"
    );
    for (const th of document.querySelectorAll("#ports th[data-key]")) {
      if (th.dataset.key === view.key) {
        th.setAttribute("aria-sort", view.dir > 0 ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
  }

  // -- header, totals, summary --------------------------------------------------------------

  function renderSummary() {
    const ports = data.ports || [];
    const counts = {};
    for (const p of ports) counts[p.state] = (counts[p.state] || 0) + 1;
    const chips = $("ports-states");
    const fragment = document.createDocumentFragment();
    const known = STATES.filter((s) => counts[s]);
    const other = Object.keys(counts).filter((s) => !STATES.includes(s)).sort();
    for (const state of known.concat(other)) {
      const chip = el("button", "badge chip " + stateClass(state));
      chip.type = "button";
      chip.title = "show only " + state + " ports";
      chip.append(el("span", "", state + " "), el("strong", "", fmtInt(counts[state])));
      chip.addEventListener("click", () => setFilter("state:" + state));
      fragment.append(chip);
    }
    chips.replaceChildren(fragment);
    setText("ports-total", data.ports === null ? "–" : fmtInt(ports.length));
    setText(
      "ports-sellable",
      data.ports === null ? "–" : fmtInt(ports.filter((p) => p.sellable).length)
    );
  }

  // The rate over the last RATE_WINDOW_S seconds of polls; until the polls span RATE_MIN_S,
  // the average since the daemon started.
  function rateText(index) {
    const first = samples[0];
    const last = samples[samples.length - 1];
    if (last === undefined) return "\u00a0";
    const dt = last[0] - first[0];
    if (dt >= RATE_MIN_S) return fmtRate(Math.max(0, (last[index] - first[index]) / dt));
    if (last[0] > 0) return fmtRate(last[index] / last[0]) + " avg since start";
    return "\u00a0";
  }

  function setLevel(id, level) {
    const card = $(id);
    card.classList.toggle("warn", level === "warn");
    card.classList.toggle("bad", level === "bad");
  }

  function renderTotals() {
    const t = data.totals;
    if (t === null) return;
    setText("version", t.version ? "v" + t.version : "");
    setText("uptime", fmtDuration(t.uptime_s));
    setText("total-received", fmtInt(t.received));
    setText("total-forwarded", fmtInt(t.forwarded));
    setText("total-parked", fmtInt(t.parked));
    setText("total-backlog", fmtInt(t.backlog));
    setText("rate-received", rateText(1));
    setText("rate-forwarded", rateText(2));
    setLevel("card-parked", t.parked > 0 ? "warn" : null);

    const okAt = t.last_upstream_ok;
    // Never reached: a warning while the daemon is young, an alarm once /readyz would say so.
    const upstreamAge = typeof okAt === "number" ? serverNow() - okAt : null;
    const silentFor = upstreamAge === null ? t.uptime_s : upstreamAge;
    setText("total-upstream", upstreamAge === null ? "never" : fmtAge(okAt));
    $("total-upstream").title = fmtTime(okAt);
    setLevel(
      "card-upstream",
      silentFor > UPSTREAM_STALE_S
        ? "bad"
        : silentFor > UPSTREAM_WARN_S || upstreamAge === null
          ? "warn"
          : null
    );

    const o = data.outbox || {};
    setText(
      "sub-backlog",
      data.outbox === null
        ? "\u00a0"
        : "journal: " + fmtInt(o.messages_delivered || 0) + " delivered · " +
          fmtInt(o.messages_parked || 0) + " parked · " +
          fmtInt(o.messages_denied || 0) + " denied"
    );
    setLevel("card-backlog", t.backlog > 0 && o.last_error ? "warn" : null);
    let shipping = "\u00a0";
    if (data.outbox !== null) {
      shipping = o.last_error ? "last error: " + o.last_error : "no delivery errors";
    }
    // Upstream loops that are failing (publisher, shipper, pusher): their state and next try.
    const failing = (t.upstream || []).filter((l) => l.state === "failing");
    if (failing.length) {
      shipping = failing
        .map(
          (l) =>
            l.loop + " failing " + fmtDuration(l.failing_for_s) + ", " + fmtInt(l.attempts) +
            " attempts, next in " + fmtDuration(l.next_attempt_in_s)
        )
        .join("; ");
      if (!$("card-upstream").classList.contains("bad")) setLevel("card-upstream", "warn");
    }
    setText("sub-upstream", shipping);
    $("sub-upstream").title = failing.length
      ? failing.map((l) => l.loop + ": " + (l.last_error || "")).join("\n")
      : o.last_error || "";
  }

  function renderPill(id, result, okText, level) {
    const pill = $(id);
    if (result === null) {
      pill.className = "pill pill-unknown";
      pill.textContent = okText + " ?";
      return;
    }
    pill.className = "pill " + (result.ok ? "pill-ok" : "pill-" + level);
    pill.textContent = result.ok ? okText : result.text || "HTTP " + result.status;
  }

  function renderHeader() {
    renderPill("health", data.health, "healthy", "bad");
    renderPill("ready", data.ready, "ready", "warn");
    if (data.health && data.ready && !data.health.ok && data.ready.text === data.health.text) {
      $("ready").textContent = "not ready"; // same reason as the health pill's
    }

    const alerts = [];
    if (lastError !== null) {
      const age = lastOk === null ? null : fmtDuration((Date.now() - lastOk) / 1000);
      const since = age === null ? "" : " — showing data from " + age + " ago";
      alerts.push("Refresh failed (" + lastError + ")" + since);
    }
    if (data.outbox && data.outbox.auth_failed) {
      alerts.push("Onlinesim refuses the API key: " + (data.outbox.last_error || "unauthorised"));
    }
    const alert = $("alert");
    alert.hidden = alerts.length === 0;
    alert.textContent = alerts.join("\n");
    document.body.classList.toggle("stale", lastError !== null);

    if (lastOk !== null) setText("updated", "updated " + new Date(lastOk).toLocaleTimeString());
    const ports = data.ports || [];
    const ready = ports.filter((p) => p.state === "ready").length;
    const healthy = data.health === null || data.health.ok;
    const mark = healthy && lastError === null ? "" : "⚠ ";
    document.title = mark + "muxd · " + ready + "/" + ports.length + " ready";
  }

  function render() {
    renderHeader();
    renderTotals();
    renderSummary();
    if (!selectingInTable()) renderTable();
  }

  // -- polling ------------------------------------------------------------------------------

  function request(path) {
    const options = { cache: "no-store", headers: { Accept: "application/json, text/plain" } };
    if (typeof AbortSignal !== "undefined" && AbortSignal.timeout) {
      options.signal = AbortSignal.timeout(FETCH_TIMEOUT_MS);
    }
    return fetch(path, options);
  }

  async function getJson(path) {
    const resp = await request(path);
    if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
    const date = Date.parse(resp.headers.get("Date") || "");
    if (!isNaN(date)) {
      // The Date header has whole seconds: only correct a clock that is clearly off.
      const skew = date + 500 - Date.now();
      skewMs = Math.abs(skew) > 2000 ? skew : 0;
    }
    return resp.json();
  }

  // /healthz and /readyz answer 503 with the reason as text: that is data, not a failure.
  async function getProbe(path) {
    const resp = await request(path);
    const text = (await resp.text()).trim();
    return { ok: resp.ok, status: resp.status, text: text };
  }

  async function refresh() {
    const [ports, totals, outbox, health, ready] = await Promise.allSettled([
      getJson("api/ports"),
      getJson("api/totals"),
      getJson("api/outbox"),
      getProbe("healthz"),
      getProbe("readyz"),
    ]);
    if (ports.status === "fulfilled") data.ports = ports.value.ports;
    if (totals.status === "fulfilled") {
      data.totals = totals.value;
      const t = totals.value;
      samples.push([t.uptime_s, t.received, t.forwarded]);
      samples = samples.filter((s) => s[0] >= t.uptime_s - RATE_WINDOW_S && s[0] <= t.uptime_s);
    }
    if (outbox.status === "fulfilled") data.outbox = outbox.value;
    data.health = health.status === "fulfilled" ? health.value : null;
    data.ready = ready.status === "fulfilled" ? ready.value : null;
    const failed = [ports, totals, outbox, health, ready].find((r) => r.status === "rejected");
    if (failed === undefined) {
      lastOk = Date.now();
      lastError = null;
    } else {
      const reason = failed.reason;
      if (reason && reason.name === "TimeoutError") lastError = "timed out";
      else lastError = String((reason && reason.message) || reason);
    }
  }

  async function poll() {
    try {
      await refresh();
    } catch (exc) {
      lastError = String(exc);
    }
    try {
      render();
    } finally {
      window.setTimeout(poll, POLL_MS);
    }
  }

  // -- controls -----------------------------------------------------------------------------

  function saveView() {
    const params = new URLSearchParams();
    if (view.key !== "port" || view.dir !== 1) {
      params.set("sort", (view.dir < 0 ? "-" : "") + view.key);
    }
    if (view.filter) params.set("q", view.filter);
    const hash = params.toString();
    history.replaceState(null, "", hash ? "#" + hash : location.pathname + location.search);
  }

  function loadView() {
    const params = new URLSearchParams(location.hash.slice(1));
    const sort = params.get("sort") || "";
    const key = sort.replace(/^-/, "");
    if (document.querySelector('#ports th[data-key="' + CSS.escape(key) + '"]')) {
      view.key = key;
      view.dir = sort.startsWith("-") ? -1 : 1;
    }
    view.filter = params.get("q") || "";
    $("filter").value = view.filter;
  }

  function setFilter(text) {
    view.filter = text;
    $("filter").value = text;
    saveView();
    renderTable();
  }

  function init() {
    loadView();
    for (const th of document.querySelectorAll("#ports th[data-key]")) {
      th.querySelector("button").addEventListener("click", () => {
        const key = th.dataset.key;
        view.dir = view.key === key ? -view.dir : 1;
        view.key = key;
        saveView();
        renderTable();
      });
    }
    $("filter").addEventListener("input", (event) => {
      view.filter = event.target.value;
      saveView();
      renderTable();
    });
    poll();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
