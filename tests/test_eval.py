"""Metrics against scikit-image, ``maskface eval`` with a tiny checkpoint, ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")  # the fixture generates its shards

from click.testing import CliRunner  # noqa: E402

from maskface.cli import main  # noqa: E402
from maskface.training.composite import change_mask, composite  # noqa: E402
from maskface.training.metrics import masked_mae, masked_psnr, masked_ssim  # noqa: E402
from maskface.training.predict import Predictor  # noqa: E402


def test_masked_metrics_agree_with_scikit_image(astronaut):
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = astronaut[100:228, 150:278].astype(np.float64) / 255
    b = a.copy()
    mask = np.zeros(a.shape[:2], bool)
    mask[60:110, 30:100] = True
    b[mask] = np.clip(b[mask] + rng.normal(0, 0.1, b[mask].shape), 0, 1)
    ta, tb = (torch.tensor(x).permute(2, 0, 1)[None] for x in (a, b))
    tm = torch.tensor(mask, dtype=torch.float32)[None, None]
    _, full = structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=True, full=True)
    # scikit-image's mean SSIM is its map without a 5 px border; ours over the mask is the
    # same map averaged over masked pixels.
    inner = np.zeros_like(mask)
    inner[5:-5, 5:-5] = True
    want = full[mask & inner].mean()
    assert masked_ssim(ta, tb, tm).item() == pytest.approx(want, abs=1e-5)
    mse = ((a - b) ** 2)[mask].mean()
    assert masked_psnr(ta, tb, tm).item() == pytest.approx(10 * np.log10(1 / mse), abs=1e-4)
    assert masked_mae(ta, tb, tm).item() == pytest.approx(np.abs(a - b)[mask].mean(), abs=1e-6)
    # Outside the mask the images are equal: the whole-image error is diluted, not the masked.
    assert masked_mae(ta, tb, 1 - tm).item() == 0


def test_composite_keeps_what_the_model_did_not_change(astronaut):
    x = torch.tensor(astronaut[:128, 150:278]).permute(2, 0, 1)[None].float() / 255
    y = x + 0.01 * torch.randn_like(x)  # a faithful output, with small errors everywhere
    y[..., 40:90, 30:100] = 0.9  # and one region it really changed
    w = change_mask(x, y)
    assert w[..., 50:80, 40:90].min() > 0.99 and w[..., :20, :].max() == 0
    c = composite(x, y, w)
    assert torch.equal(c[..., :20, :], x[..., :20, :])


@pytest.fixture(scope="module")
def data_and_checkpoint(tmp_path_factory, face_folder) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    res = CliRunner().invoke(main, [
        "generate", "--no-progress", "--src", str(face_folder), "--out", str(data), "--size",
        "64", "--per-face", "all", "--types", "surgical,cloth,kn95", "--split-ratios",
        "0.5,0,0.5", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(main, [
        "train", "--data", str(data), "--out", str(root / "run"), "--width", "8", "--depth",
        "3", "--batch-size", "4", "--workers", "0", "--max-steps", "40", "--lr", "3e-3"],
        catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return data, root / "run" / "checkpoints" / "last.pt"


def test_eval_writes_the_report_with_baselines(tmp_path, data_and_checkpoint):
    data, ck = data_and_checkpoint
    out = tmp_path / "report"
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(ck), "--checkpoint", str(ck),
                                    "--data", str(data), "--out", str(out), "--device", "cpu",
                                    "--timing-batch", "2"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    n = json.loads((data / "manifest.json").read_text())["splits"]["test"]["pairs"]
    assert report["samples"] == n and report["split"] == "test"
    methods = report["methods"]
    # Two checkpoints with the same model name get told apart by their run.
    nets = [k for k in methods if k.startswith("ra-unet") and "composite" not in k]
    assert len(nets) == 2 and len(set(nets)) == 2
    assert {"masked-input", "telea", "navier-stokes"} <= set(methods)
    for m in methods.values():
        assert m["samples"] == n
        assert set(m["per_type"]) <= {"surgical", "cloth", "kn95"} and m["per_type"]
        assert sum(t["samples"] for t in m["per_type"].values()) == n
    # The masked input is the clean image outside the mask: masked-region scores are far
    # below whole-image ones, and inpainting with the true mask does better than nothing.
    mi, telea = methods["masked-input"], methods["telea"]
    assert mi["psnr_masked"] < mi["psnr"] - 3
    assert telea["psnr_masked"] > mi["psnr_masked"]
    net = methods[nets[0]]
    assert net["ms_per_sample_b1"] > 0 and net["samples_per_s"] > 0
    assert net["precision"] == "fp32" and "CPU" in net["device"]
    assert 0 <= methods[f"{nets[0]} +composite"]["mask_iou"] <= 1
    md = (out / "report.md").read_text()
    assert "| telea |" in md and "SSIM" in md and "per mask type" in md
    import cv2

    sheet = cv2.imread(str(out / "sheet.png"))
    # Columns: masked, telea, navier-stokes, two nets and their composites, clean.
    assert sheet is not None and sheet.shape[1] == 8 * 128


def test_predictor_restores_any_size_batch(data_and_checkpoint):
    _, ck = data_and_checkpoint
    p = Predictor.load(ck, "cpu")
    assert p.image_size == 64 and p.multiple == 4
    img = np.random.default_rng(0).integers(0, 255, (2, 50, 70, 3), dtype=np.uint8)
    out = p.restore(img)  # sides not multiples of 4: padded inside, cropped back
    assert out.shape == img.shape and out.dtype == np.uint8
    assert p.restore(img[0]).shape == img[0].shape


def test_onnx_export_matches_pytorch(tmp_path, data_and_checkpoint):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _, ck = data_and_checkpoint
    path = tmp_path / "m.onnx"
    res = CliRunner().invoke(main, ["export", str(ck), "--onnx", str(path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["max_abs_diff"] < 1e-4
    # Independently of export's own check: another size and batch through onnxruntime.
    p = Predictor.load(ck, "cpu")
    x = torch.rand(3, 3, 96, 32, generator=torch.Generator().manual_seed(5))
    got = ort.InferenceSession(str(path)).run(None, {"masked": x.numpy()})[0]
    np.testing.assert_allclose(got, p.predict(x).numpy(), atol=1e-4)  # RGB and the mask


def test_a_refill_model_exports_both_its_passes(tmp_path, data_and_checkpoint):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import onnx

    from maskface.training.checkpoint import load_checkpoint, save_checkpoint

    _, ck = data_and_checkpoint
    state = load_checkpoint(ck)
    if not state["model_config"].get("mask_head"):
        pytest.skip("the fixture's model has no mask head")
    state["model_config"]["refill"] = True
    # A mask head that marks every pixel, so the graph's second pass really paints a hole.
    state["model"]["head.1.weight"][3] = 0.0
    state["model"]["head.1.bias"][3] = 20.0
    refill = tmp_path / "refill.pt"
    save_checkpoint(refill, state)
    path = tmp_path / "r.onnx"
    res = CliRunner().invoke(main, ["export", str(refill), "--onnx", str(path)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["maskface.passes"] == "2"
    p = Predictor.load(refill, "cpu")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    got = ort.InferenceSession(str(path)).run(None, {"masked": x.numpy()})[0]
    want = p.predict(x)
    one_pass = p.model(x).detach()
    assert (want[:, :3] - one_pass[:, :3]).abs().max() > 0.01, "the second pass must run"
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


def test_both_passes_in_one_graph_equal_the_two_passes():
    from maskface.training.refill import BothPasses, two_pass

    class Finder(torch.nn.Module):  # a mask where the input is red; paints blue there
        def forward(self, x):
            prob = (x[:, :1] > 0.9).float()
            blue = torch.tensor([0.1, 0.2, 0.9]).view(1, 3, 1, 1)
            return torch.cat([torch.where(prob > 0, blue, x * 0.9), prob], dim=1)

    x = torch.full((2, 3, 64, 64), 0.4)
    x[0, 0, 30:50, 10:54] = 1.0  # the first image wears a mask, the second none
    torch.testing.assert_close(BothPasses(Finder())(x), two_pass(Finder(), x))


def test_eval_refuses_a_missing_split(tmp_path, data_and_checkpoint):
    data, ck = data_and_checkpoint
    res = CliRunner().invoke(main, ["eval", "--checkpoint", str(ck), "--data", str(data),
                                    "--split", "val", "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and "split" in res.output
