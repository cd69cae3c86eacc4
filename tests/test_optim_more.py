"""AdamW, clip_grad_norm and the schedules (issue 16), each against PyTorch's numbers over 20 steps
(skipped where torch is missing), and their own checks."""

import math

import numpy as np
import pytest

import tinynet as tn
from tinynet.optim import step_decay, warmup_cosine


def quadratic_grads(xp, params, targets):
    """The gradient of sum((p - target)**2) / 2, written into each p.grad: p - target."""
    for p, t in zip(params, targets):
        p.grad[...] = p.data - t


@pytest.mark.parametrize("weight_decay", [0.0, 0.01, 0.5])
def test_adamw_matches_pytorch_over_20_steps(xp, backend, weight_decay):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    start = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    targets = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
    params = [tn.Parameter(xp.asarray(a.copy())) for a in start]
    opt = tn.AdamW(params, lr=0.05, betas=(0.8, 0.95), eps=1e-7, weight_decay=weight_decay)
    tparams = [torch.tensor(a.copy(), requires_grad=True) for a in start]
    topt = torch.optim.AdamW(tparams, lr=0.05, betas=(0.8, 0.95), eps=1e-7, weight_decay=weight_decay)
    for _ in range(20):
        quadratic_grads(xp, params, [xp.asarray(t) for t in targets])
        opt.step()
        for p, t in zip(tparams, targets):
            p.grad = p.detach() - torch.tensor(t)
        topt.step()
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(tn.to_numpy(p.data), t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_adamw_decay_is_decoupled_from_the_gradient():
    """With a zero gradient Adam's coupled decay still moves by a full lr step (m / sqrt(v) = 1);
    AdamW's shrinks the weight by the factor (1 - lr * wd) only."""
    adamw_p, adam_p = tn.Parameter(np.array([2.0])), tn.Parameter(np.array([2.0]))
    tn.AdamW([adamw_p], lr=0.1, weight_decay=0.1).step()
    tn.Adam([adam_p], lr=0.1, weight_decay=0.1).step()
    assert adamw_p.data[0] == pytest.approx(2.0 * (1 - 0.01))
    assert adam_p.data[0] == pytest.approx(2.0 - 0.1, abs=1e-6)


def test_adamw_state_dict_round_trip():
    p = tn.Parameter(np.ones(3))
    opt = tn.AdamW([p], lr=0.1)
    p.grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    assert state["type"] == "AdamW" and state["t"] == 1 and state["hyperparameters"]["weight_decay"] == 0.01
    other = tn.AdamW([tn.Parameter(np.ones(3))], lr=0.1)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.state[0]["m"], opt.state[0]["m"])
    with pytest.raises(ValueError, match="AdamW: expected betas"):
        tn.AdamW([p], betas=(0.9, 1.0))


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 100.0])
def test_clip_grad_norm_matches_pytorch(xp, max_norm):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    grads = [rng.standard_normal((4, 3)), rng.standard_normal(3)]
    params = [tn.Parameter(xp.zeros(g.shape)) for g in grads]
    for p, g in zip(params, grads):
        p.grad[...] = xp.asarray(g)
    tparams = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, g in zip(tparams, grads):
        p.grad = torch.tensor(g)
    total = tn.clip_grad_norm(params, max_norm)
    ttotal = torch.nn.utils.clip_grad_norm_(tparams, max_norm)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    assert total == pytest.approx(math.sqrt(sum((g * g).sum() for g in grads)), rel=1e-12)
    for p, t in zip(params, tparams):
        np.testing.assert_allclose(tn.to_numpy(p.grad), t.grad.numpy(), rtol=1e-12)
    clipped = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
    assert clipped <= max_norm + 1e-9


def test_clip_grad_norm_refuses_bad_arguments():
    with pytest.raises(ValueError, match="clip_grad_norm: expected max_norm to be a number > 0, got 0"):
        tn.clip_grad_norm([tn.Parameter(np.zeros(2))], 0)
    with pytest.raises(TypeError, match="clip_grad_norm: expected Parameters"):
        tn.clip_grad_norm([np.zeros(2)], 1.0)


def torch_lrs(make_scheduler, lr, steps=20):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def test_step_decay_matches_pytorch_steplr():
    torch = pytest.importorskip("torch")
    expected = torch_lrs(lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=6, gamma=0.5), 0.1)
    schedule = step_decay(0.1, step_size=6, gamma=0.5)
    np.testing.assert_allclose([schedule(t) for t in range(20)], expected, rtol=1e-12)


@pytest.mark.parametrize("warmup, start_factor, final_lr", [(5, 1 / 3, 0.0), (3, 0.1, 0.001), (0, 1.0, 0.0)])
def test_warmup_cosine_matches_pytorch_sequential_lr(warmup, start_factor, final_lr):
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler
    total = 20

    def make(opt):
        cosine = sched.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=final_lr)
        if warmup == 0:
            return cosine
        linear = sched.LinearLR(opt, start_factor=start_factor, total_iters=warmup)
        return sched.SequentialLR(opt, [linear, cosine], milestones=[warmup])

    expected = torch_lrs(make, 0.1, total)
    schedule = warmup_cosine(0.1, warmup, total, start_factor=start_factor, final_lr=final_lr)
    np.testing.assert_allclose([schedule(t) for t in range(total)], expected, rtol=1e-9, atol=1e-15)


def test_schedules_drive_an_optimizer_per_step_and_refuse_bad_arguments():
    p = tn.Parameter(np.zeros(1))
    opt = tn.SGD([p], lr=1.0)
    schedule = warmup_cosine(1.0, warmup=2, total=10)
    seen = []
    for step in range(10):  # per step: set the lr before each step
        opt.lr = schedule(step)
        p.grad[...] = 1.0
        opt.step()
        seen.append(opt.lr)
    assert p.data[0] == pytest.approx(-sum(seen))
    assert seen[0] < seen[1] < seen[2] == 1.0 > seen[3]
    with pytest.raises(ValueError, match="warmup_cosine: expected warmup to be an integer in"):
        warmup_cosine(0.1, 10, 10)
    with pytest.raises(ValueError, match="step_decay: expected step_size to be a positive integer"):
        step_decay(0.1, 0)
