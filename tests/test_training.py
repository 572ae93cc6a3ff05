"""The trainer on CPU: SSIM against scikit-image, the loader, overfitting, exact resume,
checkpoints in a fresh process, DDP with two CPU ranks, clear errors.

Needs torch, numpy and OpenCV only (as on a GPU machine): the shards are written by
``tests/pairs.py``, not by the generator, so MediaPipe is not needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402
from pairs import write_pairs  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from maskface.cli import main  # noqa: E402
from maskface.maskgen.shards import iter_samples  # noqa: E402
from maskface.training.augment import (  # noqa: E402
    TEXTURE_KEEP,
    grey_pairs,
    recolour_masks,
    rim_masks,
    texture_masks,
)
from maskface.training.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    load_model,
)
from maskface.training.data import ShardPairs, decode_pair  # noqa: E402
from maskface.training.losses import hole_l1, mask_loss, ssim_l1  # noqa: E402
from maskface.training.metrics import mask_iou, psnr, ssim  # noqa: E402
from maskface.training.train import TrainConfig, bare_pairs, learning_rate  # noqa: E402

TINY = ["--width", "8", "--depth", "3", "--batch-size", "4", "--workers", "0"]


def test_ssim_and_psnr_agree_with_scikit_image(astronaut):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    a = astronaut[100:228, 150:278].astype(np.float64) / 255
    b = np.clip(a + rng.normal(0, 0.06, a.shape), 0, 1)
    t = [torch.tensor(x).permute(2, 0, 1)[None] for x in (a, b)]
    ref = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True,
                                sigma=1.5, use_sample_covariance=True)
    assert ssim(*t).item() == pytest.approx(ref, abs=1e-5)
    assert psnr(*t).item() == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0),
                                            abs=1e-4)
    assert ssim_l1(t[0], t[0]).item() == pytest.approx(0.0, abs=1e-6)
    assert ssim_l1(*t, kind="mse").item() < ssim_l1(*t, kind="l1").item()


def test_mask_loss_and_iou():
    m = torch.zeros(2, 1, 16, 16)
    m[:, :, 4:12, 4:12] = 1
    assert mask_loss(m, m).item() < 0.01
    assert mask_loss(1 - m, m).item() > 1
    assert mask_iou(m, m).tolist() == [1.0, 1.0]
    half = m.clone()
    half[:, :, 8:] = 0
    assert mask_iou(half, m)[0].item() == pytest.approx(0.5)


def test_the_hole_loss_sees_only_the_mask_and_bare_pairs_are_clean_and_unmasked():
    clean = torch.rand(4, 3, 16, 16)
    m = torch.zeros(4, 1, 16, 16)
    m[:, :, 8:] = 1
    m[3] = 0  # a bare face: no mask, adds nothing
    pred = clean.clone()
    pred[:, :, :8] = 0  # wrong outside the mask only
    assert hole_l1(pred, clean, m).item() == 0
    pred[:, :, 8:] += 0.25
    assert hole_l1(pred, clean, m).item() == pytest.approx(0.25)

    masked = torch.zeros_like(clean)
    g = torch.Generator().manual_seed(0)
    x, mask = bare_pairs(masked, clean, m, 0.5, g)
    bare = [bool((x[i] == clean[i]).all()) for i in range(4)]
    assert 0 < sum(bare) < 4, "about half of the batch should be bare"
    for i in range(4):
        assert torch.equal(x[i], clean[i] if bare[i] else masked[i])
        assert torch.equal(mask[i], torch.zeros_like(m[i]) if bare[i] else m[i])


def test_a_rim_is_drawn_around_the_mask_and_the_mask_grows_to_cover_it():
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    m = torch.zeros(8, 1, 32, 32)
    m[:, :, 16:28, 6:26] = 1  # the mask's body
    m[:, :, 10:16, 6] = 1  # a strap, one pixel wide
    m[7] = 0  # a bare pair: nothing to draw around
    out, grown = rim_masks(x, m, 0.5, torch.Generator().manual_seed(0))
    rimmed = [not torch.equal(out[i], x[i]) for i in range(8)]
    assert 0 < sum(rimmed) < 8 and not rimmed[7]
    for i in range(8):
        # The mask only grows, and only where the input changed; the mask itself is kept.
        assert torch.all(grown[i] >= m[i])
        assert torch.equal(out[i][:, m[i, 0] > 0.5], x[i][:, m[i, 0] > 0.5])
        changed = (out[i] != x[i]).any(0)
        near = torch.nn.functional.max_pool2d(grown[i:i + 1], 3, stride=1, padding=1)[0, 0]
        assert torch.all(near[changed] > 0), "a rim beyond the mask the head learns"
        if not rimmed[i]:
            assert torch.equal(grown[i], m[i])
            continue
        assert grown[i, 0, 15, 16] == 1, "the band just above the body is part of the mask"
        assert grown[i, 0, 5:8, 16].sum() == 0, "a rim is at most 3 % of the side (1 px here)"
        assert grown[i, 0, 12, 8] == 0, "no rim around a thin strap"
    assert out.min() >= 0 and out.max() <= 1
    again = rim_masks(x, m, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out, again[0]) and torch.equal(grown, again[1])


def test_an_opaque_mask_hides_the_face_under_it_and_keeps_the_rest():
    # The mask region carries a strong pattern, as a rendered mask carries the face's shading.
    pattern = torch.zeros(1, 1, 32, 32)
    pattern[..., ::2, :] = 0.3
    x = (0.4 + pattern + 0.05 * torch.rand(8, 3, 32, 32, generator=torch.Generator()
                                              .manual_seed(3))).clamp(0, 1)
    m = torch.zeros(8, 1, 32, 32)
    m[:, :, 14:30, 4:28] = 1
    m[7] = 0  # a bare pair
    out = texture_masks(x, m, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :14], x[:, :, :14]), "pixels outside the mask must stay"
    opaque = [not torch.equal(out[i], x[i]) for i in range(8)]
    assert 0 < sum(opaque) < 8 and not opaque[7]
    p = pattern[0, 0, 14:30, 4:28] - pattern[0, 0, 14:30, 4:28].mean()
    for i in range(8):
        inside = out[i, :, 14:30, 4:28]
        # How much of the face's pattern is left: all of it, or at most TEXTURE_KEEP.
        left = float(((inside - inside.mean()) * p).sum() / (p * p).sum() / 3)
        if opaque[i]:
            assert left < TEXTURE_KEEP + 0.06, f"pair {i} still shows {left:.2f} of the face"
            # The mask keeps its own colour, on average.
            assert abs(float(inside.mean() - x[i, :, 14:30, 4:28].mean())) < 0.05
        else:
            assert left > 0.95
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, texture_masks(x, m, 0.5, torch.Generator().manual_seed(0)))


def test_a_recoloured_mask_changes_only_the_masks_pixels_and_grey_pairs_are_grey():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 16, 16, generator=g)
    m = torch.zeros(8, 1, 16, 16)
    m[:, :, 6:] = 1
    out = recolour_masks(x, m, 0.5, torch.Generator().manual_seed(0))
    inside = [not torch.allclose(out[i, :, 6:], x[i, :, 6:]) for i in range(8)]
    assert 0 < sum(inside) < 8, "about half of the masks should be recoloured"
    assert torch.equal(out[:, :, :6], x[:, :, :6]), "pixels outside the mask must stay"
    for i in range(8):
        if not inside[i]:
            assert torch.equal(out[i], x[i])
    assert out.min() >= 0 and out.max() <= 1
    # Same seed, same draw: a resumed run recolours as the uninterrupted one did.
    assert torch.equal(out, recolour_masks(x, m, 0.5, torch.Generator().manual_seed(0)))

    y = torch.rand(8, 3, 16, 16, generator=g)
    gx, gy = grey_pairs([x, y], 0.5, torch.Generator().manual_seed(0))
    grey = [bool((gx[i, 0] == gx[i, 1]).all() and (gx[i, 1] == gx[i, 2]).all())
            for i in range(8)]
    assert 0 < sum(grey) < 8
    for i in range(8):  # input and target turn grey together, or neither does
        assert torch.equal(gy[i, 0], gy[i, 2]) == grey[i]
        if not grey[i]:
            assert torch.equal(gx[i], x[i]) and torch.equal(gy[i], y[i])
        else:
            assert torch.allclose(gx[i, 0], 0.299 * x[i, 0] + 0.587 * x[i, 1] + 0.114 * x[i, 2])


def test_a_predicted_mask_is_grown_and_a_speck_is_no_mask():
    from maskface.training.composite import MASK_GROW, predicted_mask_weight

    prob = torch.zeros(2, 1, 100, 100)
    prob[0, :, 50:90, 20:80] = 0.9  # 24 % of the crop: a mask
    prob[1, :, 60:64, 40:44] = 0.9  # 0.16 %: a speck (teeth, a collar), not a mask
    w = predicted_mask_weight(prob)
    assert w[1].max() == 0, "a speck must not be blended"
    g = round(MASK_GROW * 100)
    assert (w[0, :, 50 - g:90 + g, 20 - g:80 + g] == 1).all()  # grown by MASK_GROW, whole
    assert w[0, :, :50 - 3 * g].max() == 0  # nothing far from it moves
    assert 0 < w[0, 0, 50 - g - 2, 50] < 1  # a feathered seam


def test_erased_pairs_are_grey_over_their_grown_mask_and_nothing_else():
    from maskface.training.refill import ERASE_GREY, ERASE_GROW, erase_masks

    x = torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    m = torch.zeros(8, 1, 64, 64)
    m[:, :, 32:48, 16:48] = 1
    m[7] = 0  # a bare pair: nothing to erase
    out, erased = erase_masks(x, m, 0.6, torch.Generator().manual_seed(0))
    assert not erased[7] and 0 < int(erased.sum()) < 7, erased
    lo, hi = (round(f * 64) for f in ERASE_GROW)
    for i in range(8):
        if not erased[i]:
            assert torch.equal(out[i], x[i])
            continue
        grey = (out[i] == ERASE_GREY).all(dim=0)
        assert grey[32:48, 16:48].all(), "the whole mask is erased"
        assert grey[32 - lo:48 + lo, 16 - lo:48 + lo].all(), "grown by at least the least"
        assert not grey[:32 - hi].any() and not grey[48 + hi + 1:].any(), "not beyond the most"
        assert torch.equal(out[i][:, ~grey], x[i][:, ~grey]), "the rest keeps its pixels"
    # Same seed, same draw: a resumed run erases as the uninterrupted one did.
    again, _ = erase_masks(x, m, 0.6, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_a_refill_model_paints_a_second_pass_that_sees_nothing_of_the_mask():
    from maskface.training.refill import ERASE_GREY, two_pass

    seen = []

    def net(x):  # says the red pixels are a mask; "restores" by painting blue
        seen.append(x.clone())
        prob = (x[:, :1] > 0.9).float()
        rgb = torch.where(prob > 0, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1), x)
        return torch.cat([rgb, prob], dim=1)

    x = torch.full((2, 3, 64, 64), 0.3)
    x[0, 0, 30:50, 10:54] = 1.0  # a red mask on the first image; the second wears none
    y = two_pass(net, x)
    assert len(seen) == 2 and len(seen[1]) == 1, "only the masked image is run again"
    second = seen[1][0]
    assert (second[:, 30:50, 10:54] == ERASE_GREY).all(), "the mask is erased before pass 2"
    assert second[0].max() < 0.9, "no pixel of the mask is left to copy"
    torch.testing.assert_close(y[0, 3], net(x[:1])[0, 3])  # the mask is the first pass's
    torch.testing.assert_close(y[1], net(x[1:])[0])  # a bare face: one pass, as it was
    # Pass 2 saw grey, not red, so the restored pixels are what it made of grey.
    assert torch.equal(y[0, :3, 40, 30], second[:, 40, 30])
    seen.clear()
    two_pass(net, x, always=True)  # timing a masked face: every image twice
    assert [len(b) for b in seen] == [2, 2]


def test_the_cosine_schedule_decays_to_a_floor_and_constant_stays():
    cos = TrainConfig(data="d", out="o", lr=1e-3, lr_schedule="cosine")
    assert learning_rate(cos, 0, 100) == pytest.approx(1e-3)
    assert learning_rate(cos, 50, 100) == pytest.approx(0.51e-3)
    assert learning_rate(cos, 100, 100) == pytest.approx(0.02e-3)
    assert learning_rate(cos, 500, 100) == pytest.approx(0.02e-3)
    assert learning_rate(TrainConfig(data="d", out="o", lr=1e-3), 50, 100) == 1e-3


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("train") / "data")


def train(*args: str) -> None:
    res = CliRunner().invoke(main, ["train", *TINY, *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def losses(run: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if "loss" in x}


# -- the loader ------------------------------------------------------------------------------
def test_a_pair_is_the_clean_image_outside_the_mask_and_flips_whole(shards):
    raw = next(iter_samples(next((shards / "train").glob("*.tar"))))
    p = decode_pair(raw)
    assert p["masked"].dtype == np.uint8 and p["masked"].shape == p["clean"].shape
    out = p["mask"] == 0
    assert np.array_equal(p["masked"][out], p["clean"][out])
    assert (p["masked"][~out] != p["clean"][~out]).any()
    f = decode_pair(raw, flip=True)
    for k in ("masked", "clean", "mask"):
        assert np.array_equal(f[k], p[k][:, ::-1]), k


def _digests(ds) -> list[str]:
    return [hashlib.sha1(b["masked"].numpy().tobytes()).hexdigest() for b in ds]


@pytest.mark.parametrize("workers", [0, 5])
def test_ranks_and_workers_read_disjoint_shares_of_every_sample(shards, workers):
    # 3 train shards of 8: with 5 workers, shards are cut into parts so every worker reads.
    everything = _digests(ShardPairs(shards, "train", shuffle=False, flip=False))
    assert len(everything) == 24 == len(set(everything))
    seen = []
    for rank in range(2):
        ds = ShardPairs(shards, "train", flip=False, rank=rank, world=2, workers=workers)
        ds.set_epoch(3)
        if workers:
            got = []
            for b in DataLoader(ds, batch_size=None, num_workers=workers):
                got.append(hashlib.sha1(b["masked"].numpy().tobytes()).hexdigest())
        else:
            got = _digests(ds)
        assert 10 <= len(got) <= 14, (rank, len(got))
        seen.append(got)
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(everything)


def test_persistent_workers_see_each_epoch(shards):
    ds = ShardPairs(shards, "train", flip=False, workers=2)
    loader = DataLoader(ds, batch_size=None, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        orders.append([hashlib.sha1(b["masked"].numpy().tobytes()).hexdigest() for b in loader])
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]
    fresh = ShardPairs(shards, "train", flip=False, workers=2)
    fresh.set_epoch(1)
    again = [hashlib.sha1(b["masked"].numpy().tobytes()).hexdigest()
             for b in DataLoader(fresh, batch_size=None, num_workers=2)]
    assert again == orders[1]  # the epoch decides the order: a resumed run replays it


# -- training --------------------------------------------------------------------------------
def test_a_tiny_model_learns(tmp_path, shards):
    run = tmp_path / "learns"
    train("--data", str(shards), "--out", str(run), "--max-steps", "80", "--lr", "3e-3",
          "--log-every", "10", "--augment", "none")
    curve = losses(run)
    # The paper's net without BatchNorm, 8 channels wide, on varied pictures: it falls from
    # ~0.82 to ~0.47 by step 80 (a trainer that does not learn stays near its first value).
    assert curve[80] < 0.65 * curve[10], curve


@pytest.fixture(scope="module")
def mask_head_run(tmp_path_factory, shards) -> Path:
    run = tmp_path_factory.mktemp("mask") / "run"
    train("--data", str(shards), "--out", str(run), "--max-steps", "150", "--lr", "3e-3",
          "--log-every", "50", "--mask-head", "--augment", "flip", "--width", "8",
          "--depth", "4")
    return run


def test_the_mask_head_learns_where_the_mask_is(mask_head_run):
    val = [json.loads(x) for x in (mask_head_run / "metrics.jsonl").read_text().splitlines()]
    assert val[-1]["split"] == "val" and val[-1]["mask_iou"] > 0.6, val[-1]
    model, info = load_model(mask_head_run / "checkpoints" / "last.pt")
    assert model.cfg.mask_head and info["model_config"]["mask_head"]


def test_eval_composites_by_the_predicted_mask(tmp_path, shards, mask_head_run):
    res = CliRunner().invoke(main, [
        "eval", "--checkpoint", str(mask_head_run / "checkpoints" / "last.pt"), "--data",
        str(shards), "--split", "val", "--out", str(tmp_path / "eval"), "--baselines",
        "masked-input", "--no-timing", "--device", "cpu"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "eval" / "report.json").read_text())["methods"]
    raw, comp = m["ra-unet"], m["ra-unet +composite"]
    assert raw["mask_head"] and comp["mask_from"] == "mask head" and comp["mask_iou"] > 0.6
    # Outside the found mask the composite is the input itself, exact where the input is.
    assert comp["psnr"] > raw["psnr"] and comp["psnr"] > m["masked-input"]["psnr"]


def test_a_shipped_model_file_holds_no_pickle_and_predicts_as_its_checkpoint(
        tmp_path, mask_head_run, monkeypatch):
    from maskface.training.predict import Predictor

    ck = mask_head_run / "checkpoints" / "last.pt"
    f = tmp_path / "model.safetensors"
    res = CliRunner().invoke(main, ["export", str(ck), "--safetensors", str(f), "--about",
                                    "trained_on=synthetic test pairs"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["path"] == str(f)  # the result alone on stdout: it parses
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    want = Predictor.load(ck, "cpu").predict(x)

    def no_pickle(*a, **k):
        raise AssertionError("torch.load (pickle) used for a safetensors file")

    monkeypatch.setattr(torch, "load", no_pickle)
    p = Predictor.load(f, "cpu")
    assert p.has_mask_head and p.image_size == 64
    torch.testing.assert_close(p.predict(x), want, atol=2 / 255, rtol=0)  # half-precision weights
    _, info = load_model(f)
    assert info["about"]["trained_on"] == "synthetic test pairs"
    st = pytest.importorskip("safetensors.torch")  # our writer speaks the real format
    assert set(st.load_file(str(f))) == set(p.model.state_dict())


def test_export_averages_two_models_weights_and_refuses_another_network(
        tmp_path, mask_head_run, shards):
    from maskface.training.checkpoint import save_checkpoint

    ck = mask_head_run / "checkpoints" / "last.pt"
    state = load_checkpoint(ck)
    other = tmp_path / "other.pt"  # the same network with every float tensor doubled
    save_checkpoint(other, state | {"model": {k: v * 2 if v.is_floating_point() else v
                                              for k, v in state["model"].items()}})
    f = tmp_path / "avg.safetensors"
    res = CliRunner().invoke(main, ["export", str(ck), "--safetensors", str(f), "--average",
                                    str(other), "--average-weight", "0.25"])
    assert res.exit_code == 0, res.output
    got = load_checkpoint(f)
    for k, v in state["model"].items():
        if v.is_floating_point():  # 0.75 x + 0.25 x 2x = 1.25 x, in half precision
            torch.testing.assert_close(got["model"][k], 1.25 * v, atol=1e-3, rtol=1e-3)
    assert got["about"]["averaged_with"] == str(other) and got["about"]["average_weight"] == "0.25"
    # Exported again, a model file keeps its provenance (its licence above all).
    licensed = tmp_path / "licensed.safetensors"
    CliRunner().invoke(main, ["export", str(ck), "--safetensors", str(licensed), "--about",
                              "license=research only"], catch_exceptions=False)
    again = tmp_path / "again.safetensors"
    res = CliRunner().invoke(main, ["export", str(licensed), "--safetensors", str(again)])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(again)["about"]["license"] == "research only"
    plain = tmp_path / "plain"
    train("--data", str(shards), "--out", str(plain), *TINY, "--max-steps", "1")
    res = CliRunner().invoke(main, ["export", str(ck), "--safetensors", str(tmp_path / "x.st"),
                                    "--average", str(plain / "checkpoints" / "last.pt")])
    assert res.exit_code != 0 and "only the same network averages" in res.output


def test_a_run_can_start_from_a_trained_model_and_refuses_another_network(
        tmp_path, shards, mask_head_run):
    trained = mask_head_run / "checkpoints" / "last.pt"
    run = tmp_path / "tuned"
    # A learning rate too small to move the weights: the run's weights are the trained ones.
    train("--data", str(shards), "--out", str(run), "--max-steps", "1", "--lr", "1e-12",
          "--mask-head", "--augment", "flip", "--width", "8", "--depth", "4",
          "--mask-recolour", "0.5", "--grey-fraction", "0.2", "--erase-fraction", "0.5",
          "--init", str(trained))
    want = load_checkpoint(trained)["model"]
    tuned = load_checkpoint(run / "checkpoints" / "last.pt")
    got = tuned["model"]
    # Learning to paint into an erased mask changes how the model is used (two passes), not
    # its shape, so a one-pass model can start it.
    assert tuned["model_config"]["refill"] and not load_checkpoint(trained)["model_config"][
        "refill"]
    for k, v in want.items():
        if v.is_floating_point() and "running" not in k:  # BatchNorm statistics move anyway
            torch.testing.assert_close(got[k], v, atol=1e-6, rtol=0)
    fresh = tmp_path / "fresh"
    train("--data", str(shards), "--out", str(fresh), "--max-steps", "1", "--lr", "1e-12",
          "--mask-head", "--augment", "flip", "--width", "8", "--depth", "4")
    other = load_checkpoint(fresh / "checkpoints" / "last.pt")["model"]
    assert any(not torch.allclose(other[k], v) for k, v in want.items()
               if v.is_floating_point())

    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out",
                                    str(tmp_path / "wrong"), *TINY, "--max-steps", "1",
                                    "--init", str(trained)])
    assert res.exit_code != 0 and "--init" in res.output and "width" in res.output
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out",
                                    str(tmp_path / "plain"), *TINY, "--no-mask-head",
                                    "--mask-recolour", "0.3", "--max-steps", "1"])
    assert res.exit_code != 0 and "--mask-head model" in res.output


def test_bf16_really_runs_in_bf16_and_learns(tmp_path, shards):
    # The CUDA default (bf16 autocast, channels_last) is the same code on the CPU: run it here,
    # where CI can, so a GPU session does not find its bugs first.
    fp32, bf16 = tmp_path / "fp32", tmp_path / "bf16"
    common = ["--data", str(shards), "--max-steps", "60", "--lr", "3e-3", "--log-every", "10",
              "--no-mask-head"]
    train(*common, "--out", str(bf16), "--precision", "bf16")
    train(*common, "--out", str(fp32), "--precision", "fp32", "--max-steps", "10")
    curve = losses(bf16)
    assert curve[60] < curve[10] / 1.5, curve
    # Same seed, same data: only bf16 arithmetic makes the first losses differ.
    assert curve[10] != pytest.approx(losses(fp32)[10], rel=1e-6)
    val = [json.loads(x) for x in (bf16 / "metrics.jsonl").read_text().splitlines()][-1]
    # Validated under autocast too: sane numbers (a tiny model this early is still below the
    # masked input itself; a broken layout or dtype gives NaN or noise, under 8 dB).
    assert val["split"] == "val" and 8 < val["psnr"] < 60 and 0.2 < val["ssim"] <= 1, val
    ck = load_checkpoint(bf16 / "checkpoints" / "last.pt")
    assert ck["train_config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())


def test_resume_equals_an_uninterrupted_run(tmp_path, shards):
    whole, split = tmp_path / "whole", tmp_path / "split"
    # Batch 2 and two persistent loader workers, the paper's colour jitter: epochs of several
    # steps, stopped in the middle of one.
    # The hole loss and bare pairs (drawn per step) resume exactly too.
    common = ["--data", str(shards), "--lr", "1e-3", "--log-every", "1", "--batch-size", "2",
              "--workers", "2", "--hole-weight", "1", "--bare-fraction", "0.3"]
    train(*common, "--out", str(whole), "--max-steps", "16")
    train(*common, "--out", str(split), "--max-steps", "5")
    ck = load_checkpoint(split / "checkpoints" / "last.pt")
    assert ck["step"] == 5 and ck["step_in_epoch"] > 0, "the stop should fall mid-epoch"
    train(*common, "--out", str(split), "--max-steps", "16", "--resume")
    a, b = losses(whole), losses(split)
    assert set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (k, a, b)
    wa = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(split / "checkpoints" / "last.pt")["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_a_cosine_run_resumes_only_over_the_length_it_was_planned_for(tmp_path, shards):
    run = tmp_path / "cos"
    common = ["--data", str(shards), "--out", str(run), "--lr-schedule", "cosine"]
    train(*common, "--max-steps", "3")
    res = CliRunner().invoke(main, ["train", *TINY, *common, "--max-steps", "6", "--resume"])
    assert res.exit_code != 0 and "max_steps" in res.output


def test_validation_and_checkpoints_come_by_steps(tmp_path, shards):
    run = tmp_path / "steps"
    train("--data", str(shards), "--out", str(run), "--max-steps", "14", "--log-every", "1",
          "--val-every", "5", "--checkpoint-every", "100", "--batch-size", "2")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x.get("split") == "val"] == [5, 10, 14]
    # Throughput is logged per interval from the second step on (the first compiles/warms).
    rates = [x["images_per_s"] for x in lines if "loss" in x]
    assert rates[0] is None and all(r and r > 0 for r in rates[1:])
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert "optimizer" not in best and "model" in best  # best.pt is for use, not resuming


def test_checkpoint_reloads_in_a_fresh_process(tmp_path, shards):
    run = tmp_path / "ck"
    train("--data", str(shards), "--out", str(run), "--max-steps", "3")
    ck = run / "checkpoints" / "last.pt"
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    here = load_model(ck)[0](x)
    code = ("import sys, torch; from maskface.training.checkpoint import load_model; "
            "x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)); "
            "torch.save(load_model(sys.argv[1])[0](x).detach(), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(ck), str(tmp_path / "y.pt")], check=True)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), here.detach())


def test_a_checkpoint_runs_no_code_when_loaded(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": {}, "model_config": {}, "evil": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="not a maskface checkpoint"):
        load_model(tmp_path / "evil.pt")
    assert not marker.exists()


def test_resuming_another_model_is_refused(tmp_path, shards):
    run = tmp_path / "other"
    train("--data", str(shards), "--out", str(run), "--max-steps", "2")
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out", str(run),
                                    "--width", "16", "--depth", "3", "--max-steps", "4",
                                    "--workers", "0", "--resume"])
    assert res.exit_code != 0 and "use the same --model" in res.output
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out", str(run), *TINY,
                                    "--seed", "7", "--max-steps", "4", "--resume"])
    assert res.exit_code != 0 and "seed" in res.output
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a maskface checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_resume_needs_a_checkpoint_unless_asked_and_a_run_is_never_overwritten(tmp_path,
                                                                               shards):
    run = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out", str(run), *TINY,
                                    "--max-steps", "2", "--resume"])
    assert res.exit_code != 0 and "no " in res.output and "--resume auto" in res.output
    assert not (run / "metrics.jsonl").exists()
    train("--data", str(shards), "--out", str(run), "--max-steps", "2", "--resume", "auto")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out", str(run), *TINY,
                                    "--max-steps", "4"])
    assert res.exit_code != 0 and "already holds a run" in res.output
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_a_run_far_over_the_memory_is_refused_before_it_starts(tmp_path, shards, monkeypatch):
    from maskface.training import train as train_module

    monkeypatch.setattr(train_module, "_memory_available", lambda device: 2**30)
    res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out", str(tmp_path / "m"),
                                    "--width", "64", "--depth", "5", "--batch-size", "64",
                                    "--workers", "0", "--max-steps", "1"])
    assert res.exit_code != 0 and "GiB" in res.output and "lower --batch-size" in res.output
    for bad in (["--width", "0"], ["--depth", "9"], ["--batch-size", "0"], ["--lr", "-1"]):
        res = CliRunner().invoke(main, ["train", "--data", str(shards), "--out",
                                        str(tmp_path / "b"), *TINY, *bad])
        assert res.exit_code == 2 and "Invalid value" in res.output, bad


def test_missing_data_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nope"), "--out",
                                    str(tmp_path / "o"), *TINY, "--max-steps", "1"])
    assert res.exit_code != 0 and "no data directory" in res.output


def _torchrun(port: int, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "maskface.cli",
           "train", *TINY, "--batch-size", "1", "--device", "cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_ddp_with_two_cpu_ranks(tmp_path, shards):
    run = tmp_path / "ddp"
    res = _torchrun(29531, "--data", str(shards), "--out", str(run), "--max-steps", "4",
                    "--log-every", "2")
    # The run ends by checking that both ranks hold the same weights (gradients averaged).
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
    assert json.loads(res.stdout)["step"] == 4  # one rank's metrics: a single JSON value
    assert 4 in losses(run)


def test_a_time_budget_stops_the_run_and_it_still_validates(tmp_path, shards):
    run = tmp_path / "budget"
    train("--data", str(shards), "--out", str(run), "--epochs", "100000", "--log-every", "1",
          "--max-minutes", "0.01")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["split"] == "val"
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert 0 < ck["step"] == max(losses(run)) and ck["epoch"] < 100000


def test_a_time_budget_stops_every_rank_at_the_same_step(tmp_path, shards):
    # Ranks reach the deadline at different moments; if they stopped on their own clocks, one
    # would wait for the other's all-reduce for ever (the timeout below would fail the test).
    run = tmp_path / "ddp-budget"
    res = _torchrun(29533, "--data", str(shards), "--out", str(run), "--max-steps", "100000",
                    "--max-minutes", "0.03", "--log-every", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert 0 < load_checkpoint(run / "checkpoints" / "last.pt")["step"] < 100000


def test_a_truncated_shard_stops_training_with_its_name(tmp_path, shards):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shards, data)
    shard = next((data / "train").glob("*.tar"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    res = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "o"),
                                    *TINY, "--max-steps", "3"])
    assert res.exit_code != 0 and shard.name in res.output


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("MASKFACE_SLOW"),
                    reason="torch.compile takes minutes on a 2-core CPU; MASKFACE_SLOW=1 runs it")
def test_compiled_training_runs(tmp_path, shards):
    run = tmp_path / "compiled"
    train("--data", str(shards), "--out", str(run), "--max-steps", "3", "--log-every", "1",
          "--compile")
    assert 3 in losses(run)
