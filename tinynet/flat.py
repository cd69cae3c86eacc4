"""Parameters packed into one flat array, so that an optimizer updates all of them at once.

On the CPU a NumPy call costs microseconds however small its array, and a momentum step is
four calls per parameter: 32 for the default MLP's eight parameters, each over arrays the
matrix products have just pushed out of the cache. When every ``p.data`` is a view of one
flat array, and every ``p.grad`` of another, the same step is four calls in all.

The optimizer packs its parameters at its first step (:meth:`FlatParameters.pack`): each
``p.data`` and ``p.grad`` is copied into the flat arrays and replaced by a view of them, so
values, shapes and names stay as they were. Layers read ``p.data`` anew on every call, so
they see the views. Whoever later assigns a new array to ``p.data`` or ``p.grad`` (``model.to``,
``load_state_dict``, gradcheck) unpacks that parameter; the next step notices and packs again.
"""

import itertools

import numpy as np


class FlatParameters:
    """``data`` and ``grad``: every parameter's values and gradient, end to end, 1-D.

    Parameters
    ----------
    params : list of Parameter
        As :meth:`pack` allows them: distinct, NumPy, one dtype, sharing no memory.

    Attributes
    ----------
    data, grad : numpy.ndarray
        (total size,) arrays; parameter i is ``[bounds[i]:bounds[i + 1]]`` of each.
    """

    def __init__(self, params):
        self.params = params
        self.bounds = np.cumsum([0] + [p.data.size for p in params]).tolist()
        self.data = np.concatenate([p.data.reshape(-1) for p in params])
        self.grad = np.concatenate([p.grad.reshape(-1) for p in params])  # p.grad writes owed zeros first
        self.data_views, self.grad_views = self.views(self.data), self.views(self.grad)
        for p, data, grad in zip(params, self.data_views, self.grad_views):
            p.data, p.grad = data, grad
        self.state_views = {}  # optimizer state: key -> (its flat array, that array's views per parameter)

    @classmethod
    def pack(cls, params):
        """Pack ``params`` and return the packing, or None when they cannot share one array.

        They cannot when one appears twice, when they differ in dtype, live on a GPU (CuPy
        has one kernel for all of them instead), or when two of their arrays share memory:
        tied weights must stay tied.
        """
        if len({id(p) for p in params}) != len(params):
            return None
        arrays = [a for p in params for a in (p.data, p._grad)]
        dtype = params[0].data.dtype
        if any(type(a) is not np.ndarray or a.dtype != dtype for a in arrays):
            return None
        if any(np.may_share_memory(a, b) for a, b in itertools.combinations(arrays, 2)):
            return None
        return cls(params)

    def views(self, flat):
        """Views of a flat array, one per parameter, shaped like it."""
        return [flat[a:b].reshape(p.data.shape) for p, a, b in zip(self.params, self.bounds, self.bounds[1:])]

    def intact(self):
        """True while every parameter still reads and writes its views; also writes owed zeros.

        ``zero_grad`` only marks a gradient zero (``Parameter.grad``): reading ``p.grad`` here
        writes the zeros into the flat gradient of a parameter no backward reached.
        """
        return all(p.data is data and p.grad is grad
                   for p, data, grad in zip(self.params, self.data_views, self.grad_views))

    def flat_state(self, states):
        """The optimizer's per-parameter state as {key: flat array}, or None when it cannot be.

        ``states`` is the optimizer's list of per-parameter dicts. Their arrays are views of
        the flat ones (see :meth:`share_state`), so ``state_dict`` and ``load_state_dict`` keep
        working per parameter; arrays that ``load_state_dict`` put there are copied in once.
        """
        keys = set(states[0])
        if any(set(s) != keys for s in states):
            return None
        flat_state = {}
        for key in keys:
            arrays = [s[key] for s in states]
            shared = self.state_views.get(key)
            if shared is not None and all(a is v for a, v in zip(arrays, shared[1])):
                flat_state[key] = shared[0]
                continue
            if any(type(a) is not np.ndarray or a.shape != p.data.shape for a, p in zip(arrays, self.params)):
                return None  # the per-parameter step raises its clear error
            flat_state[key] = np.concatenate([a.reshape(-1) for a in arrays]).astype(self.data.dtype, copy=False)
        self.share_state(flat_state, states)
        return flat_state

    def share_state(self, flat_state, states):
        """Make each per-parameter state array a view of its flat one, where it is not yet
        (state loaded per parameter, or made or replaced by the optimizer's update)."""
        for key in set(self.state_views) - set(flat_state):
            del self.state_views[key]
        for key, flat in flat_state.items():
            shared = self.state_views.get(key)
            if shared is None or shared[0] is not flat:
                views = self.views(flat)
                self.state_views[key] = (flat, views)
                for s, view in zip(states, views):
                    s[key] = view
