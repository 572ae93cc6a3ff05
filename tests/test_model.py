"""The network is the paper's: Table II's parameter counts, its depth study, its gate; older
checkpoints still load; the predictor pads and crops without shifting a pixel."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from maskface.training.checkpoint import model_from_checkpoint  # noqa: E402
from maskface.training.model import (  # noqa: E402
    RAUNet,
    UNetConfig,
    build_model,
    count_parameters,
)
from maskface.training.predict import Predictor  # noqa: E402
from maskface.training.registry import VARIANTS  # noqa: E402

# Hosen & Islam, Table II (millions, as printed) and the depth study, (width, depth) -> M.
TABLE_II = {"unet": 31, "attention-unet": 37, "ra-unet": 39}
DEPTH_STUDY = {(32, 3): 0.58, (64, 4): 9.68, (32, 6): 39.14, (64, 6): 156.5}


def test_table_ii_parameter_counts():
    for name, millions in TABLE_II.items():
        got = count_parameters(build_model(name)) / 1e6
        assert round(got) == millions, (name, got)
        assert abs(got - millions) / millions < 0.013, (name, got)  # printed without decimals
    assert abs(count_parameters(build_model("ra-unet")) / 1e6 - 39.05) < 0.005


@pytest.mark.parametrize(("shape", "millions"), list(DEPTH_STUDY.items()))
def test_depth_study_parameter_counts(shape, millions):
    got = count_parameters(build_model("ra-unet", *shape)) / 1e6
    # Within 0.5 %; the smallest is printed with two digits (0.585 M reads 0.58 or 0.59).
    tolerance = 0.01 if millions < 1 else 0.005
    assert abs(got - millions) / millions < tolerance, (shape, got)


def test_the_papers_layout():
    m = build_model("ra-unet", 8, 3)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in m.stem.modules())
    gate = m.ups[0].gate
    assert isinstance(gate.phi[1], torch.nn.ConvTranspose2d) and gate.upsample == "nearest"
    assert isinstance(m.head[1], torch.nn.BatchNorm2d)
    bn = build_model("ra-unet", 8, 3, norm="batch")
    assert isinstance(bn.stem.skip[1], torch.nn.BatchNorm2d)  # the shortcut too, as the paper
    for name in VARIANTS:
        y = build_model(name, 4, 3, mask_head=True)(torch.rand(2, 3, 32, 32))
        assert y.shape == (2, 4, 32, 32) and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vit")


def test_checkpoints_from_before_the_papers_layout_still_load():
    # maskface 0.1 stored no layout: BatchNorm after every conv, bare shortcut/phi/head convs.
    old = {"model": "ra-unet", "width": 4, "depth": 3, "in_channels": 3, "out_channels": 3,
           "residual": True, "attention": True}
    net = RAUNet(UNetConfig(**old, norm="batch", layout="maskface-0.1"))
    state = {}
    for k, v in net.state_dict().items():  # as 0.1 named them
        for new, was in (("skip.0.", "skip."), ("phi.0.", "phi."), ("head.0.", "head.")):
            if new in k:
                k = k.replace(new, was)
        state[k] = v
    m = model_from_checkpoint({"model": state, "model_config": old}, "old.pt")
    assert m.cfg.layout == "maskface-0.1" and m.cfg.norm == "batch"
    x = torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(m(x), net.eval()(x))


class Identity(torch.nn.Module):
    """Returns its input: a predictor around it must give back exactly what it was given."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.cfg = UNetConfig(depth=depth, width=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize(("h", "w"), [(64, 64), (61, 70), (33, 47)])
def test_the_predictor_pads_and_crops_in_place(h, w):
    p = Predictor(Identity(4), torch.device("cpu"), "fp32", 64, "identity")
    x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
    torch.testing.assert_close(p(x), x, rtol=0, atol=0)


def test_the_bundled_model_loads_without_pickle(monkeypatch):
    from maskface.training.checkpoint import DEFAULT_MODEL, load_model

    assert DEFAULT_MODEL.exists(), f"the bundled model is missing: {DEFAULT_MODEL}"
    assert DEFAULT_MODEL.stat().st_size <= 5_000_000

    def no_pickle(*a, **k):
        raise AssertionError("torch.load (pickle) used for the bundled model")

    monkeypatch.setattr(torch, "load", no_pickle)
    p = Predictor.load(DEFAULT_MODEL, "cpu")
    assert p.has_mask_head and p.image_size == 128
    _, info = load_model(DEFAULT_MODEL)
    assert "CelebA" in info["about"]["trained_on"] and info["about"]["train_command"]
    y = p.predict(torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0)))
    assert y.shape == (1, 4, 128, 128) and torch.isfinite(y).all()


class Recorder(Identity):
    """Returns its input and remembers the sizes it was given."""

    def __init__(self) -> None:
        super().__init__(depth=3)
        self.seen: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(tuple(x.shape[-2:]))
        return x


def test_crops_of_another_size_are_restored_at_the_models_own():
    rec = Recorder()
    p = Predictor(rec, torch.device("cpu"), "fp32", 64, "recorder")
    ramp = torch.linspace(0, 1, 128)
    x = (0.5 + 0.4 * torch.sin(6 * ramp)[None, :] * ramp[:, None]).expand(2, 3, 128, 128)
    y = p.predict_at_trained_size(x)
    assert rec.seen == [(64, 64)] and y.shape == x.shape
    assert (y - x).abs().mean() < 0.01  # a smooth picture survives the round trip
    p.predict_at_trained_size(torch.rand(1, 3, 64, 64))
    assert rec.seen[-1] == (64, 64)
