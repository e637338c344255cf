// The Cival dashboard: a client of the operator API (/api/v1) and of a run's live stream.
//
// The run's state (wallets, farms, agents, goals, the run itself) comes from its AG-UI
// stream: a STATE_SNAPSHOT, then STATE_DELTA patches (JSON Patch), with CUSTOM events for
// fills and operator actions. What the stream does not carry (each wallet's equity, the
// equity curves, the audit trail) is read from the API when the stream says it changed,
// never on a timer. Reads go with the HttpOnly session cookie set at sign-in; commands
// with the access token kept for this tab (sessionStorage), refreshed when it expires.

const API = "/api/v1";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

const S = {
  access: sessionStorage.getItem("cival.access"),
  refresh: sessionStorage.getItem("cival.refresh"),
  me: null,            // {name, role}
  runs: [],
  run: null,           // the run shown
  state: null,         // the AG-UI state
  config: null,        // the run's config (from its run_started event)
  currency: "USD",
  last: null,          // the id of the last event group received whole
  source: null,        // the EventSource
  tree: [],            // GET /wallets
  fills: [],           // newest first (the newest 1,000)
  fillIds: new Set(),  // every fill received (a fill delivered twice is shown once)
  duplicates: 0,
  sort: {key: "name", dir: 1},
  reconnects: 0,
};

// -- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status; this.code = e.code; this.field = e.field; this.issues = e.issues || [];
  }
}

async function api(method, path, body, retried = false) {
  const headers = {"Content-Type": "application/json"};
  if (S.access && method !== "GET") headers.Authorization = `Bearer ${S.access}`;
  const response = await fetch(API + path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                            credentials: "same-origin"});
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401 && !retried && S.refresh && path !== "/auth/refresh" && path !== "/auth/login") {
    if (await refresh()) return api(method, path, body, true);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

async function refresh() {
  try {
    const tokens = await api("POST", "/auth/refresh", {refresh_token: S.refresh, cookie: true}, true);
    keep(tokens);
    return true;
  } catch (e) {
    return false;
  }
}

function keep(tokens) {
  S.access = tokens.access_token; S.refresh = tokens.refresh_token;
  sessionStorage.setItem("cival.access", S.access);
  sessionStorage.setItem("cival.refresh", S.refresh);
}

// -- formatting ---------------------------------------------------------------------------

function money(value) {
  if (value === null || value === undefined || value === "") return "–";
  const n = Number(value);
  try {
    return new Intl.NumberFormat(undefined, {style: "currency", currency: S.currency}).format(n);
  } catch (e) {
    return `${n.toFixed(2)} ${S.currency}`;
  }
}
const pct = (x) => (x === null || x === undefined || Number.isNaN(Number(x)) ? "–" : `${(100 * Number(x)).toFixed(2)} %`);
const num = (x, d = 2) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

function when(iso) {
  if (!iso) return "–";
  const t = new Date(iso);
  const el = document.createElement("time");
  el.dateTime = t.toISOString();
  el.title = t.toISOString().replace(".000Z", "Z") + " (UTC)";
  el.textContent = t.toLocaleString();
  return el;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message || "";
  box.hidden = !message;
}

// -- signing in ---------------------------------------------------------------------------

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  $("#login-error").textContent = "";
  try {
    const tokens = await api("POST", "/auth/login", {name: form.name.value, password: form.password.value, cookie: true});
    keep(tokens);
    form.reset();
    await start();
  } catch (e) {
    $("#login-error").textContent = e.message;
  }
}

async function signOut() {
  try { await api("POST", "/auth/logout"); } catch (e) { /* the cookie goes anyway */ }
  sessionStorage.clear();
  location.hash = "";
  location.reload();
}

// -- the stream ---------------------------------------------------------------------------

function connection(text, kind) {
  const c = $("#connection");
  c.textContent = text;
  c.dataset.state = kind;
}

async function follow() {
  if (S.source) S.source.close();
  S.source = null;
  if (!S.run) return;
  let query = "";
  try {
    const minted = await api("POST", `/runs/${S.run}/stream-token`);
    query = `?token=${encodeURIComponent(minted.token)}`;
  } catch (e) {
    connection("disconnected: " + e.message, "down");
    return;
  }
  if (S.last !== null) query += `&last_event_id=${S.last}`;
  const source = new EventSource(`${API}/runs/${S.run}/stream${query}`);
  S.source = source;
  connection(S.reconnects ? "reconnecting…" : "connecting…", "connecting");
  const seen = (e) => { if (e.lastEventId) S.last = Number(e.lastEventId); };
  source.onopen = () => connection("live", "live");
  source.onerror = () => {
    if (source !== S.source) return;
    if (source.readyState === EventSource.CLOSED || S.state?.run?.status !== "running") {
      // The browser gave up (the token expired, the server is away): a new token, from where we were.
      source.close();
      if (S.state && ["finished", "interrupted", "failed"].includes(S.state.run.status)) {
        connection(`run ${S.state.run.status}`, "ended");
        return;
      }
      S.reconnects += 1;
      connection("reconnecting…", "connecting");
      setTimeout(follow, Math.min(5000, 250 * S.reconnects));
    } else {
      connection("reconnecting…", "connecting");  // the browser retries with Last-Event-ID itself
    }
  };
  source.addEventListener("STATE_SNAPSHOT", (e) => { S.state = JSON.parse(e.data).snapshot; seen(e); changed(); });
  source.addEventListener("STATE_DELTA", (e) => { patch(S.state, JSON.parse(e.data).delta); seen(e); changed(); });
  source.addEventListener("CUSTOM", (e) => { custom(JSON.parse(e.data)); seen(e); });
  source.addEventListener("RUN_STARTED", seen);
  source.addEventListener("RUN_FINISHED", (e) => {
    seen(e); source.close(); connection(`run ${S.state?.run?.status || "ended"}`, "ended"); changed();
  });
  source.addEventListener("RUN_ERROR", (e) => { seen(e); source.close(); connection("run failed", "ended"); changed(); });
}

function patch(state, ops) {
  if (!state) return;
  for (const op of ops) {
    const keys = op.path.split("/").slice(1).map((k) => k.replace(/~1/g, "/").replace(/~0/g, "~"));
    if (keys.length === 0) { Object.assign(state, op.value); continue; }
    let parent = state;
    for (const k of keys.slice(0, -1)) parent = parent[k] ??= {};
    const last = keys[keys.length - 1];
    if (op.op === "remove") delete parent[last];
    else parent[last] = op.value;
  }
}

function custom(event) {
  const v = event.value || {};
  if (event.name === "run_started") {
    S.config = v.config; S.currency = v.currency || S.currency;
  } else if (event.name === "order_filled") {
    if (S.fillIds.has(v.fill_id)) { S.duplicates += 1; return; }
    S.fillIds.add(v.fill_id);
    S.fills.unshift(v);
    if (S.fills.length > 1000) S.fills.length = 1000;
    schedule("fills");
  } else if (event.name === "operator_action") {
    schedule("audit");
    reread();
  }
}

// -- what changed, drawn once per frame; reads the stream does not carry, at most twice a second

const due = new Set();
let frame = 0;
function schedule(what) {
  due.add(what);
  if (!frame) frame = requestAnimationFrame(draw);
}
function changed() { schedule("state"); reread(); }

let rereading = null;
let rereadAgain = false;
function reread() {
  if (rereading) { rereadAgain = true; return; }
  rereading = (async () => {
    try {
      S.tree = await api("GET", `/runs/${S.run}/wallets`);
      schedule("tree");
    } catch (e) {
      if (e.status !== 409) showError(e.message);
    }
    await new Promise((r) => setTimeout(r, 500));
    rereading = null;
    if (rereadAgain) { rereadAgain = false; reread(); }
  })();
}

function draw() {
  frame = 0;
  const what = new Set(due); due.clear();
  if (what.has("state") || what.has("tree")) { drawMaster(); drawFarms(); drawGoals(); drawAgents(); drawMetrics(); drawSystem(); }
  if (what.has("fills")) drawFills();
  if (what.has("audit")) loadAudit();
}

// -- sections -----------------------------------------------------------------------------

const rows = (kind) => S.tree.filter((r) => r.kind === kind);
const operator = () => S.me && (S.me.role === "operator" || S.me.role === "admin");

function drawMaster() {
  const master = rows("master")[0];
  const farms = rows("farm");
  if (!master) return;
  $("#master-figures").replaceChildren(
    fig("Balance", money(master.cash), "master-cash"),
    fig("Equity", money(master.equity), "master-equity"),
    fig("Net P&L", money(master.net_pnl), "master-pnl"),
    fig("Allocated to farms", money(sumOf(farmWallets(), "allocated")), "master-allocated"),
    fig("Collected from farms", money(sumOf(farmWallets(), "collected")), "master-collected"),
  );
  const total = Number(master.equity) || 1;
  $("#master-allocations tbody").replaceChildren(...farms.map((f) =>
    el("tr", {}, el("td", {}, f.name), el("td", {class: "n"}, money(f.equity)), el("td", {class: "n"}, pct(Number(f.equity) / total)))));
  $("#available").textContent = money(master.cash);
  for (const select of $$(".farm-options")) {
    const chosen = select.value;
    select.replaceChildren(...farms.map((f) => el("option", {value: f.name}, f.name)));
    if (chosen) select.value = chosen;
  }
}

const farmWallets = () => Object.entries(S.state?.wallets || {}).filter(([ref]) => ref.startsWith("farm:")).map(([, w]) => w);
const sumOf = (list, key) => list.reduce((total, w) => total + (Number(w[key]) || 0), 0);

function fig(label, value, id) {
  return el("div", {class: "figure"}, el("span", {class: "label"}, label), el("span", {class: "value", id}, value));
}

const farmCards = new Map();  // farm -> its card: built once, its figures updated (a form being filled is kept)

function drawFarms() {
  const farms = rows("farm");
  const agents = rows("agent");
  const box = $("#farm-cards");
  for (const f of farms) {
    let card = farmCards.get(f.name);
    if (!card || !box.contains(card.node)) { card = farmCard(f.name); farmCards.set(f.name, card); box.append(card.node); }
    const live = S.state?.farms?.[f.name] || {};
    const halted = f.halted;
    const policy = S.config?.farms?.find((c) => c.name === f.name)?.allocation?.policy || "–";
    card.node.classList.toggle("halted", Boolean(halted));
    card.badge.hidden = !halted;
    card.facts.replaceChildren(
      el("dt", {}, "Type"), el("dd", {}, live.farm_type || "–"),
      el("dt", {}, "Policy"), el("dd", {}, policy),
      el("dt", {}, "Cash"), el("dd", {}, money(f.cash)),
      el("dt", {}, "Equity"), el("dd", {class: "farm-equity"}, money(f.equity)),
      el("dt", {}, "P&L"), el("dd", {}, money(f.net_pnl)),
      el("dt", {}, "Drawdown"), el("dd", {}, pct(f.max_drawdown)),
      el("dt", {}, "Status"), el("dd", {class: "status"}, halted ? `HALTED: ${halted}` : "trading"),
      el("dt", {}, "Agents"), el("dd", {}, agents.filter((a) => a.parent === f.name).map((a) => a.name).join(", ")),
    );
    if (card.toggle) {
      card.toggle.textContent = `${halted ? "Resume" : "Halt"} ${f.name}`;
      card.toggle.dataset.halted = halted ? "1" : "";
      card.available.textContent = money(rows("master")[0]?.cash);
    }
  }
}

function farmCard(name) {
  const badge = el("span", {class: "badge", hidden: true}, "HALTED");
  const facts = el("dl", {class: "facts"});
  const node = el("article", {class: "card", "data-farm": name}, el("h3", {}, name, badge), facts);
  const card = {node, badge, facts, toggle: null, available: null};
  if (operator()) {
    const amount = el("input", {name: "amount", inputmode: "decimal", "aria-label": `Amount to allocate to ${name}`});
    card.available = el("span");
    card.toggle = el("button", {onclick: () => {
      const halted = card.toggle.dataset.halted === "1";
      act(halted ? {kind: "resume", target: `farm:${name}`} : {kind: "halt", target: `farm:${name}`, reason: `halted by ${S.me.name}`},
          `${name} ${halted ? "resumed" : "halted"}`);
    }}, `Halt ${name}`);
    node.append(el("div", {class: "acts"}, card.toggle,
      el("form", {class: "form inline", onsubmit: (e) => {
        e.preventDefault();
        act({kind: "allocate", target: name, amount: amount.value.trim()}, `allocated to ${name}`);
      }}, amount, el("button", {type: "submit"}, `Allocate to ${name}`), el("span", {class: "hint"}, "available: ", card.available)),
    ));
  }
  return card;
}

function drawGoals() {
  const goals = Object.entries(S.state?.goals || {});
  $("#goal-list").replaceChildren(...(goals.length ? goals.map(([name, g]) => {
    const target = g.target || {};
    const aim = target.trades ? `${target.trades} trades` + (target.min_profit_per_trade ? ` of ${money(target.min_profit_per_trade)} or more` : "")
      : target.profit ? `profit of ${money(target.profit)}` : JSON.stringify(target);
    const deadline = g.deadline ? (g.deadline.bars ? `${g.deadline.bars} bars` : g.deadline.time) : "none";
    return el("article", {class: `goal ${g.status}`, "data-goal": name},
      el("h3", {}, name, " ", el("span", {class: "badge"}, g.status)),
      el("progress", {max: "100", value: String(Number(g.progress) || 0), "aria-label": `${name} progress`}),
      el("span", {class: "n"}, ` ${num(g.progress)} %`),
      el("p", {}, `${aim}; deadline: ${deadline}; on completion: ${g.on_complete}; collected ${money(g.collected)}`),
      operator() && g.status === "active"
        ? el("button", {onclick: () => confirmThen(`Cancel goal ${name}?`, () => call("POST", `/runs/${S.run}/goals/${encodeURIComponent(name)}/cancel`, {}, `goal ${name} cancelled`))}, `Cancel ${name}`)
        : "",
    );
  }) : [el("p", {}, "no goals in this run")]));
}

function drawAgents() {
  const filter = $("#agent-filter").value.trim().toLowerCase();
  const list = rows("agent").map((a) => {
    const pos = (a.positions || []).map((p) => `${p.qty} ${p.symbol}`).join(", ");
    return {name: a.name, strategy: a.strategy || S.state?.agents?.[a.name]?.strategy || "–", farm: a.parent, cash: Number(a.cash),
            position: pos || "flat", equity: Number(a.equity), trades: a.trades ?? 0, win_rate: a.win_rate, sharpe: a.sharpe,
            status: a.halted ? `HALTED: ${a.halted}` : "trading"};
  }).filter((r) => !filter || `${r.name} ${r.strategy} ${r.farm}`.toLowerCase().includes(filter));
  const {key, dir} = S.sort;
  list.sort((x, y) => (x[key] ?? -Infinity) > (y[key] ?? -Infinity) ? dir : (x[key] ?? -Infinity) < (y[key] ?? -Infinity) ? -dir : 0);
  $("#agent-table tbody").replaceChildren(...list.map((r) => el("tr", {"data-agent": r.name},
    el("td", {}, r.name), el("td", {}, r.strategy), el("td", {}, r.farm), el("td", {class: "n"}, money(r.cash)),
    el("td", {}, r.position), el("td", {class: "n"}, money(r.equity)), el("td", {class: "n"}, String(r.trades)),
    el("td", {class: "n"}, pct(r.win_rate)), el("td", {class: "n"}, num(r.sharpe)), el("td", {}, r.status))));
}

function drawMetrics() {
  const all = [...rows("master"), ...rows("farm"), ...rows("agent")];
  $("#metrics-table tbody").replaceChildren(...all.map((r) => el("tr", {},
    el("td", {}, r.name), el("td", {class: "n"}, money(r.net_pnl)), el("td", {class: "n"}, pct(r.max_drawdown)),
    el("td", {class: "n"}, num(r.sharpe)), el("td", {class: "n"}, String(r.trades ?? "–")), el("td", {class: "n"}, pct(r.win_rate)))));
  const select = $("#curve-entity");
  const curves = all.filter((r) => r.kind !== "master");  // farms and agents keep an equity series
  if (!select.options.length && curves.length) {
    select.replaceChildren(...curves.map((r) => el("option", {value: `${r.kind}:${r.name}`}, `${r.name} (${r.kind})`)));
    loadCurve();
  }
}

function drawSystem() {
  const run = S.state?.run || {};
  const facts = [["Run", S.run], ["Cluster", run.cluster], ["Status", run.status], ["Mode", run.mode], ["Store", run.store],
                 ["Stream", run.streams], ["Currency", run.currency], ["Bars", run.bars], ["Audit", run.audit_ok === null ? "–" : run.audit_ok ? "OK" : "FAILED"]];
  $("#run-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v ?? "–"))]));
  if (S.config) $("#run-config").textContent = JSON.stringify(S.config, null, 2);
}

function drawFills() {
  $("#fill-table tbody").replaceChildren(...S.fills.slice(0, 200).map((f) => el("tr", {"data-fill": f.fill_id},
    el("td", {}, when(f.at)), el("td", {}, f.agent), el("td", {class: f.side}, f.side), el("td", {class: "n"}, f.qty),
    el("td", {class: "n"}, money(f.price)), el("td", {class: "n"}, money(f.fee)), el("td", {}, f.reason))));
  fillChart();
}

async function loadAudit() {
  try {
    const page = await api("GET", `/runs/${S.run}/events?type=operator_action&limit=1000`);
    $("#audit-table tbody").replaceChildren(...page.items.slice().reverse().map((e) => el("tr", {},
      el("td", {}, when(e.at)), el("td", {}, e.data.by), el("td", {}, e.data.command), el("td", {}, e.data.target), el("td", {}, e.data.status))));
  } catch (e) { showError(e.message); }
}

// -- charts (uPlot) ------------------------------------------------------------------------

const charts = {};
function chart(id, series, data) {
  const box = document.getElementById(id);
  if (!window.uPlot || !box) return;
  const width = Math.max(280, box.clientWidth || 600);
  if (charts[id] && charts[id].series.length === series.length + 1) {
    charts[id].setData(data);
    charts[id].setSize({width, height: 220});
    return;
  }
  charts[id]?.destroy();
  box.replaceChildren();
  charts[id] = new uPlot({width, height: 220, series: [{}, ...series], axes: [{}, {size: 70}]}, data, box);
}

async function series(entity) {
  // The newest 1,000 snapshots of a wallet's equity (one per bar it traded).
  const head = await api("GET", `/runs/${S.run}/equity?entity=${encodeURIComponent(entity)}&limit=1`);
  const offset = Math.max(0, head.total - 1000);
  return (await api("GET", `/runs/${S.run}/equity?entity=${encodeURIComponent(entity)}&limit=1000&offset=${offset}`)).items;
}

async function loadCurve() {
  try {
    const entity = $("#curve-entity").value;
    if (entity) {
      const items = await series(entity);
      chart("curve-chart", [{label: "equity", stroke: "#2563eb"}, {label: "drawdown %", stroke: "#b91c1c", scale: "%"}],
            [items.map((r) => Date.parse(r.at) / 1000), items.map((r) => Number(r.equity)), drawdown(items)]);
    }
    const farms = rows("farm").map((f) => f.name);
    if (farms.length) {  // the master's money is its cash and its farms': each farm's curve
      const all = await Promise.all(farms.map((f) => series(`farm:${f}`)));
      const xs = all[0].map((r) => Date.parse(r.at) / 1000);
      chart("master-chart", farms.map((f, i) => ({label: f, stroke: ["#2563eb", "#15803d", "#b45309", "#7c3aed"][i % 4]})),
            [xs, ...all.map((items) => xs.map((_, k) => (items[k] ? Number(items[k].equity) : null)))]);
    }
  } catch (e) { showError(e.message); }
}

function drawdown(items) {
  let peak = -Infinity;
  return items.map((r) => { const v = Number(r.equity); peak = Math.max(peak, v); return peak > 0 ? (100 * (v - peak)) / peak : 0; });
}

function fillChart() {
  const fills = S.fills.slice(0, 500).slice().reverse();
  const xs = fills.map((f) => Date.parse(f.at) / 1000);
  const buys = fills.map((f) => (f.side === "buy" ? Number(f.price) : null));
  const sells = fills.map((f) => (f.side === "sell" ? Number(f.price) : null));
  const dots = {paths: () => null, points: {show: true, size: 7}};
  chart("fill-chart", [{label: "entries", stroke: "#15803d", ...dots}, {label: "exits", stroke: "#b91c1c", ...dots}], [xs, buys, sells]);
}

// -- acting -------------------------------------------------------------------------------

async function call(method, path, body, done) {
  showError("");
  try {
    const answer = await api(method, path, body);
    $("#master-result").textContent = done;
    reread();
    return answer;
  } catch (e) {
    showError(e.message);  // the API's message names the field at fault
    throw e;
  }
}

const act = (command, done) => call("POST", `/runs/${S.run}/commands`, command, done).catch(() => {});

function confirmThen(question, then) {
  if (window.confirm(question)) then();
}

function wireForms() {
  $("#login-form").addEventListener("submit", signIn);
  $("#logout").addEventListener("click", signOut);
  $("#deposit-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act({kind: "deposit", amount: e.target.amount.value.trim()}, "deposited");
  });
  $("#allocate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    act({kind: "allocate", target: e.target.farm.value, amount: e.target.amount.value.trim()}, `allocated to ${e.target.farm.value}`);
  });
  $("#collect-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const farm = e.target.farm.value, amount = e.target.amount.value.trim();
    confirmThen(`Collect ${amount ? money(amount) : "everything"} from ${farm} back to the master?`,
                () => act({kind: "collect", target: farm, ...(amount ? {amount} : {})}, `collected from ${farm}`));
  });
  $("#kill").addEventListener("click", () => confirmThen(
    "Kill switch: halt every farm and sell every position at the next open?",
    () => act({kind: "kill", reason: `kill switch by ${S.me.name}`}, "every farm halted")));
  $("#goal-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    $("#goal-error").textContent = "";
    for (const input of $$("input, select", f)) input.removeAttribute("aria-invalid");
    const target = f.type.value === "trade_volume"
      ? {trades: f.trades.value.trim() === "" ? null : Number(f.trades.value), ...(f.min_profit_per_trade.value.trim() ? {min_profit_per_trade: f.min_profit_per_trade.value.trim()} : {})}
      : {profit: f.profit.value.trim()};
    const goal = {name: f.name.value.trim(), type: f.type.value, target, assign: [{farm: f.farm.value}], on_complete: f.on_complete.value};
    try {
      await api("POST", `/runs/${S.run}/goals`, goal);
      f.name.value = "";
      $("#master-result").textContent = `goal ${goal.name} created`;
    } catch (err) {
      $("#goal-error").textContent = err.field ? `${err.field}: ${err.message.replace(/^[^:]+: /, "")}` : err.message;
      const name = (err.field || "").split(".").pop();
      if (f[name]) f[name].setAttribute("aria-invalid", "true");
    }
  });
  $("#agent-filter").addEventListener("input", () => drawAgents());
  for (const th of $$("#agent-table th")) {
    th.tabIndex = 0;
    const sort = () => { S.sort = {key: th.dataset.key, dir: S.sort.key === th.dataset.key ? -S.sort.dir : 1}; drawAgents(); };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
  }
  $("#curve-entity").addEventListener("change", loadCurve);
  $("#run-select").addEventListener("change", (e) => show(e.target.value));
  window.addEventListener("hashchange", section);
}

function section() {
  const id = (location.hash || "#master").slice(1);
  for (const panel of $$("#app > section")) panel.classList.toggle("current", panel.id === id);
  for (const link of $$("nav.tabs a")) link.setAttribute("aria-current", link.getAttribute("href") === `#${id}` ? "page" : "false");
  if (id === "analytics" || id === "master") loadCurve();
}

// -- start --------------------------------------------------------------------------------

async function show(runId) {
  S.run = runId; S.state = null; S.last = null; S.fills = []; S.fillIds = new Set(); S.duplicates = 0;
  S.config = null; S.reconnects = 0; S.tree = [];
  $("#curve-entity").replaceChildren();
  $("#farm-cards").replaceChildren(); farmCards.clear();
  await follow();
  reread();
  loadAudit();
}

async function start() {
  try {
    S.me = await api("GET", "/auth/me");
  } catch (e) {
    $("#login").hidden = false; $("#app").hidden = true;
    return;
  }
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  $("#who").textContent = `${S.me.name} (${S.me.role})`;
  document.body.dataset.role = S.me.role;
  for (const node of $$("[data-role=operator]")) node.hidden = !operator();
  section();
  S.runs = await api("GET", "/runs");
  $("#run-select").replaceChildren(...S.runs.map((r) => el("option", {value: r.id}, `${r.name} · ${r.id} · ${r.status}`)));
  const pick = S.runs.find((r) => r.status === "running") || S.runs[0];
  if (pick) {
    $("#run-select").value = pick.id;
    await show(pick.id);
  } else {
    connection("no runs on this server yet", "ended");
  }
}

window.cival = S;  // for the browser's console (and the tests): the state the page shows
wireForms();
start();
