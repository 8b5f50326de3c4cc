// agentengine web page: sign in, run agents, watch each run's events live.
// Plain JavaScript, no build step. Events arrive over one WebSocket per page; when it drops,
// the page reconnects with ?after=<last cursor> so the stream resumes with nothing lost, and
// (run_id, seq) pairs already shown are skipped so nothing is shown twice. The server closes
// the WebSocket when its token expires (1008, "token expired"): in dev mode the page gets a new
// token for the same user before then and hands it to the open connection ({"type": "auth"});
// with a pasted token it signs out when the token expires.
"use strict";

const EVENT_TYPES = new Set([
  "agent_started", "agent_thinking", "tool_executing", "tool_completed",
  "agent_error", "agent_completed", "events_lost",
]);
const LABELS = {
  agent_started: "started", agent_thinking: "thinking", tool_executing: "tool executing",
  tool_completed: "tool completed", agent_error: "error", agent_completed: "completed",
  events_lost: "events lost",
};

const state = {
  token: sessionStorage.getItem("agentengine.token"),
  user: sessionStorage.getItem("agentengine.user"),
  dev: false,
  agents: [],
  ws: null,
  cursor: null,          // resume point: cursor of the last event received
  seen: new Set(),       // "run_id:seq" already rendered
  runs: new Map(),       // run_id -> {card, list, badge, ...}
  retry: 0,
  reconnectTimer: null,
  refreshTimer: null,
  signedIn: false,
  nextRef: 1,
};

const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function short(value, limit = 160) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  const response = await fetch(path, { ...options, headers });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const message = (body && body.message) || response.statusText;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

// -- sign in -------------------------------------------------------------------------------

async function init() {
  try {
    const health = await api("/healthz");
    state.dev = Boolean(health.dev);
  } catch (_) {
    state.dev = false;
  }
  $(state.dev ? "signin-dev" : "signin-token").hidden = false;
  $("signin-dev").addEventListener("submit", signInDev);
  $("signin-token").addEventListener("submit", signInToken);
  $("sign-out").addEventListener("click", signOut);
  $("run-form").addEventListener("submit", sendRun);
  $("agent").addEventListener("change", showAgent);
  $("drop").addEventListener("click", dropConnection);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("send").click(); }
  });
  if (state.token) await enter();
}

async function signInDev(event) {
  event.preventDefault();
  $("signin-error").textContent = "";
  try {
    const body = await api("/v1/dev/token", {
      method: "POST", body: JSON.stringify({ user: $("user-name").value.trim() }),
    });
    state.token = body.token;
    state.user = body.user;
    await enter();
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
}

async function signInToken(event) {
  event.preventDefault();
  state.token = $("token-input").value.trim();
  state.user = null;
  await enter();
}

async function enter() {
  try {
    const body = await api("/v1/agents");
    state.agents = body.agents;
  } catch (error) {
    $("signin-error").textContent = error.message;
    state.token = null;
    return;
  }
  if (!state.user) state.user = claimsOf(state.token).sub || null;
  sessionStorage.setItem("agentengine.token", state.token);
  sessionStorage.setItem("agentengine.user", state.user || "");
  state.signedIn = true;
  $("signin").hidden = true;
  $("composer").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = state.user || "?";
  const select = $("agent");
  select.replaceChildren();
  for (const agent of state.agents) {
    const option = el("option", "", agent.name);
    option.value = agent.name;
    select.append(option);
  }
  showAgent();
  scheduleRefresh();
  connect();
  $("message").focus();
}

// The token's claims, read without checking (the server checks): for the user and expiry.
function claimsOf(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)) || {};
  } catch (_) {
    return {};
  }
}

// Dev mode: get a new token when 80% of the current one's remaining life has passed.
function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  const exp = Number(claimsOf(state.token).exp);
  if (!state.dev || !state.user || !Number.isFinite(exp)) return;
  const delay = Math.max(500, (exp * 1000 - Date.now()) * 0.8);
  state.refreshTimer = setTimeout(refreshToken, delay);
}

async function refreshToken() {
  if (!state.signedIn) return false;
  try {
    const body = await api("/v1/dev/token", {
      method: "POST", body: JSON.stringify({ user: state.user }),
    });
    state.token = body.token;
    sessionStorage.setItem("agentengine.token", state.token);
  } catch (error) {
    $("run-error").textContent = "could not renew the session: " + error.message;
    return false;
  }
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "auth", token: state.token, id: state.nextRef++ }));
  }
  scheduleRefresh();
  return true;
}

function signOut() {
  sessionStorage.removeItem("agentengine.token");
  sessionStorage.removeItem("agentengine.user");
  state.signedIn = false;
  clearTimeout(state.refreshTimer);
  if (state.ws) state.ws.close(1000, "signed out");
  location.reload();
}

// -- composing runs ------------------------------------------------------------------------

function currentAgent() {
  return state.agents.find((a) => a.name === $("agent").value);
}

// The agent's input schema, as a form. The first required text input (or the only text
// input) is the message box; every other input gets a field of its own, by its type: a number
// box, a choice for an enum or a boolean, a text box, or JSON for lists, objects and unions.
// An optional field left empty is not sent, so the agent's default applies.

function propertiesOf(agent) {
  const schema = (agent && agent.input_schema) || {};
  return { props: schema.properties || {}, required: schema.required || [] };
}

// The JSON type of a property: "integer", "number", "boolean", "string", "enum" or "json".
function kindOf(prop) {
  let p = prop || {};
  const options = p.anyOf || p.oneOf;
  if (options) {
    const real = options.filter((o) => o.type !== "null");
    if (real.length !== 1) return "json";
    p = real[0];
  }
  if (Array.isArray(p.enum)) return "enum";
  if (["integer", "number", "boolean", "string"].includes(p.type)) return p.type;
  return "json";
}

function enumOf(prop) {
  const options = (prop && (prop.anyOf || prop.oneOf)) || [prop || {}];
  const found = options.find((o) => Array.isArray(o.enum));
  return found ? found.enum : [];
}

function messageField(agent) {
  const { props, required } = propertiesOf(agent);
  const texts = Object.keys(props).filter((name) => kindOf(props[name]) === "string");
  const requiredText = texts.find((name) => required.includes(name));
  if (requiredText) return requiredText;
  return texts.length === 1 ? texts[0] : null;
}

function fieldLabel(name, required) {
  return required ? `${name} (required)` : name;
}

function showAgent() {
  const agent = currentAgent();
  $("agent-desc").textContent = agent ? agent.description || "" : "";
  const { props, required } = propertiesOf(agent);
  const message = messageField(agent);
  $("message-label").textContent = message ? fieldLabel(message, required.includes(message)) : "";
  $("message-label").hidden = !message;
  $("message").hidden = !message;
  $("message").placeholder = message ? (props[message].description || "Ask something") : "";
  const fields = $("fields");
  fields.replaceChildren();
  for (const [name, prop] of Object.entries(props)) {
    if (name === message) continue;
    const kind = kindOf(prop);
    const id = "field-" + name;
    const label = el("label", "", fieldLabel(name, required.includes(name)));
    label.htmlFor = id;
    let input;
    if (kind === "enum" || kind === "boolean") {
      input = el("select");
      const choices = kind === "enum" ? enumOf(prop) : [true, false];
      const empty = el("option", "", prop.default !== undefined
        ? `(default: ${JSON.stringify(prop.default)})` : "(none)");
      empty.value = "";
      input.append(empty);
      for (const choice of choices) {
        const option = el("option", "", String(choice));
        option.value = JSON.stringify(choice);
        input.append(option);
      }
    } else {
      input = el("input");
      if (kind === "integer" || kind === "number") {
        input.type = "number";
        input.step = kind === "integer" ? "1" : "any";
      }
      if (prop.default !== undefined) input.placeholder = "default: " + JSON.stringify(prop.default);
      else if (kind === "json") input.placeholder = "JSON";
    }
    input.id = id;
    input.dataset.field = name;
    input.dataset.kind = kind;
    if (prop.description) input.title = prop.description;
    const row = el("div", "field");
    row.append(label, input);
    fields.append(row);
  }
}

// The run's input from the form; throws an Error naming the field when a value is unusable.
function readInput(agent) {
  const { required } = propertiesOf(agent);
  const input = {};
  const message = messageField(agent);
  if (message) {
    const text = $("message").value;
    if (text !== "" || required.includes(message)) input[message] = text;
  }
  for (const node of $("fields").querySelectorAll("[data-field]")) {
    const name = node.dataset.field;
    const raw = node.value.trim();
    if (node.validity && node.validity.badInput) throw new Error(`${name} must be a number`);
    if (raw === "") {
      if (required.includes(name)) throw new Error(`${name} is required`);
      continue;
    }
    const kind = node.dataset.kind;
    if (kind === "string") {
      input[name] = node.value;
    } else if (kind === "integer" || kind === "number") {
      const value = Number(raw);
      if (!Number.isFinite(value) || (kind === "integer" && !Number.isInteger(value))) {
        throw new Error(`${name} must be ${kind === "integer" ? "a whole number" : "a number"}`);
      }
      input[name] = value;
    } else {
      try { input[name] = JSON.parse(raw); } catch (error) {
        throw new Error(`${name} is not valid JSON: ${error.message}`);
      }
    }
  }
  return input;
}

async function sendRun(event) {
  event.preventDefault();
  $("run-error").textContent = "";
  const agent = currentAgent();
  if (!agent) return;
  let input;
  try { input = readInput(agent); } catch (error) {
    $("run-error").textContent = error.message;
    return;
  }
  const frame = { type: "run", agent: agent.name, input, id: state.nextRef++ };
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
  } else {
    try {
      const body = await api("/v1/runs", {
        method: "POST", body: JSON.stringify({ agent: agent.name, input }),
      });
      runCard(body.run_id, agent.name);
    } catch (error) {
      $("run-error").textContent = error.message;
      return;
    }
  }
  $("message").value = "";
}

async function cancelRun(runId) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify({ type: "cancel", run_id: runId }));
  } else {
    try { await api(`/v1/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" }); }
    catch (error) { $("run-error").textContent = error.message; }
  }
}

// -- the event connection ------------------------------------------------------------------

function setConn(kind, text) {
  const node = $("conn");
  node.className = "conn " + kind;
  node.textContent = text;
  node.dataset.state = kind;
}

function connect() {
  clearTimeout(state.reconnectTimer);
  if (!state.signedIn) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = state.cursor !== null ? "?after=" + encodeURIComponent(state.cursor) : "";
  const ws = new WebSocket(`${scheme}//${location.host}/v1/ws${query}`, ["bearer", state.token]);
  state.ws = ws;
  setConn("wait", state.cursor !== null ? "resuming…" : "connecting…");
  ws.onopen = () => {
    state.retry = 0;
    setConn("live", "live");
  };
  ws.onmessage = (message) => {
    let data;
    try { data = JSON.parse(message.data); } catch (_) { return; }
    handleFrame(data);
  };
  ws.onclose = (close) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if (!state.signedIn) return;
    if (close.code === 1008 && close.reason.startsWith("token expired")) {
      setConn("off", "session expired");
      // Dev mode: a new token, then resume after the last cursor; otherwise sign in again.
      if (state.dev) refreshToken().then((ok) => (ok ? connect() : signOut()));
      else signOut();
      return;
    }
    // 1013: we fell behind and the server asked us to resume; other codes: the network or
    // the server went away. Either way: resume after the last cursor, backing off.
    const delay = close.code === 1013 ? 0 : Math.min(8000, 500 * 2 ** state.retry++);
    setConn("off", `offline, reconnecting${state.cursor ? " after " + state.cursor : ""}…`);
    state.reconnectTimer = setTimeout(checkAndConnect, delay);
  };
}

async function checkAndConnect() {
  // A refused handshake looks like a network error in the browser: check the token first.
  try {
    await api("/v1/agents");
  } catch (error) {
    if (error.status === 401) { $("run-error").textContent = "session expired"; signOut(); return; }
  }
  connect();
}

function dropConnection() {
  if (state.ws) state.ws.close(4000, "simulated network drop");
}

function handleFrame(data) {
  if (EVENT_TYPES.has(data.type)) {
    if (data.cursor !== undefined && data.cursor !== null) {
      state.cursor = data.cursor;
      $("cursor").textContent = "cursor " + data.cursor;
    }
    if (data.type === "events_lost") { showGap(data); return; }
    const key = data.run_id + ":" + data.seq;
    if (state.seen.has(key)) return;
    state.seen.add(key);
    showEvent(data);
  } else if (data.type === "run_accepted") {
    runCard(data.run_id);
  } else if (data.type === "error") {
    // An event the server could not encode comes as an error item carrying its cursor: move
    // past it, so a reconnect resumes after it instead of receiving it again.
    if (data.cursor !== undefined && data.cursor !== null) {
      state.cursor = data.cursor;
      $("cursor").textContent = "cursor " + data.cursor;
      const key = data.run_id + ":" + data.seq;
      if (state.seen.has(key)) return;
      state.seen.add(key);
    }
    $("run-error").textContent = data.message;
  }
}

// -- rendering -----------------------------------------------------------------------------

function runCard(runId, agentName) {
  let run = state.runs.get(runId);
  if (run) return run;
  const card = el("article", "run");
  card.dataset.runId = runId;
  const head = el("div", "run-head");
  const agent = el("span", "agent", agentName || "…");
  const badge = el("span", "badge running", "running");
  badge.dataset.status = "running";
  const rid = el("span", "rid", runId);
  const cancel = el("button", "small cancel", "cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => cancelRun(runId));
  head.append(agent, badge, rid, cancel);
  const list = el("ol", "timeline");
  card.append(head, list);
  $("runs").prepend(card);
  run = { card, list, badge, agent, cancel };
  state.runs.set(runId, run);
  return run;
}

function code(text) { return el("code", "", text); }

function describe(ev) {
  const detail = el("span", "detail");
  switch (ev.type) {
    case "agent_started":
      detail.append("input ", code(short(ev.input)));
      break;
    case "agent_thinking":
      detail.textContent = ev.text;
      break;
    case "tool_executing":
      detail.append(code(ev.tool), " with ", code(short(ev.args)));
      break;
    case "tool_completed": {
      const shown = ev.status === "ok" ? ev.result : ev.error;
      detail.append(code(ev.tool), ` ${ev.status} in ${Math.round(ev.duration_ms)} ms → `,
        code(short(shown)));
      break;
    }
    case "agent_error":
      // The error usually starts with its type already ("ToolError: ..."): say it once.
      detail.textContent = ev.error === ev.error_type || ev.error.startsWith(ev.error_type + ": ")
        ? ev.error : `${ev.error_type}: ${ev.error}`;
      break;
    case "agent_completed":
      detail.textContent = `${ev.status} in ${Math.round(ev.duration_ms)} ms`;
      break;
    default:
      detail.textContent = short(ev);
  }
  return detail;
}

function showEvent(ev) {
  const run = runCard(ev.run_id, ev.agent);
  run.agent.textContent = ev.agent;
  const item = el("li", "ev-" + ev.type);
  item.dataset.type = ev.type;
  item.dataset.seq = ev.seq;
  item.append(el("span", "seq", "#" + ev.seq), el("span", "type", LABELS[ev.type]), describe(ev));
  // Keep the timeline in seq order even if a resumed stream repeats or reorders nothing.
  const after = [...run.list.children].find((li) => Number(li.dataset.seq) > ev.seq);
  run.list.insertBefore(item, after || null);
  if (ev.type === "agent_completed") {
    run.badge.textContent = ev.status;
    run.badge.className = "badge " + ev.status;
    run.badge.dataset.status = ev.status;
    run.cancel.remove();
    const ok = ev.status === "succeeded";
    const answer = el("div", ok ? "answer" : "answer failed",
      ok ? (typeof ev.output === "string" ? ev.output : JSON.stringify(ev.output, null, 2))
         : ev.error || ev.status);
    run.card.append(answer);
  }
}

function showGap(gap) {
  const note = el("p", "error", gap.missed === null
    ? "Earlier events are no longer available (the server restarted); showing what it kept."
    : `${gap.missed} event(s) were no longer retained and are missing.`);
  note.dataset.type = "events_lost";
  $("runs").prepend(note);
}

init();
