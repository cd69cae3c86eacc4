"""Lab 7 graded items: Conv2d (im2col forward, col2im backward) and MaxPool2d. Runs in the grader's process only.

Each item draws fresh inputs (a batch of 2 and odd batches; 1 and 3 channels; kernels 3 and 5;
stride 1 and 2; padding 0 and 1; odd, unequal heights and widths; float64 and float32), has the
student's process run its layers on them, and compares what comes back with the grader's own
float64 answer, computed here tap by tap from the formula (no im2col, nothing of the student's).
Wrong answers that a classic mistake gives (a flipped kernel, the padding dropped from dx, the
stride misapplied, the pooling gradient sent to every element) are computed too, so a failure
names the mistake.
"""

import time

import numpy as np

from tinynet.grading import (Checks, Fail, as_array, expect_close, expect_dtype, expect_unchanged, gradient_check,
                             is_close)

CHECKS = Checks(7, "A convolution from scratch: Conv2d (im2col, col2im) and MaxPool2d", time_limit=60)


def f64(a):
    return np.asarray(a, dtype=np.float64)


# --------------------------------------------------------------------------- the grader's oracle (float64)
def out_size(size, kernel, stride, padding=0):
    return (size + 2 * padding - kernel) // stride + 1


def tap(a, step, count):
    """Rows (or columns) a, a + step, ..., count of them: where kernel tap a meets each window."""
    return slice(a, a + step * (count - 1) + 1, step)


def pad(x, p):
    return np.pad(f64(x), ((0, 0), (0, 0), (p, p), (p, p)))


def conv_y(x, weight, bias, stride, padding, step=None):
    """y[n, o, i, j] = bias[o] + sum_{c, a, b} weight[o, c, a, b] * xpad[n, c, i*step + a, j*step + b].

    ``step`` is the stride (a different one models the stride-arithmetic mistake: the output
    size from the stride, the windows stepped by ``step``).
    """
    step = stride if step is None else step
    x, weight = f64(x), f64(weight)
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    ho, wo = out_size(h, kh, stride, padding), out_size(w, kw, stride, padding)
    xpad = pad(x, padding)
    y = np.zeros((n, o, ho, wo))
    for a in range(kh):
        for b in range(kw):
            y += np.einsum("nchw,oc->nohw", xpad[:, :, tap(a, step, ho), tap(b, step, wo)], weight[:, :, a, b])
    return y if bias is None else y + f64(bias)[None, :, None, None]


def conv_grads(x, weight, dy, stride, padding, step=None):
    """dx, weight.grad, bias.grad and the padded dxpad, for y = conv_y(x, weight, bias, ...)."""
    step = stride if step is None else step
    x, weight, dy = f64(x), f64(weight), f64(dy)
    _, _, h, w = x.shape
    _, _, kh, kw = weight.shape
    ho, wo = dy.shape[2:]
    xpad = pad(x, padding)
    dxpad, dweight = np.zeros_like(xpad), np.zeros_like(weight)
    for a in range(kh):
        for b in range(kw):
            where = (slice(None), slice(None), tap(a, step, ho), tap(b, step, wo))
            dxpad[where] += np.einsum("nohw,oc->nchw", dy, weight[:, :, a, b])
            dweight[:, :, a, b] = np.einsum("nohw,nchw->oc", dy, xpad[where])
    dx = dxpad[:, :, padding:padding + h, padding:padding + w]
    return dx, dweight, dy.sum(axis=(0, 2, 3)), dxpad


def flip(weight):
    return f64(weight)[:, :, ::-1, ::-1]


def pool_taps(x, k, stride, step=None):
    """(k*k, N, C, Ho, Wo): tap t = a*k + b is element (a, b) of every window."""
    step = stride if step is None else step
    x = f64(x)
    ho, wo = out_size(x.shape[2], k, stride), out_size(x.shape[3], k, stride)
    return np.stack([x[:, :, tap(a, step, ho), tap(b, step, wo)] for a in range(k) for b in range(k)])


def pool_y(x, k, stride, step=None):
    return pool_taps(x, k, stride, step).max(axis=0)


def pool_grads(x, dy, k, stride):
    """dx of max pooling, and the two gradients that route dy to every element of a window."""
    x, dy = f64(x), f64(dy)
    ho, wo = dy.shape[2:]
    which = pool_taps(x, k, stride).argmax(axis=0)
    dx, to_all, averaged = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    for a in range(k):
        for b in range(k):
            where = (slice(None), slice(None), tap(a, stride, ho), tap(b, stride, wo))
            dx[where] += dy * (which == a * k + b)
            to_all[where] += dy
            averaged[where] += dy / (k * k)
    return dx, to_all, averaged


# --------------------------------------------------------------------------- output shapes and their mistakes
# (padded length L, kernel k, stride s) -> an output length the stride arithmetic gets wrong: the stride
# ignored, the + 1 missing, rounding up, or L // s
WRONG_SIZES = [lambda L, k, s: L - k + 1, lambda L, k, s: (L - k) // s, lambda L, k, s: -(-(L - k) // s) + 1,
               lambda L, k, s: L // s]


def expect_shape(what, got, want_shape, h, w, k, s, p):
    """Fail unless ``got`` has ``want_shape``; name the stride or padding mistake a wrong size comes from."""
    got = as_array(what, got)
    if got.shape == tuple(want_shape):
        return got
    message = f"{what}: expected shape {tuple(want_shape)}, got {got.shape}"
    if got.ndim == 4 and got.shape[:2] == tuple(want_shape[:2]):
        for formula in WRONG_SIZES:
            size = (formula(h + 2 * p, k, s), formula(w + 2 * p, k, s))
            if size != tuple(want_shape[2:]) and size == got.shape[2:]:
                raise Fail(message, "stride_arithmetic")
        if p and got.shape[2:] == (out_size(h, k, s), out_size(w, k, s)):
            raise Fail(message, "padding_dropped")
    raise Fail(message)


# --------------------------------------------------------------------------- inputs
def spatial(rng):
    """An odd height and a different odd width (a swapped H and W shows)."""
    h = int(rng.choice([7, 9, 11]))
    return h, int(rng.choice([v for v in (7, 9, 11, 13) if v != h]))


def odd(rng):
    return int(rng.choice([3, 5, 7]))


def conv_cases(rng):
    """The shapes graded each run: batch 2 and odd; C 1 and 3; k 3 and 5; stride 1 and 2; padding 0 and 1."""
    return [dict(m=2, c=1, k=3, s=1, p=0, dtype=np.float64),
            dict(m=odd(rng), c=3, k=3, s=2, p=1, dtype=np.float64),
            dict(m=odd(rng), c=3, k=5, s=1, p=1, dtype=np.float64),
            dict(m=2, c=1, k=5, s=2, p=0, dtype=np.float64),
            dict(m=2, c=3, k=3, s=1, p=1, dtype=np.float32),
            dict(m=odd(rng), c=3, k=5, s=2, p=1, dtype=np.float32)]


def conv_case(rng, m, c, k, s, p, dtype, bias=True):
    """config, x, params, dy for one Conv2d run (O != C, so swapped channel axes show)."""
    o = int(rng.choice([v for v in (2, 4, 5) if v != c]))
    h, w = spatial(rng)
    x = rng.standard_normal((m, c, h, w)).astype(dtype)
    params = {"weight": rng.standard_normal((o, c, k, k)).astype(dtype)}
    if bias:
        params["bias"] = rng.standard_normal(o).astype(dtype)
    dy = rng.standard_normal((m, o, out_size(h, k, s, p), out_size(w, k, s, p))).astype(dtype)
    config = {"in_channels": c, "out_channels": o, "kernel_size": k, "stride": s, "padding": p, "bias": bias,
              "dtype": np.dtype(dtype).name}
    return config, x, params, dy


def describe(config, x):
    n, c, h, w = x.shape
    return (f"N={n}, C={c}, H={h}, W={w}, O={config['out_channels']}, kernel {config['kernel_size']}, stride "
            f"{config['stride']}, padding {config['padding']}, {x.dtype.name}"
            + ("" if config["bias"] else ", bias=False"))


def distinct(rng, shape, dtype=np.float64):
    """Values at least 1e-3 apart (a window's maximum is unique and stays so under a 1e-6 nudge)."""
    size = int(np.prod(shape))
    values = (rng.permutation(size) - size / 2) * (4.0 / size) + rng.uniform(-1e-4, 1e-4)
    return values.reshape(shape).astype(dtype)


def pool_cases(rng):
    """Non-overlapping windows (stride = kernel, the default), overlapping ones (3, stride 2), stride 1."""
    return [dict(m=2, c=1, k=2, s=None, dtype=np.float64), dict(m=odd(rng), c=3, k=3, s=2, dtype=np.float64),
            dict(m=odd(rng), c=3, k=2, s=1, dtype=np.float64), dict(m=2, c=3, k=3, s=None, dtype=np.float32)]


def pool_case(rng, m, c, k, s, dtype):
    h, w = spatial(rng)
    stride = k if s is None else s
    x = distinct(rng, (m, c, h, w), dtype)
    dy = rng.standard_normal((m, c, out_size(h, k, stride), out_size(w, k, stride))).astype(dtype)
    return {"kernel_size": k, "stride": s}, x, dy


# --------------------------------------------------------------------------- the items
@CHECKS.item("Conv2d.forward: y[n,o,i,j] = bias[o] + sum weight[o,c,a,b] * xpad[n,c,i*s+a,j*s+b]; x left unchanged")
def conv_forward(student):
    rng = student.rng
    cases = [conv_case(rng, **case) for case in conv_cases(rng)] + [conv_case(rng, odd(rng), 3, 3, 2, 1, np.float64,
                                                                              bias=False)]
    for config, x, params, _ in cases:
        out = student.run("conv", config=config, x=x.copy(), params=params)
        expect_unchanged("x (Conv2d.forward's input)", out["x"], x)
        expect_conv_y(out["y"], config, x, params)


def expect_conv_y(y, config, x, params):
    """Fail unless the Conv2d output ``y`` is right, naming the mistake a wrong one shows."""
    s, p, k = config["stride"], config["padding"], config["kernel_size"]
    bias = params.get("bias")
    want = conv_y(x, params["weight"], bias, s, p)
    what = f"y for {describe(config, x)}"
    expect_shape(what, y, want.shape, x.shape[2], x.shape[3], k, s, p)
    mistakes = [("flipped_kernel", conv_y(x, flip(params["weight"]), bias, s, p))]
    if s > 1:
        mistakes.append(("stride_arithmetic", conv_y(x, params["weight"], bias, s, p, step=1)))
    if bias is not None:
        mistakes.append(("missing_bias", conv_y(x, params["weight"], None, s, p)))
    expect_close(what, y, want, mistakes=mistakes)


def forward_first(y, config, x, params):
    """Stop a backward item with a pointer (and the forward's hint) when the forward is already wrong."""
    try:
        expect_conv_y(y, config, x, params)
    except Fail as fail:
        raise Fail(f"the forward output is already wrong ({fail.message}): backward is graded on top of a right "
                   "forward, so fix forward first", fail.hint) from None


def run_backward(student, config, x, params, dy, grads=None):
    """The student's forward then backward on these inputs; a wrong forward is named before the backward."""
    try:
        out = student.run("conv", config=config, x=x.copy(), params=params, dy=dy.copy(), grads=grads)
    except Fail:  # a backward that crashes on a forward of the wrong shape: say so
        forward_first(student.run("conv", config=config, x=x.copy(), params=params)["y"], config, x, params)
        raise
    forward_first(out["y"], config, x, params)
    return out


def dx_mistakes(x, weight, dy, s, p):
    """What dx is under each classic mistake."""
    h, w = x.shape[2:]
    _, _, _, dxpad = conv_grads(x, weight, dy, s, p)
    mistakes = [("padding_dropped", dxpad), ("padding_dropped", dxpad[:, :, :h, :w]),
                ("flipped_kernel", conv_grads(x, flip(weight), dy, s, p)[0])]
    if s > 1:
        mistakes.append(("stride_arithmetic", conv_grads(x, weight, dy, s, p, step=1)[0]))
    return mistakes


@CHECKS.item("Conv2d.backward: dx by col2im (the padding cut off again); x and dy left unchanged")
def conv_backward_dx(student):
    rng = student.rng
    for case in conv_cases(rng):
        config, x, params, dy = conv_case(rng, **case)
        out = run_backward(student, config, x, params, dy)
        expect_unchanged("dy (Conv2d.backward's input)", out["dy"], dy, "dy_modified")
        expect_unchanged("x (Conv2d's input, after backward)", out["x"], x)
        s, p = config["stride"], config["padding"]
        want = conv_grads(x, params["weight"], dy, s, p)[0]
        expect_close(f"dx for {describe(config, x)}", out["dx"], want,
                     mistakes=dx_mistakes(x, params["weight"], dy, s, p))


@CHECKS.item("Conv2d.backward: weight.grad = sum over n, i, j of dy * window, bias.grad = dy.sum(axis=(0, 2, 3))")
def conv_backward_params(student):
    rng = student.rng
    for case in conv_cases(rng):
        config, x, params, dy = conv_case(rng, **case)
        out = run_backward(student, config, x, params, dy)
        s, p = config["stride"], config["padding"]
        _, dweight, dbias, _ = conv_grads(x, params["weight"], dy, s, p)
        mistakes = [("flipped_kernel", dweight[:, :, ::-1, ::-1])]
        if s > 1:
            mistakes.append(("stride_arithmetic", conv_grads(x, params["weight"], dy, s, p, step=1)[1]))
        grads = out.get("grads") or {}
        expect_close(f"weight.grad for {describe(config, x)}", grads.get("weight"), dweight, mistakes=mistakes,
                     batch=x.shape[0])
        expect_close(f"bias.grad for {describe(config, x)}", grads.get("bias"), dbias, batch=x.shape[0])


@CHECKS.item("Conv2d.backward adds into .grad (+=), it does not overwrite it")
def conv_accumulates(student):
    rng = student.rng
    config, x, params, dy = conv_case(rng, odd(rng), 3, 3, 2, 1, np.float64)
    before = {name: rng.standard_normal(value.shape) for name, value in params.items()}
    out = run_backward(student, config, x, params, dy,
                       grads={k: v.copy() for k, v in before.items()})  # as if an earlier backward had left these
    _, dweight, dbias, _ = conv_grads(x, params["weight"], dy, config["stride"], config["padding"])
    grads = out.get("grads") or {}
    expect_close("weight.grad after a backward on top of an earlier gradient", grads.get("weight"),
                 before["weight"] + dweight, mistakes={"grad_overwritten": dweight})
    expect_close("bias.grad after a backward on top of an earlier gradient", grads.get("bias"),
                 before["bias"] + dbias, mistakes={"grad_overwritten": dbias})


@CHECKS.item("MaxPool2d: y = the maximum of each window, dy goes to that maximum only; x and dy left unchanged")
def maxpool(student):
    rng = student.rng
    for case in pool_cases(rng):
        config, x, dy = pool_case(rng, **case)
        out = student.run("maxpool", config=config, x=x.copy())  # forward alone first: a wrong y is named as such
        expect_unchanged("x (MaxPool2d.forward's input)", out["x"], x)
        k, s = config["kernel_size"], config["stride"]
        stride = k if s is None else s
        what = (f"MaxPool2d({k}{'' if s is None else f', stride={s}'}) on N={x.shape[0]}, C={x.shape[1]}, "
                f"H={x.shape[2]}, W={x.shape[3]}, {x.dtype.name}")
        want = pool_y(x, k, stride)
        expect_shape(f"y of {what}", out["y"], want.shape, x.shape[2], x.shape[3], k, stride, 0)
        mistakes = [("stride_arithmetic", pool_y(x, k, stride, step=1))] if stride > 1 else []
        expect_close(f"y of {what}", out["y"], want, mistakes=mistakes)
        out = student.run("maxpool", config=config, x=x.copy(), dy=dy.copy())
        expect_unchanged("x (MaxPool2d's input, after backward)", out["x"], x)
        expect_unchanged("dy (MaxPool2d.backward's input)", out["dy"], dy, "dy_modified")
        dx, to_all, averaged = pool_grads(x, dy, k, stride)
        expect_close(f"dx of {what}", out["dx"], dx,
                     mistakes=[("pool_grad_to_all", to_all), ("pool_grad_to_all", averaged)])


@CHECKS.item("float32 in, float32 out: y, dx and the gradients keep the dtype (and are right to float32 precision)")
def dtypes(student):
    rng = student.rng
    config, x, params, dy = conv_case(rng, odd(rng), 3, 3, 2, 1, np.float32)
    out = student.run("conv", config=config, x=x, params=params, dy=dy)
    grads = out.get("grads") or {}
    want = conv_grads(x, params["weight"], dy, 2, 1)
    for what, got, right in (("Conv2d y", out["y"], conv_y(x, params["weight"], params["bias"], 2, 1)),
                             ("Conv2d dx", out["dx"], want[0]), ("Conv2d weight.grad", grads.get("weight"), want[1]),
                             ("Conv2d bias.grad", grads.get("bias"), want[2])):
        expect_dtype(what, got, np.float32)
        expect_close(f"{what} (float32)", got, right)
    config, x, dy = pool_case(rng, 3, 2, 2, None, np.float32)
    out = student.run("maxpool", config=config, x=x, dy=dy)
    for what, got, right in (("MaxPool2d y", out["y"], pool_y(x, 2, 2)), ("MaxPool2d dx", out["dx"],
                                                                         pool_grads(x, dy, 2, 2)[0])):
        expect_dtype(what, got, np.float32)
        expect_close(f"{what} (float32)", got, right)


SLOWER_LIMIT = 25.0  # a vectorised im2col is within a few times the grader's; a loop over pixels is 100x and more


@CHECKS.item("speed: your Conv2d (forward + backward) is vectorised, within 25x of the grader's im2col in your process",
             timeout=20)
def speed(student):
    rng = student.rng
    config = {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "stride": 1, "padding": 1, "bias": True,
              "dtype": "float32"}
    x = rng.standard_normal((8, 4, 16, 16)).astype(np.float32)
    params = {"weight": rng.standard_normal((8, 4, 3, 3)).astype(np.float32),
              "bias": rng.standard_normal(8).astype(np.float32)}
    dy = rng.standard_normal((8, 8, 16, 16)).astype(np.float32)
    start = time.perf_counter()
    out = student.run("timing", config=config, x=x, params=params, dy=dy, repeats=5)
    wall = time.perf_counter() - start
    forward_first(out["y"], config, x, params)  # a fast wrong answer does not count
    expect_close("dx (N=8, C=4, 16 x 16, O=8, kernel 3, padding 1, float32)", out["dx"],
                 conv_grads(x, params["weight"], dy, 1, 1)[0], mistakes=dx_mistakes(x, params["weight"], dy, 1, 1))
    baseline, yours = float(out["baseline"]), float(out["yours"])
    if not (0 < baseline and 0 < yours and float(out["total"]) <= wall):
        raise Fail(f"the timings from your process are impossible ({baseline!r}, {yours!r} s, "
                   f"{float(out['total']):.3f} s in all, in a call that took {wall:.3f} s)")
    row = (f"forward + backward, N=8, C=4, 16 x 16, O=8, kernel 3, float32: the grader's im2col "
           f"{1e3 * baseline:.2f} ms, yours {1e3 * yours:.2f} ms ({yours / baseline:.1f}x)")
    if yours > SLOWER_LIMIT * baseline:
        raise Fail(f"{row}: more than {SLOWER_LIMIT:g}x slower. Loop over the k*k kernel taps (strided slices of "
                   "the whole batch), not over images, channels or pixels: im2col makes the convolution one "
                   "matrix product.")
    return row


@CHECKS.item("gradcheck: your backward agrees with central differences of your (right) forward, float64", timeout=20)
def gradcheck(student):
    rng = student.rng
    config, x, params, _ = conv_case(rng, 2, 2, 3, 2, 1, np.float64)
    x = x[:, :, :5, :6].copy()  # small: every entry is nudged both ways
    ho, wo = out_size(5, 3, 2, 1), out_size(6, 3, 2, 1)
    r = rng.standard_normal((2, config["out_channels"], ho, wo))
    forward_first(student.run("conv", config=config, x=x, params=params)["y"], config, x, params)  # a right forward
    checked = gradient_check(student, "conv", "conv_forwards", config, x, params, r, "Conv2d")
    config, x, _ = pool_case(rng, 2, 2, 3, 2, np.float64)
    x = distinct(rng, (2, 2, 5, 7))
    r = rng.standard_normal((2, 2, out_size(5, 3, 2), out_size(7, 3, 2)))
    if not is_close(as_array("MaxPool2d y", student.run("maxpool", config=config, x=x)["y"]), pool_y(x, 3, 2)):
        raise Fail("the MaxPool2d forward output is already wrong (see the MaxPool2d item): the gradient check is "
                   "of a right forward, so fix forward first")
    gradient_check(student, "maxpool", "maxpool_forwards", config, x, {}, r, "MaxPool2d")
    return ("checked with float64 central differences: Conv2d, stride 2, padding 1 (" + ", ".join(checked)
            + "), MaxPool2d(3, stride=2) (input)")
