"""History: what a run of :func:`tinynet.fit` measured, step by step and epoch by epoch."""

import json
from dataclasses import asdict, dataclass, field


@dataclass(repr=False)
class History:
    """What a run of :func:`fit` measured.

    Attributes
    ----------
    step_loss : list of float
        Training loss of every step.
    train_loss : list of float
        Per epoch: mean training loss over its steps.
    val_loss, val_accuracy : list of float
        Per epoch, on the validation data (empty without validation).
    seconds : list of float
        Per epoch: wall time of the training steps (evaluation excluded).
    layer_stats : dict
        With ``fit(..., inspect_every=k)``: every k-th step's per-layer statistics,
        ``{"step": [...], "layers": {"1 BatchNorm": {"act_std": [...], ...}}}``
        (:mod:`tinynet.layer_stats` lists them); empty otherwise.

    ``print(history)`` shows a short summary; the lists hold everything.
    """

    step_loss: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    layer_stats: dict = field(default_factory=dict)

    def __repr__(self):
        from .layer_stats import describe_history

        return describe_history(self)

    def to_json(self, path):
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=1)

    @classmethod
    def from_json(cls, path):
        with open(path) as f:
            return cls(**json.load(f))


