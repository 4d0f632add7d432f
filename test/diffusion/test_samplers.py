"""zerotoml/diffusion/samplers.py without training: the named samplers of the examples, fed a 2-D
Gaussian mixture's exact noise, score or velocity, carry their cost in network evaluations (counted
by a wrapper around the closed form), land closer to the data than the prior noise, and are laid
out as result.json and the notes' tables have them."""

import torch

from zerotoml.diffusion import DDPM, VPSDE, FlowMatching, NoiseSchedule, marginal
from zerotoml.diffusion.mixture import GaussianMixture, noise, velocity
from zerotoml.diffusion.flow_matching import ot_coefficients
from zerotoml.diffusion.samplers import (ScoreFromNoise, ddpm_samplers, flow_samplers, markdown_table, measure,
                                         nfe_table, score_samplers)
from zerotoml.generic import forward
from zerotoml.metrics import energy_distance

f64 = torch.float64
P = GaussianMixture(torch.tensor([0.5, 0.5], dtype=f64), torch.tensor([[-1.5, 0.0], [1.5, 0.0]], dtype=f64),
                    0.1 * torch.eye(2, dtype=f64).expand(2, 2, 2))
LINEAR = NoiseSchedule.linear(1000, dtype=f64)


class Counted:
    """A closed form f(x, t) that counts its calls (one call = one network evaluation of a batch)."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.f(x, t)


def eps_of_step(x, i):  # ε(x, i) of DDPM's linear schedule at integer steps
    α, σ = marginal(LINEAR, i[:1].long())
    return noise(P, x, α[0], σ[0])


def eps_of_time(x, t):  # ε(x, t) of the VP SDE at times in [0, 1]
    α, σ = marginal(VPSDE(), t[:1])
    return noise(P, x, α[0], σ[0])


def v_exact(x, t):  # the OT path's velocity (σ_min = 1e-4), data at t = 1; t >= 1e-7 (Tweedie divides by t)
    a, s, da, ds = ot_coefficients(max(float(t[0]), 1e-7), 1e-4)
    return velocity(P, x, a, s, da, ds)


def test_score_from_noise_is_the_exact_score():
    x = torch.randn(50, 2, dtype=f64, generator=torch.Generator().manual_seed(0))
    t = torch.full((50,), 0.3, dtype=f64)
    α, σ = marginal(VPSDE(), t[:1])
    want = P.moved(α[0], σ[0]).score(x)
    torch.testing.assert_close(forward(ScoreFromNoise(eps_of_time, VPSDE()), x, t), want)
    # a DDPM ε-model read at index T t − 1: t = 1 is its last step, T − 1
    seen = []
    forward(ScoreFromNoise(lambda y, i: seen.append(i) or y, VPSDE(), 1000.0, -1.0), x, torch.ones(50, dtype=f64))
    assert torch.equal(seen[0], torch.full((50,), 999.0, dtype=f64))


def test_every_sampler_counts_its_evaluations_and_beats_the_noise():
    f_step, f_time, f_v = Counted(eps_of_step), Counted(eps_of_time), Counted(v_exact)
    samplers = ddpm_samplers(DDPM(f_step, LINEAR), ancestral=(100,), ddim=(10, 50))
    samplers |= score_samplers(ScoreFromNoise(f_time, VPSDE()), VPSDE(), euler_maruyama_steps=(100,), pc=(50,),
                               ode=(10,))
    samplers |= flow_samplers(FlowMatching(f_v), "fm", euler=(20,), heun=(10,))
    assert list(samplers) == ["ddpm_100", "ddim_eta0_10", "ddim_eta0_50", "ddim_eta1_10", "ddim_eta1_50", "em_100",
                              "pc_50", "ode_rk4_10", "fm_euler_20", "fm_heun_10"]
    x_T = torch.randn(1000, 2, dtype=f64, generator=torch.Generator().manual_seed(1))
    data = P.sample(1000, generator=torch.Generator().manual_seed(2))
    for name, s in samplers.items():  # one batch each: the calls are the NFE
        before = f_step.calls + f_time.calls + f_v.calls
        s.run(x_T[:10], torch.Generator().manual_seed(0))
        assert f_step.calls + f_time.calls + f_v.calls - before == s.nfe, name
    methods, kept = measure(samplers, x_T, lambda x: energy_distance(x, data), metric="energy_distance",
                            chunk=500, keep=["ddim_eta0_50"], log=lambda _: None)
    prior = energy_distance(x_T, data)
    assert set(methods) == set(samplers) and list(kept) == ["ddim_eta0_50"] and kept["ddim_eta0_50"].shape == x_T.shape
    for name, m in methods.items():
        assert m["nfe"] == samplers[name].nfe and m["metric"] == "energy_distance" and m["seconds"] >= 0
        assert m["quality"] < 0.1 * prior, (name, m["quality"], prior)


def test_tables_have_a_row_per_sampler_and_per_family():
    methods = {"ddim_eta0_10": {"nfe": 10, "quality": 3.0, "metric": "fd", "seconds": 1.0},
               "ddim_eta0_50": {"nfe": 50, "quality": 2.0, "metric": "fd", "seconds": 4.0},
               "2rf_euler_1": {"nfe": 1, "quality": 5.0, "metric": "fd", "seconds": 0.1}}
    by_nfe = nfe_table(methods).splitlines()
    assert by_nfe[0] == "| fd (NFE →) | 1 | 10 | 50 |"
    assert by_nfe[2:] == ["| ddim_eta0 |  | 3 | 2 |", "| 2rf_euler | 5 |  |  |"]
    rows = markdown_table(methods, {"data vs data": 0.5}).splitlines()
    assert rows[0] == "| sampler | NFE | fd | seconds |" and len(rows) == 2 + 3 + 1
    assert rows[-1] == "| *data vs data* | 0 | 0.5 | |"
