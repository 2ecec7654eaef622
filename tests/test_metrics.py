"""The evidence's instruments against their known answers: the ODE likelihood of a Gaussian, the closed-form
density baselines, density/coverage, and the Fréchet distance against scipy's matrix square root."""
import math

import numpy as np
import pytest
import torch
from scipy import linalg
from scipy.stats import multivariate_normal

from dreamstate.diffusion import NoiseSchedule
from dreamstate.metrics import (DensityBaseline, density_coverage, fit_on_validation, frechet_distance, gaussian_eps,
                                ode_log_likelihood)


def _gaussian(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g, dtype=torch.float64)
    return 0.3 * torch.randn(D, generator=g, dtype=torch.float64), A @ A.T / D + 0.05 * torch.eye(D, dtype=torch.float64)


@pytest.mark.parametrize("probes", [0, 1])
def test_ode_likelihood_of_a_gaussian_is_its_closed_form(probes):
    D = 8 if probes == 0 else 48
    mu, S = _gaussian(D)
    x = torch.distributions.MultivariateNormal(mu, S).sample((200,)).float()
    true = torch.distributions.MultivariateNormal(mu, S).log_prob(x.double())
    lam = NoiseSchedule("cosine_lsnr", 1000).lambda_at(torch.linspace(999, 0, 48, dtype=torch.float64))
    ll = ode_log_likelihood(gaussian_eps(mu, S), x, lam, probes=probes, generator=torch.Generator().manual_seed(1))
    assert abs(float(ll.mean() / true.mean()) - 1) < 0.01
    if probes == 0: assert float((ll - true).abs().max()) < 0.05 * float(true.abs().mean())   # exact trace: every row, not just the mean
    # the control that must fail: a wrong density (the covariance doubled) gives another answer
    wrong = ode_log_likelihood(gaussian_eps(mu, 2 * S), x, lam, probes=probes, generator=torch.Generator().manual_seed(1))
    assert abs(float(wrong.mean() / true.mean()) - 1) > 0.05


def test_closed_form_densities():
    g = np.random.default_rng(0)
    W = g.standard_normal((10, 3))
    X = g.standard_normal((1200, 3)) @ W.T + 0.2 * g.standard_normal((1200, 10))
    y = np.repeat([0, 1], 600); X[y == 1] += 1.5
    for kind, kw in (("lw", {}), ("ppca", {"q": 3})):
        d = DensityBaseline(kind, **kw).fit(X, y)
        if kind == "lw": mu, C = d.parts[1][0], d.parts[1][1]
        else:
            mu, V, ell, s2 = d.parts[1]; C = V.T @ np.diag(ell) @ V + s2 * (np.eye(10) - V.T @ V)
        assert np.allclose(d.log_prob(X[y == 1], y[y == 1]), multivariate_normal(mu, C).logpdf(X[y == 1]))
    best, scores = fit_on_validation("ppca", X, y, [1, 3, 6])
    assert best.q == 3 and len(scores) == 3                                 # the planted rank is found on validation
    gmm, _ = fit_on_validation("gmm", X, y, [1, 2])
    s = gmm.sample(y, seed=0)
    assert s.shape == X.shape and abs(s[y == 1].mean() - X[y == 1].mean()) < 0.1
    with pytest.raises(ValueError, match="unknown density kind"):
        DensityBaseline("kde")


def test_density_coverage_and_frechet():
    g = np.random.default_rng(0)
    A, B = g.standard_normal((600, 4)), g.standard_normal((600, 4))
    d, c = density_coverage(A, B)
    assert 0.85 < d < 1.15 and c > 0.9
    assert density_coverage(A, B + 20) == (0.0, 0.0)
    Sa, Sb = np.cov(A, rowvar=False), np.cov(B * 2, rowvar=False)
    ref = float(((A.mean(0) - 2 * B.mean(0)) ** 2).sum() + np.trace(Sa + Sb - 2 * np.real(linalg.sqrtm(Sa @ Sb))))
    assert math.isclose(frechet_distance(A, 2 * B), ref, rel_tol=1e-8)
    # singular covariances (fewer samples than dimensions): finite, non-negative, and 0 for a set against itself
    C = g.standard_normal((5, 20))
    assert abs(frechet_distance(C, C)) < 1e-5 and frechet_distance(C, C + 1) >= 20 - 1e-5


def test_build_fingerprint_follows_the_weights_not_the_file(tmp_path):
    """Notebook 05 exports the LM again whenever it reruns. Handed a file name, torch.save names the zip's inner folder after
    it, and save_checkpoint writes through a temporary file of a random name: the same weights got another file hash each
    time. save_checkpoint now hands torch.save the open file, so the bytes are the same; and the fingerprint, which hashes
    the weights, must stay the same for the same weights and change with any one of them."""
    import types
    from dreamstate.checkpoint import save_checkpoint
    from dreamstate.config import checkpoint_sha256
    from dreamstate.metrics import build_fingerprint
    P, pth = types.SimpleNamespace(build_dir=tmp_path), tmp_path / "lm" / "rwkv7.pth"
    sd = {"w": torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), "b": torch.zeros(3)}
    fps, files = [], []
    for _ in range(2):                                   # the same weights, saved twice
        save_checkpoint(sd, pth)
        fps.append(build_fingerprint(P)); files.append(checkpoint_sha256(pth))
    assert files[0] == files[1]                          # a random file hash made every record look like another build's
    assert fps[0] == fps[1] and list(fps[0]) == ["lm/rwkv7.pth:weights"]
    sd["b"][0] = 1e-6; save_checkpoint(sd, pth)
    assert build_fingerprint(P) != fps[0]
