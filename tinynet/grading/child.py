"""The student's side of grading: a separate process that runs the student's code, and nothing else.

The grader (the parent process) starts this file as a script, ``python child.py FD_IN FD_OUT``,
with two pipe ends. It reads one setup message, then:

1. imports NumPy and tinynet, and the lab's probes (``probes.py``: code that drives the student's
   classes on the inputs the parent sends and returns what came out; no expected values);
2. takes away what the lab asks the student to write: every tinynet class or function of a
   blocked name is replaced by a stand-in that refuses to run, naming the lab; the lab's own
   ``setup()`` may refuse more (lab 4: tinynet's simplified BatchNorm backward);
3. installs an audit hook (it cannot be removed) that refuses to open the grader's files, the
   labs' checks and references, and the source of what was blocked, and refuses to start
   processes, load native libraries or signal other processes;
4. imports the student's file and answers the parent's calls, one at a time.

Verdicts are never made here: a call returns arrays and numbers, the parent compares them
with its own oracle, which never exists in this process. Messages in both directions use
:func:`encode`, a JSON header plus ``.npy`` blobs read with ``allow_pickle=False``, so nothing
the child sends can run code in the parent.

The module is also imported by the parent (the wire format, :func:`dispatch` for grading a
module in-process in tests) and is the ``tinynet_lab_kit`` that probes import ``need`` and
``own`` from.
"""

import io
import json
import os
import struct
import sys
import traceback

import numpy as np

MAX_MESSAGE = 1 << 28  # 256 MiB: a larger frame is garbage, not a result


# --------------------------------------------------------------------------- the wire format
class ProtocolError(Exception):
    """A message that is not a well-formed frame of plain data."""


def encode(value):
    """``value`` (None, bool, int, float, str, lists, str-keyed dicts, NumPy arrays) as bytes."""
    blobs = []

    def walk(v):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, np.generic):
            return v
        if isinstance(v, np.generic):
            v = np.asarray(v)  # a 0-d array keeps the scalar's dtype
        if hasattr(v, "__array__") and not isinstance(v, np.ndarray):
            v = np.asarray(v)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biufc":
                raise ProtocolError(f"cannot send an array of dtype {v.dtype}")
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v if v.flags.c_contiguous else v.copy(order="C"), allow_pickle=False)
            blobs.append(buf.getvalue())
            return {"__nd__": len(blobs) - 1}
        if isinstance(v, (list, tuple)):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {str(k): walk(x) for k, x in v.items()}
        raise ProtocolError(f"cannot send a {type(v).__name__}")

    header = json.dumps(walk(value)).encode()
    parts = [struct.pack("<I", len(header)), header]
    for blob in blobs:
        parts += [struct.pack("<Q", len(blob)), blob]
    return b"".join(parts)


def decode(payload):
    """The value :func:`encode` wrote; ProtocolError for anything else (never unpickles)."""
    try:
        (n,) = struct.unpack_from("<I", payload, 0)
        header = json.loads(payload[4:4 + n].decode())
        pos, arrays = 4 + n, []
        while pos < len(payload):
            (size,) = struct.unpack_from("<Q", payload, pos)
            pos += 8
            arrays.append(np.lib.format.read_array(io.BytesIO(payload[pos:pos + size]), allow_pickle=False))
            pos += size
        if pos != len(payload):
            raise ProtocolError("trailing bytes")

        def walk(v):
            if isinstance(v, dict):
                if set(v) == {"__nd__"}:
                    array = arrays[v["__nd__"]]
                    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biufc":
                        raise ProtocolError("not a numeric array")
                    return array if array.flags.writeable else array.copy()
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(header)
    except ProtocolError:
        raise
    except Exception as exc:  # malformed JSON, a bad index, a truncated blob, an object array
        raise ProtocolError(f"{type(exc).__name__}: {exc}") from None


def send(fd, value):
    data = encode(value)
    data = struct.pack("<Q", len(data)) + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exact(fd, n, wait=None):
    """``n`` bytes from ``fd``; ``wait(remaining)`` blocks until readable (raising on a deadline)."""
    chunks, got = [], 0
    while got < n:
        if wait is not None:
            wait()
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("the other process closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv(fd, wait=None):
    (size,) = struct.unpack("<Q", read_exact(fd, 8, wait))
    if size > MAX_MESSAGE:
        raise ProtocolError(f"a message of {size} bytes")
    return decode(read_exact(fd, size, wait))


# --------------------------------------------------------------------------- the kit probes use
class Refused(Exception):
    """A probe refuses the submission (a missing name, a method taken from elsewhere): a failed item."""

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message, self.hint = message, hint


class LabBlocked(Exception):
    """Raised by tinynet code that the lab asks the student to write, while grading that lab."""


class GuardRefusal(LabBlocked, PermissionError):
    """Raised by the audit hook: an OSError, so code that tolerates unreadable files (linecache) goes on."""


STATE = {"lab": None, "student_file": None}  # set by main(); None when grading in-process (tests)


def need(sub, name):
    """The attribute ``name`` of the student's module, or Refused saying the file must define it."""
    value = getattr(sub, name, None)
    if value is None:
        raise Refused(f"the file defines no {name!r}; keep the names the stub gives")
    return value


def own(cls, *methods):
    """Refuse unless each of ``methods`` of ``cls`` is a function written in the student's file."""
    student_file = STATE["student_file"]
    if not isinstance(cls, type):
        cls = type(cls)
    if "__tinynet_blocked__" in vars(cls):
        raise Refused(vars(cls)["__tinynet_blocked__"])
    lab = f"lab {STATE['lab']}" if STATE["lab"] else "the lab"
    for name in methods:
        found, owner = None, None
        for klass in cls.__mro__:
            if name in vars(klass):
                found, owner = vars(klass)[name], klass
                break
        where = found.__func__ if isinstance(found, (staticmethod, classmethod)) else found
        code = getattr(where, "__code__", None)
        if found is None or code is None:
            raise Refused(f"{cls.__name__} has no {name} of its own: {lab} asks you to write "
                          f"{cls.__name__}.{name} yourself, in your file")
        if student_file is not None and _same_file(code.co_filename, student_file) is False:
            if owner is not cls:  # inherited, e.g. from the tinynet class the stub subclasses
                raise Refused(f"your class {cls.__name__} does not define {name}: it inherits "
                              f"{owner.__module__}.{owner.__qualname__}.{name}. {lab.capitalize()} asks your "
                              f"{cls.__name__} class to define {name} itself, written in your file")
            origin = str(getattr(where, "__module__", None) or "")
            shown = f", it is {origin}.{where.__qualname__}" if origin.split(".")[0] == "tinynet" else ""
            raise Refused(f"{cls.__name__}.{name} is not written in your file{shown}: {lab} asks you to write "
                          f"{cls.__name__}.{name} yourself")


def _same_file(a, b):
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except Exception:
        return False


def param_dict(layer):
    """``{name: Parameter}`` of a tinynet Layer, or Refused when it is not one."""
    if not hasattr(layer, "named_parameters"):
        raise Refused(f"expected a tinynet Layer (a subclass of tinynet.Layer), got {type(layer).__name__}")
    return dict(layer.named_parameters())


def drive(layer, x, dy=None, params=None, grads=None, train=True):
    """Run a student's layer: set its parameters (``params``, by name) and their gradients (``grads``,
    else zeros), forward on ``x``, then backward on ``dy`` when given.

    Returns the outputs and the very arrays the layer was handed (``x``, ``dy``), so the grader
    can see whether they were changed in place.
    """
    ps = param_dict(layer)
    for name, value in (params or {}).items():
        if name not in ps:
            raise Refused(f"{type(layer).__name__} has no parameter {name!r} (it has {sorted(ps)}); keep the "
                          "names the stub gives")
        ps[name].data = value
    for name, p in ps.items():
        p.grad = grads[name] if grads and name in grads else np.zeros_like(p.data)
    layer.train(bool(train))
    y = layer(x)
    out = {"y": y, "x": x}
    if dy is not None:
        dx = layer.backward(dy)
        out.update(dx=dx, dy=dy, grads={n: p.grad for n, p in ps.items()})
    return out


def forwards(make, points, train=True):
    """The forward output at each point ``{"x": ..., "params": {...}}``, a fresh layer each
    (for the grader's central differences of the student's own forward)."""
    outputs = []
    for point in points:
        layer = make()
        for name, value in point.get("params", {}).items():
            param_dict(layer)[name].data = value
        layer.train(bool(train))
        outputs.append(layer(point["x"]))
    return outputs


# --------------------------------------------------------------------------- running the student's code
def describe_crash(exc, student_file=None):
    """``TypeError: ...`` and the student's line it came from (else the last line of the traceback)."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if student_file and _same_file(f.filename, student_file)]
    where = mine[-1] if mine else (frames[-1] if frames else None)
    text = f"{type(exc).__name__}: {exc}"
    if where is not None:
        line = (where.line or "").strip()
        text += f"\n  at {os.path.basename(where.filename)}, line {where.lineno}, in {where.name}: {line}"
    return text


def _crash_hint(exc):
    text = str(exc)
    shapes = isinstance(exc, ValueError) and any(w in text for w in ("matmul", "broadcast", "not aligned"))
    return "shape_mismatch" if shapes else None


def _blocked_cause(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, LabBlocked):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def outcome(exc, student_file=None):
    """The response for an exception raised while the student's code ran."""
    blocked = _blocked_cause(exc)
    if blocked is not None:
        return {"status": "refused", "message": str(blocked), "hint": None}
    if isinstance(exc, Refused):
        return {"status": "refused", "message": exc.message, "hint": exc.hint}
    if isinstance(exc, NotImplementedError):
        return {"status": "todo", "message": str(exc)}
    if isinstance(exc, SystemExit):
        return {"status": "crash", "message": f"your code called sys.exit({exc.code!r}) while being graded",
                "hint": None}
    return {"status": "crash", "message": describe_crash(exc, student_file), "hint": _crash_hint(exc)}


def dispatch(probes, name, sub, args):
    """Run ``probes.<name>(sub, **args)``: a response dict, its ``value`` plain data."""
    func = getattr(probes, name, None)
    if not callable(func) or name.startswith("_"):
        return {"status": "error", "message": f"the lab's probes have no {name!r}"}
    try:
        with np.errstate(all="ignore"):  # overflow shows up as inf/nan in the values, and gets its hint
            value = func(sub, **args)
        encode(value)  # what cannot travel is the student's doing (a probe returns what it got)
        return {"status": "ok", "value": value}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from student code included
        if isinstance(exc, ProtocolError):
            return {"status": "crash", "message": f"your code returned something that is not an array of numbers: {exc}",
                    "hint": None}
        return outcome(exc, STATE["student_file"])


# --------------------------------------------------------------------------- what the student cannot use
def blocked_stand_in(name, original, lab):
    message = (f"tinynet's {name} is not available while grading lab {lab}: the lab asks you to write {name} "
               "yourself")
    if isinstance(original, type):
        def refuse(*args, **kwargs):
            raise LabBlocked(message)

        class BlockedMeta(type):
            def __call__(cls, *args, **kwargs):
                raise LabBlocked(message)

        return BlockedMeta(name, (), {"__init_subclass__": classmethod(refuse), "__doc__": message,
                                      "__tinynet_blocked__": message,
                                      "__module__": getattr(original, "__module__", "tinynet")})

    def blocked(*args, **kwargs):
        raise LabBlocked(message)

    blocked.__name__ = blocked.__qualname__ = name
    blocked.__doc__ = message
    return blocked


def block_names(names, lab):
    """Replace every tinynet class or function called one of ``names``, in every tinynet module.

    Returns the source files that defined them (the audit hook refuses to open those).
    """
    files = set()
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == "tinynet" or mod_name.startswith("tinynet.")):
            continue
        for attr, value in list(vars(module).items()):
            if attr in names and str(getattr(value, "__module__", "")).startswith("tinynet"):
                try:
                    source = sys.modules[value.__module__].__file__
                    if source:
                        files.add(os.path.realpath(source))
                except (KeyError, AttributeError):
                    pass
                setattr(module, attr, blocked_stand_in(attr, value, lab))
    return files


def install_guard(protected_dirs, protected_files, allowed_files, protected_write):
    """An audit hook that refuses what a graded program never needs to do (PEP 578: it cannot be removed)."""
    dirs = tuple(os.path.join(os.path.realpath(d), "") for d in protected_dirs)
    stems = frozenset(os.path.splitext(os.path.basename(f))[0] for f in protected_files)
    stem_dirs = frozenset(os.path.dirname(f) for f in protected_files)
    files = frozenset(protected_files)
    allowed = frozenset(os.path.realpath(f) for f in allowed_files)
    writes = frozenset(os.path.realpath(f) for f in protected_write)
    parent = os.getppid()
    refused_events = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                      "os.forkpty", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function",
                      "os.startfile", "os.killpg")

    def forbidden_path(path):
        real = os.path.realpath(path)
        if real in allowed:
            return False
        if real in files or real.startswith(dirs) or real in writes:
            return True
        if real.startswith(f"/proc/{parent}/"):
            return True
        # a compiled copy of a protected module: __pycache__/<stem>.cpython-3xx.pyc beside it
        head, base = os.path.split(real)
        if os.path.basename(head) == "__pycache__" and os.path.dirname(head) in stem_dirs:
            return base.split(".")[0] in stems
        return False

    def hook(event, args):
        if event == "open":
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                path = os.fsdecode(path)
                if forbidden_path(path):
                    raise GuardRefusal(f"opening {path} is not allowed while grading: the grader's files, the labs' "
                                     "checks and references, and tinynet's code for what the lab asks are off limits")
        elif event in refused_events or (event == "os.kill" and args and args[0] != os.getpid()):
            raise GuardRefusal(f"{event} is not allowed while grading: lab code runs in one process and "
                             "starts no others")

    sys.addaudithook(hook)


def load_file(path, name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main(argv):
    fd_in, fd_out = int(argv[1]), int(argv[2])
    setup = recv(fd_in)
    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in setup["sys_path"] if os.path.realpath(p or ".") != here]
    sys.modules["tinynet_lab_kit"] = sys.modules[__name__]
    lab, student_file = setup["lab"], os.path.realpath(setup["student"])
    STATE["lab"] = lab

    import tinynet  # noqa: F401  (the core, before anything is blocked)
    import tinynet.layers  # noqa: F401

    probes = {key: load_file(path, f"tinynet_lab{lab:02d}_probes_{key}") for key, path in setup["probes"].items()}
    names = set()
    for module in probes.values():
        names.update(getattr(module, "BLOCK", ()))
    for module in probes.values():
        if callable(getattr(module, "setup", None)):
            module.setup()
    blocked_files = block_names(names, lab)
    install_guard(setup["protected_dirs"], sorted(blocked_files) + setup["protected_files"],
                  [student_file], setup.get("protected_write", []))

    STATE["student_file"] = student_file
    sys.path.insert(0, os.path.dirname(student_file))
    try:
        sub = load_file(student_file, "student")
    except BaseException as exc:
        response = outcome(exc, student_file)
        if response["status"] == "crash" and not isinstance(exc, SystemExit):
            response["message"] = f"your file did not import: {response['message']}"
        elif isinstance(exc, SystemExit):
            response["message"] = f"your file called sys.exit({exc.code!r}) while being imported"
        send(fd_out, response)
        return 0
    send(fd_out, {"status": "ready"})
    while True:
        try:
            request = recv(fd_in)
        except EOFError:
            return 0
        if request.get("op") == "bye":
            return 0
        response = dispatch(probes[request["probes"]], request["name"], sub, request.get("args", {}))
        sys.stdout.flush()
        send(fd_out, response)


sys.modules.setdefault("tinynet_lab_kit", sys.modules[__name__])

if __name__ == "__main__":
    sys.exit(main(sys.argv))
