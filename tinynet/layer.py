"""Parameter and Layer: the two building blocks of every model.

A Layer has an explicit ``forward`` and ``backward``. Forward caches what
backward needs (``save_for_backward``); backward returns the gradient of the
input and *adds* the gradients of the parameters into ``p.grad``.
"""

import numpy as np

from .backend import backend_name, get_array_module


class Parameter:
    """A trainable array and its gradient: two plain arrays of one shape and dtype.

    Parameters
    ----------
    data : ndarray
        The values, kept in the dtype given (NumPy or CuPy array).
    name : str, optional
        The layer's own name for it (``"weight"``); containers qualify it
        (``"0.weight"``) when their ``parameters()`` is called.

    Attributes
    ----------
    data : ndarray
        The weight the layer reads. Optimizers update it in place, so a reference kept to it
        (``self.w = self.weight.data``) sees every step; ``model.to`` and ``load_state_dict``
        assign new arrays.
    grad : ndarray
        Same shape and dtype as ``data``, zeros at start. A backward *adds* into it (``+=``),
        ``zero_grad()`` fills it with zeros, ``step()`` reads it.
    """

    def __init__(self, data, name=None):
        if not hasattr(data, "dtype"):
            data = np.asarray(data)
        if data.dtype.kind != "f":
            raise TypeError(
                f"Parameter {name or ''}: expected a floating-point array, got dtype {data.dtype}"
            )
        self.data = data
        self.grad = get_array_module(data).zeros_like(data)
        self.name = name

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    def zero_grad(self):
        """Set the gradient to zeros (a fresh array if ``data`` changed shape, dtype or backend)."""
        g, data = self.grad, self.data
        if g is None or g.shape != data.shape or g.dtype != data.dtype or backend_name(g) != backend_name(data):
            self.grad = get_array_module(data).zeros_like(data)
        else:
            g.fill(0)

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


class Layer:
    """Base class: ``layer(x)`` calls ``forward(x)``; ``backward(dy)`` returns dx.

    Subclasses define ``forward`` and ``backward``; ``__init__`` is optional.
    Parameters are found among the attributes (a :class:`Parameter`), as are
    sub-layers (a Layer, or a list/tuple of Layers). Attribute names listed in
    ``buffers`` are non-trainable state saved by ``state_dict`` (BatchNorm's
    running statistics).
    """

    training = True  # per instance once train()/eval() is called; never global
    buffers = ()
    differs_in_training = False  # True for layers that compute differently in training (BatchNorm, Dropout)

    # -- the two methods a layer defines ----------------------------------
    def forward(self, *inputs):
        raise NotImplementedError(f"{type(self).__name__} must define forward(x)")

    def backward(self, dy):
        raise NotImplementedError(f"{type(self).__name__} must define backward(dy)")

    def __call__(self, *inputs):
        return self.forward(*inputs)

    # -- what forward keeps for backward ----------------------------------
    def save_for_backward(self, *values):
        """Keep ``values`` for the next ``backward`` (one backward per forward)."""
        self._saved = values

    def saved(self):
        """Return what forward saved, and forget it: a second backward is an error."""
        values = self.__dict__.pop("_saved", None)
        if values is None:
            raise RuntimeError(
                f"{self.name_for_errors()}: backward called without a forward before it "
                "(or twice after one forward); call forward first"
            )
        return values

    def name_for_errors(self):
        """The layer's class, and its position when it sits in a Graph: ``"Linear (layer 3)"``."""
        position = self.__dict__.get("_graph_position")
        return type(self).__name__ if position is None else f"{type(self).__name__} (layer {position})"

    # -- structure ---------------------------------------------------------
    def children(self):
        """Yield ``(name, layer)`` for the direct sub-layers, in attribute order."""
        for attr, value in vars(self).items():
            if isinstance(value, Layer):
                yield attr, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, Layer):
                        yield f"{attr}.{i}", item

    def modules(self):
        """Yield this layer and every layer below it, depth first."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def named_parameters(self, prefix=""):
        """Yield ``(qualified_name, Parameter)`` pairs, this layer's own first.

        A Parameter shared by several layers (tied weights) is listed once, under its first
        name, as in PyTorch: an optimizer must step it once, not once per use.
        """
        seen = set()
        for name, p in self._all_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _all_parameters(self, prefix):
        for attr, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + attr, value
        for name, child in self.children():
            yield from child._all_parameters(prefix + name + ".")

    def named_buffers(self, prefix=""):
        """Yield ``(qualified_name, owner, attribute)`` for every buffer."""
        for attr in self.buffers:
            yield prefix + attr, self, attr
        for name, child in self.children():
            yield from child.named_buffers(prefix + name + ".")

    def parameters(self):
        """Return the list of Parameters, named relative to this layer (``0.weight``)."""
        params = []
        for name, p in self.named_parameters():
            p.name = name
            params.append(p)
        return params

    def zero_grad(self):
        for _, p in self.named_parameters():
            p.zero_grad()

    def train(self, mode=True):
        """Set training mode on this layer and all below it; return self."""
        self.__dict__.pop("_fit_ended", None)  # said explicitly: no warning about forgetting eval() (graph.py)
        for layer in self.modules():
            layer.training = bool(mode)
        return self

    def eval(self):
        """Set evaluation mode on this layer and all below it; return self."""
        return self.train(False)

    # -- saving and loading -----------------------------------------------
    def state_dict(self):
        """Return ``{name: numpy.ndarray}`` host copies of parameters and buffers."""
        from .state import layer_state

        return layer_state(self)

    def load_state_dict(self, state):
        """Load a ``state_dict``; strict: any mismatch raises and changes nothing."""
        from .state import load_layer_state

        load_layer_state(self, state)

    def to(self, backend):
        """Move parameters, gradients and buffers to ``"numpy"`` or ``"cupy"``; return self.

        An optimizer's state (momentum buffers) moves with ``optimizer.to(backend)``, which
        ``fit`` calls for you. Asking for "cupy" without CuPy or a GPU raises
        :class:`tinynet.backend.BackendUnavailableError` saying which is missing.
        """
        from .state import move_layer

        return move_layer(self, backend)

    # -- printing ------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def check_input(layer, x, ndim=None, features=None, like=None, axis=-1):
    """Refuse an input a layer cannot take, naming the layer, what it expected and what came.

    Parameters
    ----------
    layer : Layer
        The layer asking (its name goes into the message).
    x : object
        The input to check: must be a floating-point NumPy or CuPy array.
    ndim : int, optional
        Required number of dimensions.
    features : int, optional
        Required size of the feature axis: the last one, or ``axis``.
    like : ndarray, optional
        One of the layer's parameters: the input must share its dtype and backend.
    axis : int
        Which axis ``features`` names: -1 (the default) for (N, features) inputs, 1 for the
        channels of NCHW images (``check_input(self, x, ndim=4, features=C, axis=1)``).
    """
    def refuse(error, message):  # the layer's name is looked up only when something is wrong
        raise error(f"{layer.name_for_errors()}: {message}")

    dtype, shape = getattr(x, "dtype", None), getattr(x, "shape", None)
    if dtype is None or shape is None:
        refuse(TypeError, f"expected a NumPy or CuPy array, got {type(x).__name__}")
    if dtype.kind != "f":
        refuse(TypeError, f"expected a floating-point array, got dtype {dtype} (convert with x.astype(numpy.float32))")
    if ndim is not None and len(shape) != ndim:
        refuse(ValueError, f"expected a {ndim}-D input, got shape {tuple(shape)}")
    if features is not None and shape[axis] != features:
        expected = ["N"] + ["*"] * (len(shape) - 1)  # (N, 3, *, *): the one size that is checked
        expected[axis] = str(features)
        what = "" if axis in (-1, len(shape) - 1) else f", {features} on axis {axis}" + (", the channels" * (axis == 1))
        refuse(ValueError, f"expected input of shape ({', '.join(expected)}){what}, got shape {tuple(shape)}")
    if shape and shape[0] == 0:
        refuse(ValueError, f"got an empty batch, shape {tuple(shape)}")
    if like is None:
        return
    bx, bp = backend_name(x), backend_name(like)
    if bx != bp:
        refuse(TypeError, f"input is a {bx} array but the layer's parameters are {bp} arrays; "
               f"move the model with model.to({bx!r}) or the input with tinynet.to_device(x, {bp!r})")
    if dtype != like.dtype:
        refuse(TypeError, f"input dtype {dtype} does not match the layer's parameters ({like.dtype}); "
               f"cast the input with x.astype({like.dtype.name}) or build the layer with dtype={dtype.name}")


def check_grad(layer, dy, shape):
    """Refuse an upstream gradient ``dy`` that is not an array of the layer's output ``shape``.

    Without this check a (1, C) or (C,) gradient would broadcast silently against (N, C).
    """
    if getattr(dy, "shape", None) != shape:
        if not hasattr(dy, "shape") or not hasattr(dy, "dtype"):
            raise TypeError(f"{layer.name_for_errors()}: backward expected dy as an array, got {type(dy).__name__}")
        if tuple(dy.shape) != tuple(shape):
            raise ValueError(
                f"{layer.name_for_errors()}: backward expected dy of the output's shape {tuple(shape)}, "
                f"got shape {tuple(dy.shape)}"
            )


def check_finite(where, x, what="input"):
    """Refuse NaN or Inf in a floating-point array, naming ``where``, ``what`` and the first bad index.

    Scanning costs a pass over the data, so models check where data enters (a Graph's
    inputs, fit, evaluate), not in every layer. Non-float values are left to
    :func:`check_input`, which explains them better.

    Parameters
    ----------
    where : str
        Who is asking (``"Sequential"``, ``"fit"``), first in the message.
    x : ndarray
        Any shape.
    what : str
        What ``x`` is, for the message (``"input"``, ``"x"``).
    """
    if getattr(getattr(x, "dtype", None), "kind", None) != "f" or x.size == 0:
        return
    xp = get_array_module(x)
    # NaN and Inf survive a sum: one pass, no temporary array (a finite sum that overflows is a false
    # alarm, which the exact test below clears)
    with np.errstate(over="ignore", invalid="ignore"):
        if bool(xp.isfinite(x.sum())) or bool(xp.isfinite(x).all()):
            return
    bad = ~xp.isfinite(x)
    first = tuple(int(i) for i in xp.argwhere(bad)[0])
    raise ValueError(
        f"{where}: {what} contains {int(bad.sum())} NaN or Inf value(s), the first at index {first} "
        f"({float(x[first])}); clean the data (e.g. numpy.nan_to_num) or find the step that made it"
    )


def check_positive_int(where, name, value):
    """Refuse anything but a positive integer (a bool is not one), naming ``where`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: expected {name} to be a positive integer, got {value!r}")


def check_rng(where, rng):
    """Refuse anything but a ``numpy.random.Generator`` (or None) where randomness is passed in."""
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{where}: expected rng to be a numpy.random.Generator, e.g. numpy.random.default_rng(0), "
            f"got {type(rng).__name__}"
        )
