'use strict';
// Runs one JavaScript job for the volunteer page, in a dedicated Web Worker
// that the page terminates at the job's timeout or on cancel.
//
// The page posts one message: {code, input, limit}. input is the job's
// input_data as JSON text (null when the job has none) and limit caps
// stdout, stderr and the encoded result in bytes. The worker answers with
// {kind: 'out', fd: 1|2, bytes} as the job prints, then one
// {kind: 'done', status, error, exit_code, result, truncated}, where result
// is the returned value as JSON text (absent when it has no JSON form).
//
// The contract is the native JavaScript runtime's (internal/runtime/js):
// INPUT, console.log/info/debug to stdout and console.warn/error to stderr,
// the returned value is module.exports when the script replaced it or gave
// it a property and otherwise the script's last expression, a returned
// Promise is awaited, and a Promise still pending once the script's
// microtasks have drained fails the job.
//
// Before the job's code runs, every global that is not part of ECMAScript
// is removed from the global object and its prototype chain: fetch,
// XMLHttpRequest, WebSocket, EventSource, importScripts, navigator, Worker,
// postMessage, timers, storage, WebAssembly and the rest. The worker is
// also served with a Content-Security-Policy that allows no request at
// all, so that code which found one of them again could still not reach
// the network.
(function () {
  // What the runner itself needs, taken before anything is removed.
  const G = globalThis;
  const post = self.postMessage.bind(self);
  const later = self.setTimeout.bind(self);
  const globalEval = self.eval;
  const stringify = JSON.stringify;
  const parse = JSON.parse;
  const PromiseCtor = Promise;
  const promiseThen = Promise.prototype.then;
  const ErrorCtor = Error;
  const StringCtor = String;
  const objectKeys = Object.keys;
  const hasOwn = Object.prototype.hasOwnProperty;
  const defineProperty = Object.defineProperty;
  const getPrototypeOf = Object.getPrototypeOf;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ownKeys = Reflect.ownKeys;
  const deleteProperty = Reflect.deleteProperty;
  const apply = Reflect.apply;
  const encoder = new TextEncoder();
  const runnerURL = String(self.location.href);

  // The globals ECMAScript defines; everything else goes.
  const standard = new Set([
    'globalThis', 'Infinity', 'NaN', 'undefined', 'eval', 'isFinite', 'isNaN',
    'parseFloat', 'parseInt', 'decodeURI', 'decodeURIComponent', 'encodeURI',
    'encodeURIComponent', 'escape', 'unescape',
    'AggregateError', 'Array', 'ArrayBuffer', 'BigInt', 'BigInt64Array',
    'BigUint64Array', 'Boolean', 'DataView', 'Date', 'Error', 'EvalError',
    'FinalizationRegistry', 'Float16Array', 'Float32Array', 'Float64Array',
    'Function', 'Int8Array', 'Int16Array', 'Int32Array', 'Iterator', 'Map',
    'Number', 'Object', 'Promise', 'Proxy', 'RangeError', 'ReferenceError',
    'RegExp', 'Set', 'String', 'Symbol', 'SyntaxError', 'TypeError',
    'Uint8Array', 'Uint8ClampedArray', 'Uint16Array', 'Uint32Array',
    'URIError', 'WeakMap', 'WeakRef', 'WeakSet', 'JSON', 'Math', 'Reflect',
    'Intl', 'SuppressedError', 'DisposableStack', 'AsyncDisposableStack',
  ]);

  // lockDown removes every non-standard property of the global object and
  // of its prototypes (DedicatedWorkerGlobalScope.prototype and up, short
  // of Object.prototype). A property that cannot be deleted is overwritten
  // with undefined; one that resists both and holds more than a constant
  // number or string is reported, and the job does not run.
  function lockDown() {
    const left = [];
    for (let obj = G; obj !== null && obj !== Object.prototype; obj = getPrototypeOf(obj)) {
      for (const key of ownKeys(obj)) {
        if (obj === G && standard.has(key)) continue;
        if (deleteProperty(obj, key)) continue;
        try {
          defineProperty(obj, key, { value: undefined, writable: false, configurable: false });
        } catch (e) {
          // A constant that is a plain number or string (such as
          // TEMPORARY) is harmless; anything else is not.
          const d = getOwnPropertyDescriptor(obj, key);
          const harmless = d && 'value' in d && !d.writable &&
            (d.value === null || (typeof d.value !== 'object' && typeof d.value !== 'function'));
          if (!harmless) left.push(StringCtor(key));
        }
      }
    }
    return left;
  }

  // capped returns a writer of one stream that posts at most limit bytes
  // to the page and remembers whether it dropped any.
  function capped(fd, limit) {
    const s = { used: 0, truncated: false };
    s.write = function (text) {
      if (text.length === 0) return;
      let bytes = encoder.encode(text);
      const room = limit - s.used;
      if (bytes.length > room) {
        s.truncated = true;
        if (room <= 0) return;
        bytes = bytes.slice(0, room);
      }
      s.used += bytes.length;
      post({ kind: 'out', fd: fd, bytes: bytes }, [bytes.buffer]);
    };
    return s;
  }

  function isError(v) {
    return v instanceof ErrorCtor;
  }

  function safeString(v) {
    try {
      return StringCtor(v);
    } catch (e) {
      return '[object]';
    }
  }

  // format renders one console argument as the native runtime does:
  // strings as they are, errors as "Name: message", functions as their
  // source, other objects as JSON, and anything else with String.
  function format(v) {
    if (v === null || (typeof v !== 'object' && typeof v !== 'function')) return safeString(v);
    if (typeof v === 'function' || isError(v)) return safeString(v);
    try {
      const s = stringify(v);
      if (s !== undefined) return s;
    } catch (e) {
      // a cycle or a BigInt: fall back to String
    }
    return safeString(v);
  }

  // describe renders a thrown or rejected value for the job's error.
  function describe(v) {
    if (isError(v)) {
      try {
        const stack = v.stack;
        if (typeof stack === 'string' && stack !== '') return jobStack(stack);
      } catch (e) {
        // fall through
      }
    }
    return safeString(v);
  }

  // jobStack rewrites a stack trace in the job's terms: frames of the
  // job's code become "at name (job.js:line:col)", as the native runtime
  // names them, and the runner's own frames are left out.
  function jobStack(stack) {
    const lines = stack.split('\n');
    const out = [lines[0]];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i];
      if (line.indexOf(runnerURL) < 0) {
        if (!/^\s*at eval \(<anonymous>\)\s*$/.test(line)) out.push(line);
        continue;
      }
      const at = /<anonymous>:(\d+):(\d+)\)?\s*$/.exec(line);
      if (at === null) continue;
      const name = /^\s*at (\S+) \(eval at /.exec(line);
      const where = 'job.js:' + at[1] + ':' + at[2];
      out.push(name !== null && name[1] !== 'eval' ? '    at ' + name[1] + ' (' + where + ')' : '    at ' + where);
    }
    return out.join('\n');
  }

  function printer(stream) {
    return function () {
      const parts = [];
      for (let i = 0; i < arguments.length; i++) parts.push(format(arguments[i]));
      stream.write(parts.join(' ') + '\n');
    };
  }

  function run(job) {
    const limit = job.limit > 0 ? job.limit : 1 << 20;
    const stdout = capped(1, limit);
    const stderr = capped(2, limit);
    let sent = false;
    function done(res) {
      if (sent) return;
      sent = true;
      res.kind = 'done';
      res.truncated = !!res.truncated || stdout.truncated || stderr.truncated;
      post(res);
    }
    function failed(msg, extra) {
      const res = { status: 'failed', error: msg, exit_code: 1 };
      if (extra) res.truncated = true;
      done(res);
    }
    function complete(value) {
      let text;
      try {
        text = stringify(value);
      } catch (e) {
        failed('result: ' + describe(e));
        return;
      }
      const res = { status: 'completed', exit_code: 0 };
      if (text !== undefined) {
        const n = encoder.encode(text).length;
        if (n > limit) {
          failed('result is ' + n + ' bytes of JSON, more than the limit of ' + limit, true);
          return;
        }
        res.result = text;
      }
      done(res);
    }

    if (typeof job.code !== 'string' || job.code.trim() === '') {
      failed('no JavaScript code');
      return;
    }
    let input;
    if (job.input !== null && job.input !== undefined) {
      try {
        input = parse(job.input);
      } catch (e) {
        failed('input_data is not valid JSON');
        return;
      }
    }

    const left = lockDown();
    if (left.length > 0) {
      failed('the browser sandbox could not remove: ' + left.join(', '));
      return;
    }

    const module = { exports: {} };
    const initialExports = module.exports;
    const console = {
      log: printer(stdout), info: printer(stdout), debug: printer(stdout),
      warn: printer(stderr), error: printer(stderr),
    };
    const globals = { INPUT: input, console: console, module: module, exports: initialExports };
    for (const name of objectKeys(globals)) {
      defineProperty(G, name, { value: globals[name], writable: true, configurable: true, enumerable: false });
    }

    let completion;
    try {
      completion = globalEval(job.code);
    } catch (e) {
      failed(describe(e));
      return;
    }

    // The returned value: module.exports when the script replaced it or
    // gave it a property, the last expression otherwise.
    let value = completion;
    if (apply(hasOwn, module, ['exports'])) {
      const exp = module.exports;
      if (!(exp === initialExports && objectKeys(exp).length === 0)) value = exp;
    }
    if (!(value instanceof PromiseCtor)) {
      complete(value);
      return;
    }
    apply(promiseThen, value, [
      function (v) { complete(v); },
      function (e) { failed('uncaught (in promise) ' + describe(e)); },
    ]);
    // Timers are gone, so nothing the script did can run after the
    // microtasks drain; a timer of the runner's own fires after them.
    later(function () { failed('the returned promise never settled'); }, 0);
  }

  G.onmessage = function (ev) {
    G.onmessage = null;
    try {
      run(ev.data);
    } catch (e) {
      post({ kind: 'done', status: 'failed', error: 'js: internal error: ' + describe(e), exit_code: 1 });
    }
  };
})();
