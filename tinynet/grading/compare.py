"""Comparing what the student's code returned with the grader's own answer (parent process only).

``expect_close`` compares against the right answer and against the answers the classic
mistakes give, so a failure names the mistake, not just the symptom. A float32 result is held
to a float32 tolerance against a float64 answer.
"""

import numpy as np

from .hints import HINTS

F32_RTOL, F32_ATOL = 1e-4, 1e-5  # atol scales with the largest expected magnitude


class Fail(Exception):
    """A graded item failed: ``message`` says what was wrong, ``hint`` (a key of HINTS) why."""

    def __init__(self, message, hint=None):
        if hint is not None and hint not in HINTS:
            raise ValueError(f"Fail: unknown hint {hint!r}; expected one of {sorted(HINTS)}")
        super().__init__(message)
        self.message, self.hint = message, hint


def as_array(what, value):
    """``value`` as a float64 NumPy array, or a Fail saying it is not an array of numbers."""
    if value is None:
        raise Fail(f"{what}: got None, expected an array (did a method forget to return?)")
    if isinstance(value, (str, bytes, dict)):
        raise Fail(f"{what}: expected an array of numbers, got {type(value).__name__}")
    try:
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError
        return array.astype(np.float64)
    except (TypeError, ValueError):
        raise Fail(f"{what}: expected an array of numbers, got {type(value).__name__}") from None


def is_close(got, want, rtol=1e-6, atol=1e-9):
    """True when two arrays have one shape and agree entrywise within ``atol + rtol * |want|``."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= atol + rtol * np.abs(want)))


def tolerance(got, want, rtol, atol):
    """The tolerance for ``got``: float32 results get a float32 one, scaled to the answer's size."""
    if getattr(got, "dtype", None) == np.float32:
        scale = float(np.max(np.abs(want))) if np.size(want) else 1.0
        return max(rtol, F32_RTOL), max(atol, F32_ATOL * max(1.0, scale))
    return rtol, atol


def expect_close(what, got, want, mistakes=None, batch=None, rtol=1e-6, atol=1e-9, nonfinite_hint="not_finite"):
    """Pass when ``got`` matches ``want``; otherwise raise a Fail naming the mistake it matches.

    Parameters
    ----------
    what : str
        The quantity, as the student knows it (``"dx"``, ``"weight.grad"``).
    got : array-like
        The student's value. A float32 array is compared at a float32 tolerance.
    want : array-like
        The right value, computed by the grader from the untouched inputs (float64).
    mistakes : dict or list of (str, array) pairs, optional
        ``{hint_key: wrong_value}``: what each classic mistake would give here; the first one
        that ``got`` matches becomes the hint.
    batch : int, optional
        The batch size m: a result m times too large or too small is then named.
    """
    rtol, atol = tolerance(got, want, rtol, atol)
    got, want = as_array(what, got), as_array(what, want)
    mistakes = list(mistakes.items() if isinstance(mistakes, dict) else mistakes or ())
    if got.shape != want.shape:
        for hint, wrong in mistakes:
            if is_close(got, wrong, rtol, atol):
                raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}", hint)
        if got.shape == want.T.shape and want.ndim == 2:
            raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}", "transposed")
        raise Fail(f"{what}: expected shape {want.shape}, got {got.shape}")
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0] if got.ndim else ()
        raise Fail(f"{what} contains inf or nan (first at index {[int(i) for i in bad]}: {got[tuple(bad)]})",
                   nonfinite_hint)
    if is_close(got, want, rtol, atol):
        return
    for hint, wrong in mistakes:
        if is_close(got, wrong, rtol, atol):
            raise Fail(f"{what} is wrong. {_worst(got, want)}", hint)
    hint = _scale_hint(got, want, batch, atol)
    if hint is None and want.ndim == 2 and want.shape[0] == want.shape[1] and is_close(got, want.T, rtol, atol):
        hint = "transposed"
    raise Fail(f"{what} is wrong. {_worst(got, want)}", hint)


def _worst(got, want):
    index = np.unravel_index(int(np.argmax(np.abs(got - want))), got.shape) if got.ndim else ()
    where = f" at index {[int(i) for i in index]}" if got.ndim else ""
    return f"Largest difference{where}: expected {want[index]:.6g}, got {got[index]:.6g}."


def _scale_hint(got, want, batch, atol):
    """Name a result that is the right one times m, 1/m or -1."""
    norm = float(np.sum(want * want))
    if norm == 0:
        return None
    c = float(np.sum(got * want)) / norm  # least-squares factor: got ~ c * want
    if not is_close(got, c * want, 1e-4, atol):
        return None
    if batch and batch > 1 and abs(c - batch) < 1e-3 * batch:
        return "missing_1_over_m"
    if batch and batch > 1 and abs(c * batch - 1) < 1e-3:
        return "extra_1_over_m"
    if abs(c + 1) < 1e-3:
        return "sign_flipped"
    return None


def expect_dtype(what, value, dtype):
    """Fail unless ``value`` is an array of ``dtype`` (float32 in, float32 out)."""
    if getattr(value, "dtype", None) != np.dtype(dtype):
        raise Fail(f"{what}: expected dtype {np.dtype(dtype)}, got {getattr(value, 'dtype', type(value).__name__)}",
                   "dtype_changed")


def expect_unchanged(what, after, before, hint="input_modified"):
    """Fail when the array the student's code received (``after``) no longer equals what was sent."""
    after = np.asarray(after)
    if after.shape != np.shape(before) or not np.array_equal(after, before, equal_nan=True):
        raise Fail(f"{what} was changed in place", hint)


def numeric_gradient(f, x, eps=1e-6):
    """Central differences of the scalar ``f(x)`` at the float64 array ``x`` (the math, not a layer's backward)."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        up = f(x)
        flat[i] = original - eps
        down = f(x)
        flat[i] = original
        gflat[i] = (up - down) / (2 * eps)
    return grad


def skip_connections(nodes):
    """The skip connections of a graph given as ``[{"index": i, "inputs": [j, ...], "layer": name}]``:
    ``(join, source)`` pairs where ``source`` feeds the multi-input node ``join`` directly and also
    through another of ``join``'s inputs."""
    if not isinstance(nodes, list):
        raise TypeError(f"skip_connections: expected a list of nodes, got {type(nodes).__name__}")
    inputs = {n["index"]: list(n["inputs"]) for n in nodes}
    layers = {n["index"]: n.get("layer") for n in nodes}

    def ancestors(i, seen):
        for j in inputs.get(i, ()):
            if j not in seen:
                seen.add(j)
                ancestors(j, seen)
        return seen

    found = []
    for i, ins in inputs.items():
        for source in ins:
            others = [o for o in ins if o != source and layers.get(o) is not None]
            if any(source in ancestors(o, set()) for o in others):
                found.append((i, source))
    return found


def gradient_check(student, run, forwards, config, x, params, r, name, eps=1e-6, rtol=1e-4, atol=1e-5):
    """What ``tinynet.gradcheck`` does, decided here: the student's backward (probe ``run``) against
    central differences of the student's own forward (probe ``forwards``), in float64, for the
    input and every parameter, with the upstream gradient ``r``.

    Returns the names checked.
    """
    out = student.run(run, config=config, x=x, params=params, dy=r)
    targets = [("input", x)] + list(params.items())
    points = []
    for what, base in targets:
        for i in range(base.size):
            for sign in (1.0, -1.0):
                moved = base.copy()
                moved.flat[i] += sign * eps
                if what == "input":
                    points.append({"x": moved, "params": params})
                else:
                    points.append({"x": x, "params": dict(params, **{what: moved})})
    ys = student.run(forwards, config=config, points=points)
    if not isinstance(ys, list) or len(ys) != len(points):
        raise Fail(f"gradcheck({name}): the forwards did not come back")
    f = [float(np.sum(r * as_array("y", y))) for y in ys]
    k = 0
    for what, base in targets:
        numeric = np.empty(base.shape)
        for i in range(base.size):
            numeric.flat[i] = (f[k] - f[k + 1]) / (2 * eps)
            k += 2
        analytic = out.get("dx") if what == "input" else (out.get("grads") or {}).get(what)
        label = "dx" if what == "input" else f"{what}.grad"
        try:
            expect_close(label, analytic, numeric, rtol=rtol, atol=atol)
        except Fail as fail:
            raise Fail(f"gradcheck({name}): {fail.message.replace(' is wrong.', ' disagrees with central differences of your forward.')}",
                       fail.hint) from None
    return [what for what, _ in targets]
