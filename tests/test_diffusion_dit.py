"""Diffusion process and state DiT: schedules, exactness of inversion, shapes, label handling."""
import pytest
import torch

from dreamstate.diffusion import Diffusion, GaussianMixtureDenoiser, make_schedule
from dreamstate.dit import DIT_PRESETS, DiT, DiTConfig, StateDiT, edit_state, generate_states
from dreamstate.rwkv7 import RWKV7Config


def test_schedules():
    for kind in ("linear", "cosine", "cosine_lsnr"):
        ab = make_schedule(kind, 1000)
        assert ab.shape == (1000,) and (ab[1:] < ab[:-1]).all() and 0 < ab[-1] < 0.01 and ab[0] > 0.99
    with pytest.raises(ValueError, match="unknown schedule"): make_schedule("sigmoid")
    lam = Diffusion("cosine_lsnr", 1000).lam
    assert abs(lam[0] - 10) < 1e-6 and abs(lam[-1] + 10) < 1e-6


def test_log_snr_interpolation_inverts():
    d = Diffusion("cosine", 1000)
    t = torch.tensor([0.0, 0.5, 10.25, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(d.t_at(d.lambda_at(t)), t, atol=1e-9)
    assert torch.allclose(d.lambda_at(torch.arange(1000.0)), d.lam)
    ts = d.sample_times(50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 0 and torch.allclose(d.lambda_at(ts).diff(), d.lambda_at(ts).diff()[0].expand(49))


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_default_sampler_keeps_every_scale_with_the_exact_denoiser(prediction):
    "Known answer: independent Gaussian directions of scale 0.01…16 and 2-D ones; variance ±10%, mean ±0.03 scale."
    scales = torch.tensor([0.01, 0.05, 0.3, 1.0, 4.0, 16.0], dtype=torch.float64)
    d = Diffusion(prediction=prediction)
    g = torch.Generator().manual_seed(0)
    net = GaussianMixtureDenoiser(d, (0.3 * scales)[None], scales[None])
    x = d.sample(net, torch.randn(20_000, 6, generator=g), torch.zeros(20_000, dtype=torch.long)).double()
    ratio = x.var(0) / scales ** 2
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio
    assert ((x.mean(0) - 0.3 * scales).abs() / scales < 0.03).all()
    # the earlier default (DDIM, 25 steps evenly spaced in t, clamped cosine) fails the same check
    old = Diffusion("cosine", prediction=prediction)
    x = old.sample(GaussianMixtureDenoiser(old, (0.3 * scales)[None], scales[None]), torch.randn(20_000, 6, generator=g),
                   torch.zeros(20_000, dtype=torch.long), steps=25, solver="ddim", spacing="uniform").double()
    assert (x.var(0) / scales ** 2)[[0, -1]].max() < 0.5


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_default_sampler_on_a_gaussian_mixture(prediction):
    "Known answer: four 2-D modes (σ = 0.3); per-direction and within-mode variance ±10%, modes used equally."
    modes = torch.tensor([[-2.0, -2.0], [-2.0, 2.0], [2.0, -2.0], [2.0, 2.0]])
    d = Diffusion(prediction=prediction)
    g = torch.Generator().manual_seed(1)
    net = GaussianMixtureDenoiser(d, modes, 0.3)
    x = d.sample(net, torch.randn(20_000, 2, generator=g), torch.zeros(20_000, dtype=torch.long))
    k = ((x[:, None] - modes) ** 2).sum(-1).argmin(1)
    within = (x - modes[k]).var(0) / 0.09
    total = x.var(0) / net.sample_data(20_000, g).var(0)
    assert ((within > 0.9) & (within < 1.1)).all() and ((total > 0.9) & (total < 1.1)).all(), (within, total)
    assert (torch.bincount(k, minlength=4) / 20_000 - 0.25).abs().max() < 0.02
    with pytest.raises(ValueError, match="one t per batch"):
        net(x[:2], torch.tensor([3, 4]), None)


class Oracle(torch.nn.Module):
    "The exact ε-predictor for data concentrated at a point m: ε = (x - √ᾱ m)/√(1-ᾱ)."
    def __init__(self, diff, m): super().__init__(); self.diff, self.m = diff, m
    def forward(self, x, t, y):
        a, s = self.diff._a(t, x)
        return (x - a * self.m) / s


def test_ddim_with_exact_predictor_recovers_the_data_point():
    d = Diffusion("linear", 1000, "eps")
    m = torch.tensor([[1.5, -0.5]])
    x = d.ddim(Oracle(d, m), torch.randn(4, 2, generator=torch.Generator().manual_seed(0)), torch.zeros(4, dtype=torch.long), steps=20)
    assert torch.allclose(x, m.expand(4, 2), atol=1e-4)


class GaussOracle(torch.nn.Module):
    "The exact ε-predictor for data ~ N(0, σ²I): E[ε | x_t] = √(1-ᾱ) x_t / (ᾱσ² + 1 - ᾱ)."
    def __init__(self, diff, sigma): super().__init__(); self.diff, self.sigma = diff, sigma
    def forward(self, x, t, y):
        a, s = self.diff._a(t, x)
        return s * x / (a ** 2 * self.sigma ** 2 + s ** 2)


def test_ddim_inversion_roundtrip():
    "DDIM inversion then DDIM decoding returns the start point (exact predictor, fine steps)."
    d = Diffusion("cosine", 1000, "eps")
    net = GaussOracle(d, 0.5)
    x0 = torch.tensor([[0.3, -0.2, 0.1]])
    y = torch.zeros(1, dtype=torch.long)
    z = d.ddim_invert(net, x0, y, steps=200, t_end=600)
    back = d.ddim(net, z, y, steps=200, t_start=600)
    assert torch.isfinite(z).all() and (back - x0).abs().max() < 0.05


def test_v_and_eps_targets_agree():
    d = Diffusion("cosine", 100, "v")
    x0, noise, t = torch.randn(5, 3), torch.randn(5, 3), torch.randint(0, 100, (5,))
    xt = d.q_sample(x0, t, noise)
    a, s = d._a(t, x0)
    v = a * noise - s * x0
    for ti in range(5):
        class V(torch.nn.Module):
            def forward(self, x, tt, y, ti=ti): return v[ti:ti + 1]
        x0h, eh = d.predict(V(), xt[ti:ti + 1], int(t[ti]), None)
        assert torch.allclose(x0h, x0[ti:ti + 1], atol=1e-5) and torch.allclose(eh, noise[ti:ti + 1], atol=1e-5)


def test_dit_shapes_and_adaln_zero():
    cfg = DiTConfig(in_channels=8, input_size=16, num_classes=4, **DIT_PRESETS["DiT-T/4"])
    net = DiT(cfg)
    x = torch.randn(3, 8, 16, 16)
    out = net(x, torch.tensor([0, 10, 999]), torch.tensor([0, 3, 4]))
    assert out.shape == x.shape and out.abs().max() == 0
    with pytest.raises(ValueError, match="not divisible by patch size"):
        DiT(DiTConfig(in_channels=8, input_size=18, num_classes=4, **DIT_PRESETS["DiT-T/4"]))


def test_state_dit_generate_edit_roundtrip(tmp_path):
    rc = RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)
    names = ["a", "b", "c"]
    dcfg = DiTConfig(in_channels=rc.n_layer * rc.n_head, input_size=16, num_classes=3, **DIT_PRESETS["DiT-T/4"])
    with pytest.raises(ValueError, match="does not fit"):
        StateDiT(DiTConfig(in_channels=3, input_size=16, num_classes=3), rc, names)
    dit = StateDiT(dcfg, rc, names, mean=torch.randn(2 * 2 * 256), std=torch.rand(2 * 2 * 256) + 0.5)
    diff = Diffusion("cosine", 100)
    st = generate_states(dit, diff, "b", 4, steps=3, seed=1)
    assert st.wkv.shape == (2, 4, 2, 16, 16) and st.att_shift.shape == (2, 4, 32)
    st2 = generate_states(dit, diff, "b", 4, steps=3, seed=1)
    assert torch.equal(st.wkv, st2.wkv)
    ed = edit_state(dit, diff, st, ["a", "c", "a", "c"], strength=0.5, steps=3)
    assert ed.wkv.shape == st.wkv.shape
    with pytest.raises(ValueError, match="unknown label 'z'"):
        generate_states(dit, diff, "z", 2)
    img = dit.to_image(st.wkv.transpose(0, 1))
    assert torch.allclose(dit.from_image(img), st.wkv.transpose(0, 1), atol=1e-5)
    dit.save(tmp_path / "d.pt")
    back = StateDiT.load(tmp_path / "d.pt")
    assert torch.equal(generate_states(back, diff, "b", 4, steps=3, seed=1).wkv, st.wkv)


def _tiny_states(n_per=20, seed=0):
    "A `StateDataset` of random low-rank states for 3 personas (2 layers, 2 heads of 16×16)."
    from dreamstate.states import StateDataset
    rc = RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)
    g = torch.Generator().manual_seed(seed)
    names = ["a", "b", "c"]
    n = n_per * len(names)
    basis = torch.randn(5, 2 * 2 * 256, generator=g)
    wkv = (torch.randn(n, 5, generator=g) @ basis + torch.repeat_interleave(torch.randn(3, 2 * 2 * 256, generator=g), n_per, 0))
    meta = [{"label": names[i // n_per], "split": "train", "doc_id": i} for i in range(n)]
    return StateDataset(wkv.view(n, 2, 2, 16, 16), torch.randn(n, 2, 32, generator=g), torch.randn(n, 2, 32, generator=g), meta,
                        model_config=dict(vars(rc))), rc


def test_latent_model_from_a_precomputed_svd():
    "One SVD serves every model of the same states: the same basis, codes and residuals; an SVD of other states is refused."
    from dreamstate.dit import build_latent_model, latent_svd
    tr, rc = _tiny_states()
    svd = latent_svd(tr)
    for k in (2, 7):
        torch.manual_seed(0); a = build_latent_model(tr, k=k, hidden=16, depth=1)
        torch.manual_seed(0); b = build_latent_model(tr, k=k, hidden=16, depth=1, svd=svd)
        for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()): assert torch.equal(x, y), n
    with pytest.raises(ValueError, match="svd holds"):
        build_latent_model(tr, k=2, hidden=16, depth=1, layers=1, svd=svd)     # 2 layers' SVD for a 1-layer model


def test_latent_model_codes_generation_and_checkpoint(tmp_path):
    from dreamstate.dit import LatentStateModel, build_latent_model
    tr, rc = _tiny_states()
    lat = build_latent_model(tr, k=7, hidden=32, depth=1)
    z = lat.encode(tr.wkv)
    assert z.shape == (60, 14)
    assert torch.allclose(z.std(0), torch.ones(14), atol=1e-3)                 # unit-variance codes
    # centred, the data have rank ≤ 5 + 2 per layer: 7 components per layer reconstruct them
    assert float(lat.reconstruction_error(tr.wkv).max()) < 1e-6
    assert float(build_latent_model(tr, k=2, hidden=32, depth=1).reconstruction_error(tr.wkv).mean()) > 0.05
    with pytest.raises(ValueError, match="components"):
        build_latent_model(tr, k=1000)
    diff = Diffusion(prediction="v")
    st = generate_states(lat, diff, ["a", "b", "c"], 3, steps=4, seed=2)
    assert st.wkv.shape == (2, 3, 2, 16, 16)
    raw = generate_states(lat, diff, ["a", "b", "c"], 3, steps=4, seed=2, weights="raw")
    assert torch.equal(raw.wkv, st.wkv)                                        # before training, EMA = raw weights
    with pytest.raises(ValueError, match="weights must be"):
        generate_states(lat, diff, "a", 1, weights="best")
    ed = edit_state(lat, diff, st, "a", strength=0.3, steps=4)
    assert ed.wkv.shape == st.wkv.shape
    lat.save(tmp_path / "l.pt")
    back = LatentStateModel.load(tmp_path / "l.pt")
    assert torch.equal(generate_states(back, diff, ["a", "b", "c"], 3, steps=4, seed=2).wkv, st.wkv)


def test_ema_warm_up_follows_a_short_run():
    "After 20 updates the warm-up EMA is near the weights; a fixed 0.999 EMA would still be 98% initialisation."
    tr, rc = _tiny_states()
    from dreamstate.dit import build_latent_model
    lat = build_latent_model(tr, k=4, hidden=16, depth=1, ema_decay=0.999)
    w0 = [p.detach().clone() for p in lat.net.parameters()]
    for step in range(20):
        with torch.no_grad():
            for p in lat.net.parameters(): p.add_(1.0)
        lat.update_ema(lat, step)
    moved = [float(((e - a) / 20).mean()) for e, a in zip(lat.ema.parameters(), w0)]   # 1 = the EMA equals the weights
    assert min(moved) > 0.5, moved


def test_latent_residual_is_the_personas_complement():
    "With `residual`, generated states carry each persona's residual mean and variance outside the basis; without, none."
    from dreamstate.dit import build_latent_model
    tr, rc = _tiny_states(n_per=200)
    diff = Diffusion(prediction="v")
    y = tr.label_ids(tr.label_names)
    for residual in (True, False):
        lat = build_latent_model(tr, k=2, hidden=16, depth=1, residual=residual)
        st = generate_states(lat, diff, ["a"] * 400, 400, steps=4, seed=0)
        x = lat.normalise(st.wkv.transpose(0, 1)).view(400, 2, -1)
        out = x - torch.einsum("nlk,lkf->nlf", torch.einsum("nlf,lkf->nlk", x, lat.basis), lat.basis)
        real = lat.normalise(tr.wkv[y == 0]).view(200, 2, -1)
        real_out = real - torch.einsum("nlk,lkf->nlf", torch.einsum("nlf,lkf->nlk", real, lat.basis), lat.basis)
        ratio = float(out.var(0).sum() / real_out.var(0).sum())
        if residual:
            assert 0.85 < ratio < 1.15, ratio
            assert torch.allclose(out.mean(0), real_out.mean(0), atol=0.15 * float(real_out.std()))
        else:
            assert ratio < 1e-6 and float(out.abs().max()) < 1e-3


def test_one_layer_models_insert_their_layer_into_a_base():
    """`layers=1` (the paper's setting): the models see layer 1 only; generation puts it into the training
    mean state (other layer and shift vectors), editing into the edited state; save/load keeps the base."""
    import tempfile
    from pathlib import Path
    from dreamstate.dit import LatentStateModel, build_latent_model, build_state_dit
    tr, rc = _tiny_states()
    diff = Diffusion("cosine", 100, prediction="v")
    mean_wkv, mean_att, mean_ffn = tr.wkv.mean(0), tr.att_shift.mean(0), tr.ffn_shift.mean(0)
    dit = build_state_dit(tr, "DiT-T/4", layers=1)
    assert dit.net.cfg.in_channels == rc.n_head and dit.latent_shape == (2, 16, 16)
    assert torch.equal(dit.to_image(tr.wkv), dit.to_image(tr.wkv.clone().index_fill_(1, torch.tensor([0]), 7.0)))  # layer 0 unseen
    lat = build_latent_model(tr, k=3, hidden=16, depth=1, layers=1)
    assert lat.encode(tr.wkv).shape == (60, 3) and lat.basis.shape == (1, 3, 2 * 256)
    for m in (dit, lat):
        st = generate_states(m, diff, ["a", "b", "c"], 3, steps=3, seed=1)
        assert st.wkv.shape == (2, 3, 2, 16, 16)
        assert torch.equal(st.wkv[0], mean_wkv[0].expand(3, -1, -1, -1))              # the other layer: the training mean
        assert torch.equal(st.att_shift, mean_att[:, None].expand(-1, 3, -1))         # shifts: the mean over all personas
        assert torch.equal(st.ffn_shift, mean_ffn[:, None].expand(-1, 3, -1))
        assert not torch.allclose(st.wkv[1], mean_wkv[1].expand(3, -1, -1, -1))       # the generated layer is not the base
        src = tr.state([0, 25, 50])
        ed = edit_state(m, diff, src, ["b", "c", "a"], strength=0.5, steps=3)
        assert torch.equal(ed.wkv[0], src.wkv[0]) and torch.equal(ed.att_shift, src.att_shift)   # only layer 1 is edited
        assert torch.equal(ed.ffn_shift, src.ffn_shift) and not torch.equal(ed.wkv[1], src.wkv[1])
        with tempfile.TemporaryDirectory() as d:
            m.save(Path(d) / "m.pt")
            back = type(m).load(Path(d) / "m.pt")
        assert back.layers == 1 and torch.equal(back.base_wkv, mean_wkv)
        assert torch.equal(generate_states(back, diff, ["a", "b", "c"], 3, steps=3, seed=1).wkv, st.wkv)
    # an all-layer model has no base: its checkpoint keys are what they were before one-layer models existed
    assert not any(k.startswith("base_") for k in build_state_dit(tr, "DiT-T/4").state_dict())
    with pytest.raises(ValueError, match="no base state"):
        build_state_dit(tr, "DiT-T/4").base_state()
    with pytest.raises(ValueError, match="layer index in 0..1"):
        build_state_dit(tr, "DiT-T/4", layers=2)


def test_profile_layers():
    from dreamstate.config import load_profile
    from dreamstate.dit import profile_layers
    rc = RWKV7Config(vocab_size=256, n_layer=12, n_embd=64, head_size=16)
    assert profile_layers(load_profile("cpu"), rc) == "all" and profile_layers(load_profile("smoke"), rc) == "all"
    assert profile_layers(load_profile("paper"), rc) == 6 and profile_layers(load_profile("paper-smoke"), rc) == 1
    with pytest.raises(ValueError, match="state_layer = 12.*0..11"):
        profile_layers({"name": "x", "state_layer": 12}, rc)
    with pytest.raises(ValueError, match="state_layer = 'middle'"):
        profile_layers({"name": "x", "state_layer": "middle"}, rc)


def test_predict_is_named_and_options_are_keywords():
    "`predict` returns `Prediction(x0, eps)`; everything after the inputs is keyword-only."
    from dreamstate.diffusion import Prediction
    d = Diffusion("cosine", 100)
    net = GaussOracle(d, 0.5)
    x, y = torch.randn(3, 2), torch.zeros(3, dtype=torch.long)
    p = d.predict(net, x, 40, y, clip=10.0)
    assert isinstance(p, Prediction) and p.x0.shape == p.eps.shape == x.shape
    with pytest.raises(TypeError): d.predict(net, x, 40, y, 1.0)
    with pytest.raises(TypeError): d.ddim(net, x, y, 10)
    with pytest.raises(TypeError): d.loss(net, x, y, 0)
    with pytest.raises(TypeError): d.sdedit(net, x, y, 0.5)


def test_dit_named_parts():
    "The timestep embedder keeps `nn.Sequential` keys and takes its frequency size; `unpatchify` inverts patching."
    from dreamstate.dit import TimestepEmbedder, timestep_embedding
    emb = TimestepEmbedder(32, freq_size=64)
    assert [k for k in emb.state_dict()] == ["0.weight", "0.bias", "2.weight", "2.bias"] and emb[0].in_features == 64
    t = torch.tensor([0.0, 3.5, 999.0])
    assert torch.equal(emb(t), emb[2](emb[1](emb[0](timestep_embedding(t, 64)))))
    net = DiT(DiTConfig(in_channels=3, input_size=8, num_classes=2, patch_size=4, hidden=32, depth=1, heads=2))
    x = torch.randn(2, 3, 8, 8)
    tokens = x.view(2, 3, 2, 4, 2, 4).permute(0, 2, 4, 3, 5, 1).reshape(2, 4, 48)     # [B, g², p·p·C], patches row-major
    assert torch.equal(net.unpatchify(tokens), x)


def test_state_model_checkpoint_is_data_and_names_its_class(tmp_path):
    "`save` writes through `save_checkpoint` (no temporary left); `load` reads with weights_only and checks the class."
    from dreamstate.dit import LatentStateModel, build_latent_model
    tr, _ = _tiny_states()
    lat = build_latent_model(tr, k=2, hidden=16, depth=1)
    lat.save(tmp_path / "l.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["l.pt"]
    assert torch.load(tmp_path / "l.pt", weights_only=True)["kind"] == "LatentStateModel"
    from dreamstate.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="not a StateDiT"): StateDiT.load(tmp_path / "l.pt")
    assert torch.equal(LatentStateModel.load(tmp_path / "l.pt").basis, lat.basis)


def test_coordinate_normalisation_is_state_stats():
    "`state_statistics(norm='coordinate')` is the per-coordinate `StateStats` of the modelled states."
    from dreamstate.dit import state_statistics
    from dreamstate.states import StateStats
    tr, _ = _tiny_states()
    st, ref = state_statistics(tr, "coordinate"), StateStats.fit(tr.wkv.flatten(1))
    assert torch.equal(st["std"], ref.std) and torch.equal(st["mean"], ref.mean)
