"""Every bad input gets a clear error: the table of cases, and docs/errors.md generated from it.

Each case is a line of code run in a fresh namespace; the test checks the exception type,
that the message starts with the layer or function that refused, and that it says what
was expected and what came. ``test_docs_errors_md_is_current`` renders the same table into
docs/errors.md: when the file differs it is rewritten and the test fails, so a changed
message shows up in review (commit the new file).
"""

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinynet as tn
from tinynet.backend import cupy_available
from tinynet.graph import EvalModeWarning

DOC = Path(__file__).resolve().parent.parent / "docs" / "errors.md"


class StandInCupyArray(np.ndarray):
    """Reads as a CuPy array to tinynet's backend checks (they look at the type's module), so
    the wrong-backend messages are tested on machines without a GPU; a real CuPy array is used
    where one exists."""


StandInCupyArray.__module__ = "cupy"


def gpu_array(a):
    if cupy_available():
        import cupy

        return cupy.asarray(a)
    return np.asarray(a).view(StandInCupyArray)


def namespace(tmp, files=True):
    """The names a case's code may use: data, a small model, its optimizer, checkpoint files."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    model = tn.mlp([4, 8, 3], rng=np.random.default_rng(1))
    opt = tn.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = tn.SoftmaxCrossEntropy()
    x_nan = x.copy()
    x_nan[5, 2] = np.nan
    x_inf = x.copy()
    x_inf[0, 1] = -np.inf
    two_inputs = tn.Graph()
    a, b = two_inputs.input(), two_inputs.input()
    two_inputs.output(two_inputs.add(tn.Add(), a, b))
    other = tn.Graph()
    foreign_node = other.input()

    if files:
        write_files(tmp, model, opt)

    # a layer whose backward overflows; fit on 0 * x, whose loss, log(3), any machine computes alike
    def crash_backward(dy):
        return dy * np.float32(np.inf)

    return dict(
        tn=tn, np=np, rng=rng, x=x, y=y, model=model, opt=opt, loss=loss, x_nan=x_nan, x_inf=x_inf,
        two_inputs=two_inputs, foreign_node=foreign_node, gpu_array=gpu_array, crash_backward=crash_backward,
    )


def write_files(tmp, model, opt):
    """Checkpoints good and bad for the checkpoint cases."""
    tn.save(tmp / "good.npz", model, opt)
    tn.save(tmp / "weights.npz", model)
    tn.save(tmp / "wide.npz", tn.mlp([4, 16, 3], rng=np.random.default_rng(2)))
    Path(tmp / "notes.txt").write_text("not a checkpoint\n")
    np.savez(tmp / "plain.npz", weights=np.ones(3))
    Path(tmp / "half.npz").write_bytes(Path(tmp / "good.npz").read_bytes()[:500])
    with np.load(tmp / "good.npz") as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(tmp / "future.npz", **{**arrays, "format": np.array(99)})
    arrays["model/0.weight"][0, 0] += 1  # changed after saving: the checksum no longer matches
    np.savez(tmp / "changed.npz", **arrays)


# (group, mistake, code, error type, who the message must start with, what it must say: a regex)
CASES = [
    # -- layers: the input -------------------------------------------------------------
    ("Layer inputs", "features of the wrong size", "tn.Linear(4, 2)(np.zeros((8, 5), np.float32))",
     ValueError, "Linear", r"expected input of shape \(N, 4\), got shape \(8, 5\)"),
    ("Layer inputs", "a 1-D input (one example without its batch axis)", "tn.Linear(4, 2)(np.zeros(4, np.float32))",
     ValueError, "Linear", r"expected a 2-D input, got shape \(4,\)"),
    ("Layer inputs", "a 3-D input", "tn.Linear(4, 2)(np.zeros((2, 8, 4), np.float32))",
     ValueError, "Linear", r"expected a 2-D input, got shape \(2, 8, 4\)"),
    ("Layer inputs", "integer pixels where floats are needed", "tn.Linear(4, 2)(np.zeros((8, 4), np.uint8))",
     TypeError, "Linear", r"expected a floating-point array, got dtype uint8 \(convert"),
    ("Layer inputs", "an object array", "tn.Linear(4, 2)(np.array([[1.0, None, 2.0, 3.0]], dtype=object))",
     TypeError, "Linear", r"expected a floating-point array, got dtype object"),
    ("Layer inputs", "a Python list", "tn.Linear(4, 2)([[1.0, 2.0, 3.0, 4.0]])",
     TypeError, "Linear", r"expected a NumPy or CuPy array, got list"),
    ("Layer inputs", "float64 input to a float32 layer", "tn.Linear(4, 2)(np.zeros((8, 4)))",
     TypeError, "Linear", r"input dtype float64 does not match the layer's parameters \(float32\)"),
    ("Layer inputs", "an empty batch", "tn.Linear(4, 2)(np.zeros((0, 4), np.float32))",
     ValueError, "Linear", r"got an empty batch, shape \(0, 4\)"),
    ("Layer inputs", "a GPU array into a CPU layer", "tn.Linear(4, 2)(gpu_array(x))",
     TypeError, "Linear", r"input is a cupy array but the layer's parameters are numpy arrays; move the model"),
    ("Layer inputs", "BatchNorm with the wrong number of features", "tn.BatchNorm(3)(x)",
     ValueError, "BatchNorm", r"expected input of shape \(N, 3\), got shape \(8, 4\)"),
    ("Layer inputs", "BatchNorm training on a batch of one", "tn.BatchNorm(4)(x[:1])",
     ValueError, "BatchNorm", r"training needs a batch of at least 2 .* got shape \(1, 4\)"),
    ("Layer inputs", "BatchNorm on images (N, H, W)", "tn.BatchNorm(4)(np.zeros((8, 4, 4), np.float32))",
     ValueError, "BatchNorm", r"expected a 2-D input, got shape \(8, 4, 4\)"),
    ("Layer inputs", "BatchNorm on an empty batch", "tn.BatchNorm(4)(np.zeros((0, 4), np.float32))",
     ValueError, "BatchNorm", r"got an empty batch"),
    ("Layer inputs", "ReLU on integers", "tn.ReLU()(np.arange(6).reshape(2, 3))",
     TypeError, "ReLU", r"expected a floating-point array, got dtype int64"),
    ("Layer inputs", "Sigmoid on booleans", "tn.Sigmoid()(x > 0)",
     TypeError, "Sigmoid", r"expected a floating-point array, got dtype bool"),
    ("Layer inputs", "Tanh on a string", "tn.Tanh()('x')",
     TypeError, "Tanh", r"expected a NumPy or CuPy array, got str"),
    ("Layer inputs", "Softmax over an axis the input lacks", "tn.Softmax(axis=2)(x)",
     ValueError, "Softmax", r"axis 2 is out of range for an input of shape \(8, 4\)"),
    ("Layer inputs", "Softmax on an empty batch", "tn.Softmax()(np.zeros((0, 3)))",
     ValueError, "Softmax", r"got an empty batch"),
    ("Layer inputs", "Add with one input", "tn.Add()(x)",
     ValueError, "Add", r"expected two or more inputs, got 1"),
    ("Layer inputs", "Add of shapes that would broadcast", "tn.Add()(x, x[:1])",
     ValueError, "Add", r"expected inputs of one shape, got \[\(8, 4\), \(1, 4\)\]"),
    ("Layer inputs", "Add of float32 and float64", "tn.Add()(x, x.astype(np.float64))",
     TypeError, "Add", r"expected inputs of one dtype on one backend, got \['numpy float32', 'numpy float64'\]"),
    ("Layer inputs", "Dropout on integers", "tn.Dropout(0.5)(np.ones((2, 2), np.int32))",
     TypeError, "Dropout", r"expected a floating-point array, got dtype int32"),
    ("Layer inputs", "a layer inside a model gets the wrong shape", "model(x[:, :3])",
     ValueError, r"Linear \(layer 0\)", r"expected input of shape \(N, 4\), got shape \(8, 3\)"),
    # -- models (Graph, Sequential) ------------------------------------------------------
    ("Models", "NaN in the input", "model(x_nan)",
     ValueError, "Sequential", r"input contains 1 NaN or Inf value\(s\), the first at index \(5, 2\) \(nan\)"),
    ("Models", "Inf in the input", "model(x_inf)",
     ValueError, "Sequential", r"input contains 1 NaN or Inf value\(s\), the first at index \(0, 1\) \(-inf\)"),
    ("Models", "two arrays to a one-input model", "model(x, x)",
     ValueError, "Sequential", r"expected 1 input array\(s\), got 2"),
    ("Models", "one array to a two-input graph", "two_inputs(x)",
     ValueError, "Graph", r"expected 2 input array\(s\), got 1"),
    ("Models", "running a graph without an output", "g = tn.Graph(); g.input(); g(x)",
     RuntimeError, "Graph", r"no output set; call g.output\(node\)"),
    ("Models", "adding a layer class instead of a layer", "g = tn.Graph(); g.add(tn.ReLU, g.input())",
     TypeError, r"Graph\.add", r"expected a Layer, got the class ReLU; call it to make one"),
    ("Models", "the same layer object twice", "g = tn.Graph(); r = tn.ReLU(); n = g.add(r, g.input()); g.add(r, n)",
     ValueError, r"Graph\.add", r"ReLU\(\) is already in this graph; create a new instance"),
    ("Models", "a node of another graph", "g = tn.Graph(); g.add(tn.ReLU(), foreign_node)",
     ValueError, r"Graph\.add", r"Node\(in0: input\) belongs to another graph"),
    ("Models", "a layer without inputs", "g = tn.Graph(); g.add(tn.ReLU())",
     ValueError, r"Graph\.add", r"needs at least one input node, got none"),
    ("Models", "an output that is not a node", "g = tn.Graph(); g.output(tn.ReLU())",
     ValueError, r"Graph\.output", r"expected a node of this graph, got ReLU\(\)"),
    # -- backward --------------------------------------------------------------------------
    ("Backward", "backward before forward", "tn.ReLU().backward(x)",
     RuntimeError, "ReLU", r"backward called without a forward before it"),
    ("Backward", "backward twice after one forward", "r = tn.ReLU(); r(x); r.backward(x); r.backward(x)",
     RuntimeError, "ReLU", r"backward called without a forward before it \(or twice after one forward\)"),
    ("Backward", "a model's backward before its forward", "model.backward(np.ones((8, 3), np.float32))",
     RuntimeError, r"Linear \(layer 3\)", r"backward called without a forward"),
    ("Backward", "dy of the wrong shape", "lin = tn.Linear(4, 2); lin(x); lin.backward(np.ones((8, 3), np.float32))",
     ValueError, "Linear", r"backward expected dy of the output's shape \(8, 2\), got shape \(8, 3\)"),
    ("Backward", "dy that would broadcast", "r = tn.ReLU(); r(x); r.backward(np.ones((1, 4), np.float32))",
     ValueError, "ReLU", r"backward expected dy of the output's shape \(8, 4\), got shape \(1, 4\)"),
    ("Backward", "dy as a number", "t = tn.Tanh(); t(x); t.backward(1.0)",
     TypeError, "Tanh", r"backward expected dy as an array, got float"),
    ("Backward", "BatchNorm dy of the wrong shape", "bn = tn.BatchNorm(4); bn(x); bn.backward(np.ones((8,), np.float32))",
     ValueError, "BatchNorm", r"backward expected dy of the output's shape \(8, 4\), got shape \(8,\)"),
    ("Backward", "Add dy of the wrong shape", "a = tn.Add(); a(x, x); a.backward(x[:2])",
     ValueError, "Add", r"backward expected dy of the output's shape \(8, 4\), got shape \(2, 4\)"),
    ("Backward", "Softmax dy of the wrong shape", "s = tn.Softmax(); s(x); s.backward(x.T)",
     ValueError, "Softmax", r"got shape \(4, 8\)"),
    ("Backward", "Dropout dy of the wrong shape", "d = tn.Dropout(0.5, rng=rng); d(x); d.backward(x[:, :2])",
     ValueError, "Dropout", r"expected dy of the output's shape \(8, 4\), got shape \(8, 2\)"),
    ("Backward", "the loss's backward before its forward", "loss.backward()",
     RuntimeError, "SoftmaxCrossEntropy", r"backward called without a forward before it"),
    ("Backward", "a per-example dloss", "loss(model(x), y); loss.backward(np.ones(8))",
     ValueError, "SoftmaxCrossEntropy", r"backward expected a scalar dloss .* got shape \(8,\)"),
    # -- the loss --------------------------------------------------------------------------
    ("Loss", "float labels", "loss(model(x), y.astype(np.float32))",
     ValueError, "SoftmaxCrossEntropy", r"expected integer class labels, got dtype float32"),
    ("Loss", "one-hot labels", "loss(model(x), np.eye(3, dtype=np.int64)[y])",
     ValueError, "SoftmaxCrossEntropy", r"expected labels of shape \(8,\) to match logits \(8, 3\), got \(8, 3\)"),
    ("Loss", "a label out of range", "loss(model(x), y + 1)",
     ValueError, "SoftmaxCrossEntropy", r"expected labels in \[0, 3\), got values from 1 to 3"),
    ("Loss", "a negative label", "loss(model(x), y - 1)",
     ValueError, "SoftmaxCrossEntropy", r"expected labels in \[0, 3\), got values from -1 to 1"),
    ("Loss", "labels as a list", "loss(model(x), list(y))",
     TypeError, "SoftmaxCrossEntropy", r"expected labels as an integer array, got list"),
    ("Loss", "1-D logits", "loss(np.zeros(3, np.float32), y[:1])",
     ValueError, "SoftmaxCrossEntropy", r"expected a 2-D input, got shape \(3,\)"),
    ("Loss", "integer logits", "loss(np.zeros((8, 3), np.int64), y)",
     TypeError, "SoftmaxCrossEntropy", r"expected a floating-point array, got dtype int64"),
    ("Loss", "labels on another backend than the logits", "loss(model(x), gpu_array(y))",
     TypeError, "SoftmaxCrossEntropy", r"logits are a numpy array but labels are a cupy array"),
    # -- fit and evaluate ---------------------------------------------------------------------
    ("fit and evaluate", "uint8 images as features", "tn.fit(model, loss, opt, (x * 100).astype(np.uint8), y, 1, 4)",
     TypeError, "fit", r"expected floating-point features x, got dtype uint8"),
    ("fit and evaluate", "NaN in the training data", "tn.fit(model, loss, opt, x_nan, y, 1, 4)",
     ValueError, "fit", r"x contains 1 NaN or Inf value\(s\), the first at index \(5, 2\)"),
    ("fit and evaluate", "x and y of different lengths", "tn.fit(model, loss, opt, x, y[:5], 1, 4)",
     ValueError, "fit", r"x has 8 examples but y has 5"),
    ("fit and evaluate", "no examples", "tn.fit(model, loss, opt, x[:0], y[:0], 1, 4)",
     ValueError, "fit", r"got no examples \(x has shape \(0, 4\)\)"),
    ("fit and evaluate", "data as lists", "tn.fit(model, loss, opt, x.tolist(), y.tolist(), 1, 4)",
     TypeError, "fit", r"expected arrays x and y, got list and list"),
    ("fit and evaluate", "zero epochs", "tn.fit(model, loss, opt, x, y, 0, 4)",
     ValueError, "fit", r"expected epochs to be a positive integer, got 0"),
    ("fit and evaluate", "a float batch size", "tn.fit(model, loss, opt, x, y, 1, 4.0)",
     ValueError, "fit", r"expected batch_size to be a positive integer, got 4.0"),
    ("fit and evaluate", "a seed where fit expects a Generator", "tn.fit(model, loss, opt, x, y, 1, 4, rng=0)",
     TypeError, "fit", r"expected rng to be a numpy.random.Generator, e.g. numpy.random.default_rng\(0\), got int"),
    ("fit and evaluate", "the loss class instead of a loss", "tn.fit(model, tn.SoftmaxCrossEntropy, opt, x, y, 1, 4)",
     TypeError, "fit", r"expected a loss object such as tinynet.SoftmaxCrossEntropy\(\), got the class SoftmaxCrossEntropy"),
    ("fit and evaluate", "no optimizer", "tn.fit(model, loss, None, x, y, 1, 4)",
     TypeError, "fit", r"expected an optimizer such as tinynet.SGD\(model.parameters\(\), lr=0.1\), got NoneType"),
    ("fit and evaluate", "a list of layers as the model", "tn.fit([tn.Linear(4, 3)], loss, opt, x, y, 1, 4)",
     TypeError, "fit", r"expected model to be a tinynet Layer .* got list"),
    ("fit and evaluate", "validation data that is not a pair", "tn.fit(model, loss, opt, x, y, 1, 4, validation=x)",
     TypeError, "fit", r"expected validation as a pair \(x_val, y_val\), got ndarray"),
    ("fit and evaluate", "NaN in the validation data", "tn.fit(model, loss, opt, x, y, 1, 4, validation=(x_nan, y))",
     ValueError, "fit", r"validation x contains 1 NaN or Inf"),
    ("fit and evaluate", "float labels in fit", "tn.fit(model, loss, opt, x, y.astype(float), 1, 4, progress=False)",
     ValueError, "SoftmaxCrossEntropy", r"expected integer class labels, got dtype float64"),
    ("fit and evaluate", "resume without a checkpoint file", "tn.fit(model, loss, opt, x, y, 1, 4, resume=True)",
     ValueError, "fit", r"resume=True needs checkpoint=path"),
    ("fit and evaluate", "a checkpoint in a folder that does not exist",
     "tn.fit(model, loss, opt, x, y, 1, 4, checkpoint='missing/run.npz')",
     FileNotFoundError, "fit", r"the folder of checkpoint missing/run.npz does not exist"),
    ("fit and evaluate", "a learning rate so high the loss overflows",
     "m = tn.mlp([4, 8, 3], batchnorm=False, rng=rng); "
     "tn.fit(m, loss, tn.SGD(m.parameters(), lr=1e30), 1e3 * x, y, 3, 4, rng=rng, progress=False)",
     tn.NonFiniteError, "fit", r"step 2 \(epoch 1\) gave a non-finite loss .* the first non-finite value is "
     r"the output of Linear \(layer 2\)"),
    ("fit and evaluate", "a layer whose backward overflows",
     "model[2].backward = crash_backward; tn.fit(model, loss, opt, 0 * x, y, 1, 4, rng=rng, progress=False)",
     tn.NonFiniteError, "fit", r"step 1 \(epoch 1\) gave a non-finite gradient \(the loss was .*\); the first non-finite value is "
     r"the input gradient of ReLU \(layer 2\)"),
    ("fit and evaluate", "NaN in evaluation data", "tn.evaluate(model, loss, x_nan, y)",
     ValueError, "evaluate", r"x contains 1 NaN or Inf"),
    ("fit and evaluate", "evaluate with batch size 0", "tn.evaluate(model, loss, x, y, batch_size=0)",
     ValueError, "evaluate", r"expected batch_size to be a positive integer, got 0"),
    ("fit and evaluate", "evaluate with x and y swapped", "tn.evaluate(model, loss, y, x)",
     TypeError, r"Linear \(layer 0\)", r"expected a floating-point array, got dtype int64"),
    # -- constructors --------------------------------------------------------------------------
    ("Constructors", "a layer with zero inputs", "tn.Linear(0, 2)",
     ValueError, "Linear", r"expected in_features to be a positive integer, got 0"),
    ("Constructors", "a float layer size", "tn.Linear(4, 2.5)",
     ValueError, "Linear", r"expected out_features to be a positive integer, got 2.5"),
    ("Constructors", "a seed where a Generator is expected", "tn.Linear(4, 2, rng=0)",
     TypeError, "Linear", r"expected rng to be a numpy.random.Generator, .* got int"),
    ("Constructors", "an unknown initialiser", "tn.Linear(4, 2, init='zeros')",
     ValueError, "init", r"expected one of .* got 'zeros'"),
    ("Constructors", "BatchNorm with no features", "tn.BatchNorm(0)",
     ValueError, "BatchNorm", r"expected num_features to be a positive integer, got 0"),
    ("Constructors", "BatchNorm with momentum above 1", "tn.BatchNorm(4, momentum=1.5)",
     ValueError, "BatchNorm", r"expected 0 <= momentum <= 1, or None for a cumulative average, got 1.5"),
    ("Constructors", "BatchNorm with eps = 0", "tn.BatchNorm(4, eps=0)",
     ValueError, "BatchNorm", r"expected eps > 0, got 0"),
    ("Constructors", "an unknown BatchNorm backward", "tn.BatchNorm(4, gradient='fast')",
     ValueError, "BatchNorm", r"expected gradient to be one of \('simplified', 'paper'\), got 'fast'"),
    ("Constructors", "Dropout that drops everything", "tn.Dropout(1.0)",
     ValueError, "Dropout", r"expected 0 <= p < 1, got 1.0"),
    ("Constructors", "Dropout with a seed", "tn.Dropout(0.5, rng=42)",
     TypeError, "Dropout", r"expected rng to be a numpy.random.Generator, .* got int"),
    ("Constructors", "Softmax over a float axis", "tn.Softmax(axis=1.0)",
     TypeError, "Softmax", r"expected an integer axis, got 1.0"),
    ("Constructors", "an MLP with one size", "tn.mlp([784])",
     ValueError, "mlp", r"expected at least two sizes \(input and output\), got \[784\]"),
    ("Constructors", "an unknown activation", "tn.mlp([4, 3], activation='gelu')",
     ValueError, "mlp", r"expected activation in \['relu', 'sigmoid', 'tanh'\], got 'gelu'"),
    # -- optimizers --------------------------------------------------------------------------------
    ("Optimizers", "a negative learning rate", "tn.SGD(model.parameters(), lr=-0.1)",
     ValueError, "SGD", r"expected lr to be a finite number >= 0, got -0.1"),
    ("Optimizers", "the model instead of its parameters", "tn.SGD(model, lr=0.1)",
     TypeError, "SGD", r"expected Parameters \(model.parameters\(\)\), got Linear"),
    ("Optimizers", "no parameters", "tn.Adam([])",
     ValueError, "Adam", r"got an empty parameter list"),
    ("Optimizers", "Nesterov without momentum", "tn.SGD(model.parameters(), lr=0.1, nesterov=True)",
     ValueError, "SGD", r"nesterov=True needs a momentum > 0"),
    ("Optimizers", "Adam with beta 1", "tn.Adam(model.parameters(), betas=(0.9, 1.0))",
     ValueError, "Adam", r"expected betas as two numbers in \[0, 1\), got \(0.9, 1.0\)"),
    ("Optimizers", "a state from another optimizer", "tn.Adam(model.parameters()).load_state_dict(opt.state_dict())",
     ValueError, r"Adam\.load_state_dict", r"the state was saved by SGD, not by Adam"),
    # -- checkpoints -------------------------------------------------------------------------------
    ("Checkpoints", "loading a file that does not exist", "tn.load('nothing.npz', model)",
     FileNotFoundError, r"tinynet\.load", r"no checkpoint at nothing.npz"),
    ("Checkpoints", "loading a text file", "tn.load('notes.txt', model)",
     ValueError, r"tinynet\.load", r"notes.txt is not a readable tinynet checkpoint"),
    ("Checkpoints", "loading a truncated checkpoint", "tn.load('half.npz', model)",
     ValueError, r"tinynet\.load", r"half.npz is not a readable tinynet checkpoint"),
    ("Checkpoints", "loading an .npz that numpy wrote", "tn.load('plain.npz', model)",
     ValueError, r"tinynet\.load", r"plain.npz is an .npz archive but not a tinynet checkpoint"),
    ("Checkpoints", "loading a checkpoint from a newer tinynet", "tn.load('future.npz', model)",
     ValueError, r"tinynet\.load", r"future.npz has checkpoint format 99, this tinynet reads up to 1"),
    ("Checkpoints", "loading a checkpoint whose numbers were changed", "tn.load('changed.npz', model)",
     ValueError, r"tinynet\.load", r"changed.npz is damaged: its checksum does not match its contents"),
    ("Checkpoints", "loading into a different architecture", "tn.load('wide.npz', model)",
     ValueError, r"tinynet\.load", r"wide.npz was saved from a different architecture: wrong shapes: "
     r"0.weight: model has \(4, 8\), checkpoint has \(4, 16\)"),
    ("Checkpoints", "loading into a model with other layers", "tn.load('good.npz', tn.mlp([4, 8, 3], batchnorm=False))",
     ValueError, r"tinynet\.load", r"missing keys \['0.bias', '2.bias', '2.weight'\], unexpected keys"),
    ("Checkpoints", "asking for optimizer state that was not saved", "tn.load('weights.npz', model, opt)",
     ValueError, r"tinynet\.load", r"weights.npz holds no optimizer state \(it was saved without optimizer=\)"),
    ("Checkpoints", "loading SGD state into Adam", "tn.load('good.npz', model, tn.Adam(model.parameters()))",
     ValueError, r"tinynet\.load", r"good.npz: Adam.load_state_dict: the state was saved by SGD, not by Adam"),
    ("Checkpoints", "asking for a generator state that was not saved", "tn.load('good.npz', model, rng=rng)",
     ValueError, r"tinynet\.load", r"good.npz holds no generator state \(it was saved without rng=\)"),
    ("Checkpoints", "saving something that is not a model", "tn.save('run.npz', model.parameters())",
     TypeError, r"tinynet\.save", r"expected model to be a tinynet Layer .* got list"),
    ("Checkpoints", "saving with another model's optimizer", "tn.save('run.npz', tn.mlp([4, 8, 3]), opt)",
     ValueError, r"tinynet\.save", r"the optimizer holds 5 parameter\(s\) that are not this model's"),
    ("Checkpoints", "saving into a folder that does not exist", "tn.save('missing/run.npz', model)",
     FileNotFoundError, r"tinynet\.save", r"the folder .*missing does not exist"),
    ("Checkpoints", "a path that is not a path", "tn.save(3, model)",
     TypeError, r"tinynet\.save", r"expected a file path \(str or pathlib.Path\), got int"),
    # -- other entries --------------------------------------------------------------------------
    ("Other", "gradcheck of something that is not a layer", "tn.gradcheck(lambda v: v * v, x)",
     TypeError, "gradcheck", r"expected a Layer, got function"),
    ("Other", "gradcheck on integers", "tn.gradcheck(tn.ReLU(), np.ones((2, 2), np.int64))",
     TypeError, "gradcheck", r"expected floating-point input arrays, got int64"),
    ("Other", "an unknown backend", "model.to('gpu')",
     ValueError, r"Sequential\.to", r"expected backend 'numpy' or 'cupy', got 'gpu'"),
    ("Other", "images_to_features on one image row", "tn.data.batching.images_to_features(np.zeros(784, np.uint8))",
     ValueError, "images_to_features", r"expected an array of images \(N, H, W\), got \(784,\)"),
]

# (group, mistake, code, warning class, who, regex)
WARNING_CASES = [
    ("Warnings", "evaluating in training mode (eval() forgotten)", "model(x[:4]); model(x[4:])",
     EvalModeWarning, "Sequential", r"forward ran again in training mode with no backward .* BatchNorm\b.* call model.eval\(\) first"),
    ("Warnings", "resuming with other hyperparameters",
     "a = tn.Adam(model.parameters(), betas=(0.8, 0.9)); a.load_state_dict(tn.Adam(model.parameters()).state_dict())",
     UserWarning, r"Adam\.load_state_dict", r"keeping this optimizer's betas=\[0.8, 0.9\] \(saved \[0.9, 0.999\]\)"),
]


def case_id(case):
    return re.sub(r"\W+", "-", case[1]).strip("-")


def run_case(code, tmp):
    """Run ``code`` in a fresh namespace inside ``tmp``; return the exception it raised (or None)."""
    ns = namespace(tmp, files=".npz" in code or ".txt" in code)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # the overflow cases warn before they raise
            exec(code, ns)
    except Exception as exc:  # the cases are meant to raise; the caller checks what
        return exc
    finally:
        os.chdir(cwd)
    return None


def check_message(message, who, expect):
    assert re.match(rf"{who}(?![\w.])", message), f"message does not start with {who!r}: {message}"
    assert re.search(expect, message, re.S), f"message lacks {expect!r}: {message}"


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_bad_input_gets_a_clear_error(case, tmp_path):
    _, _, code, error, who, expect = case
    exc = run_case(code, tmp_path)
    assert exc is not None, f"{code} raised nothing"
    assert type(exc) is error, f"{code} raised {type(exc).__name__}: {exc}"
    check_message(str(exc), who, expect)


@pytest.mark.parametrize("case", WARNING_CASES, ids=[case_id(c) for c in WARNING_CASES])
def test_likely_mistake_gets_a_warning(case, tmp_path):
    _, _, code, category, who, expect = case
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exc = run_case(code, tmp_path)
    assert exc is None, exc
    messages = [str(w.message) for w in caught if issubclass(w.category, category)]
    assert len(messages) == 1, messages
    check_message(messages[0], who, expect)


def test_every_case_is_distinct_and_the_table_is_big_enough():
    codes = [c[2] for c in CASES + WARNING_CASES]
    assert len(codes) == len(set(codes))
    assert len(set(map(case_id, CASES + WARNING_CASES))) == len(codes)
    assert len(CASES) >= 80


def test_no_warning_when_training_or_evaluating_properly(tmp_path):
    ns = namespace(tmp_path)
    model, x, y, loss, opt = ns["model"], ns["x"], ns["y"], ns["loss"], ns["opt"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):  # hand-written training steps
            loss(model(x), y)
            model.backward(loss.backward())
            opt.step()
        model.eval()
        model(x[:4])
        model(x[4:])
        model.train()
        tn.evaluate(model, loss, x, y, batch_size=3)
        tn.fit(model, loss, opt, x, y, 2, 4, rng=ns["rng"], progress=False)
        tn.gradcheck(tn.Sequential(tn.Linear(4, 3, dtype=np.float64), tn.BatchNorm(3, dtype=np.float64)), x[:4].astype(np.float64))


def test_model_without_mode_dependent_layers_does_not_warn(tmp_path):
    model = tn.mlp([4, 8, 3], batchnorm=False)
    x = np.ones((4, 4), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)
        model(x[:2])


@pytest.mark.gpu
def test_wrong_backend_with_a_real_gpu_both_ways():
    if not cupy_available():
        pytest.skip("needs CuPy and a GPU")
    import cupy

    layer = tn.Linear(4, 2).to("cupy")
    with pytest.raises(TypeError, match="input is a numpy array but the layer's parameters are cupy arrays"):
        layer(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"Sequential: input contains 1 NaN"):
        tn.Sequential(tn.Linear(2, 2).to("cupy"))(cupy.asarray([[1.0, np.nan]], dtype=cupy.float32))


def test_a_failed_load_changes_nothing(tmp_path):
    ns = namespace(tmp_path)
    model, opt = ns["model"], ns["opt"]
    before = model.state_dict()
    for name in ("wide.npz", "half.npz", "future.npz"):
        with pytest.raises(ValueError):
            tn.load(tmp_path / name, model, opt)
    # a model that fits but an optimizer that does not: the model must not be half-loaded
    other = tn.mlp([4, 8, 3], rng=np.random.default_rng(7))
    tn.save(tmp_path / "other.npz", other, tn.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="saved by SGD, not by Adam"):
        tn.load(tmp_path / "other.npz", model, tn.Adam(model.parameters()))
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


# -- docs/errors.md -----------------------------------------------------------------------


def render(tmp):
    """The markdown table of every case, with the message it gives today."""
    groups = {}
    for group, mistake, code, error, _, _ in CASES:
        exc = run_case(code, tmp)
        groups.setdefault(group, []).append((mistake, code, type(exc).__name__, str(exc)))
    for group, mistake, code, category, _, _ in WARNING_CASES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_case(code, tmp)
        message = next(str(w.message) for w in caught if issubclass(w.category, category))
        groups.setdefault(group, []).append((mistake, code, category.__name__, message))

    def cell(text):
        text = text.replace(str(tmp), "<tmp>").replace("|", "\\|")
        first, *rest = text.splitlines()
        return first + (" (then both model summaries)" if rest else "")

    lines = [
        "# Errors: every bad input and the message it gets",
        "",
        "Generated by `tests/test_errors.py` (`test_docs_errors_md_is_current`); do not edit by hand.",
        f"{len(CASES)} bad inputs raise an error and {len(WARNING_CASES)} likely mistakes give a warning.",
        "Each message starts with the layer or function that refused, then says what it expected and",
        "what it got. The code runs with `x` float32 (8, 4), `y` int labels (8,) in [0, 3),",
        "`model = tn.mlp([4, 8, 3])` (Linear, BatchNorm, ReLU, Linear), `opt` its SGD and",
        "`loss = tn.SoftmaxCrossEntropy()`.",
        "",
        "NaN and Inf are looked for where data enters: a Graph's inputs, `fit`, `evaluate`; a single",
        "layer called on its own does not scan its input. During training `fit` checks the loss and",
        "every gradient after each step and stops with `NonFiniteError` naming the step and the first",
        "layer whose output or gradient went non-finite.",
    ]
    for group, rows in groups.items():
        lines += ["", f"## {group}", "", "| mistake | code | error | message |", "|---|---|---|---|"]
        lines += [f"| {m} | `{cell(c)}` | {e} | {cell(msg)} |" for m, c, e, msg in rows]
    return "\n".join(lines) + "\n"


def test_docs_errors_md_is_current(tmp_path):
    text = render(tmp_path)
    if not DOC.exists() or DOC.read_text() != text:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text)
        pytest.fail(f"{DOC} was out of date and has been regenerated; review and commit it")
