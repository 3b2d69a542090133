'use strict';
// The volunteer page: a Zerverless worker in a browser tab. It speaks the
// worker protocol of docs/protocol.md over the orchestrator's
// /ws/volunteer, offers the js and wasm runtimes, and runs every job in a
// dedicated Web Worker (js-worker.js, wasm-worker.js) that it terminates at
// the job's timeout or when the orchestrator cancels the job.
//
// Pausing sends a `capabilities` message with no runtimes, so the
// orchestrator sends nothing more while the jobs already running finish;
// resuming sends the runtimes again. An assignment that crosses a pause on
// the wire is rejected. Job output reaches the page only through
// textContent.
(function () {
  const PROTOCOL_VERSION = 1;
  const VERSION = 'browser-1';
  const RUNTIMES = ['js', 'wasm'];
  const DEFAULT_OUTPUT_BYTES = 1 << 20;
  const DEFAULT_TIMEOUT_MS = 30000;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 30000;
  const LOG_ENTRIES = 50;
  const REGISTER_WAIT_MS = 15000;

  const $ = function (id) { return document.getElementById(id); };
  const ui = {
    state: $('state'), dot: $('state-dot'), detail: $('state-detail'), workerId: $('worker-id'),
    pause: $('pause'), concurrency: $('concurrency'), name: $('name'),
    done: $('jobs-done'), completed: $('jobs-completed'), failed: $('jobs-failed'),
    timeout: $('jobs-timeout'), canceled: $('jobs-canceled'), donated: $('time-donated'),
    current: $('current'), log: $('log'),
  };

  // What the person chose; kept across visits.
  const settings = {
    name: load('name') || 'browser-' + Math.random().toString(36).slice(2, 8),
    concurrency: clampConcurrency(load('concurrency') ||
      Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1))),
    paused: false,
  };

  // counts of finished jobs by status, and time spent running jobs.
  const counts = { done: 0, completed: 0, failed: 0, timeout: 0, canceled: 0 };
  let donatedMs = 0;

  // The connection. session counts connections, so that a task of an old
  // session never reports on a new one.
  let ws = null;
  let session = 0;
  let registered = false;
  let heartbeatMs = 5000;
  let lastSent = 0;
  let attempts = 0;
  let reconnectAt = 0;
  let connectedAt = 0;

  // Running tasks by lease id.
  const tasks = new Map();

  // ---- settings -------------------------------------------------------

  function load(key) {
    try {
      return localStorage.getItem('zerverless.' + key);
    } catch (e) {
      return null;
    }
  }
  function store(key, value) {
    try {
      localStorage.setItem('zerverless.' + key, String(value));
    } catch (e) {
      // storage unavailable: the setting lasts for this visit
    }
  }
  function clampConcurrency(v) {
    const n = Math.floor(Number(v));
    if (!(n >= 1)) return 1;
    return Math.min(n, 64);
  }

  function capabilities() {
    return {
      runtimes: settings.paused ? [] : RUNTIMES.slice(),
      concurrency: settings.concurrency,
      version: VERSION,
    };
  }
  function notes() {
    if (!settings.paused) return undefined;
    return { js: 'paused by the volunteer', wasm: 'paused by the volunteer' };
  }

  // ---- connection -----------------------------------------------------

  // endpoint is /ws/volunteer next to the page's directory, over wss: when
  // the page came over https:, so that it works behind a TLS proxy and
  // under a path prefix.
  function endpoint() {
    const u = new URL('../ws/volunteer', location.href);
    u.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    u.hash = '';
    u.search = '';
    return u.href;
  }

  function connect() {
    reconnectAt = 0;
    connectedAt = performance.now();
    session++;
    registered = false;
    setState('connecting', 'connecting', 'Connecting to ' + endpoint());
    let sock;
    try {
      sock = new WebSocket(endpoint());
    } catch (e) {
      scheduleReconnect('could not open the connection: ' + e.message);
      return;
    }
    ws = sock;
    const mine = session;
    sock.onopen = function () {
      if (mine !== session) return;
      const msg = { type: 'register', version: PROTOCOL_VERSION, name: settings.name, capabilities: capabilities() };
      const n = notes();
      if (n) msg.notes = n;
      send(msg);
    };
    sock.onmessage = function (ev) {
      if (mine !== session) return;
      onMessage(ev.data);
    };
    sock.onclose = function (ev) {
      if (mine !== session) return;
      endSession('connection closed' + (ev.reason ? ': ' + ev.reason : ' (code ' + ev.code + ')'));
    };
    sock.onerror = function () {
      // onclose follows and reconnects
    };
  }

  // endSession drops the session's tasks (the orchestrator re-queues them)
  // and schedules a new connection.
  function endSession(why) {
    session++;
    registered = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(); } catch (e) { /* already closed */ }
      ws = null;
    }
    for (const t of tasks.values()) drop(t);
    ui.workerId.textContent = '—';
    scheduleReconnect(why);
  }

  function scheduleReconnect(why) {
    console.info('zerverless volunteer: ' + why);
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * Math.pow(2, attempts));
    const delay = Math.round(base / 2 + Math.random() * base / 2);
    attempts++;
    reconnectAt = performance.now() + delay;
    setState('disconnected', 'disconnected', why + '; reconnecting in ' + Math.ceil(delay / 1000) + ' s');
  }

  function send(msg) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(typeof msg === 'string' ? msg : JSON.stringify(msg));
    lastSent = performance.now();
    return true;
  }

  function onMessage(data) {
    if (typeof data !== 'string') {
      send({ type: 'error', error: 'binary frames are not part of the protocol' });
      return;
    }
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      send({ type: 'error', error: 'message is not JSON' });
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    switch (msg.type) {
      case 'registered':
        registered = true;
        attempts = 0;
        heartbeatMs = msg.heartbeat_ms > 0 ? msg.heartbeat_ms : 5000;
        ticker.every(Math.max(20, Math.min(250, Math.floor(heartbeatMs / 4))));
        ui.workerId.textContent = String(msg.worker_id || '');
        showConnected();
        break;
      case 'assign':
        if (msg.task && msg.task.job_id && msg.task.lease_id) assign(msg.task, data);
        break;
      case 'cancel': {
        const t = tasks.get(msg.lease_id);
        if (t && t.jobId === msg.job_id) finish(t, { status: 'canceled', error: 'canceled by request', exit_code: -1 });
        break;
      }
      case 'error':
        ui.detail.textContent = 'The orchestrator reported: ' + String(msg.error || '');
        break;
      default:
        send({ type: 'error', error: 'unknown message type ' + JSON.stringify(String(msg.type)) });
    }
  }

  function showConnected() {
    if (settings.paused) setState('paused', 'paused', 'Connected; not taking new jobs until you resume.');
    else setState('connected', 'connected', 'Connected; taking up to ' + settings.concurrency + ' job(s) at once.');
  }

  function setState(kind, text, detail) {
    ui.state.textContent = text;
    ui.state.dataset.state = kind;
    ui.dot.dataset.state = kind;
    ui.detail.textContent = detail || '';
  }

  // ---- tasks ----------------------------------------------------------

  function assign(task, raw) {
    const reject = function (why) {
      send({ type: 'reject', job_id: task.job_id, lease_id: task.lease_id, error: why });
    };
    if (tasks.has(task.lease_id)) return;
    if (settings.paused) return reject('paused by the volunteer');
    if (task.job_type !== 'js' && task.job_type !== 'wasm') return reject('this worker does not run ' + task.job_type + ' jobs');
    if (tasks.size >= settings.concurrency) return reject('no free slot');

    const spec = task.spec || {};
    const limits = task.limits || {};
    const limit = limits.output_bytes > 0 ? limits.output_bytes : DEFAULT_OUTPUT_BYTES;
    const timeoutMs = task.timeout_ns > 0 ? task.timeout_ns / 1e6 : DEFAULT_TIMEOUT_MS;
    // The input exactly as the orchestrator sent it, not re-encoded.
    let input = rawValue(raw, ['task', 'spec', 'input_data']);
    if (input === null && spec.input_data !== undefined) input = JSON.stringify(spec.input_data);

    let worker;
    try {
      worker = new Worker(task.job_type === 'js' ? 'js-worker.js' : 'wasm-worker.js');
    } catch (e) {
      return reject('the browser could not start a Web Worker: ' + e.message);
    }
    const now = performance.now();
    const t = {
      jobId: task.job_id, leaseId: task.lease_id, type: task.job_type, attempt: task.attempt,
      session: session, worker: worker, started: now, deadline: now + timeoutMs,
      out: new Capped(limit), err: new Capped(limit), finished: false, row: null,
    };
    tasks.set(t.leaseId, t);
    worker.onmessage = function (ev) { fromWorker(t, ev.data); };
    worker.onerror = function (ev) {
      ev.preventDefault();
      finish(t, { status: 'failed', error: 'the browser could not run the job: ' + (ev.message || 'worker error'), exit_code: 1 });
    };
    worker.onmessageerror = function () {
      finish(t, { status: 'failed', error: 'the browser could not read the job worker\'s message', exit_code: 1 });
    };
    if (t.type === 'js') {
      worker.postMessage({ code: spec.code, input: input, limit: limit });
    } else {
      worker.postMessage({ wasm: spec.wasm, args: spec.args || [], input: input, limit: limit });
    }
    showTask(t);
  }

  // fromWorker takes a job worker's message. The worker is not trusted
  // further than its own job: every field is checked and capped again.
  function fromWorker(t, m) {
    if (t.finished || !m || typeof m !== 'object') return;
    if (m.kind === 'out' && m.bytes instanceof Uint8Array) {
      (m.fd === 2 ? t.err : t.out).write(m.bytes);
      return;
    }
    if (m.kind !== 'done') return;
    const res = {
      status: m.status === 'completed' ? 'completed' : 'failed',
      exit_code: Number.isInteger(m.exit_code) ? m.exit_code : 1,
      truncated: m.truncated === true,
    };
    if (typeof m.error === 'string' && m.error !== '') res.error = m.error;
    if (res.status === 'failed' && !res.error) res.error = 'the job failed';
    if (res.status === 'completed' && m.result !== undefined) {
      if (typeof m.result !== 'string' || !validJSON(m.result)) {
        res.status = 'failed';
        res.error = 'result is not valid JSON';
        res.exit_code = 1;
      } else if (new TextEncoder().encode(m.result).length > t.out.limit) {
        res.status = 'failed';
        res.error = 'result is more than the limit of ' + t.out.limit + ' bytes';
        res.exit_code = 1;
        res.truncated = true;
      } else {
        res.result = m.result;
      }
    }
    finish(t, res);
  }

  // finish stops t's worker and reports res on t's session.
  function finish(t, res) {
    if (t.finished) return;
    t.finished = true;
    t.worker.terminate();
    tasks.delete(t.leaseId);
    const ms = performance.now() - t.started;
    donatedMs += ms;
    res.duration_ms = Math.round(ms);
    res.output = t.out.text();
    res.stderr = t.err.text();
    res.truncated = !!res.truncated || t.out.truncated || t.err.truncated;
    if (t.session === session && registered) {
      const raw = res.result;
      delete res.result;
      let body = JSON.stringify({ type: 'result', job_id: t.jobId, lease_id: t.leaseId, result: res });
      // The returned value goes out as the job produced it.
      if (raw !== undefined) body = body.slice(0, -2) + ',"result":' + raw + '}}';
      if (send(body)) {
        counts.done++;
        counts[res.status]++;
        res.result = raw;
        logTask(t, res);
      }
    }
    removeTask(t);
    render();
  }

  // drop stops t without a result: its session ended, and the
  // orchestrator gives the job to another worker.
  function drop(t) {
    if (t.finished) return;
    t.finished = true;
    t.worker.terminate();
    tasks.delete(t.leaseId);
    donatedMs += performance.now() - t.started;
    removeTask(t);
    render();
  }

  // Capped keeps the first limit bytes of one output stream.
  class Capped {
    constructor(limit) {
      this.limit = limit;
      this.chunks = [];
      this.size = 0;
      this.truncated = false;
    }
    write(bytes) {
      const room = this.limit - this.size;
      if (bytes.length > room) {
        this.truncated = true;
        bytes = bytes.subarray(0, Math.max(0, room));
      }
      if (bytes.length === 0) return;
      this.chunks.push(bytes);
      this.size += bytes.length;
    }
    text() {
      const all = new Uint8Array(this.size);
      let at = 0;
      for (const c of this.chunks) {
        all.set(c, at);
        at += c.length;
      }
      return new TextDecoder().decode(all);
    }
  }

  function validJSON(s) {
    try {
      JSON.parse(s);
      return true;
    } catch (e) {
      return false;
    }
  }

  // rawValue returns the text of the value at path in the JSON document s,
  // or null when it is not there. It lets the page hand a job its input
  // byte for byte as the orchestrator sent it (JSON.parse would round big
  // numbers and reorder keys).
  function rawValue(s, path) {
    let i = 0;
    try {
      for (const key of path) {
        i = skipSpace(s, i);
        if (s[i] !== '{') return null;
        i++;
        for (;;) {
          i = skipSpace(s, i);
          if (s[i] !== '"') return null;
          const end = skipString(s, i);
          const k = JSON.parse(s.slice(i, end));
          i = skipSpace(s, end);
          if (s[i] !== ':') return null;
          i = skipSpace(s, i + 1);
          if (k === key) break;
          i = skipSpace(s, skipValue(s, i));
          if (s[i] !== ',') return null;
          i++;
        }
      }
      const end = skipValue(s, i);
      return end > i ? s.slice(i, end) : null;
    } catch (e) {
      return null;
    }
  }
  function skipSpace(s, i) {
    for (;;) {
      const c = s.charCodeAt(i);
      if (c !== 32 && c !== 9 && c !== 10 && c !== 13) return i;
      i++;
    }
  }
  function skipString(s, i) {
    for (;;) {
      const q = s.indexOf('"', i + 1);
      if (q < 0) throw new Error('unterminated string');
      // The quote ends the string unless an odd number of backslashes
      // escapes it.
      let n = 0;
      while (s.charCodeAt(q - 1 - n) === 92) n++;
      if (n % 2 === 0) return q + 1;
      i = q;
    }
  }
  function skipValue(s, i) {
    const c = s[i];
    if (c === '"') return skipString(s, i);
    if (c === '{' || c === '[') {
      let depth = 0;
      for (; i < s.length; i++) {
        const ch = s.charCodeAt(i);
        if (ch === 34) {
          i = skipString(s, i) - 1;
        } else if (ch === 123 || ch === 91) {
          depth++;
        } else if (ch === 125 || ch === 93) {
          depth--;
          if (depth === 0) return i + 1;
        }
      }
      throw new Error('unterminated value');
    }
    while (i < s.length && ',}] \t\n\r'.indexOf(s[i]) < 0) i++;
    return i;
  }

  // ---- display --------------------------------------------------------


  function showTask(t) {
    const empty = ui.current.querySelector('.empty');
    if (empty) empty.remove();
    const li = document.createElement('li');
    const id = document.createElement('span');
    id.className = 'id';
    id.textContent = String(t.jobId);
    const what = document.createElement('span');
    what.className = 'what';
    li.append(id, ' ', what);
    li.dataset.job = t.jobId;
    ui.current.append(li);
    t.row = { li: li, what: what };
    updateTask(t);
  }

  function updateTask(t) {
    if (!t.row) return;
    const secs = Math.floor((performance.now() - t.started) / 1000);
    t.row.what.textContent = t.type + ' job, attempt ' + t.attempt + ', running for ' + secs + ' s';
  }

  function removeTask(t) {
    if (t.row) t.row.li.remove();
    t.row = null;
    if (tasks.size === 0 && !ui.current.querySelector('li')) {
      const li = document.createElement('li');
      li.className = 'muted empty';
      li.textContent = 'No job right now.';
      ui.current.append(li);
    }
  }

  function logTask(t, res) {
    const li = document.createElement('li');
    li.dataset.job = t.jobId;
    li.dataset.status = res.status;
    const id = document.createElement('span');
    id.className = 'id';
    id.textContent = String(t.jobId);
    const status = document.createElement('span');
    status.className = 'status-' + res.status;
    status.textContent = res.status;
    const what = document.createElement('span');
    what.textContent = ' ' + t.type + ', ' + res.duration_ms + ' ms';
    li.append(id, ' ', status, what);
    const text = [res.output, res.stderr, res.error, res.result !== undefined ? '→ ' + res.result : '']
      .filter(function (s) { return s; }).join('\n');
    if (text) {
      const pre = document.createElement('pre');
      pre.textContent = text.length > 500 ? text.slice(0, 500) + '…' : text;
      li.append(pre);
    }
    ui.log.prepend(li);
    while (ui.log.children.length > LOG_ENTRIES) ui.log.lastElementChild.remove();
  }

  function formatDuration(ms) {
    let s = Math.floor(ms / 1000);
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    s %= 60;
    if (h > 0) return h + 'h ' + String(m).padStart(2, '0') + 'm';
    if (m > 0) return m + 'm ' + String(s).padStart(2, '0') + 's';
    return s + 's';
  }

  function render() {
    ui.done.textContent = String(counts.done);
    ui.completed.textContent = String(counts.completed);
    ui.failed.textContent = String(counts.failed);
    ui.timeout.textContent = String(counts.timeout);
    ui.canceled.textContent = String(counts.canceled);
    let ms = donatedMs;
    const now = performance.now();
    for (const t of tasks.values()) {
      ms += now - t.started;
      updateTask(t);
    }
    ui.donated.dataset.ms = String(Math.round(ms));
    ui.donated.textContent = formatDuration(ms);
  }

  // ---- clock ----------------------------------------------------------

  // tick runs on the ticker: heartbeats, job deadlines, reconnection and
  // the running display.
  function tick() {
    const now = performance.now();
    for (const t of Array.from(tasks.values())) {
      if (now >= t.deadline) finish(t, { status: 'timeout', error: 'timed out', exit_code: -1 });
    }
    // Heartbeats go twice per interval, so that one late tick does not
    // come near the three silent intervals that end a session.
    if (registered && now - lastSent >= heartbeatMs / 2) {
      send({ type: 'heartbeat', leases: Array.from(tasks.keys()).sort() });
    }
    if (ws && !registered && now - connectedAt > REGISTER_WAIT_MS) endSession('the orchestrator did not answer');
    if (!ws && reconnectAt > 0 && now >= reconnectAt) connect();
    render();
  }

  // ticker drives tick from a dedicated worker, whose timers keep their
  // pace in a hidden tab, or from the page's own timer when no worker can
  // be started.
  const ticker = {
    ms: 250,
    worker: null,
    timer: 0,
    every: function (ms) {
      this.ms = ms;
      if (this.worker) {
        this.worker.postMessage(ms);
        return;
      }
      clearInterval(this.timer);
      this.timer = setInterval(tick, ms);
    },
    start: function () {
      try {
        this.worker = new Worker('timer-worker.js');
        this.worker.onmessage = tick;
      } catch (e) {
        this.worker = null;
      }
      this.every(this.ms);
    },
  };

  // ---- controls -------------------------------------------------------

  function sendCapabilities() {
    const msg = { type: 'capabilities', capabilities: capabilities() };
    const n = notes();
    if (n) msg.notes = n;
    if (registered) send(msg);
  }

  ui.pause.addEventListener('click', function () {
    settings.paused = !settings.paused;
    ui.pause.textContent = settings.paused ? 'Resume' : 'Pause';
    ui.pause.setAttribute('aria-pressed', settings.paused ? 'true' : 'false');
    sendCapabilities();
    if (registered) showConnected();
  });

  ui.concurrency.value = String(settings.concurrency);
  ui.concurrency.addEventListener('change', function () {
    settings.concurrency = clampConcurrency(ui.concurrency.value);
    ui.concurrency.value = String(settings.concurrency);
    store('concurrency', settings.concurrency);
    sendCapabilities();
    if (registered) showConnected();
  });

  ui.name.value = settings.name;
  ui.name.addEventListener('change', function () {
    const v = ui.name.value.trim().slice(0, 64);
    if (v) {
      settings.name = v;
      store('name', v);
    }
    ui.name.value = settings.name;
  });

  store('name', settings.name);
  ticker.start();
  render();
  connect();
})();
