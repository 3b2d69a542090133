# Zerverless Python bootstrap. It runs inside the sandbox as the first
# Python code, before any user code:
#
#   argv[1]  JSON object of rlimits to set: {"RLIMIT_AS": [soft, hard], ...}
#   fd 3     the request, JSON {"code": str, "input": any}, read to EOF
#   fd 4     the reply channel: "ready\n", then one JSON line at the end
#
# The reply line is {"ok": true, "result": <value>} (no "result" key when
# the script set none) or {"ok": false, "error": str, "type": str}.
import json
import linecache
import os
import resource
import sys
import traceback
import types

_REQUEST_FD = 3
_REPLY_FD = 4
_FILENAME = "main.py"


def _reply(msg):
    text = json.dumps(msg, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    try:
        data = (text + "\n").encode()
    except UnicodeEncodeError:  # a lone surrogate: let json escape it
        data = (json.dumps(msg, allow_nan=False, separators=(",", ":")) + "\n").encode()
    view = memoryview(data)
    while view:
        n = os.write(_REPLY_FD, view)
        view = view[n:]


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _exit_status(code):
    if code is None:
        return 0, None
    if isinstance(code, int):
        return code, None
    return 1, str(code)


def _main():
    pid = os.getpid()
    os.set_inheritable(_REPLY_FD, False)
    os.write(_REPLY_FD, b"ready\n")

    for name, (soft, hard) in json.loads(sys.argv[1]).items():
        resource.setrlimit(getattr(resource, name), (soft, hard))

    try:
        with os.fdopen(_REQUEST_FD, "rb") as f:
            request = json.loads(f.read())
    except MemoryError:
        request = None
        _reply({"ok": False, "type": "MemoryError",
                "error": "MemoryError: the code and input_data do not fit in the memory limit"})
        sys.exit(1)
    code = request["code"]

    sys.stdout.reconfigure(line_buffering=True)
    sys.argv = [_FILENAME]
    module = types.ModuleType("__main__")
    module.__file__ = _FILENAME
    module.INPUT = request.get("input")
    del request
    sys.modules["__main__"] = module
    linecache.cache[_FILENAME] = (len(code), None, code.splitlines(True), _FILENAME)

    msg = {"ok": True}
    status = 0
    try:
        exec(compile(code, _FILENAME, "exec"), module.__dict__)
    except SystemExit as e:
        status, text = _exit_status(e.code)
        if text is not None:
            print(text, file=sys.stderr)
        if status != 0:
            msg = {"ok": False, "type": "SystemExit",
                   "error": "SystemExit: %s" % (text if text is not None else status)}
    except BaseException as e:
        name = type(e).__name__
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__.tb_next))
        del e
        try:
            sys.stderr.write(tb)
        except Exception:
            pass
        msg = {"ok": False, "error": tb.rstrip("\n"), "type": name}
        status = 1

    _flush()
    if os.getpid() != pid:
        # A child the script forked ran off the end of the script: it
        # ends as it would under plain python, without a reply.
        sys.exit(status)
    if msg["ok"] and "result" in module.__dict__:
        try:
            json.dumps(module.__dict__["result"], allow_nan=False)
            msg["result"] = module.__dict__["result"]
        except Exception as e:
            msg = {"ok": False, "type": type(e).__name__,
                   "error": "result is not JSON-serializable: %s: %s" % (type(e).__name__, e)}
            status = 1
    try:
        _reply(msg)
    except Exception as e:
        _reply({"ok": False, "type": type(e).__name__,
                "error": "cannot send result: %s: %s" % (type(e).__name__, e)})
        status = 1
    sys.exit(status)


_main()
