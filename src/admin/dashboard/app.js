// Warden review dashboard: the alert queue, an alert's evidence and members, accounts and
// their recent requests, and the reviewer's actions (block, unblock, resolve). It talks
// to the admin API with the admin token; every change carries the reviewer's name as
// `x-warden-actor`, so it is recorded like a CLI action. All text from the API is put in
// the page as text (never as HTML).
"use strict";

const session = {
  get token() { return sessionStorage.getItem("warden.token") || ""; },
  get actor() { return sessionStorage.getItem("warden.actor") || ""; },
  save(token, actor) {
    sessionStorage.setItem("warden.token", token);
    sessionStorage.setItem("warden.actor", actor);
  },
  clear() { sessionStorage.removeItem("warden.token"); },
};

// Element builder: h("td", {class: "num"}, "12", otherNode).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM: allowed by the CSP, unlike style="..."
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function toast(text, error) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = error ? "show error" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 3500);
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { authorization: "Bearer " + session.token, "x-warden-actor": session.actor || "dashboard" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    if (res.status === 401) { session.clear(); route(); }
    throw new ApiError(res.status, (data.error && data.error.message) || res.statusText);
  }
  return data;
}

const fmt = {
  time(v) {
    if (v === null || v === undefined) return "—";
    const d = typeof v === "number" ? new Date(v) : new Date(v);
    return isNaN(d) ? String(v) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  },
  num(v) { return v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US"); },
  score(v) { return v === null || v === undefined ? "—" : Number(v).toFixed(2); },
  badge(text, cls) { return h("span", { class: "badge " + (cls || text) }, text); },
};

function setNav(which) {
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === which);
}

function render(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

// ---- login ---------------------------------------------------------------------------

function loginView() {
  setNav("");
  const token = h("input", { type: "password", id: "token", autocomplete: "off", required: true });
  const actor = h("input", { type: "text", id: "actor", value: session.actor, placeholder: "e.g. alice", required: true });
  const form = h("form", { class: "card login", onsubmit: async (e) => {
      e.preventDefault();
      session.save(token.value.trim(), actor.value.trim() || "dashboard");
      try { await api("GET", "/admin/v1/alerts?limit=1"); location.hash = "#/alerts"; route(); }
      catch (err) { toast(err.message, true); }
    } },
    h("h2", {}, "Sign in to review"),
    h("p", { class: "muted" }, "The admin token of this warden; your name is recorded with every action you take."),
    h("label", { for: "token" }, "Admin token"), token,
    h("label", { for: "actor" }, "Your name"), actor,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")));
  render(form);
}

// ---- alerts --------------------------------------------------------------------------

async function alertsView(params) {
  setNav("alerts");
  const status = params.get("status") || "open";
  const data = await api("GET", "/admin/v1/alerts?limit=500" + (status === "all" ? "" : "&status=" + status));
  const select = h("select", { id: "alert-status", onchange: (e) => { location.hash = "#/alerts?status=" + e.target.value; } },
    ["open", "resolved", "all"].map((s) => h("option", { value: s, selected: s === status }, s)));
  const rows = data.alerts.map((a) => h("tr", { class: "link", "data-alert": a.id, onclick: () => { location.hash = "#/alert/" + a.id; } },
    h("td", {}, fmt.badge(a.severity)),
    h("td", {}, a.kind),
    h("td", {}, a.account_ids.length > 3 ? `${a.account_ids.slice(0, 3).join(", ")} +${a.account_ids.length - 3}` : a.account_ids.join(", ")),
    h("td", { class: "num" }, fmt.score(a.score)),
    h("td", {}, a.action, a.enforced ? "" : h("span", { class: "muted" }, " (shadow)")),
    h("td", {}, fmt.badge(a.status)),
    h("td", {}, fmt.time(a.created_at))));
  render(
    h("div", { class: "row" }, h("h2", {}, `Alerts (${data.alerts.length})`), h("label", {}, "Status ", select)),
    data.alerts.length === 0
      ? h("p", { class: "muted", id: "no-alerts" }, "No alerts.")
      : h("table", { id: "alerts" },
          h("thead", {}, h("tr", {}, ["Severity", "Kind", "Accounts", "Score", "Action", "Status", "Raised"].map((t) => h("th", { class: t === "Score" ? "num" : null }, t)))),
          h("tbody", {}, rows)));
}

function signalTable(signals) {
  return h("table", { class: "signals" },
    h("thead", {}, h("tr", {}, ["Signal", "Group", "Value", "Threshold", "Full at", "Weight", "Contribution", ""].map((t) => h("th", {}, t)))),
    h("tbody", {}, signals.map((s) => h("tr", {},
      h("td", {}, s.name),
      h("td", { class: "muted" }, s.group || ""),
      h("td", { class: "num" }, s.value),
      h("td", { class: "num" }, s.threshold ?? ""),
      h("td", { class: "num" }, s.full_at ?? ""),
      h("td", { class: "num" }, s.weight ?? ""),
      h("td", { class: "num" }, s.contribution, " ",
        h("span", { class: "bar" + (s.contribution < 0 ? " neg" : ""), style: { width: `${Math.min(80, Math.abs(s.contribution) * 160)}px` } })),
      h("td", {}, signalFired(s) ? fmt.badge("fired", "fired") : "")))));
}

// A signal is marked fired only when the detector says so (or, for evidence written
// without the flag, when it added to the score).
function signalFired(s) {
  return s.fired === true || (s.fired === undefined && Number(s.contribution) > 0);
}

// ---- timeline chart ------------------------------------------------------------------
// An SVG drawn with DOM calls (no inline style or script: the CSP allows neither): bars
// of requests per hour (refused ones darker, on top), a line of tokens per hour on its
// own scale, alerts and reviewer/detector actions as marked vertical lines. Every label
// is set as text.

const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const HOUR = 3600 * 1000;

// tl: the /timeline answer. opts: {width, height, compact, maxRequests, maxTokens, label}.
function timelineChart(tl, opts) {
  const o = Object.assign({ width: 960, height: 200, compact: false }, opts || {});
  const from = Date.parse(tl.from), to = Date.parse(tl.to);
  const hours = Math.max(1, Math.round((to - from) / HOUR));
  const pad = o.compact ? { l: 4, r: 4, t: 14, b: 4 } : { l: 52, r: 60, t: 16, b: 28 };
  const w = o.width - pad.l - pad.r, hgt = o.height - pad.t - pad.b;
  const tokens = (b) => b.prompt_tokens + b.completion_tokens;
  const maxReq = Math.max(1, o.maxRequests || 0, ...tl.hours.map((b) => b.requests));
  const maxTok = Math.max(1, o.maxTokens || 0, ...tl.hours.map(tokens));
  const x = (ms) => pad.l + ((ms - from) / (to - from)) * w;
  const bw = Math.max(1, w / hours - (hours > 100 ? 0 : 1));
  const y = (v, max) => pad.t + hgt - (v / max) * hgt;
  const svg = svgEl("svg", { class: "timeline" + (o.compact ? " compact" : ""), viewBox: `0 0 ${o.width} ${o.height}`,
    width: o.width, height: o.height, role: "img", "aria-label": o.label || `Requests and tokens per hour for ${tl.account_id}` },
    svgEl("title", {}, o.label || `Requests and tokens per hour for ${tl.account_id}`));
  svg.append(svgEl("rect", { class: "plot", x: pad.l, y: pad.t, width: w, height: hgt }));
  if (o.compact) svg.append(svgEl("text", { class: "label", x: pad.l + 2, y: 11 }, tl.account_id));
  for (const b of tl.hours) {
    const t = Date.parse(b.hour);
    const ok = b.requests - b.refused;
    const g = svgEl("g", { class: "hour", "data-hour": b.hour },
      svgEl("title", {}, `${fmt.time(b.hour)}: ${fmt.num(b.requests)} requests (${fmt.num(b.refused)} refused), ${fmt.num(b.prompt_tokens)} / ${fmt.num(b.completion_tokens)} tokens`),
      svgEl("rect", { class: "bar-requests", x: x(t), y: y(ok, maxReq), width: bw, height: pad.t + hgt - y(ok, maxReq) }));
    if (b.refused > 0) {
      g.append(svgEl("rect", { class: "bar-refused", x: x(t), y: y(b.requests, maxReq), width: bw, height: y(ok, maxReq) - y(b.requests, maxReq) }));
    }
    svg.append(g);
  }
  if (tl.hours.length) {
    const pts = tl.hours.map((b) => `${(x(Date.parse(b.hour)) + bw / 2).toFixed(1)},${y(tokens(b), maxTok).toFixed(1)}`);
    svg.append(svgEl("polyline", { class: "line-tokens", points: pts.join(" ") }));
  }
  const mark = (cls, at, text) => {
    const t = Date.parse(at);
    if (isNaN(t) || t < from || t > to) return;
    svg.append(svgEl("g", { class: cls },
      svgEl("title", {}, text),
      svgEl("line", { x1: x(t), x2: x(t), y1: pad.t, y2: pad.t + hgt }),
      svgEl("circle", { cx: x(t), cy: pad.t + 4, r: o.compact ? 2.5 : 4 })));
  };
  for (const a of tl.alerts || []) mark("mark-alert", a.created_at, `${fmt.time(a.created_at)}: alert ${a.kind} (${a.severity}, ${a.action}) ${a.id}`);
  for (const a of tl.actions || []) mark("mark-action", a.at, `${fmt.time(a.at)}: ${a.action} by ${a.actor}${a.reason ? ": " + a.reason : ""}`);
  if (!o.compact) {
    svg.append(
      svgEl("text", { class: "axis", x: pad.l - 6, y: pad.t + 4, "text-anchor": "end" }, fmt.num(maxReq)),
      svgEl("text", { class: "axis", x: pad.l - 6, y: pad.t + hgt, "text-anchor": "end" }, "0"),
      svgEl("text", { class: "axis tokens", x: pad.l + w + 6, y: pad.t + 4 }, fmt.num(maxTok)),
      svgEl("text", { class: "axis", x: 4, y: pad.t + hgt / 2 }, "req/h"),
      svgEl("text", { class: "axis tokens", x: pad.l + w + 6, y: pad.t + hgt / 2 }, "tok/h"));
    const step = hours <= 24 ? 6 : hours <= 72 ? 12 : 24;
    for (let t = Math.ceil(from / (step * HOUR)) * step * HOUR; t <= to; t += step * HOUR) {
      const d = new Date(t);
      const label = d.getUTCHours() === 0 ? d.toISOString().slice(5, 10) : d.toISOString().slice(11, 16);
      svg.append(svgEl("line", { class: "tick", x1: x(t), x2: x(t), y1: pad.t + hgt, y2: pad.t + hgt + 4 }),
        svgEl("text", { class: "axis", x: x(t), y: o.height - 8, "text-anchor": "middle" }, label));
    }
  }
  return svg;
}

function timelineLegend() {
  const key = (cls, text) => h("span", { class: "key" }, h("span", { class: "swatch " + cls }), text);
  return h("p", { class: "legend muted" }, key("requests", "requests per hour"), key("refused", "refused"),
    key("tokens", "tokens per hour (right scale)"), key("alert", "alert raised"), key("action", "action taken"), "· hours in UTC");
}

async function timelineCard(id, hours) {
  const tl = await api("GET", `/admin/v1/accounts/${encodeURIComponent(id)}/timeline?hours=${hours}`);
  const pick = h("select", { id: "timeline-hours", onchange: async (e) => {
      try { card.replaceWith(await timelineCard(id, e.target.value)); } catch (err) { toast(err.message, true); }
    } }, [[24, "24 hours"], [48, "48 hours"], [168, "7 days"], [720, "30 days"]].map(([v, t]) => h("option", { value: v, selected: Number(hours) === v }, t)));
  const total = tl.hours.reduce((n, b) => n + b.requests, 0);
  const card = h("div", { class: "card", id: "timeline-card" },
    h("div", { class: "row" }, h("h3", {}, "Activity"), pick,
      h("span", { class: "muted" }, `${fmt.num(total)} requests, ${tl.alerts.length} alert(s), ${tl.actions.length} action(s)`)),
    h("div", { class: "chart" }, timelineChart(tl)), timelineLegend());
  return card;
}

// Members of a cluster side by side, on one time axis and one scale: accounts that take
// turns (round robin) or fire in the same waves show it at a glance.
async function membersActivity(ids, hours) {
  const shown = ids.slice(0, 24);
  const tls = await Promise.all(shown.map((m) => api("GET", `/admin/v1/accounts/${encodeURIComponent(m)}/timeline?hours=${hours}`).catch(() => null)));
  const ok = tls.filter(Boolean);
  const maxRequests = Math.max(1, ...ok.flatMap((t) => t.hours.map((b) => b.requests)));
  const maxTokens = Math.max(1, ...ok.flatMap((t) => t.hours.map((b) => b.prompt_tokens + b.completion_tokens)));
  return h("div", { class: "card", id: "members-activity" },
    h("p", { class: "muted" }, `Last ${hours} hours, one shared scale (${fmt.num(maxRequests)} requests/h at the top)` +
      (ids.length > shown.length ? `; first ${shown.length} of ${ids.length} members` : "")),
    h("div", { class: "grid" }, ok.map((t) => h("a", { href: "#/account/" + encodeURIComponent(t.account_id), class: "cell" },
      timelineChart(t, { width: 300, height: 64, compact: true, maxRequests, maxTokens, label: `Activity of ${t.account_id}` })))),
    timelineLegend());
}

function samplesList(samples) {
  return h("table", { class: "samples" },
    h("thead", {}, h("tr", {}, ["When", "Excerpt", "Marks", "Request"].map((t) => h("th", {}, t)))),
    h("tbody", {}, samples.map((s) => h("tr", {},
      h("td", {}, fmt.time(s.ts_ms)),
      h("td", { class: "excerpt" }, s.excerpt),
      h("td", {}, (s.marks || []).map((m) => fmt.badge(m, "low"))),
      h("td", { class: "muted" }, s.request_id)))));
}

function actionsList(actions) {
  if (!actions || actions.length === 0) return h("p", { class: "muted" }, "No actions yet.");
  return h("table", { class: "actions" },
    h("thead", {}, h("tr", {}, ["When", "Who", "What", "On", "Why"].map((t) => h("th", {}, t)))),
    h("tbody", {}, actions.map((a) => h("tr", {},
      h("td", {}, fmt.time(a.ts)), h("td", {}, a.actor), h("td", {}, a.action),
      h("td", {}, a.target_id), h("td", {}, a.reason || "")))));
}

async function statusChange(accountId, block) {
  const verb = block ? "Block" : "Unblock";
  const reason = prompt(`${verb} ${accountId}: reason (recorded)`);
  if (reason === null) return false;
  await api("POST", `/admin/v1/accounts/${encodeURIComponent(accountId)}/${block ? "block" : "unblock"}`, { reason });
  toast(`${accountId} ${block ? "blocked" : "unblocked"}`);
  return true;
}

function statusButtons(account, after) {
  const blocked = account.status === "blocked";
  return h("button", { class: blocked ? "" : "danger", "data-action": blocked ? "unblock" : "block", "data-account": account.id,
    onclick: async (e) => {
      e.stopPropagation();
      try { if (await statusChange(account.id, !blocked)) after(); } catch (err) { toast(err.message, true); }
    } }, blocked ? "Unblock" : "Block");
}

async function alertView(id) {
  setNav("alerts");
  const a = await api("GET", "/admin/v1/alerts/" + encodeURIComponent(id));
  const ev = a.evidence || {};
  const again = () => alertView(id);
  const parts = [
    h("p", {}, h("a", { href: "#/alerts" }, "← Alerts")),
    h("div", { class: "card" },
      h("div", { class: "row" }, h("h2", {}, a.kind.replace(/_/g, " ")), fmt.badge(a.severity), fmt.badge(a.status),
        h("span", { class: "muted" }, a.id)),
      h("dl", { class: "kv" },
        h("dt", {}, "Score"), h("dd", { id: "alert-score" }, fmt.score(a.score)),
        h("dt", {}, "Action"), h("dd", {}, a.action, a.enforced ? " (enforced)" : " (shadow mode: not enforced)"),
        h("dt", {}, "Raised"), h("dd", {}, fmt.time(a.created_at)),
        h("dt", {}, "Updated"), h("dd", {}, fmt.time(a.updated_at)),
        ev.requests !== undefined && [h("dt", {}, "Requests seen"), h("dd", {}, fmt.num(ev.requests))],
        ev.first_seen && [h("dt", {}, "Active"), h("dd", {}, `${fmt.time(ev.first_seen)} → ${fmt.time(ev.last_seen)}`)],
        ev.prompt_tokens !== undefined && [h("dt", {}, "Tokens in / out"), h("dd", {}, `${fmt.num(ev.prompt_tokens)} / ${fmt.num(ev.completion_tokens)}`)],
        ev.reasoning_pattern && [h("dt", {}, "Reasoning pattern"), h("dd", {}, ev.reasoning_pattern)],
        ev.members !== undefined && [h("dt", {}, "Members"), h("dd", {}, `${ev.members} accounts, ${ev.linked_pairs} linked pairs, ${ev.distinct_subnets} subnet(s)`)],
        a.verdict && [h("dt", {}, "Verdict"), h("dd", { id: "verdict" }, `${a.verdict} by ${a.resolved_by || "?"} at ${fmt.time(a.resolved_at)}: ${a.note || ""}`)])),
  ];
  if (ev.signals) parts.push(h("h3", {}, "What fired"), signalTable(ev.signals));
  if (ev.features) parts.push(h("h3", {}, "Why these accounts belong together"), signalTable(ev.features));
  if (ev.samples && ev.samples.length) {
    parts.push(h("h3", {}, "Sample requests"));
    if (ev.samples[0].samples) {
      for (const m of ev.samples) parts.push(h("p", { class: "muted" }, m.account_id), samplesList(m.samples));
    } else parts.push(samplesList(ev.samples));
  }
  if ((a.account_ids || []).length > 1) {
    parts.push(h("h3", {}, "Members' activity"));
    try { parts.push(await membersActivity(a.account_ids, 48)); } catch (err) { parts.push(h("p", { class: "muted" }, "Activity unavailable: " + err.message)); }
  } else if ((a.account_ids || []).length === 1) {
    try { parts.push(await timelineCard(a.account_ids[0], 48)); } catch (err) { parts.push(h("p", { class: "muted" }, "Activity unavailable: " + err.message)); }
  }
  parts.push(h("h3", {}, `Accounts (${(a.accounts || []).length})`),
    h("table", { id: "members" },
      h("thead", {}, h("tr", {}, ["Account", "Status", "Tier", "Risk", "Requests", "Tokens in/out", "Why", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, (a.accounts || []).map((m) => h("tr", { class: "link", onclick: () => { location.hash = "#/account/" + m.id; } },
        h("td", {}, m.id), h("td", {}, fmt.badge(m.status)), h("td", {}, m.tier),
        h("td", { class: "num" }, fmt.score(m.risk_score)), h("td", { class: "num" }, fmt.num(m.usage && m.usage.requests)),
        h("td", { class: "num" }, m.usage ? `${fmt.num(m.usage.prompt_tokens)} / ${fmt.num(m.usage.completion_tokens)}` : "—"),
        h("td", { class: "muted" }, m.status_reason || ""),
        h("td", {}, statusButtons(m, again)))))));
  if (a.status === "open") {
    const note = h("textarea", { id: "resolve-note", placeholder: "What you checked and why (recorded)" });
    const verdict = h("select", { id: "resolve-verdict" },
      h("option", { value: "confirmed" }, "confirmed: harvesting, keep the action"),
      h("option", { value: "false_positive" }, "false positive: restore the accounts, suppress this alert"));
    parts.push(h("h3", {}, "Resolve"), h("div", { class: "card" }, verdict, h("p", {}, note),
      h("button", { class: "primary", id: "resolve", onclick: async () => {
        if (!note.value.trim()) { toast("A note is required.", true); return; }
        try {
          await api("POST", `/admin/v1/alerts/${encodeURIComponent(id)}/resolve`, { verdict: verdict.value, note: note.value.trim() });
          toast("Alert resolved"); again();
        } catch (err) { toast(err.message, true); }
      } }, "Resolve")));
  }
  parts.push(h("h3", {}, "Actions on this alert"), actionsList(a.actions));
  render(...parts);
}

// ---- accounts ------------------------------------------------------------------------

async function accountsView(params) {
  setNav("accounts");
  const q = (params.get("q") || "").toLowerCase();
  const data = await api("GET", "/admin/v1/accounts");
  const list = data.accounts
    .filter((a) => !q || a.id.toLowerCase().includes(q) || a.status === q)
    .sort((x, y) => (y.risk_score - x.risk_score) || x.id.localeCompare(y.id));
  const search = h("input", { type: "search", id: "account-search", placeholder: "filter by id or status", value: q,
    onchange: (e) => { location.hash = "#/accounts?q=" + encodeURIComponent(e.target.value); } });
  render(
    h("div", { class: "row" }, h("h2", {}, `Accounts (${list.length})`), search),
    h("table", { id: "accounts" },
      h("thead", {}, h("tr", {}, ["Account", "Status", "Tier", "Risk", "Requests", "Tokens in/out", "Updated"].map((t) => h("th", {}, t)))),
      h("tbody", {}, list.slice(0, 1000).map((a) => h("tr", { class: "link", "data-account": a.id, onclick: () => { location.hash = "#/account/" + a.id; } },
        h("td", {}, a.id), h("td", {}, fmt.badge(a.status)), h("td", {}, a.tier),
        h("td", { class: "num" }, fmt.score(a.risk_score)), h("td", { class: "num" }, fmt.num(a.usage.requests)),
        h("td", { class: "num" }, `${fmt.num(a.usage.prompt_tokens)} / ${fmt.num(a.usage.completion_tokens)}`),
        h("td", {}, fmt.time(a.updated_at)))))));
}

async function accountView(id) {
  setNav("accounts");
  const path = "/admin/v1/accounts/" + encodeURIComponent(id);
  const [a, keys, reqs, alerts, timeline] = await Promise.all([
    api("GET", path), api("GET", path + "/keys"), api("GET", path + "/requests?limit=100"),
    api("GET", "/admin/v1/alerts?account=" + encodeURIComponent(id)), timelineCard(id, 48),
  ]);
  const again = () => accountView(id);
  const limits = Object.entries(a.limits || {}).filter(([, v]) => v !== null);
  const detail = h("pre", { id: "record", hidden: true });
  render(
    h("p", {}, h("a", { href: "#/accounts" }, "← Accounts")),
    h("div", { class: "card" },
      h("div", { class: "row" }, h("h2", {}, a.id), fmt.badge(a.status), statusButtons(a, again)),
      h("dl", { class: "kv" },
        h("dt", {}, "Tier"), h("dd", {}, a.tier),
        h("dt", {}, "Risk score"), h("dd", {}, fmt.score(a.risk_score)),
        a.status_reason && [h("dt", {}, "Status reason"), h("dd", {}, a.status_reason)],
        h("dt", {}, "Limit overrides"), h("dd", {}, limits.length ? limits.map(([k, v]) => `${k} = ${v}`).join(", ") : "none (the tier's)"),
        h("dt", {}, "Since start of this process"), h("dd", {}, `${fmt.num(a.usage.requests)} requests, ${fmt.num(a.usage.prompt_tokens)} / ${fmt.num(a.usage.completion_tokens)} tokens`),
        h("dt", {}, "Created"), h("dd", {}, fmt.time(a.created_at)))),
    timeline,
    h("h3", {}, `Alerts (${alerts.alerts.length})`),
    alerts.alerts.length === 0 ? h("p", { class: "muted" }, "None.") :
      h("table", {}, h("tbody", {}, alerts.alerts.map((x) => h("tr", { class: "link", onclick: () => { location.hash = "#/alert/" + x.id; } },
        h("td", {}, fmt.badge(x.severity)), h("td", {}, x.kind), h("td", { class: "num" }, fmt.score(x.score)),
        h("td", {}, fmt.badge(x.status)), h("td", {}, fmt.time(x.created_at)))))),
    h("h3", {}, "History"), actionsList(a.actions),
    h("h3", {}, "Keys"),
    h("table", {}, h("tbody", {}, keys.keys.map((k) => h("tr", {},
      h("td", {}, k.key_id), h("td", { class: "muted" }, k.hint), h("td", {}, "created " + fmt.time(k.created_at)),
      h("td", {}, k.revoked_at ? fmt.badge("revoked", "blocked") : fmt.badge("live", "active")))))),
    h("h3", {}, `Recent requests (${reqs.requests.length})`),
    h("div", { class: "scroll" }, h("table", { id: "requests" },
      h("thead", {}, h("tr", {}, ["When", "Status", "Decision", "Path", "Model", "Tokens in/out", "Latency", "Client", "Reason"].map((t) => h("th", {}, t)))),
      h("tbody", {}, reqs.requests.map((r) => h("tr", { class: "link", onclick: () => { detail.hidden = false; detail.textContent = JSON.stringify(r, null, 2); } },
        h("td", {}, fmt.time(r.ts)), h("td", {}, r.status), h("td", {}, r.decision), h("td", {}, r.path), h("td", {}, r.model || "—"),
        h("td", { class: "num" }, r.usage ? `${r.usage.prompt_tokens} / ${r.usage.completion_tokens}` : "—"),
        h("td", { class: "num" }, `${r.latency_ms} ms`), h("td", { class: "muted" }, r.client_ip), h("td", { class: "muted" }, r.reason || "")))))),
    detail);
}

// ---- routing -------------------------------------------------------------------------

async function route() {
  // A token in the fragment (#token=...&actor=...[&go=/account/ID]) signs in directly
  // (the demo prints such a link); the fragment never reaches the server, and is
  // replaced at once.
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) {
    session.save(frag.get("token"), frag.get("actor") || session.actor || "dashboard");
    history.replaceState(null, "", location.pathname + "#" + (frag.get("go") || "/alerts"));
  }
  const who = document.getElementById("who");
  who.replaceChildren();
  if (!session.token) { loginView(); return; }
  who.append("reviewing as " + (session.actor || "dashboard"),
    h("button", { onclick: () => { session.clear(); location.hash = ""; route(); } }, "Sign out"));
  const [path, query] = (location.hash.replace(/^#/, "") || "/alerts").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "alert" && parts[1]) await alertView(decodeURIComponent(parts[1]));
    else if (parts[0] === "accounts") await accountsView(params);
    else if (parts[0] === "account" && parts[1]) await accountView(decodeURIComponent(parts[1]));
    else await alertsView(params);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 401)) render(h("p", { class: "card", id: "error" }, "Could not load: " + err.message));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
// The alert queue refreshes itself while it is on screen.
setInterval(() => { if (session.token && /^#?\/?(alerts)?(\?|$)/.test(location.hash.replace(/^#/, "") || "")) route(); }, 10000);
