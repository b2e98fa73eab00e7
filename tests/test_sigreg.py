import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from lewm.losses import epps_pulley, sigreg


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_near_zero_for_gaussian_samples():
    torch.manual_seed(0)
    z = torch.randn(4, 4096, 32)
    value = sigreg(z, 256, gen()).item()
    # Under the null, E[n * distance] = int_{-3}^{3} (1 - exp(-t^2)) exp(-t^2 / 2) dt ~= 1.06.
    assert 0.85 < value < 1.25


@pytest.mark.parametrize("make", [
    lambda z: torch.zeros_like(z),  # collapsed to a point
    lambda z: z[:, :, :1].expand_as(z),  # collapsed to a line
    lambda z: z + 1.0,  # shifted
    lambda z: z * torch.linspace(0.1, 3.0, z.shape[-1]),  # anisotropic
])
def test_large_for_non_gaussian_samples(make):
    torch.manual_seed(0)
    z = torch.randn(4, 1024, 32)
    assert sigreg(make(z), 256, gen()).item() > 20 * max(sigreg(z, 256, gen()).item(), 0.05)


def test_scales_with_batch_size():
    # The statistic is n times a distance: for a fixed shift it grows linearly with n.
    torch.manual_seed(0)
    small = sigreg(torch.randn(1, 512, 8) + 0.5, 128, gen()).item()
    large = sigreg(torch.randn(1, 4096, 8) + 0.5, 128, gen()).item()
    assert 5 < large / small < 11


def test_epps_pulley_knots():
    p = torch.zeros(1, 10, 1)  # all mass at 0: phi_hat = 1
    t = torch.linspace(-3, 3, 33)  # the whole interval: the same knots as [0, 3] mirrored
    integrand = (1 - torch.exp(-t**2 / 2)) ** 2 * torch.exp(-t**2 / 2)
    expected = 10 * torch.trapezoid(integrand, t)
    torch.testing.assert_close(epps_pulley(p)[0, 0], expected)


def test_epps_pulley_golden():
    """The authors' statistic on a small fixed sample, computed by hand in numpy: the weighted
    distance between characteristic functions integrated over [-3, 3] by the trapezoid rule
    on 33 knots, times the sample size."""
    sample = np.array([[-1.3, 0.2, 0.7, 2.1, -0.4], [0.05, -2.2, 1.1, 0.3, 0.9]])  # (M, N)
    t = np.linspace(-3.0, 3.0, 33)
    expected = []
    for s in sample:
        re = np.cos(np.outer(t, s)).mean(1) - np.exp(-t**2 / 2)
        im = np.sin(np.outer(t, s)).mean(1)
        integrand = (re**2 + im**2) * np.exp(-t**2 / 2)
        dt = t[1] - t[0]
        expected.append(len(s) * dt * (integrand.sum() - (integrand[0] + integrand[-1]) / 2))
    p = torch.tensor(sample.T, dtype=torch.float64)[None]  # (T=1, N, M)
    np.testing.assert_allclose(epps_pulley(p)[0].numpy(), expected, rtol=1e-12)
    # Pinned so that a change of the rule on both sides at once is still caught.
    np.testing.assert_allclose(expected, [0.1738248, 1.0942965], atol=1e-7)


def test_the_empirical_cf_and_its_gradient_are_autograds():
    """EmpiricalCF (the hand-written gradient) against torch's autograd of the plain formula,
    and torch's numerical check of its gradient."""
    from lewm.losses import EmpiricalCF

    g = torch.Generator().manual_seed(0)
    p = torch.randn(3, 20, 7, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.linspace(0, 3, 17, dtype=torch.float64)
    re, im = EmpiricalCF.apply(p, t)
    x = p.unsqueeze(-1) * t
    want_re, want_im = torch.cos(x).mean(1), torch.sin(x).mean(1)
    torch.testing.assert_close(re, want_re, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(im, want_im, rtol=1e-12, atol=1e-14)
    w_re, w_im = torch.randn(2, 3, 7, 17, dtype=torch.float64, generator=g)
    got, = torch.autograd.grad((re * w_re + im * w_im).sum(), p)
    want, = torch.autograd.grad((want_re * w_re + want_im * w_im).sum(), p)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    assert torch.autograd.gradcheck(lambda q: EmpiricalCF.apply(q, t), (p,))


def test_gradients_are_finite():
    z = torch.zeros(3, 64, 16, requires_grad=True)
    with torch.no_grad():
        z[:, :32] = 1.0  # two points: a degenerate sample
    sigreg(z, 64, gen()).backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_directions_follow_the_generator():
    z = torch.randn(2, 128, 8)
    assert sigreg(z, 16, gen(1)) == sigreg(z, 16, gen(1))
    assert sigreg(z, 16, gen(1)) != sigreg(z, 16, gen(2))


def _worker(rank, world, port, z, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    share = z.shape[1] // world
    local = z[:, rank * share : (rank + 1) * share].clone().requires_grad_(True)
    value = sigreg(local, 64, gen(7))
    value.backward()
    out[rank] = torch.cat([value.detach().view(1), local.grad.flatten()])
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_same_statistic_on_two_gloo_ranks():
    torch.manual_seed(0)
    z = torch.randn(2, 64, 8) * 1.3 + 0.2
    whole = z.clone().requires_grad_(True)
    expected = sigreg(whole, 64, gen(7))
    expected.backward()
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), z, out), nprocs=2, join=True)
    for rank in range(2):
        value, grad = out[rank][0], out[rank][1:].view(2, 32, 8)
        torch.testing.assert_close(value, expected.detach(), rtol=1e-5, atol=1e-6)
        # Every rank computes the global statistic, and the gather's backward sums their
        # gradients: each rank holds world x its share, which DDP's gradient averaging
        # turns back into exactly the gradient of the global statistic.
        torch.testing.assert_close(grad, 2 * whole.grad[:, rank * 32 : (rank + 1) * 32],
                                   rtol=1e-4, atol=1e-6)
