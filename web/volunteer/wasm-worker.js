'use strict';
// Runs one WebAssembly job for the volunteer page, in a dedicated Web Worker
// that the page terminates at the job's timeout or on cancel.
//
// The page posts one message: {wasm, args, input, limit}. wasm is the
// module in base64, args the arguments after the module name, input the
// job's input_data as JSON text (null when it has none) and limit the cap
// in bytes of stdout, stderr and the returned value. The worker answers with
// {kind: 'out', fd: 1|2, bytes} as the module writes, then one
// {kind: 'done', status, error, exit_code, result, truncated}.
//
// The contract is the native Wasm runtime's (internal/runtime/wasm): a WASI
// preview 1 command whose _start runs with argv "module.wasm" and the
// job's args, the input on stdin and in INPUT_DATA (the only environment
// variable), stdout and stderr captured, real clocks, sleeping, random
// bytes, no files and no sockets; proc_exit's code is the exit code, and
// zerverless.set_result(ptr, len) sets the returned value. The WASI calls
// are implemented here, by Wasi below; the worker is served with a
// Content-Security-Policy that allows no request at all.
(function () {
  const post = self.postMessage.bind(self);
  const encoder = new TextEncoder();

  // WASI preview 1 error numbers used here.
  const ESUCCESS = 0;
  const EBADF = 8;
  const EFAULT = 21;
  const EINVAL = 28;
  const ENOSYS = 52;
  const ENOTDIR = 54;
  const ENOTSOCK = 57;
  const ESPIPE = 70;

  // Clock ids, subscription and event types, file types.
  const CLOCK_REALTIME = 0;
  const EVENTTYPE_CLOCK = 0;
  const EVENTTYPE_FD_READ = 1;
  const EVENTTYPE_FD_WRITE = 2;
  const SUBCLOCKFLAG_ABSTIME = 1;
  const FILETYPE_CHARACTER_DEVICE = 2;
  const ALL_RIGHTS = 0x1fffffffn;

  // ProcExit is thrown by proc_exit to unwind the guest.
  class ProcExit {
    constructor(code) {
      this.code = code;
    }
  }

  // Sleeping blocks the worker's thread: with Atomics.wait when the page is
  // cross-origin isolated (SharedArrayBuffer exists), by spinning on the
  // clock otherwise. Either way the page's terminate() ends it.
  let sleepCell = null;
  try {
    if (typeof SharedArrayBuffer === 'function') sleepCell = new Int32Array(new SharedArrayBuffer(4));
  } catch (e) {
    sleepCell = null;
  }
  function sleepNs(ns) {
    const ms = Number(ns) / 1e6;
    if (!(ms > 0)) return;
    if (sleepCell !== null) {
      Atomics.wait(sleepCell, 0, 0, ms);
      return;
    }
    const end = performance.now() + ms;
    while (performance.now() < end) {
      // spin
    }
  }

  let lastMono = 0n;
  function monotonicNs() {
    let t = BigInt(Math.round(performance.now() * 1e6));
    if (t < lastMono) t = lastMono;
    lastMono = t;
    return t;
  }
  function realtimeNs() {
    const ms = performance.timeOrigin + performance.now();
    const whole = Math.floor(ms);
    return BigInt(whole) * 1000000n + BigInt(Math.round((ms - whole) * 1e6));
  }

  // capped is one output stream: it posts at most limit bytes to the page
  // and remembers whether it dropped any.
  function capped(fd, limit) {
    const s = { used: 0, truncated: false };
    s.write = function (bytes) {
      if (bytes.length === 0) return;
      const room = limit - s.used;
      if (bytes.length > room) {
        s.truncated = true;
        if (room <= 0) return;
        bytes = bytes.subarray(0, room);
      }
      s.used += bytes.length;
      const copy = bytes.slice();
      post({ kind: 'out', fd: fd, bytes: copy }, [copy.buffer]);
    };
    return s;
  }

  // Wasi holds one run's WASI state and its host functions.
  class Wasi {
    constructor(args, env, stdin, stdout, stderr) {
      this.args = args.map(function (a) { return encoder.encode(a + '\0'); });
      this.env = env.map(function (e) { return encoder.encode(e + '\0'); });
      this.stdin = stdin;
      this.stdinPos = 0;
      this.out = { 1: stdout, 2: stderr };
      this.memory = null;
    }

    view() {
      return new DataView(this.memory.buffer);
    }

    bytes(ptr, len) {
      return new Uint8Array(this.memory.buffer, ptr, len);
    }

    // strings writes a list of NUL-terminated strings and their pointers,
    // as args_get and environ_get do.
    strings(list, ptrsPtr, bufPtr) {
      const dv = this.view();
      let p = bufPtr >>> 0;
      let at = ptrsPtr >>> 0;
      for (const s of list) {
        dv.setUint32(at, p, true);
        at += 4;
        this.bytes(p, s.length).set(s);
        p += s.length;
      }
      return ESUCCESS;
    }

    sizes(list, countPtr, sizePtr) {
      const dv = this.view();
      let size = 0;
      for (const s of list) size += s.length;
      dv.setUint32(countPtr >>> 0, list.length, true);
      dv.setUint32(sizePtr >>> 0, size, true);
      return ESUCCESS;
    }

    // iovecs returns the (ptr, len) pairs of an iovec array.
    iovecs(iovs, n) {
      const dv = this.view();
      const list = [];
      for (let i = 0; i < n >>> 0; i++) {
        const base = (iovs >>> 0) + i * 8;
        list.push([dv.getUint32(base, true), dv.getUint32(base + 4, true)]);
      }
      return list;
    }

    stdio(fd) {
      return fd === 0 || fd === 1 || fd === 2;
    }

    // functions returns the wasi_snapshot_preview1 functions by name. Each
    // turns an out-of-range memory access into EFAULT, as a native WASI
    // host does.
    functions() {
      const w = this;
      const fns = {
        args_sizes_get: function (countPtr, sizePtr) { return w.sizes(w.args, countPtr, sizePtr); },
        args_get: function (ptrs, buf) { return w.strings(w.args, ptrs, buf); },
        environ_sizes_get: function (countPtr, sizePtr) { return w.sizes(w.env, countPtr, sizePtr); },
        environ_get: function (ptrs, buf) { return w.strings(w.env, ptrs, buf); },

        clock_res_get: function (id, resPtr) {
          if (id < 0 || id > 3) return EINVAL;
          w.view().setBigUint64(resPtr >>> 0, 1000n, true);
          return ESUCCESS;
        },
        clock_time_get: function (id, precision, timePtr) {
          let t;
          if (id === CLOCK_REALTIME) t = realtimeNs();
          else if (id >= 1 && id <= 3) t = monotonicNs();
          else return EINVAL;
          w.view().setBigUint64(timePtr >>> 0, t, true);
          return ESUCCESS;
        },

        fd_write: function (fd, iovs, n, writtenPtr) {
          const out = w.out[fd];
          if (fd === 0) return EBADF;
          if (out === undefined) return EBADF;
          let total = 0;
          for (const [ptr, len] of w.iovecs(iovs, n)) {
            out.write(w.bytes(ptr, len));
            total += len;
          }
          w.view().setUint32(writtenPtr >>> 0, total, true);
          return ESUCCESS;
        },
        fd_read: function (fd, iovs, n, readPtr) {
          if (fd !== 0) return EBADF;
          let total = 0;
          for (const [ptr, len] of w.iovecs(iovs, n)) {
            const chunk = w.stdin.subarray(w.stdinPos, w.stdinPos + len);
            w.bytes(ptr, chunk.length).set(chunk);
            w.stdinPos += chunk.length;
            total += chunk.length;
            if (chunk.length < len) break;
          }
          w.view().setUint32(readPtr >>> 0, total, true);
          return ESUCCESS;
        },
        fd_pread: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_pwrite: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_seek: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_tell: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_close: function (fd) { return w.stdio(fd) ? ESUCCESS : EBADF; },
        fd_sync: function (fd) { return w.stdio(fd) ? ESUCCESS : EBADF; },
        fd_datasync: function (fd) { return w.stdio(fd) ? ESUCCESS : EBADF; },
        fd_fdstat_get: function (fd, ptr) {
          if (!w.stdio(fd)) return EBADF;
          const dv = w.view();
          const p = ptr >>> 0;
          w.bytes(p, 24).fill(0);
          dv.setUint8(p, FILETYPE_CHARACTER_DEVICE);
          dv.setBigUint64(p + 8, ALL_RIGHTS, true);
          return ESUCCESS;
        },
        fd_fdstat_set_flags: function (fd) { return w.stdio(fd) ? ESUCCESS : EBADF; },
        fd_fdstat_set_rights: function (fd) { return w.stdio(fd) ? ESUCCESS : EBADF; },
        fd_filestat_get: function (fd, ptr) {
          if (!w.stdio(fd)) return EBADF;
          const p = ptr >>> 0;
          w.bytes(p, 64).fill(0);
          w.view().setUint8(p + 16, FILETYPE_CHARACTER_DEVICE);
          return ESUCCESS;
        },
        fd_filestat_set_size: function (fd) { return w.stdio(fd) ? EINVAL : EBADF; },
        fd_filestat_set_times: function (fd) { return w.stdio(fd) ? ENOSYS : EBADF; },
        fd_advise: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_allocate: function (fd) { return w.stdio(fd) ? ESPIPE : EBADF; },
        fd_readdir: function (fd) { return w.stdio(fd) ? ENOTDIR : EBADF; },
        fd_renumber: function () { return EBADF; },
        // No preopened directories: the guest finds none and opens no file.
        fd_prestat_get: function () { return EBADF; },
        fd_prestat_dir_name: function () { return EBADF; },

        poll_oneoff: function (inPtr, outPtr, nsubs, neventsPtr) { return w.poll(inPtr >>> 0, outPtr >>> 0, nsubs >>> 0, neventsPtr >>> 0); },
        proc_exit: function (code) { throw new ProcExit(code >>> 0); },
        proc_raise: function () { return ENOSYS; },
        sched_yield: function () { return ESUCCESS; },
        random_get: function (ptr, len) {
          const buf = w.bytes(ptr >>> 0, len >>> 0);
          for (let i = 0; i < buf.length; i += 65536) {
            const part = new Uint8Array(Math.min(65536, buf.length - i));
            crypto.getRandomValues(part);
            buf.set(part, i);
          }
          return ESUCCESS;
        },

        sock_accept: function (fd) { return w.stdio(fd) ? ENOTSOCK : EBADF; },
        sock_recv: function (fd) { return w.stdio(fd) ? ENOTSOCK : EBADF; },
        sock_send: function (fd) { return w.stdio(fd) ? ENOTSOCK : EBADF; },
        sock_shutdown: function (fd) { return w.stdio(fd) ? ENOTSOCK : EBADF; },
      };
      // Every path_* call names a directory descriptor, and there is none.
      for (const name of ['path_create_directory', 'path_filestat_get', 'path_filestat_set_times',
        'path_link', 'path_open', 'path_readlink', 'path_remove_directory', 'path_rename',
        'path_symlink', 'path_unlink_file']) {
        fns[name] = function () { return EBADF; };
      }
      for (const name of Object.keys(fns)) {
        const f = fns[name];
        fns[name] = function () {
          try {
            return f.apply(null, arguments);
          } catch (e) {
            if (e instanceof RangeError) return EFAULT;
            throw e;
          }
        };
      }
      return fns;
    }

    // poll waits for the earliest clock subscription unless an fd
    // subscription is ready now: stdin is always readable (at its end,
    // reads return 0) and stdout and stderr always writable.
    poll(inPtr, outPtr, nsubs, neventsPtr) {
      if (nsubs === 0) return EINVAL;
      const dv = this.view();
      const events = [];
      const clocks = [];
      let wait = -1n;
      for (let i = 0; i < nsubs; i++) {
        const base = inPtr + i * 48;
        const userdata = dv.getBigUint64(base, true);
        const tag = dv.getUint8(base + 8);
        if (tag === EVENTTYPE_CLOCK) {
          const id = dv.getUint32(base + 16, true);
          let timeout = dv.getBigUint64(base + 24, true);
          const flags = dv.getUint16(base + 40, true);
          if (id > 3) {
            events.push({ userdata: userdata, error: EINVAL, type: tag, nbytes: 0n });
            continue;
          }
          if (flags & SUBCLOCKFLAG_ABSTIME) {
            const now = id === CLOCK_REALTIME ? realtimeNs() : monotonicNs();
            timeout = timeout > now ? timeout - now : 0n;
          }
          clocks.push({ userdata: userdata, timeout: timeout });
          if (wait < 0n || timeout < wait) wait = timeout;
        } else if (tag === EVENTTYPE_FD_READ || tag === EVENTTYPE_FD_WRITE) {
          const fd = dv.getUint32(base + 16, true);
          const ok = tag === EVENTTYPE_FD_READ ? fd === 0 : fd === 1 || fd === 2;
          const nbytes = tag === EVENTTYPE_FD_READ && ok ? BigInt(this.stdin.length - this.stdinPos) : 0n;
          events.push({ userdata: userdata, error: ok ? ESUCCESS : EBADF, type: tag, nbytes: nbytes });
        } else {
          return EINVAL;
        }
      }
      if (events.length === 0 && wait >= 0n) {
        sleepNs(wait);
        for (const c of clocks) {
          if (c.timeout <= wait) events.push({ userdata: c.userdata, error: ESUCCESS, type: EVENTTYPE_CLOCK, nbytes: 0n });
        }
      }
      const out = this.view();
      for (let i = 0; i < events.length; i++) {
        const e = events[i];
        const base = outPtr + i * 32;
        this.bytes(base, 32).fill(0);
        out.setBigUint64(base, e.userdata, true);
        out.setUint16(base + 8, e.error, true);
        out.setUint8(base + 10, e.type);
        if (e.type !== EVENTTYPE_CLOCK) out.setBigUint64(base + 16, e.nbytes, true);
      }
      out.setUint32(neventsPtr, events.length, true);
      return ESUCCESS;
    }
  }

  function decodeBase64(s) {
    const bin = atob(s);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes;
  }

  // resultSink keeps what the guest passes to zerverless.set_result; the
  // last call wins.
  function resultSink(limit) {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    const sink = { value: undefined, error: '' };
    sink.set = function (memory, ptr, len) {
      ptr >>>= 0;
      len >>>= 0;
      if (len > limit) {
        sink.value = undefined;
        sink.error = 'result is ' + len + ' bytes of JSON, more than the limit of ' + limit;
        return;
      }
      const bytes = new Uint8Array(memory.buffer, ptr, len);
      let text;
      try {
        text = decoder.decode(bytes);
        JSON.parse(text);
      } catch (e) {
        sink.value = undefined;
        sink.error = 'result is not valid JSON';
        return;
      }
      sink.value = text;
      sink.error = '';
    };
    return sink;
  }

  async function run(job) {
    const limit = job.limit > 0 ? job.limit : 1 << 20;
    const stdout = capped(1, limit);
    const stderr = capped(2, limit);
    function done(res) {
      res.kind = 'done';
      res.truncated = !!res.truncated || stdout.truncated || stderr.truncated;
      post(res);
    }
    function failed(msg, code) {
      done({ status: 'failed', error: msg, exit_code: code === undefined ? 1 : code });
    }

    let bytes;
    try {
      bytes = decodeBase64(typeof job.wasm === 'string' ? job.wasm : '');
    } catch (e) {
      failed('invalid Wasm module: not base64');
      return;
    }
    if (bytes.length === 0) {
      failed('no Wasm module');
      return;
    }
    let mod;
    try {
      mod = await WebAssembly.compile(bytes);
    } catch (e) {
      failed('invalid Wasm module: ' + e.message);
      return;
    }
    const hasStart = WebAssembly.Module.exports(mod).some(function (e) {
      return e.name === '_start' && e.kind === 'function';
    });
    if (!hasStart) {
      failed('the module does not export _start (a WASI command is expected)');
      return;
    }

    const input = typeof job.input === 'string' ? job.input : null;
    const args = ['module.wasm'].concat(Array.isArray(job.args) ? job.args.map(String) : []);
    const env = input === null ? [] : ['INPUT_DATA=' + input];
    const wasi = new Wasi(args, env, encoder.encode(input === null ? '' : input), stdout, stderr);
    const sink = resultSink(limit);

    // Imports: the WASI functions the module asks for (unknown ones answer
    // ENOSYS) and zerverless.set_result. Anything else fails to link.
    const wasiFns = wasi.functions();
    const imports = {};
    for (const imp of WebAssembly.Module.imports(mod)) {
      if (imp.kind !== 'function') continue;
      if (imp.module === 'wasi_snapshot_preview1') {
        imports[imp.module] = imports[imp.module] || {};
        imports[imp.module][imp.name] = wasiFns[imp.name] || function () { return ENOSYS; };
      } else if (imp.module === 'zerverless' && imp.name === 'set_result') {
        imports.zerverless = { set_result: function (ptr, len) { sink.set(wasi.memory, ptr, len); } };
      }
    }

    let code = 0;
    try {
      const instance = await WebAssembly.instantiate(mod, imports);
      const memory = instance.exports.memory;
      if (!(memory instanceof WebAssembly.Memory)) {
        failed('the module does not export its memory');
        return;
      }
      wasi.memory = memory;
      instance.exports._start();
    } catch (e) {
      if (!(e instanceof ProcExit)) {
        if (e instanceof WebAssembly.LinkError) {
          failed('instantiate: ' + e.message);
          return;
        }
        failed('wasm error: ' + (e && e.message ? e.message : String(e)));
        return;
      }
      code = e.code;
    }
    if (code !== 0) {
      failed('module exited with code ' + code, code);
      return;
    }
    if (sink.error !== '') {
      done({ status: 'failed', error: 'result: ' + sink.error, exit_code: 1, truncated: true });
      return;
    }
    const res = { status: 'completed', exit_code: 0 };
    if (sink.value !== undefined) res.result = sink.value;
    done(res);
  }

  self.onmessage = function (ev) {
    self.onmessage = null;
    run(ev.data).catch(function (e) {
      post({ kind: 'done', status: 'failed', error: 'wasm: internal error: ' + e, exit_code: 1 });
    });
  };
})();
