"""Generative prior (fedsim.attacks.generative): tiny 8x8 digits, a VAE trained for a few dozen steps."""

from pathlib import Path

import pytest
import torch

from fedsim.attacks.generative import PriorMissing, aux_split, default_prior_path, get_prior, load_prior, train_prior
from fedsim.attacks.gradients import batch_gradient
from fedsim.attacks.inversion import INVERSION_METHODS, invert
from fedsim.attacks.inversion.objectives import gradient_distance
from fedsim.core.data import load_dataset
from fedsim.core.models.zoo import build_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    ds = load_dataset("digits")
    path = default_prior_path(tmp_path_factory.mktemp("run"), "digits", "vae")
    prior = train_prior("digits", latent_dim=8, hidden=32, steps=40, path=path)
    model = build_model("lenet5", ds.input_shape, 10, seed=0)
    return ds, prior, path, model


def test_aux_split_is_half_of_test_split():
    ds = load_dataset("digits")
    x, y = aux_split(ds)
    assert len(x) == (len(ds.test_x) + 1) // 2 and torch.equal(x, ds.test_x[0::2]) and torch.equal(y, ds.test_y[0::2])
    with pytest.raises(ValueError):
        aux_split(ds, "train")


def test_generative_methods_are_registered_as_such_and_reach_the_prior(tmp_path):
    """ggl and gias are the generative entries (no engine spec) and dispatch to fedsim.attacks.generative: without a
    prior file both stop with PriorMissing naming train_prior; the engine and analytic methods keep their kinds."""
    assert {n for n, m in INVERSION_METHODS.items() if m.kind == "generative"} == {"ggl", "gias"}
    assert INVERSION_METHODS["analytic-fc"].kind == "inversion" and INVERSION_METHODS["analytic-fc"].spec is None
    assert all(INVERSION_METHODS[n].spec is not None for n in ("ig", "geng", "dlg"))
    ds = load_dataset("digits")
    model = build_model("lenet5", ds.input_shape, 10, seed=0)
    g = batch_gradient(model, ds.normalize(ds.train_x[:1]), ds.train_y[:1])
    for name in ("ggl", "gias"):
        assert INVERSION_METHODS[name].spec is None and INVERSION_METHODS[name].run is not None
        with pytest.raises(PriorMissing, match="train_prior"):
            invert(name, model=model, gradients=g, labels=ds.train_y[:1], input_shape=ds.input_shape, steps=2,
                   prior_path=tmp_path / "nope.safetensors")


def test_safetensors_roundtrip_and_determinism(setup):
    ds, prior, path, _ = setup
    assert path.name == "digits_vae.safetensors" and path.parent.name == "priors" and path.exists()
    loaded = load_prior(path)
    assert loaded.latent_dim == 8 and loaded.image_shape == (1, 8, 8) and loaded.aux_part == "test-half"
    assert torch.equal(loaded.sample(3, seed=1), prior.sample(3, seed=1))
    again = train_prior("digits", latent_dim=8, hidden=32, steps=40)
    assert torch.equal(again.sample(2), prior.sample(2))
    s = prior.sample(5)
    assert s.shape == (5, 1, 8, 8) and float(s.min()) >= 0 and float(s.max()) <= 1
    assert get_prior(path).latent_dim == 8  # reused, not retrained


def test_missing_prior_error_says_how_to_train(tmp_path):
    ds = load_dataset("digits")
    model = build_model("lenet5", ds.input_shape, 10, seed=0)
    g = batch_gradient(model, ds.normalize(ds.train_x[:1]), ds.train_y[:1])
    with pytest.raises(PriorMissing, match="train_prior"):
        invert("ggl", model=model, gradients=g, labels=ds.train_y[:1], input_shape=ds.input_shape, steps=2,
               prior_path=tmp_path / "nope.safetensors")
    with pytest.raises(PriorMissing, match="no prior_path"):
        get_prior(None)


def test_missing_prior_trained_from_aux_and_cached(tmp_path):
    ds = load_dataset("digits")
    x, _ = aux_split(ds)
    path = tmp_path / "priors" / "digits_vae.safetensors"
    prior = get_prior(path, aux_images=x, latent_dim=4, hidden=16, steps=5)
    assert path.exists() and prior.latent_dim == 4


@pytest.mark.parametrize("method", ["ggl", "gias"])
def test_optimising_z_lowers_matching_loss(setup, method):
    ds, prior, path, model = setup
    x = ds.normalize(ds.train_x[:2])
    y = ds.train_y[:2]
    g = batch_gradient(model, x, y)
    res = invert(method, model=model, gradients=g, labels=y, input_shape=ds.input_shape, steps=30, mean=ds.mean,
                 std=ds.std, seed=0, prior_path=path, restarts=2, return_result=True)
    assert res.inputs.shape == (2, 1, 8, 8) and torch.isfinite(res.inputs).all()
    first = res.history[0][1]
    assert res.best_loss < first
    # the returned images really have that loss (labels sorted, as assigned)
    d = gradient_distance(batch_gradient(model, res.inputs, res.labels), g, "cosine")
    assert float(d) == pytest.approx(res.best_loss, rel=1e-3, abs=1e-9)
    again = invert(method, model=model, gradients=g, labels=y, input_shape=ds.input_shape, steps=30,
                   mean=ds.mean, std=ds.std, seed=0, prior_path=path, restarts=2)
    assert torch.equal(again, res.inputs)


def test_combining_restarts_never_raises_the_matching_loss(setup):
    ds, prior, path, model = setup
    x = ds.normalize(ds.train_x[:3])
    y = ds.train_y[:3]
    g = batch_gradient(model, x, y)
    kw = dict(model=model, gradients=g, labels=y, input_shape=ds.input_shape, steps=20, mean=ds.mean, std=ds.std,
              seed=1, prior_path=path, restarts=3, return_result=True)
    plain = invert("ggl", **kw)
    comb = invert("ggl", combine=True, **kw)
    assert comb.best_loss <= plain.best_loss + 1e-12
    d = gradient_distance(batch_gradient(model, comb.inputs, comb.labels), g, "cosine")
    assert float(d) == pytest.approx(comb.best_loss, rel=1e-3, abs=1e-9)


def test_shape_mismatch_and_unknown_option(setup):
    ds, prior, path, model = setup
    g = batch_gradient(model, ds.normalize(ds.train_x[:1]), ds.train_y[:1])
    with pytest.raises(ValueError, match="unknown options"):
        invert("ggl", model=model, gradients=g, labels=ds.train_y[:1], input_shape=ds.input_shape, steps=2,
               prior=prior, bogus=1)
    with pytest.raises(ValueError, match="generates"):
        invert("ggl", model=model, gradients=g, labels=ds.train_y[:1], input_shape=(1, 28, 28), steps=2,
               prior=prior)


def test_live_pipeline_ggl_uses_run_prior_or_fails_with_hint(tmp_path):
    from fedsim.attacks.generative import train_prior
    from fedsim.evaluation.attacking import attack_and_score, generative_options
    from fedsim.core.captures import iter_captures
    from tests.runfolder import make_run

    cfg, run = make_run(tmp_path / "run", **{"attack.inversion": "ggl", "attack.inversion_steps": 3,
                                             "attack.label_methods": "ilrg"})
    capture = next(iter(iter_captures(run)))
    rows = [r.to_json() for r in attack_and_score(capture, cfg.to_flat(), run)]
    inv = [r for r in rows if r["kind"] == "inversion"]
    assert len(inv) == 1 and not inv[0]["ok"] and "train_prior" in inv[0]["error"]
    assert generative_options(cfg, run) == {"prior_path": str(run / "priors" / "digits_vae.safetensors")}
    train_prior("digits", latent_dim=4, hidden=16, steps=5, path=run / "priors" / "digits_vae.safetensors")
    rows = [r.to_json() for r in attack_and_score(capture, cfg.to_flat(), run)]
    inv = [r for r in rows if r["kind"] == "inversion"]
    assert inv[0]["ok"], inv[0]
    assert inv[0]["num_images"] == 4 and "psnr" in inv[0]


def test_prior_autotrain_passes_public_aux_split(tmp_path):
    from fedsim.evaluation.attacking import generative_options
    from fedsim.core.config import from_flat
    from tests.runfolder import TINY

    cfg = from_flat({**TINY, "attack.inversion": "ggl", "attack.prior_autotrain": True,
                     "attack.prior_path": str(tmp_path / "p.safetensors")})
    opts = generative_options(cfg, tmp_path)
    assert opts["prior_path"] == str(tmp_path / "p.safetensors")
    assert torch.equal(opts["aux_images"], aux_split(load_dataset("digits"))[0])


def test_shift_augmentation_translates_with_zero_fill():
    """train_prior's default augmentation: every translation in [-1, 1]^2 once, content moved, border zero."""
    from fedsim.attacks.generative.prior import shifted_copies

    x = torch.zeros(2, 1, 5, 5)
    x[0, 0, 2, 3] = 1.0
    x[1, 0, 0, 0] = 1.0  # a corner pixel leaves the frame for the 5 shifts up or left
    out = shifted_copies(x, 1)
    assert out.shape == (18, 1, 5, 5) and torch.equal(out[:2], x) and torch.equal(shifted_copies(x, 0), x)
    moved = {tuple(int(v) for v in img.nonzero()[0, 1:]) for img in out[2::2]}
    assert moved == {(2 + dy, 3 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)} - {(2, 3)}
    assert float(out[3::2].sum()) == 3.0  # the corner survives only the shifts (0, 1), (1, 0), (1, 1)


def test_prior_file_records_its_settings_and_a_stale_one_is_retrained(tmp_path, caplog):
    """A cached prior is reused only when it was trained with the settings asked for: another step count or an
    old file without recorded settings is named stale and retrained (when public images allow it); without
    images the file is the user's own and loads as it is."""
    import json

    from safetensors.torch import load_file, save_file

    from fedsim.attacks.generative import stale_reasons

    x, _ = aux_split(load_dataset("digits"))
    path = tmp_path / "priors" / "digits_vae.safetensors"
    small = dict(latent_dim=4, hidden=16, arch="mlp")  # mlp: a format-1 file below has mlp weights
    first = get_prior(path, aux_images=x, steps=5, **small)
    assert first.settings["steps"] == 5 and stale_reasons(path, steps=5, **small) == []
    assert stale_reasons(path, steps=7, **small) == ["steps: 5 != 7"]
    # the default decoder (conv) and its default width
    assert stale_reasons(path, steps=5, latent_dim=4) == ["arch: 'mlp' != 'conv'", "hidden: 16 != 64"]
    with caplog.at_level("WARNING"):
        again = get_prior(path, aux_images=x, steps=7, **small)
    assert again.settings["steps"] == 7 and "steps: 5 != 7" in caplog.text
    assert load_prior(path).settings["steps"] == 7  # the file was replaced
    # a pre-settings (format 1) file: still loads, but is stale for a retraining caller
    meta = {"kind": "vae", "latent_dim": "4", "hidden": "16", "image_shape": "1,8,8", "dataset": "digits",
            "aux_part": "test-half", "format": "fedsim-prior-1"}
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata=meta)
    assert load_prior(old).settings == {} and load_prior(old).decoder.arch == "mlp"
    assert stale_reasons(old, steps=7, **small) == ["the file records no training settings (written before "
                                                    "fedsim-prior-2)"]
    assert get_prior(old, steps=99).settings == {}  # no images: used as given
    assert get_prior(old, aux_images=x, steps=3, **small).settings["steps"] == 3
    assert json.loads(__import__("safetensors").safe_open(str(old), "pt").metadata()["train"])["steps"] == 3
    with pytest.raises(ValueError, match="unknown prior training options"):
        stale_reasons(path, stepz=3)


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 10, 10)])
def test_conv_decoder_prior_generates_the_image_shape_and_round_trips(tmp_path, shape):
    """arch="conv": the transposed-conv decoder covers sizes not divisible by 4 (cropped) and loads back equal."""
    from fedsim.attacks.generative import train_prior

    images = torch.rand(20, *shape)
    prior = train_prior(images=images, arch="conv", hidden=8, latent_dim=3, steps=4,
                        path=tmp_path / "conv.safetensors")
    sample = prior.sample(3, seed=2)
    assert sample.shape == (3,) + shape and 0 <= float(sample.min()) and float(sample.max()) <= 1
    loaded = load_prior(tmp_path / "conv.safetensors")
    assert loaded.decoder.arch == "conv" and loaded.settings["aux_part"] == "given"
    assert torch.equal(loaded.sample(3, seed=2), sample)
    with pytest.raises(ValueError, match="arch"):
        train_prior(images=images, arch="gan", steps=1)


def test_sweep_prior_is_retrained_when_stale_and_kept_when_current(tmp_path, monkeypatch):
    """The sweep's shared prior (ensure_prior): a file with train_prior's current defaults is kept; one trained
    with other settings is retrained before the replays."""
    import fedsim.attacks.generative as generative
    from fedsim.core.config import from_flat
    from fedsim.lab.sweep.execute import ensure_prior
    from tests.runfolder import TINY

    path = tmp_path / "p.safetensors"
    train_prior("digits", latent_dim=4, hidden=16, steps=5, path=path)
    calls = []
    monkeypatch.setattr(generative, "train_prior", lambda **kw: calls.append(kw))
    cfg = from_flat({**TINY, "attack.inversion": "ggl", "attack.prior_autotrain": True, "attack.prior_path": str(path)})
    ensure_prior(cfg)
    assert calls == [{"dataset": "digits", "path": path, "arch": "conv"}]
    calls.clear()
    monkeypatch.setattr(generative, "stale_reasons", lambda p, **kw: [])  # as if trained with today's defaults
    ensure_prior(cfg)
    assert calls == []


def test_arch_prior_path_names_one_file_per_decoder():
    from fedsim.attacks.generative import arch_prior_path

    assert arch_prior_path("r/priors/digits_vae.safetensors", "conv") == Path("r/priors/digits_vae.safetensors")
    assert arch_prior_path("r/priors/digits_vae.safetensors", "mlp") == Path("r/priors/digits_vae-mlp.safetensors")
    with pytest.raises(ValueError, match="not one of"):
        arch_prior_path("p.safetensors", "gan")


@pytest.fixture(scope="module")
def two_decoders(tmp_path_factory):
    """A conv prior at the configured path and an MLP prior beside it (arch_prior_path)."""
    from fedsim.attacks.generative import arch_prior_path

    torch.set_num_threads(1)
    ds = load_dataset("digits")
    path = tmp_path_factory.mktemp("two") / "digits_vae.safetensors"
    train_prior("digits", arch="conv", latent_dim=4, hidden=16, steps=20, path=path)
    train_prior("digits", arch="mlp", latent_dim=4, hidden=16, steps=20, path=arch_prior_path(path, "mlp"))
    model = build_model("lenet5", ds.input_shape, 10, seed=0)
    x, y = ds.normalize(ds.train_x[:2]), ds.train_y[:2]
    return ds, path, model, y, batch_gradient(model, x, y)


def test_decoder_pick_keeps_the_lowest_criterion_and_equals_that_decoders_run(two_decoders):
    """prior_archs: one run per decoder, the reconstruction of the lowest criterion (no ground truth) is returned,
    bit-equal to the single-decoder run; the criteria are those the server computes of each reconstruction."""
    from fedsim.attacks.generative import arch_prior_path
    from fedsim.attacks.inversion.criterion import gradient_cosine_distance

    ds, path, model, y, g = two_decoders
    kw = dict(model=model, gradients=g, labels=y, input_shape=ds.input_shape, steps=12, mean=ds.mean, std=ds.std,
              seed=0, restarts=2, return_result=True)
    picked = invert("gias", prior_path=str(path), prior_archs="conv,mlp", **kw)
    single = {arch: invert("gias", prior_path=str(arch_prior_path(path, arch)), prior_arch=arch, **kw)
              for arch in ("conv", "mlp")}
    crit = {a: gradient_cosine_distance(model, t.inputs, t.labels, g) for a, t in single.items()}
    assert picked.options["prior_criteria"] == pytest.approx(crit, rel=1e-6)
    assert picked.options["prior_arch_chosen"] == min(crit, key=crit.get)
    assert torch.equal(picked.inputs, single[picked.options["prior_arch_chosen"]].inputs)
    assert picked.seconds >= max(t.seconds for t in single.values()) * 0.5
    from fedsim.attacks.inversion import INVERSION_METHODS  # the row's signal names the pick (read by the record)

    assert INVERSION_METHODS["gias"].trace_signals(picked, 2) == [f"self-tuned: decoder {picked.options['prior_arch_chosen']} by the criterion "
                                         f"(conv {crit['conv']:.3g}, mlp {crit['mlp']:.3g})"]


def test_decoder_pick_ties_below_the_float_floor_keep_the_first(two_decoders, monkeypatch):
    import fedsim.attacks.generative.invert as gen

    ds, path, model, y, g = two_decoders
    kw = dict(model=model, gradients=g, labels=y, input_shape=ds.input_shape, steps=3, mean=ds.mean, std=ds.std,
              seed=0, restarts=1, prior_path=str(path), return_result=True)
    values = iter([3e-7, 1e-8])  # both round-off: a tie, the first listed stays
    monkeypatch.setattr(gen, "gradient_cosine_distance", lambda *a, **k: next(values))
    assert invert("ggl", prior_archs=("mlp", "conv"), **kw).options["prior_arch_chosen"] == "mlp"
    values = iter([0.2, float("nan")])  # NaN never wins
    assert invert("ggl", prior_archs="conv,mlp", **kw).options["prior_arch_chosen"] == "conv"
    values = iter([0.2, 0.05])
    assert invert("ggl", prior_archs="conv,mlp", **kw).options["prior_arch_chosen"] == "mlp"
    with pytest.raises(ValueError, match="prior_archs"):
        invert("ggl", prior_archs="conv,gan", **kw)


def test_prior_archs_config_is_checked_before_work_and_each_file_required(tmp_path):
    from fedsim.attacks.generative import arch_prior_path
    from fedsim.core.config import from_flat
    from fedsim.core.errors import ConfigError
    from fedsim.evaluation.attacking import generative_options
    from fedsim.evaluation.preconditions import check_attack_inputs
    from tests.runfolder import TINY

    path = tmp_path / "p.safetensors"
    train_prior("digits", latent_dim=4, hidden=16, steps=2, path=path)
    flat = {**TINY, "attack.inversion": "gias", "attack.prior_path": str(path), "attack.enabled": True}
    with pytest.raises(ConfigError, match=r"attack.prior_archs: .*'gan'.*\('mlp', 'conv'\)"):
        check_attack_inputs(from_flat({**flat, "attack.prior_archs": "conv,gan"}), tmp_path)
    with pytest.raises(ConfigError, match="p-mlp.safetensors"):
        check_attack_inputs(from_flat({**flat, "attack.prior_archs": "conv,mlp"}), tmp_path)
    train_prior("digits", arch="mlp", latent_dim=4, hidden=16, steps=2, path=arch_prior_path(path, "mlp"))
    cfg = from_flat({**flat, "attack.prior_archs": "conv,mlp"})
    check_attack_inputs(cfg, tmp_path)
    assert generative_options(cfg, tmp_path) == {"prior_path": str(path), "prior_archs": "conv,mlp"}
    assert "prior_archs" not in generative_options(from_flat(flat), tmp_path)


def test_sweep_trains_a_prior_per_decoder(tmp_path, monkeypatch):
    import fedsim.attacks.generative as generative
    from fedsim.core.config import from_flat
    from fedsim.lab.sweep.execute import ensure_prior
    from tests.runfolder import TINY

    calls = []
    monkeypatch.setattr(generative, "train_prior", lambda **kw: calls.append(kw))
    path = tmp_path / "p.safetensors"
    ensure_prior(from_flat({**TINY, "attack.inversion": "gias", "attack.prior_autotrain": True,
                            "attack.prior_path": str(path), "attack.prior_archs": "conv,mlp"}))
    assert [(c["arch"], c["path"]) for c in calls] == [("conv", path), ("mlp", tmp_path / "p-mlp.safetensors")]
