// Connections List: sign in with an API key (kept in sessionStorage and sent
// as a Bearer header: no cookies, so no CSRF), list an organisation's
// connections with the app each was authorised for, filter them by app,
// disable / enable / delete them from a row menu, and follow changes made
// elsewhere through the change stream.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("conngate.key") || "", me: null, org: "", cursors: [""], page: 0, next: "", stream: null, apps: new Map() };

// --- API -------------------------------------------------------------------

async function api(method, path) {
  let resp;
  try {
    resp = await fetch(path, { method, headers: { Authorization: "Bearer " + state.key } });
  } catch (e) {
    throw new Error("The control endpoint cannot be reached. Check your connection and try again.");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(humanError(resp.status, body));
    err.status = resp.status;
    throw err;
  }
  return body;
}

function humanError(status, body) {
  if (status === 401) return "That key is not valid. Sign in again with a valid API key.";
  if (status === 403) return body.message || "You are not allowed to do that.";
  if (status === 404) return "That connection no longer exists, or you may not see it.";
  if (status === 409) return "That connection is deleted; it can no longer be enabled or disabled.";
  return body.message || "Something went wrong (" + status + "). Try again.";
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

// --- what the signed-in principal may do -----------------------------------

function roleIn(org) {
  if (!state.me) return "";
  if (state.me.admin) return "admin";
  return state.me.roles[org] || "";
}

function mayChange(org) {
  return ["admin", "owner", "manager", "administrator"].includes(roleIn(org));
}

// --- sign in / out -----------------------------------------------------------

async function signIn(key) {
  state.key = key;
  try {
    state.me = await api("GET", "/v1/me");
  } catch (e) {
    state.key = "";
    sessionStorage.removeItem("conngate.key");
    showSignIn();
    showError(e.message);
    return;
  }
  sessionStorage.setItem("conngate.key", key);
  showError("");
  $("sign-in").hidden = true;
  $("list").hidden = false;
  $("who").textContent = "Signed in as " + state.me.id;
  $("who").hidden = false;
  $("sign-out").hidden = false;
  setUpOrgs();
  loadApps();
  follow();
  await load();
}

function showSignIn() {
  $("sign-in").hidden = false;
  $("list").hidden = true;
  $("who").hidden = true;
  $("sign-out").hidden = true;
  $("key").focus();
}

function signOut() {
  sessionStorage.removeItem("conngate.key");
  state.key = "";
  state.me = null;
  if (state.stream) state.stream.abort();
  // Nothing of this person's may stay on screen for the next one.
  $("rows").replaceChildren();
  state.cursors = [""];
  state.page = 0;
  state.org = "";
  $("org-input").value = "";
  $("search").value = "";
  resetApps();
  state.apps = new Map();
  showError("");
  showSignIn();
}

function setUpOrgs() {
  const orgs = Object.keys(state.me.roles).sort();
  const select = $("org");
  select.replaceChildren(...orgs.map((o) => new Option(o + " (" + state.me.roles[o] + ")", o)));
  // An administrator key has no roles list: it names the organisation.
  $("org-input").hidden = orgs.length > 0;
  select.hidden = orgs.length === 0;
  state.org = orgs[0] || "";
}

// --- the list ----------------------------------------------------------------

function query() {
  const q = new URLSearchParams({ limit: "25" });
  if (state.org) q.set("org_id", state.org);
  const app = $("app").value;
  if (app) q.set("app_id", app);
  const status = $("status").value;
  if (status) q.set("status", status);
  else if (!$("show-deleted").checked) q.set("status", "active,disabled");
  const search = $("search").value.trim();
  if (search) q.set("q", search);
  const cursor = state.cursors[state.page];
  if (cursor) q.set("cursor", cursor);
  return q;
}

let loads = 0;
async function load() {
  if (!state.org && !(state.me && state.me.admin)) {
    $("rows").replaceChildren();
    return;
  }
  // Only the latest request may render: an older one (a previous search, or
  // a previous person's) finishing late is dropped.
  const mine = ++loads;
  const key = state.key;
  try {
    const body = await api("GET", "/v1/connections?" + query());
    if (mine !== loads || key !== state.key) return;
    state.next = body.next_cursor;
    render(body.connections);
  } catch (e) {
    if (mine !== loads || key !== state.key) return;
    if (e.status === 401) signOut();
    showError(e.message);
  }
}

function when(t) {
  return new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function render(conns) {
  const rows = conns.map((c) => {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    const cell = (text, className) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (className) td.className = className;
      tr.append(td);
    };
    cell(c.name);
    tr.append(appCell(c));
    cell(c.id, "id");
    [c.user_id, when(c.created_at), when(c.updated_at)].forEach((text) => cell(text));
    const status = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "badge " + c.status;
    badge.textContent = c.status;
    status.append(badge);
    tr.append(status);
    const menuCell = document.createElement("td");
    menuCell.className = "menu-cell";
    const actions = actionsFor(c);
    if (actions.length) menuCell.append(menuFor(c, actions));
    tr.append(menuCell);
    return tr;
  });
  $("rows").replaceChildren(...rows);
  $("empty").hidden = conns.length > 0;
  $("prev").disabled = state.page === 0;
  $("next").disabled = !state.next;
}

// --- apps: the App column and the filter ----------------------------------------

// state.apps maps a client id to its app's name, or to null while it is
// looked up and for an app this person may not see (another organisation's)
// or one since deleted: each app is asked for once.

function appCell(c) {
  const td = document.createElement("td");
  td.className = "app";
  if (!c.app_id) {
    td.classList.add("none");
    const dash = document.createElement("span");
    dash.setAttribute("aria-hidden", "true");
    dash.textContent = "—";
    const words = document.createElement("span");
    words.className = "sr-only";
    words.textContent = "none: made through the API";
    td.append(dash, words);
    return td;
  }
  td.dataset.appId = c.app_id;
  if (!state.apps.has(c.app_id)) lookUpApp(c.app_id);
  nameCell(td);
  return td;
}

function nameCell(td) {
  const name = state.apps.get(td.dataset.appId);
  td.textContent = name || td.dataset.appId;
  td.title = name ? td.dataset.appId : "An app you may not see, or one since deleted";
  td.classList.toggle("unnamed", !name);
}

function lookUpApp(id) {
  const key = state.key;
  state.apps.set(id, null);
  api("GET", "/v1/apps/" + encodeURIComponent(id)).then((app) => {
    if (key === state.key) knowApp(app);
  }, () => {}); // not visible, or gone: the row keeps the client id
}

// loadApps lists the organisation's apps once, for the filter and the names.
async function loadApps() {
  resetApps();
  if (!state.org && !(state.me && state.me.admin)) return;
  const key = state.key;
  const org = state.org;
  const q = new URLSearchParams({ limit: "500" });
  if (org) q.set("org_id", org);
  try {
    const body = await api("GET", "/v1/apps?" + q);
    if (key === state.key && org === state.org) body.apps.forEach(knowApp);
  } catch (e) {
    // Without the list, rows still name their apps one lookup at a time.
  }
}

function resetApps() {
  $("app").replaceChildren(new Option("All apps", ""));
}

// knowApp names the app in the rows on screen and offers it in the filter,
// sorted by name (apps of the same name told apart by client id).
function knowApp(app) {
  state.apps.set(app.client_id, app.client_name);
  document.querySelectorAll("td.app[data-app-id]").forEach((td) => {
    if (td.dataset.appId === app.client_id) nameCell(td);
  });
  const select = $("app");
  if ((state.org && app.org_id !== state.org) || [...select.options].some((o) => o.value === app.client_id)) return;
  const option = new Option(app.client_name, app.client_id);
  option.dataset.name = app.client_name;
  const chosen = select.value;
  const options = [...select.options].slice(1).concat(option);
  options.sort((a, b) => a.dataset.name.localeCompare(b.dataset.name) || a.value.localeCompare(b.value));
  for (const o of options) {
    const twins = options.filter((other) => other.dataset.name === o.dataset.name).length > 1;
    o.text = twins ? o.dataset.name + " (" + o.value + ")" : o.dataset.name;
  }
  select.replaceChildren(select.options[0], ...options);
  select.value = chosen;
}

function actionsFor(c) {
  if (!mayChange(c.org_id) || c.status === "deleted") return [];
  return [c.status === "active" ? "Disable" : "Enable", "Delete"];
}

// --- the row menu: a button that opens a menu, operable with the keyboard ----

function menuFor(c, actions) {
  const wrap = document.createElement("div");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "menu-button";
  button.textContent = "⋯";
  button.setAttribute("aria-haspopup", "menu");
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-label", "Actions for " + c.name);
  const menu = document.createElement("div");
  menu.setAttribute("role", "menu");
  menu.hidden = true;
  for (const label of actions) {
    const item = document.createElement("button");
    item.type = "button";
    item.setAttribute("role", "menuitem");
    item.textContent = label;
    if (label === "Delete") item.className = "danger-item";
    item.addEventListener("click", () => { close(); act(c, label); });
    menu.append(item);
  }
  const items = () => [...menu.querySelectorAll("[role=menuitem]")];
  function open() {
    document.querySelectorAll("[role=menu]").forEach((m) => { m.hidden = true; });
    menu.hidden = false;
    button.setAttribute("aria-expanded", "true");
    items()[0].focus();
  }
  function close() {
    menu.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }
  button.addEventListener("click", () => (menu.hidden ? open() : close()));
  menu.addEventListener("keydown", (e) => {
    const list = items();
    const i = list.indexOf(document.activeElement);
    if (e.key === "ArrowDown") { list[(i + 1) % list.length].focus(); e.preventDefault(); }
    if (e.key === "ArrowUp") { list[(i - 1 + list.length) % list.length].focus(); e.preventDefault(); }
    if (e.key === "Escape") { close(); button.focus(); }
  });
  wrap.append(button, menu);
  return wrap;
}

document.addEventListener("click", (e) => {
  if (!e.target.closest(".menu-cell")) {
    document.querySelectorAll("[role=menu]").forEach((m) => { m.hidden = true; });
  }
});

async function act(c, label) {
  if (label === "Delete") {
    $("confirm-name").textContent = c.name + " (" + c.id + ")";
    $("confirm-delete").dataset.id = c.id;
    $("confirm-delete").showModal();
    $("confirm-cancel").focus();
    return;
  }
  await change(c.id, "POST", "/v1/connections/" + c.id + "/" + label.toLowerCase());
}

async function change(id, method, path) {
  try {
    const answer = await api(method, path + "?wait=applied");
    showNotice(notApplied(answer));
    showError("");
  } catch (e) {
    showNotice("");
    showError(e.message);
  }
  await load();
}

// notApplied says which gateways had not applied a change when its answer
// came (empty when all had): there its tokens may still work for a while.
function notApplied(answer) {
  const pending = (answer && answer.pending) || [];
  if (pending.length === 0) return "";
  return "Saved, but not yet applied on " + pending.length + " of " + answer.gateways +
    " gateways (" + pending.join(", ") + "): until they apply it, they may still answer with the old status. " +
    "A gateway that is away applies it when it reconnects.";
}

function showNotice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

// --- live updates through the change stream ----------------------------------

// EventSource cannot send an Authorization header, so the stream is read with
// fetch; it reconnects after a pause if it ends.
async function follow() {
  if (state.stream) state.stream.abort();
  const ctrl = new AbortController();
  state.stream = ctrl;
  let last = "";
  while (!ctrl.signal.aborted) {
    try {
      const headers = { Authorization: "Bearer " + state.key };
      if (last) headers["Last-Event-ID"] = last;
      const resp = await fetch("/v1/events", { headers, signal: ctrl.signal });
      if (!resp.ok) throw new Error("stream " + resp.status);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const id = /^id: (.*)$/m.exec(block);
          if (id) last = id[1];
          if (/^event: status$/m.test(block)) refreshSoon();
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

let refreshTimer = 0;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(load, 150);
}

// --- wiring --------------------------------------------------------------------

function restart() {
  state.cursors = [""];
  state.page = 0;
  load();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("key").value.trim()); });
  $("sign-out").addEventListener("click", signOut);
  $("org").addEventListener("change", () => { state.org = $("org").value; loadApps(); restart(); });
  $("org-input").addEventListener("change", () => { state.org = $("org-input").value.trim(); loadApps(); restart(); });
  $("app").addEventListener("change", restart);
  $("status").addEventListener("change", restart);
  $("show-deleted").addEventListener("change", restart);
  let searchTimer = 0;
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(restart, 250); });
  $("next").addEventListener("click", () => { state.cursors[state.page + 1] = state.next; state.page++; load(); });
  $("prev").addEventListener("click", () => { if (state.page > 0) { state.page--; load(); } });
  $("confirm-cancel").addEventListener("click", () => $("confirm-delete").close());
  $("confirm-ok").addEventListener("click", () => {
    const id = $("confirm-delete").dataset.id;
    $("confirm-delete").close();
    change(id, "DELETE", "/v1/connections/" + id);
  });
  if (state.key) signIn(state.key); else showSignIn();
});
