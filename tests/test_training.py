"""The trainer on CPU: the model, SSIM against scikit-image, overfitting, exact resume,
checkpoints in a fresh process, DDP with two CPU ranks, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")  # the fixture generates its shards

from click.testing import CliRunner  # noqa: E402

from maskface.cli import main  # noqa: E402
from maskface.training.losses import ssim_l1  # noqa: E402
from maskface.training.metrics import psnr, ssim  # noqa: E402
from maskface.training.model import VARIANTS, build_model, count_parameters  # noqa: E402
from maskface.training.train import TrainError, load_checkpoint, load_model  # noqa: E402

TINY = ["--width", "8", "--depth", "3", "--batch-size", "4", "--workers", "0"]


def test_variants_and_sizes():
    sizes = {n: count_parameters(build_model(n)) for n in VARIANTS}
    # The paper reports ~39 M for its RA-UNet; ours follows its description (see model.py).
    assert 30e6 < sizes["ra-unet"] < 45e6
    assert sizes["unet"] < sizes["attention-unet"] < sizes["ra-unet"]
    m = build_model("attention-unet", 4, 3)
    y = m(torch.rand(2, 3, 32, 32))
    assert y.shape == (2, 3, 32, 32) and y.min() >= 0 and y.max() <= 1
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vit")


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


@pytest.fixture(scope="module")
def shards(tmp_path_factory, face_folder) -> Path:
    out = tmp_path_factory.mktemp("train") / "data"
    res = CliRunner().invoke(main, [
        "generate", "--no-progress", "--src", str(face_folder), "--out", str(out), "--size",
        "64", "--per-face", "all", "--types", "surgical,cloth,kn95", "--split-ratios",
        "0.5,0.5,0", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["splits"]["train"]["pairs"] >= 6 and m["splits"]["val"]["pairs"] >= 3
    return out


def train(*args: str) -> None:
    res = CliRunner().invoke(main, ["train", *TINY, *args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def losses(run: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if "loss" in x}


def test_a_tiny_model_overfits(tmp_path, shards):
    run = tmp_path / "overfit"
    train("--data", str(shards), "--out", str(run), "--max-steps", "80", "--lr", "3e-3",
          "--log-every", "10")
    curve = losses(run)
    assert curve[80] < curve[10] / 2, curve


def test_the_bf16_channels_last_path_learns_on_the_cpu(tmp_path, shards):
    # The CUDA default (bf16 autocast, channels_last) is the same code on the CPU: run it here,
    # where CI can, so a GPU session does not find its bugs first.
    run = tmp_path / "bf16"
    train("--data", str(shards), "--out", str(run), "--max-steps", "60", "--lr", "3e-3",
          "--log-every", "10", "--precision", "bf16")
    curve = losses(run)
    assert curve[60] < curve[10] / 1.5, curve
    val = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]
    # Validated under autocast too: sane numbers (a tiny model this early is still below the
    # masked input itself; a broken layout or dtype gives NaN or noise, under 10 dB).
    assert val["split"] == "val" and 12 < val["psnr"] < 60 and 0.3 < val["ssim"] <= 1, val
    ck = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ck["train_config"]["precision"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ck["model"].values() if v.is_floating_point())


def test_resume_equals_an_uninterrupted_run(tmp_path, shards):
    whole, split = tmp_path / "whole", tmp_path / "split"
    # Batch 2 and two loader workers: epochs of several steps, stopped in the middle of one.
    common = ["--data", str(shards), "--lr", "1e-3", "--log-every", "1", "--batch-size", "2",
              "--workers", "2"]
    train(*common, "--out", str(whole), "--max-steps", "12")
    train(*common, "--out", str(split), "--max-steps", "5")
    ck = load_checkpoint(split / "checkpoints" / "last.pt")
    assert ck["step"] == 5 and ck["step_in_epoch"] > 0, "the stop should fall mid-epoch"
    train(*common, "--out", str(split), "--max-steps", "12", "--resume")
    a, b = losses(whole), losses(split)
    assert set(a) == set(b)
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), (k, a, b)
    wa = load_checkpoint(whole / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(split / "checkpoints" / "last.pt")["model"]
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5)


def test_checkpoint_reloads_in_a_fresh_process(tmp_path, shards):
    run = tmp_path / "ck"
    train("--data", str(shards), "--out", str(run), "--max-steps", "3")
    ck = run / "checkpoints" / "last.pt"
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    here = load_model(ck)(x)
    code = ("import sys, torch; from maskface.training.train import load_model; "
            "x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)); "
            "torch.save(load_model(sys.argv[1])(x).detach(), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(ck), str(tmp_path / "y.pt")], check=True)
    torch.testing.assert_close(torch.load(tmp_path / "y.pt"), here.detach())


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
    with pytest.raises(TrainError, match="not a maskface checkpoint"):
        load_model(tmp_path / "junk.pt")


def test_missing_data_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "nope"), "--out",
                                    str(tmp_path / "o"), *TINY, "--max-steps", "1"])
    assert res.exit_code != 0 and "no data directory" in res.output


def test_ddp_with_two_cpu_ranks(tmp_path, shards):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", "29531", "-m", "maskface.cli",
           "train", "--data", str(shards), "--out", str(run), *TINY, "--batch-size", "1",
           "--max-steps", "4", "--log-every", "2", "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 4
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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", "29533", "-m", "maskface.cli",
           "train", "--data", str(shards), "--out", str(run), *TINY, "--batch-size", "1",
           "--max-steps", "100000", "--max-minutes", "0.03", "--log-every", "1",
           "--device", "cpu"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
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
