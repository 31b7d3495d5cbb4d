// The TriggerEvents console: plain JavaScript over the JSON API under /api/. Each view draws
// its controls once and refreshes its data every two seconds. Text goes into the page through
// textContent only, never as HTML: payloads and errors are whatever writers and receivers sent.
"use strict";

const POLL_MS = 2000;
const view = document.getElementById("view");
let config = { read_only: true };
let current = null;       // the view's refresh function
let generation = 0;       // bumped on navigation; stale responses are dropped
let busy = false;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, body) {
  const init = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-TriggerEvents-Console": "1" },
    body: JSON.stringify(body),
  };
  const response = await fetch(path, init);
  if (response.status === 401) { location.href = "/signin"; throw new Error("sign in first"); }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function flash(message, isError) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = isError ? "flash error" : "flash";
  el.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { el.hidden = true; }, 6000);
}

async function act(path, body, done) {
  try {
    const result = await api(path, body);
    flash(done(result));
    await refresh();
  } catch (e) {
    flash(e.message, true);
  }
}

const fmt = {
  num: (n) => (n ?? 0).toLocaleString("en-US"),
  time: (t) => t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "",
  age(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 1) return "<1s";
    if (seconds < 90) return `${Math.round(seconds)}s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)}m`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
    return `${Math.round(seconds / 86400)}d`;
  },
  pct: (r) => r === null || r === undefined ? "–" : `${(r * 100).toFixed(r < 0.1 && r > 0 ? 1 : 0)}%`,
};

function badge(text, kind) { return h("span", { class: `badge ${kind || text}` }, text); }

function table(headers, rows, empty) {
  const head = h("tr", {}, headers.map(([label, cls]) => h("th", { class: cls }, label)));
  const body = rows.length
    ? rows
    : [h("tr", {}, h("td", { class: "empty", colspan: headers.length }, empty || "nothing here"))];
  return h("table", {}, h("thead", {}, head), h("tbody", {}, body));
}

function stateCell(s) {
  const parts = [];
  if (s.state === "active") parts.push(badge("active"));
  else parts.push(badge("paused"), h("span", { class: "reason" }, s.paused_reason || s.paused_by || ""));
  if (s.circuit && s.circuit !== "closed") parts.push(" ", badge(`circuit ${s.circuit.replace("_", "-")}`, s.circuit));
  return parts;
}

function lifecycleButtons(s) {
  if (config.read_only) return [];
  return s.state === "active"
    ? [h("button", { "data-action": "pause", onclick: () => pause(s.name) }, "Pause")]
    : [h("button", { "data-action": "resume", onclick: () => act(`/api/subscriptions/${enc(s.name)}/resume`, {}, (r) => `${s.name}: ${r.result}`) }, "Resume")];
}

function pause(name) {
  const reason = prompt(`Pause ${name}? Nothing is sent until it is resumed; nothing is lost.\n\nReason (optional):`, "");
  if (reason === null) return;
  act(`/api/subscriptions/${enc(name)}/pause`, { reason }, (r) => `${name}: ${r.result}`);
}

const enc = encodeURIComponent;

// ---- overview ------------------------------------------------------------------------------

function overview() {
  const holder = h("div", { id: "overview" });
  view.replaceChildren(h("h1", {}, "Subscriptions"), holder);
  return async () => {
    const data = await api("/api/overview");
    const rows = data.subscriptions.map((s) => h("tr", { "data-subscription": s.name },
      h("td", {}, h("a", { href: `#/s/${enc(s.name)}` }, s.name)),
      h("td", {}, s.group),
      h("td", {}, s.trigger),
      h("td", { class: "state" }, stateCell(s)),
      h("td", { class: "num backlog" }, fmt.num(s.pending + s.retrying + s.in_flight)),
      h("td", { class: "num" }, fmt.num(s.retrying)),
      h("td", { class: "num" }, fmt.num(s.in_flight)),
      h("td", { class: "num" }, s.dead ? h("a", { href: `#/dead?subscription=${enc(s.name)}` }, fmt.num(s.dead)) : "0"),
      h("td", { class: "num" }, fmt.age(s.oldest_pending_age_seconds)),
      h("td", { class: "num" }, s.delivered_per_minute.toFixed(1)),
      h("td", { class: "num" + (s.failure_rate > 0.2 ? " error" : "") }, fmt.pct(s.failure_rate)),
      config.read_only ? null : h("td", {}, lifecycleButtons(s))));
    holder.replaceChildren(table([
      ["Subscription"], ["Group"], ["Trigger"], ["State"], ["Backlog", "num"], ["Retrying", "num"], ["In flight", "num"],
      ["Dead", "num"], ["Oldest pending", "num"], [`Delivered/min (${data.rate_window_minutes}m)`, "num"], ["Failure rate", "num"],
      config.read_only ? null : ["Actions"],
    ].filter(Boolean), rows, "No subscriptions yet: a worker registers its file's subscriptions when it starts."));
  };
}

// ---- one subscription ----------------------------------------------------------------------

function subscription(name, params) {
  const status = params.get("status") || "all";
  const filters = { since: params.get("since") || "", until: params.get("until") || "", event_id: params.get("event_id") || "" };
  const pages = [];           // the `before` keys of the pages behind this one
  let before = null;
  let nextBefore = null;

  const state = h("span", { id: "state" });
  const actions = h("span", { id: "actions" });
  const holder = h("div", { id: "deliveries" });
  const older = h("button", { id: "older", onclick: () => { pages.push(before); before = nextBefore; refresh(); } }, "Older →");
  const newer = h("button", { id: "newer", onclick: () => { before = pages.pop() ?? null; refresh(); } }, "← Newer");
  const statusSelect = h("select", { id: "status" }, ["all", "pending", "in_flight", "delivered", "dead"].map((s) =>
    h("option", { value: s, selected: s === status }, s)));
  const since = h("input", { type: "datetime-local", id: "since", step: "1", value: filters.since });
  const until = h("input", { type: "datetime-local", id: "until", step: "1", value: filters.until });
  const eventId = h("input", { type: "number", id: "event-id", min: "1", placeholder: "any", value: filters.event_id });
  const apply = () => {
    const q = new URLSearchParams();
    if (statusSelect.value !== "all") q.set("status", statusSelect.value);
    if (since.value) q.set("since", since.value);
    if (until.value) q.set("until", until.value);
    if (eventId.value) q.set("event_id", eventId.value);
    location.hash = `#/s/${enc(name)}${q.toString() ? "?" + q : ""}`;
  };

  const replaySince = h("input", { type: "datetime-local", id: "replay-since", step: "1" });
  const replayUntil = h("input", { type: "datetime-local", id: "replay-until", step: "1" });
  const replay = config.read_only ? null : h("div", { class: "toolbar", id: "replay" },
    h("strong", {}, "Replay"),
    h("label", {}, "captured since (local time)", replaySince),
    h("label", {}, "until (optional)", replayUntil),
    h("button", {
      id: "replay-run", onclick: () => {
        if (!replaySince.value) { flash("Replay needs a start time.", true); return; }
        const body = { since: new Date(replaySince.value).toISOString() };
        if (replayUntil.value) body.until = new Date(replayUntil.value).toISOString();
        if (!confirm(`Deliver every event captured in this range to ${name} again?`)) return;
        act(`/api/subscriptions/${enc(name)}/replay`, body, (r) => `Replay: ${fmt.num(r.events)} events, ${fmt.num(r.scheduled)} scheduled.`);
      },
    }, "Replay range"));

  view.replaceChildren(
    h("h1", {}, h("a", { href: "#/" }, "Subscriptions"), " / ", name, " ", state, " ", actions),
    h("div", { class: "toolbar" },
      h("label", {}, "status", statusSelect),
      h("label", {}, "captured since (local time)", since),
      h("label", {}, "until", until),
      h("label", {}, "event id", eventId),
      h("button", { class: "primary", id: "apply", onclick: apply }, "Filter")),
    holder,
    h("div", { class: "pager" }, newer, older),
    replay);

  const local = (v) => v ? new Date(v).toISOString() : "";
  return async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (status !== "all") q.set("status", status);
    if (before !== null) q.set("before", before);
    if (filters.since) q.set("since", local(filters.since));
    if (filters.until) q.set("until", local(filters.until));
    if (filters.event_id) q.set("event_id", filters.event_id);
    const [list, all] = await Promise.all([api(`/api/subscriptions/${enc(name)}/deliveries?${q}`), api("/api/overview")]);
    const s = all.subscriptions.find((x) => x.name === name);
    if (s) {
      state.replaceChildren(...stateCell(s));
      actions.replaceChildren(...lifecycleButtons(s));
    }
    nextBefore = list.next_before;
    older.disabled = nextBefore === null;
    newer.disabled = pages.length === 0;
    holder.replaceChildren(table(
      [["Event", "num"], ["Status"], ["Attempts", "num"], ["Last status", "num"], ["Last error"], ["Operation"], ["Table"], ["Captured"], ["Updated"], ["webhook-id"]],
      list.deliveries.map((d) => h("tr", { "data-event": d.event_id },
        h("td", { class: "num" }, h("a", { href: `#/e/${d.event_id}` }, d.event_id)),
        h("td", {}, badge(d.status)),
        h("td", { class: "num" }, d.attempts),
        h("td", { class: "num" }, d.last_status ?? ""),
        h("td", { class: "error" }, d.last_error ?? ""),
        h("td", {}, d.op),
        h("td", {}, d.table),
        h("td", { class: "mono" }, fmt.time(d.captured_at)),
        h("td", { class: "mono" }, fmt.time(d.updated_at)),
        h("td", { class: "mono" }, d.webhook_id))),
      "No deliveries match."));
  };
}

// ---- one event -----------------------------------------------------------------------------

function eventView(id) {
  const holder = h("div", { id: "event" });
  view.replaceChildren(h("h1", {}, `Event ${id}`), holder);
  const json = (v) => h("pre", {}, v === null || v === undefined ? "null" : JSON.stringify(v, null, 2));
  return async () => {
    const e = await api(`/api/events/${enc(id)}`);
    const trace = e.trace_id
      ? (e.trace_url ? h("a", { href: e.trace_url, target: "_blank", rel: "noopener noreferrer", id: "trace-link" }, e.trace_id) : h("span", { class: "mono" }, e.trace_id))
      : h("span", { class: "muted" }, "none");
    holder.replaceChildren(
      h("dl", { class: "facts" },
        h("dt", {}, "Trigger"), h("dd", {}, e.trigger),
        h("dt", {}, "Table"), h("dd", {}, e.table),
        h("dt", {}, "Operation"), h("dd", {}, e.op),
        h("dt", {}, "Captured"), h("dd", { class: "mono" }, fmt.time(e.captured_at)),
        h("dt", {}, "Captured by"), h("dd", {}, e.captured_by),
        e.for_subscription ? [h("dt", {}, "Backfilled for"), h("dd", {}, e.for_subscription)] : null,
        e.condition_error ? [h("dt", {}, "Condition error"), h("dd", { class: "error" }, e.condition_error)] : null,
        h("dt", {}, "Trace"), h("dd", {}, trace)),
      h("div", { class: "grid" },
        h("div", {}, h("h2", {}, "Old"), json(e.old)),
        h("div", {}, h("h2", {}, "New"), json(e.new))),
      h("h2", {}, "Session variables"), json(e.session_variables),
      h("h2", {}, "Deliveries"),
      table([["Subscription"], ["Status"], ["Attempts", "num"], ["Last status", "num"], ["Last error"], ["Delivered"], ["webhook-id"], config.read_only ? null : ["Actions"]].filter(Boolean),
        e.deliveries.map((d) => h("tr", { "data-subscription": d.subscription },
          h("td", {}, h("a", { href: `#/s/${enc(d.subscription)}` }, d.subscription)),
          h("td", {}, badge(d.status)),
          h("td", { class: "num" }, d.attempts),
          h("td", { class: "num" }, d.last_status ?? ""),
          h("td", { class: "error" }, d.last_error ?? ""),
          h("td", { class: "mono" }, fmt.time(d.delivered_at)),
          h("td", { class: "mono" }, d.webhook_id),
          config.read_only ? null : h("td", {}, d.status === "dead" ? h("button", {
            "data-action": "retry",
            onclick: () => act("/api/dead/retry", { subscription: d.subscription, event_id: e.id }, (r) => `Retried ${r.retried}.`),
          }, "Retry") : ""))),
        "No subscription has a delivery of this event."),
      h("h2", {}, "Attempts"),
      table([["Time"], ["Subscription"], ["Attempt", "num"], ["Status"], ["Duration", "num"], ["Error"], ["webhook-id"]],
        e.attempts.map((a) => h("tr", {},
          h("td", { class: "mono" }, fmt.time(a.started_at)),
          h("td", {}, a.subscription),
          h("td", { class: "num" }, a.attempt),
          h("td", {}, a.http_status !== null && a.http_status >= 200 && a.http_status < 300 ? badge(String(a.http_status), "ok") : badge(String(a.http_status ?? "error"), "failed")),
          h("td", { class: "num" }, `${a.duration_ms} ms`),
          h("td", { class: "error" }, [a.error, a.response_excerpt].filter(Boolean).join(" · ")),
          h("td", { class: "mono" }, a.webhook_id))),
        "No attempt recorded yet."));
  };
}

// ---- dead letters --------------------------------------------------------------------------

function dead(params) {
  const subscriptionFilter = params.get("subscription") || "";
  const input = h("input", { id: "dead-subscription", placeholder: "all subscriptions", value: subscriptionFilter });
  const holder = h("div", { id: "dead" });
  const count = h("span", { id: "dead-count", class: "muted" });
  const filterBody = () => (subscriptionFilter ? { subscription: subscriptionFilter } : {});
  const what = subscriptionFilter ? `the dead letters of ${subscriptionFilter}` : "every dead letter";
  view.replaceChildren(
    h("h1", {}, "Dead letters ", count),
    h("div", { class: "toolbar" },
      h("label", {}, "subscription", input),
      h("button", { onclick: () => { location.hash = input.value ? `#/dead?subscription=${enc(input.value)}` : "#/dead"; } }, "Filter"),
      config.read_only ? null : h("span", {},
        h("button", { class: "primary", id: "retry-all", "data-action": "retry", onclick: () => act("/api/dead/retry", filterBody(), (r) => `Retried ${fmt.num(r.retried)} dead letters.`) }, "Retry all matching"),
        h("button", {
          class: "danger", id: "purge-all", "data-action": "purge", onclick: () => {
            if (!confirm(`Purge ${what}? They are deleted for good; the events stay in the log and can be replayed.`)) return;
            act("/api/dead/purge", { ...filterBody(), confirm: true }, (r) => `Purged ${fmt.num(r.purged)} dead letters.`);
          },
        }, "Purge all matching"))),
    holder);
  return async () => {
    const q = subscriptionFilter ? `?subscription=${enc(subscriptionFilter)}` : "";
    const data = await api(`/api/dead${q}`);
    count.textContent = `(${fmt.num(data.count)})`;
    holder.replaceChildren(table(
      [["Subscription"], ["Event", "num"], ["Trigger"], ["Operation"], ["Attempts", "num"], ["Last status", "num"], ["Last error"], ["Died"], config.read_only ? null : ["Actions"]].filter(Boolean),
      data.dead.map((d) => h("tr", { "data-event": d.event_id, "data-subscription": d.subscription },
        h("td", {}, h("a", { href: `#/s/${enc(d.subscription)}?status=dead` }, d.subscription)),
        h("td", { class: "num" }, h("a", { href: `#/e/${d.event_id}` }, d.event_id)),
        h("td", {}, d.trigger),
        h("td", {}, d.op),
        h("td", { class: "num" }, d.attempts),
        h("td", { class: "num" }, d.last_status ?? ""),
        h("td", { class: "error" }, d.last_error ?? ""),
        h("td", { class: "mono" }, fmt.time(d.died_at)),
        config.read_only ? null : h("td", {},
          h("button", { "data-action": "retry", onclick: () => act("/api/dead/retry", { subscription: d.subscription, event_id: d.event_id }, (r) => `Retried ${r.retried}.`) }, "Retry"),
          h("button", {
            class: "danger", "data-action": "purge", onclick: () => {
              if (!confirm(`Purge the dead letter of event ${d.event_id} for ${d.subscription}?`)) return;
              act("/api/dead/purge", { subscription: d.subscription, event_id: d.event_id, confirm: true }, (r) => `Purged ${r.purged}.`);
            },
          }, "Purge")))),
      "No dead letters."));
  };
}

// ---- triggers ------------------------------------------------------------------------------

function triggers() {
  const holder = h("div", { id: "triggers" });
  view.replaceChildren(h("h1", {}, "Attached triggers"), holder);
  return async () => {
    const data = await api("/api/triggers");
    holder.replaceChildren(table(
      [["Trigger"], ["Table"], ["Operations"], ["Update columns"], ["Payload columns"], ["Condition"], ["Health"], ["Condition errors", "num"]],
      data.map((t) => h("tr", { "data-trigger": t.name },
        h("td", {}, t.name),
        h("td", {}, t.table ?? h("span", { class: "muted" }, "dropped")),
        h("td", {}, t.operations),
        h("td", {}, t.update_columns ?? "any"),
        h("td", {}, t.payload_columns ?? "all"),
        h("td", { class: "mono" }, t.condition ?? ""),
        h("td", {}, badge(t.health)),
        h("td", { class: "num" }, fmt.num(t.condition_errors)))),
      "No event trigger is attached: see triggerevents attach."));
  };
}

// ---- routing and polling -------------------------------------------------------------------

function route() {
  generation++;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
  let nav = "overview";
  if (parts[0] === "s" && parts[1]) current = subscription(parts[1], params);
  else if (parts[0] === "e" && parts[1]) current = eventView(parts[1]);
  else if (parts[0] === "dead") { nav = "dead"; current = dead(params); }
  else if (parts[0] === "triggers") { nav = "triggers"; current = triggers(); }
  else current = overview();
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
  busy = false;
  refresh();
}

async function refresh() {
  if (busy || !current) return;
  busy = true;
  const mine = generation;
  const live = document.getElementById("live");
  try {
    await current();
    if (mine !== generation) return;
    live.textContent = `live · updated ${new Date().toLocaleTimeString("en-GB")}`;
    live.classList.remove("stale");
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    if (mine !== generation) return;
    live.textContent = `not updating: ${e.message}`;
    live.classList.add("stale");
  } finally {
    if (mine === generation) busy = false;
  }
}

async function start() {
  try {
    config = await api("/api/config");
  } catch (e) {
    document.getElementById("live").textContent = `not connected: ${e.message}`;
    return;
  }
  document.getElementById("mode").hidden = !config.read_only;
  document.body.dataset.readOnly = String(config.read_only);
  window.addEventListener("hashchange", route);
  route();
  setInterval(refresh, POLL_MS);
}

start();
