// The Zerverless dashboard: a page over the HTTP API, signed in with a
// bearer token kept in this tab's sessionStorage. Everything from the API
// is put in the page as text (textContent, text nodes, attribute values),
// never as HTML.
"use strict";

(function () {
  var TOKEN_KEY = "zerverless.dashboard.token";
  var STATUSES = ["pending", "running", "completed", "failed", "timeout", "canceled"];
  var TYPES = ["lua", "js", "wasm", "python", "docker"];
  var ENDED = ["completed", "failed", "timeout", "canceled"];

  var state = { token: "", admin: false, view: null };
  var store = null;

  function $(id) { return document.getElementById(id); }

  // el builds an element: props sets properties (text: textContent, on*:
  // listeners, attrs: attributes), children are nodes or strings.
  function el(tag, props) {
    var e = document.createElement(tag);
    var p = props || {};
    Object.keys(p).forEach(function (k) {
      var v = p[k];
      if (v === undefined || v === null) return;
      if (k === "text") e.textContent = String(v);
      else if (k === "attrs") Object.keys(v).forEach(function (a) { e.setAttribute(a, String(v[a])); });
      else if (k.indexOf("on") === 0) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else e[k] = v;
    });
    for (var i = 2; i < arguments.length; i++) append(e, arguments[i]);
    return e;
  }
  function append(parent, c) {
    if (c === undefined || c === null || c === false) return;
    if (Array.isArray(c)) { c.forEach(function (x) { append(parent, x); }); return; }
    parent.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function enc(s) { return encodeURIComponent(s); }
  function encPath(p) { return String(p).split("/").map(enc).join("/"); }
  function short(id) { return String(id || "").slice(0, 12); }
  function when(t) {
    if (!t) return "—";
    var d = new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleString();
  }
  function bytes(n) {
    if (n === undefined || n === null) return "—";
    var u = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function badge(text, cls) { return el("span", { class: "badge " + (cls || text), text: text }); }
  function yesno(v) { return v ? badge("yes", "yes") : badge("no", "no"); }
  function link(href, text) { return el("a", { href: href, text: text }); }
  function fields(rows) {
    var dl = el("dl", { class: "fields" });
    rows.forEach(function (r) {
      if (r[1] === undefined || r[1] === null || r[1] === "") return;
      dl.appendChild(el("dt", { text: r[0] }));
      dl.appendChild(el("dd", null, r[1]));
    });
    return dl;
  }
  function table(headers, rows, empty) {
    if (!rows.length) return el("p", { class: "muted", text: empty || "Nothing here." });
    return el("table", null,
      el("thead", null, el("tr", null, headers.map(function (h) { return el("th", { text: h }); }))),
      el("tbody", null, rows.map(function (cells) {
        return el("tr", null, cells.map(function (c) { return el("td", null, c); }));
      })));
  }
  function tags(list) {
    if (!list || !list.length) return el("span", { class: "muted", text: "—" });
    return el("span", { class: "tags" }, list.map(function (t) { return el("span", { class: "tag", text: t }); }));
  }
  function pretty(v) { try { return JSON.stringify(v, null, 2); } catch (e) { return String(v); } }

  // api calls the HTTP API with the token. It resolves to the decoded
  // JSON answer (null when empty) and rejects with an Error carrying the
  // API's {"error","field"} and status. A refused token signs out.
  function api(method, path, body) {
    var opts = {
      method: method, cache: "no-store", credentials: "omit", redirect: "error",
      headers: { "Authorization": "Bearer " + state.token, "Accept": "application/json" },
    };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var err = new Error((data && data.error) || (res.status + " " + res.statusText));
          err.status = res.status;
          err.field = data && data.field;
          if (res.status === 401) signOut("The token was refused: " + err.message);
          throw err;
        }
        return data;
      });
    });
  }

  // A view's context: its timers and streams end when another view opens.
  function newContext() {
    var ctx = { alive: true, timers: [], aborts: [] };
    ctx.every = function (ms, f) {
      var run = function () {
        if (!ctx.alive) return;
        Promise.resolve().then(f).catch(ctx.error).then(function () {
          if (ctx.alive) ctx.timers.push(setTimeout(run, ms));
        });
      };
      run();
    };
    // error shows e while the view is open; an answer that comes after
    // another view opened is dropped.
    ctx.error = function (e) { if (ctx.alive) showError(e); };
    ctx.stop = function () {
      ctx.alive = false;
      ctx.timers.forEach(clearTimeout);
      ctx.aborts.forEach(function (a) { a.abort(); });
    };
    return ctx;
  }

  function showError(e) {
    if (!state.token) return;
    var box = $("view-error");
    if (box) box.textContent = e && e.message ? e.message : String(e);
  }

  // ---- sign-in ----

  function takeFragmentToken() {
    var h = location.hash;
    if (h.indexOf("#token=") !== 0) return "";
    var t = "";
    try { t = decodeURIComponent(h.slice("#token=".length)); } catch (e) { t = ""; }
    // The token leaves the address bar and the history entry at once.
    history.replaceState(null, "", location.pathname + "#/jobs");
    return t.trim();
  }

  function signIn(token) {
    state.token = token;
    return api("GET", "/info").then(function () {
      return api("GET", "/api/tokens").then(function () { return true; }, function (e) {
        if (e.status === 403) return false;
        throw e;
      });
    }).then(function (admin) {
      state.admin = admin;
      store.setItem(TOKEN_KEY, token);
      showApp();
    }, function (e) {
      state.token = "";
      store.removeItem(TOKEN_KEY);
      showSignIn(e.status === 401 ? "This token is not accepted: " + e.message : "Cannot sign in: " + e.message);
    });
  }

  function signOut(msg) {
    state.token = "";
    state.admin = false;
    store.removeItem(TOKEN_KEY);
    if (state.view) state.view.stop();
    showSignIn(msg || "");
  }

  function showSignIn(msg) {
    clear($("view"));
    $("nav").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("confirm-token").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = msg || "";
    $("token-input").value = "";
    $("token-input").focus();
  }

  function showApp() {
    $("sign-in").hidden = true;
    $("confirm-token").hidden = true;
    $("nav").hidden = false;
    $("sign-out").hidden = false;
    $("who").textContent = state.admin ? "signed in: admin token" : "signed in: namespace token";
    Array.prototype.forEach.call(document.querySelectorAll(".admin-only"), function (a) { a.hidden = !state.admin; });
    route();
  }

  // ---- routing: #/jobs, #/job/ID, #/workers, #/worker/ID, #/deployments,
  // #/deployment/NS/PATH, #/namespaces, #/tokens ----

  function parseHash() {
    var h = location.hash.replace(/^#\/?/, "");
    var q = {};
    var qi = h.indexOf("?");
    if (qi >= 0) {
      h.slice(qi + 1).split("&").forEach(function (kv) {
        if (!kv) return;
        var p = kv.split("=");
        try { q[decodeURIComponent(p[0])] = decodeURIComponent(p.slice(1).join("=")); } catch (e) { /* ignored */ }
      });
      h = h.slice(0, qi);
    }
    var parts = h.split("/").map(function (s) { try { return decodeURIComponent(s); } catch (e) { return s; } });
    return { name: parts[0] || "jobs", args: parts.slice(1), query: q };
  }

  var views = {};

  function route() {
    if (!state.token) return;
    if (location.hash.indexOf("#token=") === 0) { startFromFragment(); return; }
    var r = parseHash();
    var view = views[r.name] || views.jobs;
    if (state.view) state.view.stop();
    var ctx = newContext();
    state.view = ctx;
    var nav = { job: "jobs", worker: "workers", deployment: "deployments" }[r.name] || r.name;
    Array.prototype.forEach.call(document.querySelectorAll("#nav a"), function (a) {
      if (a.getAttribute("data-view") === nav) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    var root = clear($("view"));
    root.appendChild(el("p", { id: "view-error", class: "error", attrs: { role: "alert" } }));
    var body = el("div", { id: "view-body" });
    root.appendChild(body);
    view(ctx, body, r.args, r.query);
  }

  // ---- jobs ----

  views.jobs = function (ctx, root, args, query) {
    var stats = el("div", { class: "card counters", id: "stats" });
    var statusSel = el("select", { id: "filter-status", name: "status" }, el("option", { value: "", text: "any" }),
      STATUSES.map(function (s) { return el("option", { value: s, text: s }); }));
    var typeSel = el("select", { id: "filter-type", name: "type" }, el("option", { value: "", text: "any" }),
      TYPES.map(function (s) { return el("option", { value: s, text: s }); }));
    var nsInput = el("input", { id: "filter-namespace", name: "namespace", placeholder: "all", size: 14 });
    statusSel.value = query.status || "";
    typeSel.value = query.type || "";
    nsInput.value = query.namespace || "";
    var form = el("form", { class: "filters", onsubmit: function (e) { e.preventDefault(); apply(); } },
      el("label", null, "Status", statusSel), el("label", null, "Namespace", nsInput), el("label", null, "Type", typeSel),
      el("button", { type: "submit", text: "Filter" }));
    [statusSel, typeSel].forEach(function (s) { s.addEventListener("change", apply); });
    function apply() {
      var q = [];
      if (statusSel.value) q.push("status=" + enc(statusSel.value));
      if (nsInput.value.trim()) q.push("namespace=" + enc(nsInput.value.trim()));
      if (typeSel.value) q.push("type=" + enc(typeSel.value));
      location.hash = "#/jobs" + (q.length ? "?" + q.join("&") : "");
    }
    var list = el("div", { id: "jobs" });
    var more = el("div");
    root.appendChild(stats);
    root.appendChild(el("div", { class: "card" }, el("div", { class: "bar" }, el("h1", { text: "Jobs" }),
      el("span", { class: "muted", text: "newest first, refreshed every 2 s" })), form, list, more));

    var limit = 100;
    var cursor = "";
    function load() {
      var q = ["limit=" + limit];
      if (query.status) q.push("status=" + enc(query.status));
      if (query.namespace) q.push("namespace=" + enc(query.namespace));
      return api("GET", "/api/jobs?" + q.join("&")).then(function (data) {
        var jobs = (data.jobs || []).filter(function (j) { return !query.type || j.job_type === query.type; });
        cursor = data.next_cursor || "";
        clear(list).appendChild(jobTable(jobs));
        clear(more);
        if (cursor) more.appendChild(el("button", { class: "secondary", type: "button", text: "Show " + limit + " more",
          onclick: function () { limit += 100; load().catch(ctx.error); } }));
      });
    }
    ctx.every(2000, function () { return Promise.all([load(), loadStats(stats)]); });
  };

  function loadStats(box) {
    return api("GET", "/stats").then(function (s) {
      var jobs = s.jobs || {};
      var c = function (label, value) { return el("div", { class: "counter" }, el("span", { class: "label", text: label }), el("span", { class: "value", text: value })); };
      clear(box);
      append(box, [c("Workers", s.workers_connected + " (" + s.workers_busy + " busy)"), c("Slots busy", s.slots_busy + " / " + s.slots_total)]);
      STATUSES.forEach(function (st) { if (jobs[st] !== undefined) box.appendChild(c(st, jobs[st])); });
    });
  }

  function jobTable(jobs) {
    return table(["Job", "Namespace", "Type", "Status", "Attempt", "Created", "Ran"], jobs.map(function (j) {
      var ran = j.duration_ms !== undefined ? j.duration_ms + " ms, exit " + j.exit_code : (j.reason || "");
      return [el("a", { class: "mono", href: "#/job/" + enc(j.id), text: j.id }), j.namespace, j.job_type, badge(j.status),
        j.attempt + " / " + j.max_attempts, when(j.created_at), el("span", { class: "muted", text: ran })];
    }), "No jobs match.");
  }

  // ---- one job ----

  views.job = function (ctx, root, args) {
    var id = args[0] || "";
    var head = el("div", { class: "card", id: "job-head" });
    var logBox = el("pre", { class: "out", id: "job-log" });
    var logNote = el("span", { class: "muted", id: "job-log-mode" });
    var result = el("div", { id: "job-result" });
    root.appendChild(head);
    root.appendChild(el("div", { class: "card" }, el("div", { class: "bar" }, el("h2", { text: "Live log" }), logNote), logBox));
    root.appendChild(result);
    var last = null;
    // mode is how the log is shown: "stream" (the logs route answers),
    // "poll" (it does not: the output comes with the job's result).
    var mode = "";

    function refresh() {
      return api("GET", "/api/jobs/" + enc(id)).then(function (j) {
        last = j;
        renderJobHead(head, j);
        renderJobResult(result, j);
        if (j.output !== undefined && (mode === "poll" || (mode === "ended" && !logBox.firstChild))) {
          clear(logBox);
          appendLog(logBox, "stdout", j.output);
          appendLog(logBox, "stderr", j.stderr);
        }
        return j;
      });
    }
    function ended() { return last && ENDED.indexOf(last.status) >= 0; }
    function poll() {
      if (!ctx.alive || ended()) return;
      ctx.timers.push(setTimeout(function () { refresh().then(poll, function (e) { ctx.error(e); poll(); }); }, 1000));
    }
    refresh().catch(ctx.error).then(function () {
      logNote.textContent = "connecting…";
      return followLog(ctx, id, logBox, function () { refresh().catch(ctx.error); }, function () {
        mode = "stream";
        logNote.textContent = "following";
      });
    }).then(function (how) {
      if (how === "unsupported") {
        mode = "poll";
        logNote.textContent = "output appears when the job ends (this server streams no logs)";
      } else {
        mode = "ended";
        logNote.textContent = "stream ended";
      }
      return refresh().then(poll);
    }).catch(function (e) {
      if (!ctx.alive) return;
      mode = "poll";
      logNote.textContent = "log stream lost: " + (e && e.message ? e.message : e);
      refresh().then(poll, ctx.error);
    });
  };

  function appendLog(box, kind, text) {
    if (!text) return;
    box.appendChild(el("span", { class: kind, text: text }));
  }

  // followLog reads GET /api/jobs/{id}/logs?follow=true, a stream of
  // Server-Sent Events (event: stdout | stderr | status), into box. It
  // resolves "unsupported" when the server has no such route (404, 405),
  // "ended" when the stream ends; onOpen runs once the stream answers,
  // onStatus at each status event.
  function followLog(ctx, id, box, onStatus, onOpen) {
    var ac = new AbortController();
    ctx.aborts.push(ac);
    return fetch("/api/jobs/" + enc(id) + "/logs?follow=true", {
      cache: "no-store", credentials: "omit", redirect: "error", signal: ac.signal,
      headers: { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" },
    }).then(function (res) {
      if (res.status === 404 || res.status === 405 || !res.body) return "unsupported";
      if (res.status === 401) { signOut("The token was refused."); return "ended"; }
      if (!res.ok) return "unsupported";
      onOpen();
      var first = true;
      return readEvents(res, function (event, text) {
        if (first) { clear(box); first = false; }
        if (event === "stdout" || event === "stderr") {
          appendLog(box, event, chunkText(text));
        } else if (event === "status") {
          appendLog(box, "status", "[" + statusText(text) + "]\n");
          onStatus();
        }
        box.scrollTop = box.scrollHeight;
      }).then(function () { return "ended"; });
    });
  }

  // readEvents reads the Server-Sent Events of res's body, calling
  // onEvent(event, data, id) for each, and resolves once the body ends
  // (or onEvent returns true: the stream's end).
  function readEvents(res, onEvent) {
    var reader = res.body.getReader();
    var dec = new TextDecoder();
    var buf = "";
    var done = false;
    function dispatch(block) {
      if (done) return;
      var event = "message", data = [], id = "";
      block.split(/\r?\n|\r/).forEach(function (line) {
        if (!line || line.charAt(0) === ":") return;
        var i = line.indexOf(":");
        var field = i < 0 ? line : line.slice(0, i);
        var value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        if (field === "event") event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") id = value;
      });
      if (!data.length) return;
      if (onEvent(event, data.join("\n"), id) === true) done = true;
    }
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) return;
        buf += dec.decode(r.value, { stream: true });
        var parts = buf.split(/\r?\n\r?\n/);
        buf = parts.pop();
        parts.forEach(dispatch);
        if (done) { reader.cancel().catch(function () {}); return; }
        return pump();
      });
    }
    return pump();
  }

  // chunkText is the text of an output event: the data as sent, or the
  // string it holds when it is JSON ("…" or {"data": "…"}).
  function chunkText(data) {
    try {
      var v = JSON.parse(data);
      if (typeof v === "string") return v;
      if (v && typeof v === "object") {
        var t = v.data !== undefined ? v.data : v.text !== undefined ? v.text : v.chunk;
        if (typeof t === "string") return t;
      }
    } catch (e) { /* plain text */ }
    return data;
  }
  function statusText(data) {
    try {
      var v = JSON.parse(data);
      if (typeof v === "string") return v;
      if (v && v.status) return v.status + (v.attempt ? " (attempt " + v.attempt + ")" : "") + (v.reason ? ": " + v.reason : "");
    } catch (e) { /* plain text */ }
    return data;
  }

  function renderJobHead(box, j) {
    clear(box);
    var actions = el("div", { class: "row" });
    if (ENDED.indexOf(j.status) < 0) {
      actions.appendChild(el("button", { class: "danger", type: "button", id: "job-cancel", text: "Cancel job", onclick: function () {
        if (!window.confirm("Cancel job " + j.id + "?")) return;
        api("DELETE", "/api/jobs/" + enc(j.id)).catch(showError);
      } }));
    }
    append(box, [
      el("div", { class: "bar" }, el("h1", null, "Job ", el("span", { class: "mono", text: j.id })),
        el("span", { id: "job-status" }, badge(j.status))),
      fields([
        ["Namespace", j.namespace],
        ["Type", j.job_type],
        ["Attempt", j.attempt + " of " + j.max_attempts],
        ["Worker", j.worker_id ? link("#/worker/" + enc(j.worker_id), j.worker_id) : ""],
        ["Reason", j.reason],
        ["Timeout", j.timeout_seconds + " s"],
        ["Replicas", j.replicas ? j.replicas + " (quorum " + (j.quorum || "majority") + ")" : ""],
        ["Created", when(j.created_at)],
        ["Started", j.started_at ? when(j.started_at) : ""],
        ["Finished", j.finished_at ? when(j.finished_at) : ""],
      ]),
      actions,
    ]);
  }

  function renderJobResult(box, j) {
    clear(box);
    if (j.output === undefined) {
      box.appendChild(el("div", { class: "card muted", text: "No result yet." }));
      return;
    }
    var card = el("div", { class: "card" }, el("h2", { text: "Result" }), fields([
      ["Exit code", String(j.exit_code)],
      ["Duration", j.duration_ms + " ms"],
      ["Error", j.error ? el("span", { class: "error", text: j.error }) : ""],
      ["Truncated", j.truncated ? "yes: a limit cut the output" : ""],
      ["OOM killed", j.oom_killed ? "yes" : ""],
      ["Peak memory", j.peak_memory_bytes ? bytes(j.peak_memory_bytes) : ""],
      ["CPU time", j.cpu_time_ms ? j.cpu_time_ms + " ms" : ""],
    ]));
    card.appendChild(el("h2", { text: "Output" }));
    card.appendChild(el("pre", { class: "out", id: "job-output", text: j.output }));
    if (j.stderr) {
      card.appendChild(el("h2", { text: "Stderr" }));
      card.appendChild(el("pre", { class: "out", id: "job-stderr", text: j.stderr }));
    }
    if (j.result !== undefined) {
      card.appendChild(el("h2", { text: "Returned value" }));
      card.appendChild(el("pre", { class: "out", id: "job-value", text: pretty(j.result) }));
    }
    box.appendChild(card);
    var files = j.files ? Object.keys(j.files).sort() : [];
    if (files.length) {
      box.appendChild(el("div", { class: "card", id: "job-files" }, el("h2", { text: "Files (/output)" }),
        table(["Path", "Size", ""], files.map(function (name) {
          var data = b64bytes(j.files[name]);
          return [el("span", { class: "mono", text: name }), bytes(data.length), downloadLink(name, data)];
        }))));
    }
    if (j.build) {
      box.appendChild(el("div", { class: "card" }, el("h2", { text: "Build" }), fields([
        ["Image", j.build.image],
        ["Image ID", j.build.image_id],
        ["Cache hit", j.build.cache_hit ? "yes" : "no"],
        ["Duration", j.build.duration_ms + " ms"],
      ]), j.build.log ? el("pre", { class: "out", text: j.build.log }) : null));
    }
    if (j.replica_answers && j.replica_answers.length) {
      box.appendChild(el("div", { class: "card" }, el("h2", { text: "Replica answers" }),
        table(["Worker", "Owner", "Status", "Exit", "Agreed", "Hash"], j.replica_answers.map(function (a) {
          return [link("#/worker/" + enc(a.worker_id), a.worker_id), a.owner || "—", badge(a.status), String(a.exit_code),
            yesno(a.agreed), el("span", { class: "mono", text: short(a.hash) })];
        }))));
    }
  }

  function b64bytes(s) {
    try {
      var bin = atob(s || "");
      var out = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
      return out;
    } catch (e) { return new Uint8Array(0); }
  }
  function downloadLink(name, data) {
    var a = el("a", { href: "#", text: "download" });
    a.addEventListener("click", function (e) {
      e.preventDefault();
      var url = URL.createObjectURL(new Blob([data], { type: "application/octet-stream" }));
      var d = el("a", { href: url, download: name.split("/").pop() || "file" });
      document.body.appendChild(d);
      d.click();
      d.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
    });
    return a;
  }

  // ---- workers ----

  function load(w) {
    var c = w.capabilities || {};
    return w.running + " / " + (c.concurrency || "?");
  }

  // warmPool sums up a docker worker's prewarmed containers.
  function warmPool(w) {
    var d = (w.capabilities || {}).docker;
    var p = d && d.pool;
    if (!p) return "—";
    return el("span", { class: "warm-pool" }, "ready " + p.ready + " · hits " + p.hits + " · misses " + p.misses,
      p.warm_images && p.warm_images.length ? [" ", tags(p.warm_images)] : null);
  }

  // poolCaps sums up what a dispatch pool's workers offer beyond their
  // runtimes.
  function poolCaps(c) {
    var out = [];
    if (c.max_memory_mb) out.push("memory ≤ " + c.max_memory_mb + " MB");
    if (c.namespaces && c.namespaces.length) out.push("namespaces " + c.namespaces.join(", "));
    var d = c.docker;
    if (d) {
      if (d.max_memory_mb) out.push("container memory ≤ " + d.max_memory_mb + " MB");
      if (d.max_cpus) out.push("CPUs ≤ " + d.max_cpus);
      if (d.allow_images && d.allow_images.length) out.push("images " + d.allow_images.join(", "));
      if (d.build) out.push("builds");
      if (d.services) out.push(d.services + " service instances");
      if (d.egress && d.egress.length) out.push("egress " + d.egress.join(", "));
    }
    return out.length ? tags(out) : "—";
  }

  views.workers = function (ctx, root) {
    var pools = el("div", { id: "pools" });
    var list = el("div", { id: "workers" });
    root.appendChild(el("div", { class: "card" }, el("div", { class: "bar" }, el("h1", { text: "Dispatch pools" }),
      el("span", { class: "muted", text: "workers of the same capabilities and trust, which take the same jobs" })), pools));
    root.appendChild(el("div", { class: "card" }, el("div", { class: "bar" }, el("h1", { text: "Workers" }),
      el("span", { class: "muted", text: "connected now, refreshed every 3 s" })), list));
    ctx.every(3000, function () {
      var p = api("GET", "/api/pools").then(function (data) {
        clear(pools).appendChild(table(["Pool", "Workers", "Runtimes", "Offers", "Trusted", "Ready", "Running / slots", "Pending"],
          (data.pools || []).map(function (p) {
            var c = p.capabilities || {};
            return [el("span", { class: "mono", text: p.id }),
              el("span", { class: "pool-workers" }, String(p.workers), p.banned ? [" ", badge(p.banned + " banned", "banned")] : null),
              tags(c.runtimes), poolCaps(c), yesno(p.trusted), String(p.ready), p.running + " / " + p.slots,
              el("span", { class: "pool-pending", text: p.pending + (p.pending_counted ? "" : "+") })];
          }), "No worker is connected."));
      }, function (e) {
        // An older server has no pools: say so, and show the workers.
        clear(pools).appendChild(el("p", { class: "muted", text: "pools unavailable: " + (e && e.message ? e.message : e) }));
      });
      var w = api("GET", "/api/workers").then(function (data) {
        clear(list).appendChild(table(["Worker", "Runtimes", "Load", "Trusted", "Warm containers", "Owner", "Last heartbeat"],
          (data.workers || []).map(function (w) {
            return [link("#/worker/" + enc(w.id), w.name || short(w.id)), tags((w.capabilities || {}).runtimes), load(w),
              el("span", null, yesno(w.trusted), w.banned ? [" ", badge("banned", "banned")] : null), warmPool(w), w.owner || "—", when(w.last_heartbeat)];
          }), "No worker is connected."));
      });
      return Promise.all([p, w]);
    });
  };

  views.worker = function (ctx, root, args) {
    var id = args[0] || "";
    var box = el("div", { class: "card", id: "worker" });
    root.appendChild(box);
    ctx.every(3000, function () {
      return api("GET", "/api/workers").then(function (data) {
        var w = (data.workers || []).filter(function (x) { return x.id === id; })[0];
        clear(box);
        if (!w) {
          append(box, [el("h1", { text: "Worker" }), el("p", { class: "muted", text: "Worker " + id + " is not connected (or not one you may see)." })]);
          return;
        }
        var c = w.capabilities || {};
        var d = c.docker;
        append(box, [
          el("h1", null, "Worker ", el("span", { id: "worker-name", text: w.name || short(w.id) })),
          fields([
            ["ID", el("span", { class: "mono", text: w.id })],
            ["Trusted", yesno(w.trusted)],
            ["Banned", w.banned ? badge("banned", "banned") : ""],
            ["Owner", w.owner],
            ["Remote", w.remote],
            ["Version", c.version],
            ["Runtimes", tags(c.runtimes)],
            ["Load", el("span", { id: "worker-load", text: load(w) + " jobs running" })],
            ["Max memory", c.max_memory_mb ? c.max_memory_mb + " MB per job" : ""],
            ["Namespaces", c.namespaces && c.namespaces.length ? tags(c.namespaces) : "any"],
            ["Connected", when(w.connected_at)],
            ["Last heartbeat", when(w.last_heartbeat)],
          ]),
        ]);
        if (d) {
          append(box, [el("h2", { text: "Docker" }), fields([
            ["Max memory", d.max_memory_mb ? d.max_memory_mb + " MB" : "no stated maximum"],
            ["Max CPUs", d.max_cpus || "no stated maximum"],
            ["Max pids", d.max_pids || "no stated maximum"],
            ["Images allowed", d.allow_images && d.allow_images.length ? tags(d.allow_images) : "any"],
            ["Builds", d.build ? "yes" : "no"],
            ["Built images", d.built_images && d.built_images.length ? tags(d.built_images) : ""],
            ["Service instances", d.services ? String(d.services) : ""],
            ["Warm containers", d.pool ? warmPool(w) : "none"],
            ["Warm-up time", d.pool && d.pool.ready_ms ? Math.round(d.pool.ready_ms) + " ms on average" : ""],
          ])]);
        }
        append(box, [el("h2", { text: "Running jobs" }), w.running_jobs && w.running_jobs.length ?
          el("div", { class: "tags" }, w.running_jobs.map(function (j) { return el("a", { class: "mono", href: "#/job/" + enc(j), text: j }); })) :
          el("p", { class: "muted", text: w.running ? w.running + " jobs of other namespaces" : "none" })]);
        var notes = w.notes ? Object.keys(w.notes).sort() : [];
        if (notes.length) {
          append(box, [el("h2", { text: "Notes" }), fields(notes.map(function (k) { return [k, w.notes[k]]; }))]);
        }
      });
    });
  };

  // ---- deployments ----

  views.deployments = function (ctx, root) {
    var list = el("div", { id: "deployments" });
    root.appendChild(el("div", { class: "card" }, el("h1", { text: "Deployments" }), list));
    ctx.every(5000, function () {
      return api("GET", "/api/deploy").then(function (data) {
        clear(list).appendChild(table(["Function", "Runtime", "Version", "Public", "Updated", "URL"],
          (data.deployments || []).map(function (d) {
            return [link("#/deployment/" + encPath(d.namespace + "/" + d.path), d.namespace + "/" + d.path), d.runtime,
              String(d.version), yesno(d.public), when(d.updated_at), el("span", { class: "mono", text: d.url })];
          }), "No functions are deployed."));
      });
    });
  };

  views.deployment = function (ctx, root, args) {
    var ns = args[0] || "", path = args.slice(1).join("/");
    var box = el("div", { class: "card", id: "deployment" });
    root.appendChild(box);
    api("GET", "/api/deploy/" + enc(ns) + "/" + encPath(path)).then(function (d) {
      var env = d.env ? Object.keys(d.env).sort() : [];
      var envBox = el("div");
      var shown = false;
      function renderEnv() {
        clear(envBox).appendChild(fields(env.map(function (k) { return [k, shown ? d.env[k] : "••••••"]; })));
      }
      renderEnv();
      append(box, [
        el("h1", null, d.runtime === "docker" ? "Service " : "Function ", el("span", { id: "deployment-name", class: "mono", text: d.namespace + "/" + d.path })),
        fields([
          ["Runtime", d.runtime],
          ["Version", String(d.version)],
          ["URL", el("a", { href: d.url, text: d.url, target: "_blank", rel: "noopener noreferrer" })],
          ["Public", yesno(d.public)],
          ["Anonymous workers", yesno(d.anonymous_workers)],
          ["Timeout", d.timeout_seconds + " s"],
          ["Memory", d.memory_mb ? d.memory_mb + " MB" : "worker default"],
          ["Max concurrency", d.max_concurrency || "no cap"],
          ["Image", d.docker_image],
          ["Code", d.runtime === "docker" && !d.code_bytes ? "" : bytes(d.code_bytes) + ", sha256 " + d.sha256],
          ["Created", when(d.created_at)],
          ["Updated", when(d.updated_at)],
        ]),
      ]);
      if (env.length) {
        append(box, [el("div", { class: "bar" }, el("h2", { text: "Environment" }), el("button", { class: "secondary", type: "button",
          text: "Show values", onclick: function (e) { shown = !shown; e.target.textContent = shown ? "Hide values" : "Show values"; renderEnv(); } })), envBox]);
      }
      if (d.code) append(box, [el("h2", { text: "Code" }), el("pre", { class: "out", id: "deployment-code", text: d.code })]);
      else if (d.wasm) append(box, [el("h2", { text: "Code" }), el("p", { class: "muted", text: "a WebAssembly module of " + bytes(d.code_bytes) })]);
      if (d.runtime === "docker") showService(ctx, root, d);
    }, function (e) { ctx.error(e); });
  };

  // showService adds a docker service's instances, refreshed, and its
  // live log to the deployment view.
  function showService(ctx, root, d) {
    var base = "/api/deploy/" + enc(d.namespace) + "/" + encPath(d.path);
    var inst = el("div", { id: "service-instances" });
    var note = el("span", { class: "muted", id: "service-log-note", text: "connecting…" });
    var logBox = el("pre", { class: "out", id: "service-log" });
    root.appendChild(el("div", { class: "card" }, el("h2", { text: "Instances" }), inst));
    root.appendChild(el("div", { class: "card" }, el("div", { class: "bar" }, el("h2", { text: "Live log" }), note), logBox));
    function renderInstances(list) {
      clear(inst).appendChild(table(["Instance", "State", "Version", "Worker", "In flight", "Restarts", "Started", "Last exit"],
        list.map(function (i) {
          var x = i.last_exit;
          return [el("span", { class: "mono", text: short(i.id) }), badge(i.state, i.state === "ready" ? "yes" : ""), String(i.version),
            i.worker_id ? link("#/worker/" + enc(i.worker_id), i.worker_name || short(i.worker_id)) : "—",
            String(i.in_flight), String(i.restarts), when(i.started_at),
            x ? "code " + x.exit_code + (x.error ? ": " + x.error : "") : ""];
        }), "No instance runs now: one starts at the first request."));
    }
    renderInstances(d.instances || []);
    ctx.timers.push(setTimeout(function () {
      ctx.every(3000, function () {
        return api("GET", base).then(function (v) { renderInstances(v.instances || []); });
      });
    }, 3000));
    followServiceLog(ctx, base + "/logs?follow=true", logBox, note);
  }

  // followServiceLog reads a service's live log (events stdout | stderr
  // with the instance of each line, dropped, end) into box, and follows
  // it again after Last-Event-ID when the stream breaks, until its end or
  // the view closes.
  function followServiceLog(ctx, url, box, note) {
    var last = "";
    var ended = false;
    function connect() {
      if (!ctx.alive || ended) return;
      var ac = new AbortController();
      ctx.aborts.push(ac);
      var h = { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" };
      if (last) h["Last-Event-ID"] = last;
      fetch(url, { cache: "no-store", credentials: "omit", redirect: "error", signal: ac.signal, headers: h }).then(function (res) {
        if (res.status === 401) { signOut("The token was refused."); ended = true; return; }
        if (!res.ok || !res.body) {
          return res.text().then(function (t) {
            var msg = t;
            try { msg = JSON.parse(t).error || t; } catch (e) { /* as is */ }
            note.textContent = "live log unavailable: " + msg;
            if (res.status === 503) ctx.timers.push(setTimeout(connect, 3000));
            else ended = true;
          });
        }
        note.textContent = "following";
        return readEvents(res, function (event, data, id) {
          if (id) last = id;
          var ev = {};
          try { ev = JSON.parse(data); } catch (e) { return; }
          var prefix = "[" + String(ev.instance || "").slice(0, 8) + "] ";
          if (event === "stdout" || event === "stderr") {
            var lines = String(ev.text || "").split("\n");
            if (lines[lines.length - 1] === "") lines.pop();
            appendLog(box, event, lines.map(function (l) { return prefix + l + "\n"; }).join(""));
          } else if (event === "dropped") {
            appendLog(box, "status", "[" + (ev.missed ? ev.missed + " events" : "some events") + " missed here]\n");
          } else if (event === "end") {
            appendLog(box, "status", "[the log ended: " + (ev.reason || "") + "]\n");
            note.textContent = "ended";
            ended = true;
          }
          while (box.childNodes.length > 2000) box.removeChild(box.firstChild);
          box.scrollTop = box.scrollHeight;
          return ended;
        }).then(function () {
          if (!ended && ctx.alive) { note.textContent = "reconnecting…"; ctx.timers.push(setTimeout(connect, 1000)); }
        });
      }).catch(function (e) {
        if (!ctx.alive) return;
        note.textContent = "reconnecting: " + (e && e.message ? e.message : e);
        ctx.timers.push(setTimeout(connect, 2000));
      });
    }
    connect();
  }

  // ---- admin: namespaces and tokens ----

  views.namespaces = function (ctx, root) {
    var list = el("div", { id: "namespaces" });
    root.appendChild(el("div", { class: "card" }, el("h1", { text: "Namespace policies" }),
      el("p", { class: "muted", text: "Namespaces with a policy of their own; the others take the platform's defaults." }), list));
    api("GET", "/api/namespaces").then(function (data) {
      list.appendChild(table(["Namespace", "Trusted workers only", "Quotas"], (data.namespaces || []).map(function (p) {
        var q = p.quotas || {};
        return [link("#/jobs?namespace=" + enc(p.namespace), p.namespace), yesno(p.require_trusted_workers),
          tags(Object.keys(q).sort().map(function (k) { return k + "=" + q[k]; }))];
      }), "No namespace has a policy of its own."));
    }, ctx.error);
  };

  views.tokens = function (ctx, root) {
    var list = el("div", { id: "tokens" });
    var created = el("div");
    var kind = el("select", { id: "token-kind" }, ["namespace", "worker", "admin"].map(function (k) { return el("option", { value: k, text: k }); }));
    var ns = el("input", { id: "token-namespace", placeholder: "namespace", size: 14 });
    var name = el("input", { id: "token-name", placeholder: "name", size: 18 });
    var form = el("form", { class: "filters", onsubmit: function (e) {
      e.preventDefault();
      var req = { kind: kind.value, name: name.value.trim() };
      if (kind.value === "namespace") req.namespace = ns.value.trim();
      api("POST", "/api/tokens", req).then(function (t) {
        clear(created).appendChild(el("div", null, el("p", { text: "The secret of token " + t.id + ", shown this once:" }),
          el("div", { class: "secret", id: "token-secret", text: t.token })));
        refresh();
      }, ctx.error);
    } }, el("label", null, "Kind", kind), el("label", null, "Namespace", ns), el("label", null, "Name", name),
      el("button", { type: "submit", text: "Create token" }));
    root.appendChild(el("div", { class: "card" }, el("h1", { text: "Tokens" }), form, created, list));
    function refresh() {
      return api("GET", "/api/tokens").then(function (data) {
        clear(list).appendChild(table(["ID", "Kind", "Namespace", "Name", "Created", ""], (data.tokens || []).map(function (t) {
          return [el("span", { class: "mono", text: short(t.id) }), t.kind, t.namespace || "—", t.name || "—", when(t.created_at),
            el("button", { class: "secondary", type: "button", text: "Revoke", onclick: function () {
              if (!window.confirm("Revoke token " + (t.name || t.id) + "? Whatever uses it is refused at once.")) return;
              api("DELETE", "/api/tokens/" + enc(t.id)).then(refresh, ctx.error);
            } })];
        })));
      });
    }
    refresh().catch(ctx.error);
  };

  // ---- start ----

  function startFromFragment() {
    var fromLink = takeFragmentToken();
    var stored = store.getItem(TOKEN_KEY) || "";
    if (fromLink && stored && fromLink !== stored) {
      // Someone else's link would sign this tab into their token: ask.
      if (state.view) state.view.stop();
      clear($("view"));
      $("sign-in").hidden = true;
      $("confirm-token").hidden = false;
      $("confirm-switch").onclick = function () { signIn(fromLink); };
      $("confirm-keep").onclick = function () { signIn(stored); };
      return;
    }
    var t = fromLink || stored;
    if (t) signIn(t);
    else showSignIn("");
  }

  function start() {
    if (window.top !== window.self) {
      // Framed despite frame-ancestors: show nothing.
      document.body.textContent = "";
      return;
    }
    try {
      store = window.sessionStorage;
      store.getItem(TOKEN_KEY);
    } catch (e) {
      // A sandboxed context (a page opened from a function's page) has
      // an opaque origin and no storage: the dashboard does not run
      // there.
      $("fatal").hidden = false;
      $("fatal").textContent = "The dashboard cannot run here: this page was opened from a sandboxed page. Open " +
        location.origin + "/dashboard/ directly.";
      return;
    }
    $("sign-in-form").addEventListener("submit", function (e) {
      e.preventDefault();
      var t = $("token-input").value.trim();
      if (t) signIn(t);
    });
    $("sign-out").addEventListener("click", function () { signOut("Signed out."); });
    window.addEventListener("hashchange", route);
    startFromFragment();
  }

  start();
})();
