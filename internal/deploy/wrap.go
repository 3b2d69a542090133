package deploy

import (
	"encoding/json"
	"strings"

	"github.com/zerverless/zerverless/internal/job"
)

// The wrappers below turn a function's code into a job of the runtime's
// ordinary contract: the job's INPUT is {"req": ..., "env": ...}; the
// prelude sets ENV and makes INPUT the request; the code runs as written;
// the epilogue calls handle(INPUT) and returns its answer as the job's
// result, with binary bodies turned into base64. A wrapped source is the
// same for every invocation of one version, so workers that cache compiled
// code by its hash compile it once.
//
// The preludes of Lua and JavaScript sit on the code's first line, so that
// line numbers in the function's errors are its own.

// wrapCode returns the job source for a function's code.
func wrapCode(rt job.Type, code string) string {
	switch rt {
	case job.TypeLua:
		return luaPrelude + code + "\n" + joinLines(luaEpilogue)
	case job.TypeJS:
		return jsPrelude + code + jsEpilogue
	case job.TypePython:
		lit, _ := json.Marshal(code) // a JSON string is a Python string literal
		return strings.Replace(pythonWrapper, "{{CODE}}", string(lit), 1)
	}
	return code
}

const luaPrelude = `local __zv = INPUT or {}; ENV = __zv.env or {}; INPUT = __zv.req; __zv = nil; `

// joinLines returns Lua source s on one line: each line without its
// indentation, joined by spaces. It is for source whose lines end no
// comment and no long string, as luaEpilogue's: the wrapped code goes to
// a worker with every invocation, smaller and without escapes in JSON.
func joinLines(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(line)
	}
	return b.String()
}

// luaEpilogue offers base64.encode and base64.decode (when the code did not
// define base64 itself) and base64-encodes a response body that is not
// plain ASCII: Lua strings are bytes, and JSON could not carry them as
// they are. It has no comments: it is sent joined into one line
// (joinLines).
const luaEpilogue = `
do
  local alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  if base64 == nil then
    base64 = {}
    function base64.encode(s)
      local out, floor = {}, math.floor
      for i = 1, #s, 3 do
        local a, b, c = s:byte(i, i + 2)
        local n = a * 65536 + (b or 0) * 256 + (c or 0)
        local c1, c2, c3, c4 = floor(n / 262144) % 64, floor(n / 4096) % 64, floor(n / 64) % 64, n % 64
        out[#out + 1] = alphabet:sub(c1 + 1, c1 + 1) .. alphabet:sub(c2 + 1, c2 + 1) ..
          (b and alphabet:sub(c3 + 1, c3 + 1) or '=') .. (c and alphabet:sub(c4 + 1, c4 + 1) or '=')
      end
      return table.concat(out)
    end
    function base64.decode(s)
      local map, out, floor = {}, {}, math.floor
      for i = 1, 64 do map[alphabet:byte(i)] = i - 1 end
      s = s:gsub('[^%w%+/]', '')
      for i = 1, #s, 4 do
        local a, b, c, d = s:byte(i, i + 3)
        a, b, c, d = map[a], map[b], c and map[c], d and map[d]
        if a == nil or b == nil then error('base64.decode: invalid input', 2) end
        local n = a * 262144 + b * 4096 + (c or 0) * 64 + (d or 0)
        out[#out + 1] = string.char(floor(n / 65536) % 256)
        if c then out[#out + 1] = string.char(floor(n / 256) % 256) end
        if d then out[#out + 1] = string.char(n % 256) end
      end
      return table.concat(out)
    end
  end
  if type(handle) ~= 'function' then error('the function defines no handle(req)', 0) end
  local res = handle(INPUT)
  if type(res) == 'table' and type(res.body) == 'string' and not res.body_base64 and res.body:find('[\128-\255]') then
    local only = true
    for k in pairs(res) do
      if k ~= 'status' and k ~= 'headers' and k ~= 'body' and k ~= 'body_base64' then only = false end
    end
    if only then
      res.body = base64.encode(res.body)
      res.body_base64 = true
    end
  end
  return res
end
`

const jsPrelude = `globalThis.ENV = (INPUT && INPUT.env) || {}; INPUT = INPUT && INPUT.req; ` +
	`if (typeof atob === "undefined") { globalThis.btoa = function (s) { return __zv_b64(String(s)); }; ` +
	`globalThis.atob = function (s) { return __zv_unb64(String(s)); }; } `

// jsEpilogue finds handle (a global function, module.exports.handle or
// module.exports itself), calls it, and makes its answer module.exports.
// A Uint8Array or ArrayBuffer body is sent as base64. The helpers are
// function declarations, hoisted, so the prelude may use them.
const jsEpilogue = `
;(function () {
  var h = typeof handle === "function" ? handle
    : module.exports && typeof module.exports.handle === "function" ? module.exports.handle
    : typeof module.exports === "function" ? module.exports : null;
  if (!h) throw new Error("the function defines no handle(req)");
  var res = h(INPUT);
  module.exports = res && typeof res.then === "function" ? res.then(__zv_answer) : __zv_answer(res);
})();
function __zv_answer(res) {
  if (res instanceof ArrayBuffer || ArrayBuffer.isView(res)) return { status: 200, body: __zv_bytes(res), body_base64: true };
  if (res && typeof res === "object" && !Array.isArray(res) && (res.body instanceof ArrayBuffer || ArrayBuffer.isView(res.body))) {
    for (var k in res) if (k !== "status" && k !== "headers" && k !== "body" && k !== "body_base64") return res;
    res.body = __zv_bytes(res.body);
    res.body_base64 = true;
  }
  return res;
}
function __zv_bytes(b) {
  var u = b instanceof ArrayBuffer ? new Uint8Array(b) : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  var s = "";
  for (var i = 0; i < u.length; i += 8192) s += String.fromCharCode.apply(null, u.subarray(i, i + 8192));
  return __zv_b64(s);
}
function __zv_b64(s) {
  var a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", out = "";
  for (var i = 0; i < s.length; i += 3) {
    var x = s.charCodeAt(i), y = s.charCodeAt(i + 1), z = s.charCodeAt(i + 2);
    if (x > 255 || y > 255 || z > 255) throw new Error("btoa: the string holds characters beyond Latin-1");
    var n = (x << 16) | ((y || 0) << 8) | (z || 0);
    out += a.charAt(n >> 18 & 63) + a.charAt(n >> 12 & 63) +
      (i + 1 < s.length ? a.charAt(n >> 6 & 63) : "=") + (i + 2 < s.length ? a.charAt(n & 63) : "=");
  }
  return out;
}
function __zv_unb64(s) {
  var a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", out = "", bits = 0, n = 0;
  s = s.replace(/[\s=]/g, "");
  for (var i = 0; i < s.length; i++) {
    var v = a.indexOf(s.charAt(i));
    if (v < 0) throw new Error("atob: invalid base64");
    n = (n << 6) | v; bits += 6;
    if (bits >= 8) { bits -= 8; out += String.fromCharCode((n >> bits) & 255); }
  }
  return out;
}
`

// pythonWrapper runs the code with exec, under the file name handler.py,
// so that tracebacks number its lines as written. A bytes body (or a
// bytes answer) is sent as base64.
const pythonWrapper = `ENV = (INPUT or {}).get("env") or {}
INPUT = (INPUT or {}).get("req")
exec(compile({{CODE}}, "handler.py", "exec"))

def __zv_answer(res):
    import base64
    if isinstance(res, (bytes, bytearray, memoryview)):
        return {"status": 200, "body": base64.b64encode(bytes(res)).decode("ascii"), "body_base64": True}
    if isinstance(res, dict) and isinstance(res.get("body"), (bytes, bytearray, memoryview)) \
            and set(res) <= {"status", "headers", "body", "body_base64"}:
        res = dict(res, body=base64.b64encode(bytes(res["body"])).decode("ascii"), body_base64=True)
    return res

if not callable(globals().get("handle")):
    raise NameError("the function defines no handle(req)")
result = __zv_answer(handle(INPUT))
`
