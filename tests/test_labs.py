"""The course labs and their grader.

Every lab passes with tinynet's own code plugged in (reference.py) and with a solution
written here the way a student would write it; the untouched stubs fail every item with
their NotImplementedError("Lab N: ..."); and each classic mistake, planted once into that
student-style solution, fails the item that catches it with the hint that names it.
Every hint the grader knows is planted at least once (test_every_hint_is_planted).
"""

import shutil
import time

import numpy as np
import pytest

import tinynet as tn
from tinynet import grading
from tinynet.cli import main
from tinynet.layer import check_input

LAB_NUMBERS = [1, 2, 3, 4, 5, 6, 7]


def grade_namespace(number, sub, only=None):
    return grading.run_checks(grading.get_lab(number).checks(), sub, only=only)


class Namespace:
    """A stand-in for a student's module: just the names a lab asks for."""

    def __init__(self, **names):
        self.__dict__.update(names)


# --------------------------------------------------------------------------- reference and stubs
@pytest.mark.parametrize("number", LAB_NUMBERS)
def test_reference_passes_every_item(number):
    report = grading.grade(number, reference=True)
    failed = [(r.title, r.message) for r in report.results if not r.passed]
    assert not failed and report.passed, report.format()


@pytest.mark.parametrize("number", LAB_NUMBERS)
def test_untouched_stubs_fail_every_item_as_not_implemented(number):
    report = grading.grade(number)
    assert report.results
    for r in report.results:
        assert r.status == grading.TODO, f"{r.title}: {r.status} {r.message} (is labs/ student.py filled in?)"
        assert r.message.startswith(f"not implemented yet: Lab {number}:")
    assert not report.passed and "0/" in report.format()


# --------------------------------------------------------------------------- lab 1: written the student's way
class Linear(tn.Layer):
    mistake = None

    def __init__(self, in_features, out_features, bias=True, rng=None, dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        w = rng.standard_normal((in_features, out_features)) / np.sqrt(in_features)
        self.weight = tn.Parameter(w.astype(dtype), "weight")
        self.bias = tn.Parameter(np.zeros(out_features, dtype), "bias") if bias else None

    def forward(self, x):
        self.save_for_backward(x)
        y = x @ self.weight.data
        if self.bias is not None and self.mistake != "missing_bias":
            y = y + self.bias.data
        return y.astype(np.float64) if self.mistake == "dtype_changed" else y

    def backward(self, dy):
        (x,) = self.saved()
        mk = self.mistake
        dw = x[:1].T @ dy[:1] if mk == "sum_over_batch" else x.T @ dy
        db = {"sum_over_batch": dy[0], "extra_1_over_m": dy.mean(axis=0)}.get(mk, dy.sum(axis=0))
        if mk == "grad_overwritten":
            self.weight.grad, self.bias.grad = dw, db
        else:
            self.weight.grad += dw
            if self.bias is not None:
                self.bias.grad += db
        if mk == "shape_mismatch":
            return dy @ self.weight.data  # (N, out) @ (in, out): the transpose is missing
        return self.weight.data @ dy.T if mk == "transposed" else dy @ self.weight.data.T


class ReLU(tn.Layer):
    mistake = None

    def forward(self, x):
        if self.mistake == "input_modified":
            x[x < 0] = 0
            self.save_for_backward(x)
            return x
        y = np.maximum(x, 0)
        self.save_for_backward(y)
        return y

    def backward(self, dy):
        (y,) = self.saved()
        if self.mistake == "dy_modified":
            dy[y <= 0] = 0
            return dy
        if self.mistake == "relu_times_output":
            return dy * y
        if self.mistake == "not_finite":
            return dy / (y > 0)  # 1/0 where x < 0
        return dy * (y > 0)


def planted(cls, mistake):
    return type(cls.__name__, (cls,), {"mistake": mistake})


def lab1(linear=None, relu=None):
    return Namespace(Linear=planted(Linear, linear), ReLU=planted(ReLU, relu))


# --------------------------------------------------------------------------- lab 2
class SoftmaxCrossEntropy:
    mistake = None

    def __call__(self, z, labels):
        return self.forward(z, labels)

    def forward(self, z, labels):
        n, rows, mk = len(z), np.arange(len(z)), self.mistake
        if mk == "unstable_softmax":
            e = np.exp(z)
            p = e / e.sum(axis=1, keepdims=True)
            logp = np.log(p[rows, labels])
        else:
            s = z - z.max(axis=1, keepdims=True)
            e = np.exp(s)
            p = e / e.sum(axis=1, keepdims=True)
            logp = np.log(p[rows, labels]) if mk == "log_of_softmax" else s[rows, labels] - np.log(e.sum(axis=1))
        self.p, self.labels = p, labels
        return -logp.sum() if mk == "loss_summed" else -logp.mean()

    def backward(self, dloss=1.0):
        g = self.p.copy()
        g[np.arange(len(g)), self.labels] -= 1
        if self.mistake == "sign_flipped":
            g = -g
        return g * dloss if self.mistake == "missing_1_over_m" else g * (dloss / len(g))


def lab2(mistake=None):
    return Namespace(SoftmaxCrossEntropy=planted(SoftmaxCrossEntropy, mistake))


# --------------------------------------------------------------------------- lab 3
class BatchNorm3(tn.Layer):
    """Forward and the paper's backward, one classic mistake switchable at a time."""

    buffers = ("running_mean", "running_var")
    mistake = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        self.eps, self.momentum = eps, momentum
        self.gamma = tn.Parameter(np.ones(num_features, dtype), "gamma")
        self.beta = tn.Parameter(np.zeros(num_features, dtype), "beta")
        self.running_mean = np.zeros(num_features, dtype)
        self.running_var = np.ones(num_features, dtype)

    def forward(self, x):
        mk = self.mistake
        if not self.training and mk != "eval_uses_batch_stats":
            inv = 1 / np.sqrt(self.running_var + (2 * self.eps if mk == "eps_twice" else self.eps))
            xhat = (x - self.running_mean) * inv
            if mk == "eval_updates_running":
                self.running_mean = 0.5 * self.running_mean
            self.save_for_backward(False, x, xhat, inv)
            return self.gamma.data * xhat + self.beta.data
        m = len(x)
        if m < 2 and mk != "batch_of_one":
            raise ValueError(f"BatchNorm: training needs a batch of at least 2, got {m}")
        mu = x.mean(axis=0)
        var = (x * x).mean(axis=0) - mu * mu if mk == "naive_variance" else ((x - mu) ** 2).mean(axis=0)
        norm_var = var * m / (m - 1) if mk == "unbiased_normalisation" else var
        inv = 1 / (np.sqrt(norm_var) + self.eps) if mk == "eps_outside_sqrt" else 1 / np.sqrt(norm_var + self.eps)
        xhat = (x - mu) * inv
        if mk != "running_not_updated":
            w = 1 - self.momentum if mk == "momentum_reversed" else self.momentum
            stored = var if mk == "biased_running_var" else var * (m / (m - 1))
            self.running_mean = (1 - w) * self.running_mean + w * mu
            self.running_var = (1 - w) * self.running_var + w * stored
        self.save_for_backward(True, x, xhat, inv)
        y = (self.gamma.data * x if mk == "gamma_times_x" else self.gamma.data * xhat) + self.beta.data
        return y.astype(np.float64) if mk == "dtype_changed" else y

    def backward(self, dy):
        batch_stats, x, xhat, inv = self.saved()
        mk = self.mistake
        dgamma, dbeta = (dy * xhat).sum(axis=0), dy.sum(axis=0)
        if mk == "grad_overwritten":
            self.gamma.grad, self.beta.grad = dgamma, dbeta
        else:
            self.gamma.grad += dgamma
            self.beta.grad += dbeta
        dxhat = dy * self.gamma.data
        m = len(x)
        if not batch_stats:
            if mk == "eval_backward":  # the training formula, with the running statistics
                return inv / m * (m * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
            return dxhat * inv
        if mk == "stats_as_constants":
            return dxhat * inv
        xc = x - x.mean(axis=0)
        dvar = 0 * inv if mk == "missing_dvar" else (dxhat * xc).sum(axis=0) * -0.5 * inv**3
        dmu = (-dxhat * inv).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
        if mk == "missing_dmu":
            dmu = 0 * dmu
        k = 1 if mk == "missing_1_over_m" else m
        self.dvar, self.dmu = dvar, dmu
        return dxhat * inv + dvar * 2 * xc / k + dmu / k


def lab3(mistake=None):
    return Namespace(BatchNorm=planted(BatchNorm3, mistake))


# --------------------------------------------------------------------------- lab 4
class BatchNorm4(tn.BatchNorm):
    """The stub's subclass of tn.BatchNorm, with the simplified backward filled in."""

    mistake = None

    def __init__(self, num_features, eps=1e-5, momentum=0.1, dtype=np.float32):
        super().__init__(num_features, eps, momentum, gradient="simplified", dtype=dtype)

    def backward(self, dy):
        batch_stats, xhat, inv_std, xc = self.saved()  # the layout the stub documents
        self.gamma.grad += (dy * xhat).sum(axis=0)
        self.beta.grad += dy.sum(axis=0)
        dxhat = dy * self.gamma.data
        if not batch_stats:
            return dxhat * inv_std
        m, mk = len(dy), self.mistake
        if mk == "xc_withheld":  # the paper's form, which needs xc
            dvar = (dxhat * xc).sum(axis=0) * -0.5 * inv_std**3
            dmu = (-dxhat * inv_std).sum(axis=0) + dvar * (-2 * xc).mean(axis=0)
            return dxhat * inv_std + dvar * 2 * xc / m + dmu / m
        g = dy if mk == "sums_over_dy" else dxhat
        k = 1 if mk == "missing_1_over_m" else m
        return inv_std / k * (m * dxhat - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))


def time_backward(m, c, repeats=20, rng=None):
    x = rng.standard_normal((m, c)).astype(np.float32)
    times = {}
    for form, layer in (("paper", tn.BatchNorm(c, gradient="paper")), ("simplified", LAB4_CLASS[0](c))):
        layer(x)
        start = time.perf_counter()
        layer.backward(x)
        times[form] = time.perf_counter() - start
    return times


LAB4_CLASS = [None]


def lab4(mistake=None, timer=time_backward):
    cls = planted(BatchNorm4, mistake)
    LAB4_CLASS[0] = cls
    return Namespace(BatchNorm=cls, time_backward=timer)


# --------------------------------------------------------------------------- lab 5
class LeakyReLU(tn.Layer):
    mistake = None
    negative_slope = 0.1

    def forward(self, x):
        mk = self.mistake
        if mk != "refuse_bad_input":
            check_input(self, x)
        if mk == "input_modified":
            x[x < 0] *= self.negative_slope
            self.save_for_backward(x > 0)
            return x
        self.save_for_backward(x > 0)
        y = np.where(x > 0, x, self.negative_slope * x)
        return y.astype(np.float64) if mk == "dtype_changed" else y

    def backward(self, dy):
        (positive,) = self.saved()
        if self.mistake == "forgot_slope":
            return dy * positive
        return np.where(positive, dy, self.negative_slope * dy)


class PReLU(tn.Layer):
    """LeakyReLU with a learned slope per feature: a layer with a parameter."""

    mistake = None

    def __init__(self, features=6, dtype=np.float32):
        self.weight = tn.Parameter(np.full(features, 0.25, dtype), "weight")

    def forward(self, x):
        check_input(self, x, ndim=2)
        self.save_for_backward(x)
        return np.where(x > 0, x, self.weight.data * x)

    def backward(self, dy):
        (x,) = self.saved()
        dalpha = (dy * np.where(x > 0, 0, x)).sum(axis=0)
        if self.mistake == "grad_overwritten":
            self.weight.grad = dalpha
        else:
            self.weight.grad += dalpha
        return np.where(x > 0, dy, self.weight.data * dy)


def lab5(layer):
    return Namespace(build=lambda rng: layer)


# --------------------------------------------------------------------------- lab 6
def residual_model(rng):
    g = tn.Graph()
    x = g.input()
    h = g.add(tn.ReLU(), g.add(tn.Linear(784, 64, rng=rng), x))
    block = g.add(tn.Linear(64, 64, rng=rng), g.add(tn.ReLU(), g.add(tn.Linear(64, 64, rng=rng), h)))
    g.output(g.add(tn.Linear(64, 10, rng=rng), g.add(tn.Add(), block, h)))
    return g


def plain_model(rng):
    return tn.Sequential(tn.Linear(784, 64, rng=rng), tn.ReLU(), tn.Linear(64, 10, rng=rng))


def make_step(order):
    def step(model, loss, optimizer, xb, yb):
        value = None
        for op in order:
            if op == "forward":
                value = loss(model(xb), yb)
            elif op == "zero":
                optimizer.zero_grad()
            elif op == "backward":
                model.backward(loss.backward())
            elif op == "step":
                optimizer.step()
        return float(value)

    return step


RIGHT_STEP = ("forward", "zero", "backward", "step")


def lab6(build=residual_model, order=RIGHT_STEP):
    return Namespace(build_model=build, train_step=make_step(order))


# --------------------------------------------------------------------------- lab 7
class Conv7(tn.Layer):
    """Conv2d written the student's way: im2col by sliding_window_view, col2im tap by tap."""

    mistake = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, rng=None,
                 dtype=np.float32):
        rng = np.random.default_rng() if rng is None else rng
        self.k, self.s, self.p, self.o = kernel_size, stride, padding, out_channels
        w = rng.standard_normal((out_channels, in_channels, kernel_size, kernel_size))
        self.weight = tn.Parameter(w.astype(dtype), "weight")
        self.bias = tn.Parameter(np.zeros(out_channels, dtype), "bias") if bias else None

    def kernel(self, *mistakes):
        flipped = self.mistake in ("flipped_kernel", *mistakes)
        return self.weight.data[:, :, ::-1, ::-1] if flipped else self.weight.data

    def sizes(self, h, w):
        k, s, p, mk = self.k, self.s, self.p, self.mistake
        if mk == "stride_size":  # the + 1 forgotten
            return (h + 2 * p - k) // s, (w + 2 * p - k) // s
        return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1

    def forward(self, x):
        n, c, h, w = x.shape
        k, s, p, mk = self.k, self.s, self.p, self.mistake
        ho, wo = self.sizes(h, w)
        if mk == "input_modified":
            x *= 1.0  # harmless, but then a real in-place change
            x[:, :, 0, 0] = 0
        xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
        step = 1 if mk == "stride_windows" else s
        windows = np.lib.stride_tricks.sliding_window_view(xpad, (k, k), axis=(2, 3))  # (N, C, Hp-k+1, Wp-k+1, k, k)
        windows = windows[:, :, ::step, ::step][:, :, :ho, :wo]  # (N, C, Ho, Wo, k, k)
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
        y = cols @ self.kernel().reshape(self.o, -1).T
        if self.bias is not None and mk != "missing_bias":
            y = y + self.bias.data
        self.save_for_backward(xpad.shape, cols, ho, wo)
        y = y.reshape(n, ho, wo, self.o).transpose(0, 3, 1, 2)
        return y.astype(np.float64) if mk == "dtype_changed" else y

    def backward(self, dy):
        shape, cols, ho, wo = self.saved()
        k, s, p, mk = self.k, self.s, self.p, self.mistake
        rows = dy.transpose(0, 2, 3, 1).reshape(-1, self.o)
        dw = (rows.T @ cols).reshape(self.weight.data.shape)
        dw = dw[:, :, ::-1, ::-1] if mk in ("flipped_kernel", "flipped_dw") else dw
        if mk == "grad_overwritten":
            self.weight.grad = dw
        else:
            self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += rows.sum(axis=0)
        dcols = (rows @ self.kernel("flipped_dx").reshape(self.o, -1)).reshape(shape[0], ho, wo, shape[1], k, k)
        dxpad = np.zeros(shape, dy.dtype)
        step = 1 if mk == "stride_col2im" else s
        for a in range(k):
            for b in range(k):
                dxpad[:, :, a:a + step * (ho - 1) + 1:step, b:b + step * (wo - 1) + 1:step] += \
                    dcols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
        if mk == "dy_modified":
            dy *= 2
        if mk == "padding_corner":
            return dxpad[:, :, :shape[2] - 2 * p, :shape[3] - 2 * p]
        if mk == "padding_kept":
            return dxpad
        return dxpad[:, :, p:shape[2] - p, p:shape[3] - p]


class MaxPool7(tn.Layer):
    """MaxPool2d written the student's way: windows from sliding_window_view, argmax per window."""

    mistake = None

    def __init__(self, kernel_size, stride=None):
        self.k = kernel_size
        self.s = (1 if self.mistake == "stride_default" else kernel_size) if stride is None else stride

    def forward(self, x):
        k, s = self.k, self.s
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
        flat = windows.reshape(*windows.shape[:4], k * k)  # (N, C, Ho, Wo, k*k)
        self.save_for_backward(x.shape, flat.argmax(axis=-1))
        return flat.max(axis=-1)

    def backward(self, dy):
        shape, which = self.saved()
        k, s, mk = self.k, self.s, self.mistake
        ho, wo = dy.shape[2:]
        dx = np.zeros(shape, dy.dtype)
        for t in range(k * k):
            a, b = divmod(t, k)
            share = {"to_all": dy, "averaged": dy / (k * k)}.get(mk, dy * (which == t))
            dx[:, :, a:a + s * (ho - 1) + 1:s, b:b + s * (wo - 1) + 1:s] += share
        return dx


def lab7(conv=None, pool=None):
    return Namespace(Conv2d=planted(Conv7, conv), MaxPool2d=planted(MaxPool7, pool))


# --------------------------------------------------------------------------- the planted mistakes
# (lab, submission, graded item, the hint it must show)
PLANTED = [
    (1, lab1(linear="missing_bias"), "linear_forward", "missing_bias"),
    (1, lab1(linear="transposed"), "linear_backward_dx", "transposed"),
    (1, lab1(linear="shape_mismatch"), "linear_backward_dx", "shape_mismatch"),
    (1, lab1(linear="sum_over_batch"), "linear_backward_params", "sum_over_batch"),
    (1, lab1(linear="extra_1_over_m"), "linear_backward_params", "extra_1_over_m"),
    (1, lab1(linear="grad_overwritten"), "linear_accumulates", "grad_overwritten"),
    (1, lab1(linear="dtype_changed"), "dtypes", "dtype_changed"),
    (1, lab1(relu="relu_times_output"), "relu", "relu_times_output"),
    (1, lab1(relu="input_modified"), "relu", "input_modified"),
    (1, lab1(relu="not_finite"), "relu", "not_finite"),
    (1, lab1(relu="dy_modified"), "relu", "dy_modified"),
    (2, lab2("loss_summed"), "loss", "missing_1_over_m"),
    (2, lab2("unstable_softmax"), "stable_loss", "unstable_softmax"),
    (2, lab2("log_of_softmax"), "stable_loss", "log_of_softmax"),
    (2, lab2("missing_1_over_m"), "gradient", "missing_1_over_m"),
    (2, lab2("sign_flipped"), "gradient", "sign_flipped"),
    (3, lab3("eps_outside_sqrt"), "forward_train", "eps_outside_sqrt"),
    (3, lab3("unbiased_normalisation"), "forward_train", "unbiased_normalisation"),
    (3, lab3("gamma_times_x"), "forward_train", "gamma_times_x"),
    (3, lab3("naive_variance"), "forward_train", "naive_variance"),
    (3, lab3("biased_running_var"), "running_stats", "biased_running_var"),
    (3, lab3("momentum_reversed"), "running_stats", "momentum_reversed"),
    (3, lab3("running_not_updated"), "running_stats", "running_not_updated"),
    (3, lab3("eval_uses_batch_stats"), "forward_eval", "eval_uses_batch_stats"),
    (3, lab3("eps_twice"), "forward_eval", "eps_twice"),
    (3, lab3("eval_updates_running"), "forward_eval", "eval_updates_running"),
    (3, lab3("batch_of_one"), "batch_of_one", "batch_of_one"),
    (3, lab3("stats_as_constants"), "backward_dx", "stats_as_constants"),
    (3, lab3("missing_dmu"), "backward_dx", "missing_dmu"),
    (3, lab3("missing_dvar"), "backward_dx", "missing_dvar"),
    (3, lab3("missing_1_over_m"), "backward_dx", "missing_1_over_m"),
    (3, lab3("grad_overwritten"), "backward_params", "grad_overwritten"),
    (3, lab3("eval_backward"), "backward_eval", "eval_backward"),
    (3, lab3("dtype_changed"), "dtypes", "dtype_changed"),
    (4, lab4("missing_1_over_m"), "backward_dx", "missing_1_over_m"),
    (4, lab4("missing_1_over_m"), "agrees_with_paper", "missing_1_over_m"),
    (4, lab4("sums_over_dy"), "backward_dx", "sums_over_dy"),
    (4, lab4("xc_withheld"), "backward_dx", "xc_withheld"),
    (5, lab5(planted(PReLU, "grad_overwritten")()), "accumulates", "grad_overwritten"),
    (5, lab5(planted(LeakyReLU, "input_modified")()), "forward", "input_modified"),
    (5, lab5(planted(LeakyReLU, "dtype_changed")()), "dtypes", "dtype_changed"),
    (5, lab5(planted(LeakyReLU, "refuse_bad_input")()), "refuses", "refuse_bad_input"),
    (6, lab6(build=plain_model), "residual", "no_skip_connection"),
    (6, lab6(order=("forward", "backward", "step")), "train_step", "not_zeroed"),
    (6, lab6(order=("forward", "backward", "zero", "step")), "train_step", "zeroed_after_backward"),
    (7, lab7(conv="flipped_kernel"), "conv_forward", "flipped_kernel"),
    (7, lab7(conv="flipped_kernel"), "conv_backward_dx", "flipped_kernel"),  # the forward's, with "fix forward first"
    (7, lab7(conv="flipped_dx"), "conv_backward_dx", "flipped_kernel"),
    (7, lab7(conv="flipped_dw"), "conv_backward_params", "flipped_kernel"),
    (7, lab7(conv="padding_corner"), "conv_backward_dx", "padding_dropped"),
    (7, lab7(conv="padding_kept"), "conv_backward_dx", "padding_dropped"),
    (7, lab7(conv="stride_windows"), "conv_forward", "stride_arithmetic"),
    (7, lab7(conv="stride_size"), "conv_forward", "stride_arithmetic"),
    (7, lab7(conv="stride_col2im"), "conv_backward_dx", "stride_arithmetic"),
    (7, lab7(pool="stride_default"), "maxpool", "stride_arithmetic"),
    (7, lab7(pool="to_all"), "maxpool", "pool_grad_to_all"),
    (7, lab7(pool="averaged"), "maxpool", "pool_grad_to_all"),
    (7, lab7(conv="missing_bias"), "conv_forward", "missing_bias"),
    (7, lab7(conv="grad_overwritten"), "conv_accumulates", "grad_overwritten"),
    (7, lab7(conv="input_modified"), "conv_forward", "input_modified"),
    (7, lab7(conv="dy_modified"), "conv_backward_dx", "dy_modified"),
    (7, lab7(conv="dtype_changed"), "dtypes", "dtype_changed"),
]


@pytest.mark.parametrize("number, sub, item, hint", PLANTED, ids=[f"lab{p[0]}-{p[3]}-{p[2]}" for p in PLANTED])
def test_planted_mistake_fails_its_item_with_its_hint(number, sub, item, hint):
    result = grade_namespace(number, sub, only=[item]).result(item)
    assert result.status == grading.FAIL, result
    assert result.hint == hint, f"expected hint {hint!r}, got {result.hint!r}: {result.message}"


def test_every_hint_is_planted():
    assert {p[3] for p in PLANTED} == set(grading.HINTS)


@pytest.mark.parametrize("number, sub", [
    (1, lab1()), (2, lab2()), (3, lab3()), (4, lab4()),
    (5, lab5(planted(LeakyReLU, None)())), (5, lab5(PReLU())), (7, lab7()),
], ids=["lab1", "lab2", "lab3", "lab4", "lab5-leaky", "lab5-prelu", "lab7"])
def test_a_student_style_solution_passes_every_item(number, sub):
    report = grade_namespace(number, sub)
    assert report.passed, report.format()


def test_the_six_classic_mistakes_each_show_their_hint_in_the_printed_report():
    classic = {"missing_1_over_m": (2, lab2("missing_1_over_m")), "eps_outside_sqrt": (3, lab3("eps_outside_sqrt")),
               "biased_running_var": (3, lab3("biased_running_var")), "batch_of_one": (3, lab3("batch_of_one")),
               "grad_overwritten": (1, lab1(linear="grad_overwritten")), "unstable_softmax": (2, lab2("unstable_softmax"))}
    for hint, (number, sub) in classic.items():
        text = grade_namespace(number, sub).format()
        assert "FAIL" in text and HINT_START[hint] in text, text


HINT_START = {key: " ".join(text.split()[:6]) for key, text in grading.HINTS.items()}


# --------------------------------------------------------------------------- items that fail without a hint
@pytest.mark.parametrize("layer", [planted(LeakyReLU, "forgot_slope")()])
def test_a_wrong_backward_fails_gradcheck(layer):
    report = grade_namespace(5, lab5(layer), only=["backward", "gradcheck"])
    assert report.result("backward").status == grading.FAIL and "dx" in report.result("backward").message
    result = report.result("gradcheck")
    assert result.status == grading.FAIL and "gradcheck(LeakyReLU): dx" in result.message


def test_lab5_refuses_a_layer_that_is_not_in_the_list():
    for layer in (tn.Tanh(), tn.ReLU(), tn.Linear(6, 3, rng=np.random.default_rng(0))):
        report = grade_namespace(5, lab5(layer))
        assert report.score == 0 and "lab 5 grades one of" in report.results[0].message, report.format()


def test_lab4_timing_must_return_seconds_for_both_forms():
    report = grade_namespace(4, lab4(timer=lambda m, c, repeats, rng: [0.1, 0.2]), only=["timing"])
    assert report.result("timing").status == grading.FAIL and "paper" in report.result("timing").message
    report = grade_namespace(4, lab4(), only=["timing"])
    assert report.passed and "paper / simplified" in report.result("timing").info


def test_lab6_a_step_that_never_updates_does_not_train():
    lab = grading.get_lab(6)
    module = lab.checks_module()
    module.STEPS = 20  # an untrained model stays near 10%: a short run shows it
    report = grading.run_checks(lab.checks(module), lab6(order=("forward", "zero", "backward")),
                                only=["train_step", "trains"])
    assert "0 times" in report.result("train_step").message
    trains = report.result("trains")
    assert trains.status == grading.FAIL and "expected at least" in trains.message


def test_lab6_accepts_a_small_residual_net_without_batchnorm():
    report = grade_namespace(6, lab6())
    assert report.passed, report.format()
    assert "skips ahead" in report.result("residual").info


# --------------------------------------------------------------------------- the grader itself
def test_a_crash_is_reported_with_the_students_line(tmp_path):
    path = tmp_path / "student.py"
    reference = grading.get_lab(1).reference.read_text()
    broken = reference.replace("return dy @ self.weight.data.T  # (N, in)", "return dy @ self.weight.data  # forgot .T")
    assert broken != reference
    path.write_text(broken)
    line = broken.splitlines().index("        return dy @ self.weight.data  # forgot .T") + 1
    report = grading.grade(1, file=path)
    result = report.result("linear_backward_dx")
    assert result.status == grading.FAIL and result.hint == "shape_mismatch"
    assert f"student.py, line {line}, in backward: return dy @ self.weight.data" in result.message
    assert report.result("linear_forward").passed


def test_a_file_that_does_not_import_is_one_failed_item(tmp_path):
    path = tmp_path / "student.py"
    path.write_text("def forward(:\n")
    report = grading.grade(2, file=path)
    assert {r.status for r in report.results} == {grading.FAIL} and len(report.results) == 5
    assert "SyntaxError" in report.results[0].message and not report.passed
    assert "the same failure as item 1 above" in report.format()


def test_a_missing_name_says_which():
    result = grade_namespace(1, Namespace(ReLU=tn.ReLU), only=["linear_forward"]).result("linear_forward")
    assert result.status == grading.FAIL and "'Linear'" in result.message


def test_expect_close_names_scale_sign_and_shape_mistakes():
    want = np.arange(1.0, 7.0).reshape(2, 3)
    hints = {}
    for name, got in {"missing_1_over_m": 4 * want, "extra_1_over_m": want / 4, "sign_flipped": -want,
                      "transposed": want.T, None: want + 0.1}.items():
        with pytest.raises(grading.Fail) as info:
            grading.expect_close("g", got, want, batch=4)
        hints[name] = info.value.hint
    assert hints == {k: k for k in hints}
    grading.expect_close("g", want * (1 + 1e-9), want)  # within tolerance: passes
    with pytest.raises(grading.Fail, match="inf or nan"):
        grading.expect_close("g", np.array([1.0, np.nan]), np.ones(2))


def test_refusals():
    with pytest.raises(ValueError, match="unknown hint"):
        grading.Fail("x", hint="no_such_hint")
    with pytest.raises(ValueError, match="lab number"):
        grading.get_lab(99)
    with pytest.raises(ValueError, match="no such file"):
        grading.grade(1, file="does/not/exist.py")
    with pytest.raises(ValueError, match="Python file"):
        grading.grade(1, file=grading.get_lab(1).directory / "README.md")
    with pytest.raises(ValueError, match="has no items"):
        grade_namespace(1, lab1(), only=["nope"])
    with pytest.raises(TypeError, match="Checks"):
        grading.run_checks("lab 1", lab1())
    with pytest.raises(TypeError, match="list of nodes"):
        grading.skip_connections(tn.ReLU())


# --------------------------------------------------------------------------- command line and selfcheck
def test_cli_grades_and_exits_nonzero_until_complete(capsys):
    assert main(["lab", "1"]) == 1
    out = capsys.readouterr().out
    assert "TODO  Linear.forward" in out and "0/7 items pass" in out
    assert main(["lab", "1", "--reference"]) == 0
    assert "7/7 items pass -- lab complete." in capsys.readouterr().out
    assert main(["lab", "--list"]) == 0
    assert "residual_mnist" in capsys.readouterr().out
    assert main(["lab"]) == 2 and "which lab" in capsys.readouterr().err
    assert main(["lab", "1", "--backend", "cupy"]) == 2 and "NumPy" in capsys.readouterr().err


def test_selfcheck_flags_a_stub_that_passes_and_a_reference_that_fails(tmp_path):
    labs = tmp_path / "labs"
    for name in ("01_linear_relu", "02_softmax_cross_entropy"):
        shutil.copytree(grading.get_lab(int(name[:2])).directory, labs / name)
    lines = []
    assert grading.selfcheck(labs, out=lines.append)
    assert len(lines) == 2 and "stubs 7/7 fail as stubs" in lines[0]
    # a filled-in student file no longer fails, and a broken reference no longer passes
    shutil.copy(labs / "01_linear_relu" / "reference.py", labs / "01_linear_relu" / "student.py")
    (labs / "02_softmax_cross_entropy" / "reference.py").write_text(
        "from tinynet import SoftmaxCrossEntropy as _S\n"
        "class SoftmaxCrossEntropy(_S):\n"
        "    def backward(self, dloss=1.0):\n"
        "        return 2 * super().backward(dloss)\n"
    )
    lines.clear()
    assert not grading.selfcheck(labs, out=lines.append)
    text = "\n".join(lines)
    assert "looks filled in" in text and "reference fails backward" in text


def test_backward_items_point_at_a_wrong_forward_first():
    report = grade_namespace(3, lab3("eps_outside_sqrt"))
    assert report.result("forward_train").hint == "eps_outside_sqrt"
    for key in ("backward_dx", "backward_params"):
        assert "fix forward first" in report.result(key).message
    assert report.result("backward_eval").passed  # eval's forward is right, so its backward is graded


def test_one_bug_that_breaks_several_items_is_printed_once():
    class Broken(Linear):
        def backward(self, dy):
            raise ValueError("matmul: this backward is broken")

    report = grade_namespace(1, Namespace(Linear=Broken, ReLU=planted(ReLU, None)))
    text = report.format()
    assert text.count("ValueError: matmul") == 1
    assert "  3. FAIL  " in text and "the same failure as item 2 above" in text


# --------------------------------------------------------------------------- seeds, json, --all, handout, --checks
def test_two_runs_draw_different_seeds_and_a_seed_repeats_a_run(capsys):
    first, second = grading.grade(1, reference=True), grading.grade(1, reference=True)
    assert first.passed and second.passed and first.seed != second.seed
    again = grading.grade(2, reference=True, seed=first.seed)
    assert again.seed == first.seed
    assert main(["lab", "2", "--reference", "--seed", "1234"]) == 0
    out = capsys.readouterr().out
    assert "seed 1234 (--seed 1234 repeats this run)" in out
    # the same seed draws the same inputs: a failure message (with its numbers) repeats exactly
    bad = lab1(linear="missing_bias")
    a = grading.run_checks(grading.get_lab(1).checks(), bad, only=["linear_forward"], seed=7)
    b = grading.run_checks(grading.get_lab(1).checks(), bad, only=["linear_forward"], seed=7)
    c = grading.run_checks(grading.get_lab(1).checks(), bad, only=["linear_forward"], seed=8)
    assert a.results[0].message == b.results[0].message != c.results[0].message


def test_json_is_gradescopes_results_format(tmp_path):
    path = tmp_path / "results.json"
    assert main(["lab", "1", "--json", str(path)]) == 1  # the untouched stub
    data = __import__("json").loads(path.read_text())
    assert set(data) >= {"score", "tests"} and data["score"] == 0
    assert len(data["tests"]) == 7
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output"}
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert test["score"] == 0 and test["max_score"] == 1 and test["status"] == "failed"
    assert main(["lab", "1", "--reference", "--json", str(path)]) == 0
    data = __import__("json").loads(path.read_text())
    assert data["score"] == 7 == sum(t["score"] for t in data["tests"])


def test_all_grades_every_lab_and_exit_codes(capsys):
    assert main(["lab", "--all", "--seed", "3"]) == 1  # the stubs
    out = capsys.readouterr().out
    assert "0/7 labs complete" in out and out.count("inputs drawn with seed 3") == 7
    assert main(["lab", "--all", "3"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["lab", "--no-such-option"])
    assert exit_info.value.code == 2


def test_handout_holds_readmes_and_stubs_only_and_grades_from_its_folder(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "handout"
    assert main(["lab", "handout", str(folder)]) == 0
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files and all(f.endswith(("README.md", "student.py")) for f in files)
    assert not any("reference" in f or "checks" in f or "probes" in f for f in files)
    assert main(["lab", "handout", str(folder)]) == 2  # not empty any more
    monkeypatch.chdir(folder)
    lab1_dir = folder / "01_linear_relu"
    assert main(["lab", "1"]) == 1 and "TODO" in capsys.readouterr().out  # the untouched stub
    (lab1_dir / "student.py").write_text(grading.get_lab(1).reference.read_text())  # filled in
    assert main(["lab", "1"]) == 0
    assert "7/7 items pass -- lab complete." in capsys.readouterr().out


def test_an_instructors_extra_checks_are_graded_after_the_labs_own(tmp_path):
    (tmp_path / "extra_probes.py").write_text(
        "from tinynet_lab_kit import need\n"
        "def relu_of(sub, x):\n"
        "    return need(sub, 'ReLU')()(x)\n")
    (tmp_path / "extra.py").write_text(
        "import numpy as np\n"
        "from tinynet.grading import Checks, expect_close\n"
        "CHECKS = Checks(1, 'extra', probes='extra_probes.py')\n"
        "@CHECKS.item('ReLU of a large batch')\n"
        "def big_relu(student):\n"
        "    x = student.rng.standard_normal((1000, 3))\n"
        "    expect_close('y', student.run('relu_of', x=x), np.maximum(x, 0))\n")
    report = grading.grade(1, reference=True, extra_checks=[tmp_path / "extra.py"])
    assert report.passed and [r.key for r in report.results][-1] == "big_relu" and len(report.results) == 8
    report = grading.grade(1, extra_checks=[tmp_path / "extra.py"])
    assert report.result("big_relu").status == grading.TODO


# --------------------------------------------------------------------------- lab 7
def test_lab7_backward_items_point_at_a_wrong_forward_first():
    report = grade_namespace(7, lab7(conv="stride_size"))
    assert report.result("conv_forward").hint == "stride_arithmetic"
    for key in ("conv_backward_dx", "conv_backward_params", "conv_accumulates"):
        result = report.result(key)
        assert "fix forward first" in result.message and result.hint == "stride_arithmetic", result
    assert report.result("maxpool").passed


def test_lab7_oracle_agrees_with_tinynets_own_layers():
    """The grader's tap-by-tap formula against tinynet's Conv2d and MaxPool2d (float64), every shape the lab grades."""
    checks = grading.get_lab(7).checks_module()
    rng = np.random.default_rng(0)
    for case in checks.conv_cases(rng) + [dict(m=3, c=3, k=3, s=2, p=1, dtype=np.float64, bias=False)]:
        config, x, params, dy = checks.conv_case(rng, **dict(case, dtype=np.float64))
        layer = tn.Conv2d(config["in_channels"], config["out_channels"], config["kernel_size"], stride=config["stride"],
                          padding=config["padding"], bias=config["bias"], dtype=np.float64)
        layer.weight.data = params["weight"]
        if config["bias"]:
            layer.bias.data = params["bias"]
        for p in layer.parameters():
            p.zero_grad()
        y = layer(x)
        dx = layer.backward(dy)
        want_dx, want_dw, want_db, _ = checks.conv_grads(x, params["weight"], dy, config["stride"], config["padding"])
        np.testing.assert_allclose(checks.conv_y(x, params["weight"], params.get("bias"), config["stride"],
                                                 config["padding"]), y, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(want_dx, dx, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(want_dw, layer.weight.grad, rtol=1e-10, atol=1e-12)
        if config["bias"]:
            np.testing.assert_allclose(want_db, layer.bias.grad, rtol=1e-10, atol=1e-12)
    for case in checks.pool_cases(rng):
        config, x, dy = checks.pool_case(rng, **dict(case, dtype=np.float64))
        k, s = config["kernel_size"], config["stride"]
        layer = tn.MaxPool2d(k, stride=s)
        y = layer(x)
        np.testing.assert_array_equal(checks.pool_y(x, k, k if s is None else s), y)
        # overlapping windows add their gradients in some order: exact on the plain path, to an ulp on --fast's kernel
        np.testing.assert_allclose(checks.pool_grads(x, dy, k, k if s is None else s)[0], layer.backward(dy),
                                   rtol=1e-13, atol=1e-15)


def test_lab7_grades_within_15_seconds_and_blocks_tinynets_conv():
    report = grading.grade(7, reference=True)
    assert report.passed and report.seconds <= 15, report.format()
    probes = grading.get_lab(7).checks().probes_module()
    assert {"Conv2d", "MaxPool2d", "AvgPool2d"} <= set(probes.BLOCK)


def test_package_data_ships_every_file_of_the_labs():
    """An installed (non-editable) tinynet grades from its own copy of tinynet/labs: setup.cfg's
    package_data globs, expanded as setuptools does, must cover every file there."""
    import configparser
    from pathlib import Path

    root = Path(grading.__file__).resolve().parent.parent  # the tinynet package
    config = configparser.ConfigParser()
    config.read(root.parent / "setup.cfg")
    globs = [g.strip() for g in config["options.package_data"]["tinynet"].replace("\n", ",").split(",") if g.strip()]
    shipped = {p for g in globs for p in root.glob(g) if p.is_file()}
    present = {p for p in (root / "labs").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert present and not present - shipped, sorted(str(p.relative_to(root)) for p in present - shipped)
    assert {lab.folder for lab in grading.find_labs(root / "labs")} >= {"07_convolution"}
