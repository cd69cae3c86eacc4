"""What a comparison runs: the presets and the checked settings of one study."""

from dataclasses import asdict, dataclass, field, replace

# Defaults of each preset; any field of StudyConfig may be overridden on top.
PRESETS = {
    # Ioffe & Szegedy (2015), Figure 1: 784-100-100-100-10 sigmoid MLP, batch 60, plain SGD,
    # small Gaussian initial weights. 50 000 steps in the paper; the default is shorter so that
    # `make compare` fits in minutes on a laptop CPU (pass --steps 50000 for the full run).
    "paper": dict(hidden=(100, 100, 100), activation="sigmoid", init_std=0.1, batch_size=60,
                  lr=0.1, momentum=0.0, steps=30_000, eval_every=500,
                  sweep_lrs=(0.5, 2.0, 8.0, 16.0, 32.0), sweep_steps=2000),
    # the default MLP of `tinynet train`: 784-256-256-10 ReLU, He init, SGD with momentum
    "mlp": dict(hidden=(256, 256), activation="relu", init_std=None, batch_size=128,
                lr=0.05, momentum=0.9, steps=4000, eval_every=200,
                sweep_lrs=(0.2, 0.5, 1.0), sweep_steps=1500),
}

ACTIVATIONS = ("sigmoid", "relu", "tanh")
BN_GRADIENTS = ("simplified", "paper")


@dataclass(frozen=True)
class StudyConfig:
    """The settings of one comparison (with and without BatchNorm, plus an optional lr sweep).

    Parameters
    ----------
    preset : {"paper", "mlp"}
        Name of the preset these settings started from (recorded in the report).
    hidden : tuple of int
        Hidden widths; input and output widths come from the data.
    activation : {"sigmoid", "relu", "tanh"}
    init_std : float or None
        Initial weights N(0, init_std**2); None means He initialisation.
    batch_size, steps, eval_every : int
        Examples per step, training steps, steps between test evaluations.
    lr, momentum : float
        SGD learning rate and momentum (0 = plain SGD) of the main pair of runs.
    sweep_lrs : tuple of float
        Learning rates of the sweep (each trains both nets for ``sweep_steps``); empty = no sweep.
    sweep_steps : int
    bn_gradient : {"simplified", "paper"}
        BatchNorm's backward form.
    seed : int
        Seeds the initial weights and the batch order (the same for every run).
    probe_unit : int
        Which unit of the last hidden layer has its activation input recorded.
    targets : tuple of float
        Test accuracies whose first crossing is reported.
    """

    preset: str = "paper"
    hidden: tuple = (100, 100, 100)
    activation: str = "sigmoid"
    init_std: float | None = 0.1
    batch_size: int = 60
    lr: float = 0.1
    momentum: float = 0.0
    steps: int = 30_000
    eval_every: int = 500
    sweep_lrs: tuple = ()
    sweep_steps: int = 3000
    bn_gradient: str = "simplified"
    seed: int = 0
    probe_unit: int = 0
    targets: tuple = field(default=(0.95, 0.97))

    def __post_init__(self):
        where = "compare"
        if self.preset not in PRESETS:
            raise ValueError(f"{where}: expected preset in {sorted(PRESETS)}, got {self.preset!r}")
        if not self.hidden or any(not is_positive_int(h) for h in self.hidden):
            raise ValueError(f"{where}: expected hidden widths as positive integers, got {self.hidden!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"{where}: expected activation in {ACTIVATIONS}, got {self.activation!r}")
        if self.init_std is not None and not (is_number(self.init_std) and self.init_std > 0):
            raise ValueError(f"{where}: expected init_std > 0 (or None for He init), got {self.init_std!r}")
        for name in ("batch_size", "steps", "eval_every", "sweep_steps"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{where}: expected {name} to be a positive integer, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ValueError(f"{where}: BatchNorm needs batches of at least 2 examples, got batch_size={self.batch_size}")
        for lr in (self.lr, *self.sweep_lrs):
            if not (is_number(lr) and 0 < lr < float("inf")):
                raise ValueError(f"{where}: expected positive finite learning rates, got {lr!r}")
        if not (is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"{where}: expected 0 <= momentum < 1, got {self.momentum!r}")
        if self.bn_gradient not in BN_GRADIENTS:
            raise ValueError(f"{where}: expected bn_gradient in {BN_GRADIENTS}, got {self.bn_gradient!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"{where}: expected a non-negative integer seed, got {self.seed!r}")
        if not (isinstance(self.probe_unit, int) and 0 <= self.probe_unit < self.hidden[-1]):
            raise ValueError(
                f"{where}: expected probe_unit in [0, {self.hidden[-1]}) (a unit of the last hidden layer), "
                f"got {self.probe_unit!r}"
            )
        if any(not (is_number(t) and 0 < t <= 1) for t in self.targets):
            raise ValueError(f"{where}: expected target accuracies in (0, 1], got {self.targets!r}")

    @classmethod
    def from_preset(cls, name, **overrides):
        """The preset's settings with ``overrides`` (fields whose value is None are left to the preset)."""
        if name not in PRESETS:
            raise ValueError(f"compare: expected preset in {sorted(PRESETS)}, got {name!r}")
        settings = dict(PRESETS[name])
        settings.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=name, **settings)

    def with_lr(self, lr, steps):
        """The same settings at another learning rate and length (for the sweep).

        A short run is evaluated at least 10 times, so that its curve has a shape.
        """
        return replace(self, lr=lr, steps=steps, eval_every=max(1, min(self.eval_every, steps // 10)))

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def describe_init(self):
        return "He, N(0, 2/fan_in)" if self.init_std is None else f"N(0, {self.init_std:g}^2)"


def is_positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
