"""Learning-rate schedules: per epoch (``fit(..., lr_schedule=...)``) or per step.

Each returns ``schedule(t) -> lr``, matched to PyTorch's schedulers (tests/test_optim_more.py).
Loaded on first use: ``tinynet.optim.cosine_schedule`` and friends resolve here.
"""

import math


def cosine_schedule(lr, epochs, final_fraction=0.0):
    """Per-epoch learning rates falling from ``lr`` along a half cosine (Loshchilov & Hutter 2017).

    Returns ``schedule(epoch) -> lr`` for epochs 0 .. epochs-1; the last epoch
    trains at ``lr * final_fraction`` plus half a step of the cosine, never at 0.
    """
    if not epochs >= 1:
        raise ValueError(f"cosine_schedule: expected epochs >= 1, got {epochs!r}")

    def schedule(epoch):
        progress = (epoch + 0.5) / epochs  # the middle of the epoch
        return lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    return schedule


def step_decay(lr, step_size, gamma=0.1):
    """``schedule(t) -> lr * gamma ** (t // step_size)``: PyTorch's StepLR, per epoch or per step.

    ``t`` counts whatever you step it by, from 0: epochs in ``fit(..., lr_schedule=...)``, or
    optimizer steps in a hand-written loop (``optimizer.lr = schedule(step)`` before each step).
    """
    check_schedule("step_decay", lr=lr, step_size=step_size)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0:
        raise ValueError(f"step_decay: expected gamma > 0, got {gamma!r}")

    def schedule(t):
        return lr * gamma ** (int(t) // step_size)

    return schedule


def warmup_cosine(lr, warmup, total, start_factor=1 / 3, final_lr=0.0):
    """Linear warm-up, then a cosine down to ``final_lr``; per epoch or per step, as PyTorch's
    ``SequentialLR([LinearLR(start_factor, total_iters=warmup), CosineAnnealingLR(T_max=total - warmup,
    eta_min=final_lr)], milestones=[warmup])``::

        t < warmup:  lr * (start_factor + (1 - start_factor) * t / warmup)
        t >= warmup: final_lr + (lr - final_lr) * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2

    ``t`` counts from 0, in epochs or steps; past ``total`` the cosine climbs again, as PyTorch's.
    """
    check_schedule("warmup_cosine", lr=lr, total=total)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or not 0 <= warmup < total:
        raise ValueError(f"warmup_cosine: expected warmup to be an integer in [0, total), got {warmup!r}")
    if not 0 < start_factor <= 1:
        raise ValueError(f"warmup_cosine: expected 0 < start_factor <= 1, got {start_factor!r}")
    if not 0 <= final_lr <= lr:
        raise ValueError(f"warmup_cosine: expected 0 <= final_lr <= lr, got {final_lr!r}")

    def schedule(t):
        if t < warmup:
            return lr * (start_factor + (1 - start_factor) * t / warmup)
        return final_lr + (lr - final_lr) * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))) / 2

    return schedule


def check_schedule(where, lr, **counts):
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"{where}: expected lr > 0, got {lr!r}")
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: expected {name} to be a positive integer, got {value!r}")
