"""``maskface train``: the whole training loop in one file.

Config, data, model, optimiser, bf16 autocast and channels_last on CUDA, optional
``torch.compile``, DDP when launched by ``torchrun``, validation each epoch, atomic checkpoints
and exact resume (model, optimiser, step, epoch, position in the epoch; the epoch's data order
is replayed from the seed, so resuming needs the same batch size, workers, seed and ranks).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .data import DataError, ShardPairs, image_size
from .losses import ssim_l1
from .metrics import psnr, ssim
from .model import build_model, count_parameters, model_from_config

log = logging.getLogger("maskface.train")


class TrainError(RuntimeError):
    """Training cannot go on (bad checkpoint, NaN loss...)."""


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    model: str = "ra-unet"
    width: int = 64
    depth: int = 5
    epochs: int = 40
    max_steps: int | None = None
    # Stop at the first log interval after this many minutes of this invocation (a budget on a
    # shared or rented machine); the run validates and checkpoints as at any other end.
    max_minutes: float | None = None
    batch_size: int = 8
    lr: float = 1e-4
    l1_weight: float = 1.0
    loss: str = "l1"  # "l1" (the paper's text) or "mse" (the paper's code)
    device: str = "auto"
    # "bf16": autocast to bfloat16 with channels_last tensors (the fast path on GPUs with tensor
    # cores); "fp32": the paper's plain precision; "auto": bf16 on CUDA, fp32 on the CPU.
    precision: str = "auto"
    compile: bool = False
    resume: bool = False
    seed: int = 0
    workers: int = 2
    checkpoint_every: int = 1000
    log_every: int = 50
    val_batches: int = 50
    val_every: int = 1  # epochs between validations (a --max-steps run also validates at its end)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {name}, but no CUDA device is available")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """Whether a model runs on the bf16 + channels_last path (see ``TrainConfig.precision``):
    one rule for training, evaluation and prediction."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", np.array(s["numpy"], np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a crash never leaves a half-written checkpoint under ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True`` (no code runs from the file)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError as e:
        raise TrainError(f"no checkpoint at {path}") from e
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise TrainError(f"{path} is not a maskface checkpoint ({e})") from e


def model_from_checkpoint(ck: dict, path: str | Path) -> torch.nn.Module:
    """The trained model a loaded checkpoint holds, rebuilt from the config it stores."""
    if "model_config" not in ck or "model" not in ck:
        raise TrainError(f"{path} is not a maskface checkpoint (no model config)")
    model = model_from_config(ck["model_config"])
    model.load_state_dict(ck["model"])
    return model.eval()


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trained model from a checkpoint file, on ``device``."""
    return model_from_checkpoint(load_checkpoint(path, device), path).to(device)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device,
             max_batches: int, autocast: bool) -> dict:
    """PSNR/SSIM of the model and of the masked input itself (the baseline), on a loader."""
    model.eval()
    sums = {"psnr": 0.0, "ssim": 0.0, "psnr_input": 0.0, "ssim_input": 0.0}
    n = 0
    with torch.no_grad():
        for b, batch in enumerate(loader):
            if b >= max_batches:
                break
            x = batch["masked"].to(device)
            y = batch["clean"].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                p = model(x).float().clamp(0, 1)
            sums["psnr"] += psnr(p, y).sum().item()
            sums["ssim"] += ssim(p, y).sum().item()
            sums["psnr_input"] += psnr(x, y).sum().item()
            sums["ssim_input"] += ssim(x, y).sum().item()
            n += len(x)
    model.train()
    return {k: round(v / max(n, 1), 4) for k, v in sums.items()} | {"samples": n}


def save_grid(path: Path, batch: dict, pred: torch.Tensor, rows: int = 4) -> None:
    """A PNG of masked | output | clean rows."""
    import cv2

    k = min(rows, len(pred))
    tiles = [torch.cat([batch["masked"][i], pred[i].float().cpu(), batch["clean"][i]], dim=2)
             for i in range(k)]
    img = (torch.cat(tiles, dim=1).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))


def train(cfg: TrainConfig) -> dict:
    """Train (or resume); returns the last metrics."""
    rank, world, local_rank = _distributed()
    device = pick_device(cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    out = Path(cfg.out)
    ck_path = out / "checkpoints" / "last.pt"
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    model = build_model(cfg.model, cfg.width, cfg.depth)
    if rank == 0:
        log.info("%s: %.2f M parameters", cfg.model, count_parameters(model) / 1e6)
    cuda = device.type == "cuda"
    fast = use_bf16(cfg.precision, device)
    model = model.to(device, memory_format=torch.channels_last if fast else torch.preserve_format)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=cuda)
    step = epoch = start_in_epoch = 0
    best = -math.inf
    if cfg.resume and ck_path.exists():
        # On the CPU: RNG states must stay CPU tensors; the optimiser moves its own state.
        ck = load_checkpoint(ck_path, "cpu")
        if ck.get("model_config") != model.cfg.as_dict():
            raise TrainError(f"{ck_path} holds a {ck.get('model_config')} model, not "
                             f"{model.cfg.as_dict()}; use the same --model/--width/--depth")
        # The epoch's order is replayed from these; another value would replay another order.
        was = ck.get("train_config", {}) | {"world": ck.get("world", 1)}
        now = asdict(cfg) | {"world": world}
        changed = [k for k in ("batch_size", "workers", "seed", "world", "data")
                   if was.get(k) != now[k]]
        if changed:
            raise TrainError(f"--resume with other {', '.join(changed)} than {ck_path} was "
                             "trained with would not continue the same run; use the same "
                             "values or a new --out")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, start_in_epoch = ck["step"], ck["epoch"], ck["step_in_epoch"]
        best = ck.get("best", best)
        _set_rng_state(ck["rng"])
        log.info("resumed at step %d (epoch %d, batch %d)", step, epoch, start_in_epoch)

    try:
        train_set = ShardPairs(cfg.data, "train", seed=cfg.seed, rank=rank, world=world)
    except DataError as e:
        raise TrainError(str(e)) from e
    try:
        val_set = ShardPairs(cfg.data, "val", shuffle=False, flip=False)
    except DataError:
        val_set = None
    loader_kw = {"batch_size": cfg.batch_size, "num_workers": cfg.workers,
                 "pin_memory": cuda, "persistent_workers": False}
    loader = DataLoader(train_set, drop_last=True, **loader_kw)
    steps_per_epoch = None  # one process: every batch the loader gives
    if world > 1:
        # Ranks must take the same number of steps. A rank's share can fall short of
        # count / world by one sample per shard, and each loader worker drops its own last
        # partial batch, so stop every rank at a number all of them reach.
        if train_set.count <= 0:
            raise TrainError(f"{cfg.data} has no manifest.json: several ranks need the pair "
                             "count to agree on an epoch's length")
        steps_per_epoch = ((train_set.count // world - len(train_set.shards)) // cfg.batch_size
                           - max(cfg.workers, 1))
        if steps_per_epoch < 1:
            raise TrainError(f"too few training pairs ({train_set.count}) for {world} ranks "
                             f"with --batch-size {cfg.batch_size}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if cuda else None)
    if cfg.compile:
        net = torch.compile(net)

    metrics_f = out / "metrics.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    estimate = steps_per_epoch or max(train_set.count, 0) // cfg.batch_size
    total = cfg.max_steps or estimate * cfg.epochs
    last: dict = {}
    t0, seen = time.perf_counter(), 0
    deadline = t0 + 60 * cfg.max_minutes if cfg.max_minutes else None
    out_of_time = False

    def finished() -> bool:
        return bool(cfg.max_steps and step >= total) or out_of_time

    running = torch.zeros((), device=device)
    since_log = 0
    in_epoch = start_in_epoch
    tb = _tensorboard(out / "tb") if rank == 0 else None
    bar = None
    if rank == 0 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total or None, initial=step, unit="step", desc="train",
                   dynamic_ncols=True)
    def validate() -> dict:
        """Validation PSNR/SSIM (and the masked input's), a sample grid, best.pt."""
        nonlocal best
        v = evaluate(model, DataLoader(val_set, **loader_kw), device, cfg.val_batches, fast)
        v |= {"step": step, "epoch": epoch, "split": "val"}
        with open(metrics_f, "a") as f:
            f.write(json.dumps(v) + "\n")
        if tb is not None:
            for k in ("psnr", "ssim", "psnr_input", "ssim_input"):
                tb.add_scalar(f"val/{k}", v[k], step)
        log.info("step %d val PSNR %.2f SSIM %.4f (input %.2f / %.4f)", step, v["psnr"],
                 v["ssim"], v["psnr_input"], v["ssim_input"])
        sample = next(iter(DataLoader(val_set, batch_size=4)))
        with torch.no_grad():
            save_grid(out / "samples" / f"step-{step:07d}.png", sample,
                      model.eval()(sample["masked"].to(device)).cpu())
        model.train()
        if v["ssim"] > best:
            best = v["ssim"]
            _save(out / "checkpoints" / "best.pt", model, opt, step, epoch, 0, best, cfg)
        return v

    while not finished() and (cfg.max_steps or epoch < cfg.epochs):
        train_set.set_epoch(epoch)
        in_epoch = 0
        for batch in loader:
            if in_epoch < start_in_epoch:  # replay the epoch's order up to where we stopped
                in_epoch += 1
                continue
            if steps_per_epoch and in_epoch >= steps_per_epoch:
                break
            x = batch["masked"].to(device, non_blocking=True)
            y = batch["clean"].to(device, non_blocking=True)
            if fast:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
                pred = net(x)
            loss = ssim_l1(pred.float(), y, cfg.l1_weight, cfg.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.detach()
            since_log += 1
            step += 1
            if bar is not None:
                bar.update(1)
            in_epoch += 1
            seen += len(x)
            if step % cfg.log_every == 0 or finished():
                # The one host sync per log interval; the last interval may be shorter. With
                # several ranks, the mean over all of them (and a NaN anywhere stops them all).
                if world > 1:
                    torch.distributed.all_reduce(running)
                    running /= world
                mean = (running / since_log).item()
                running.zero_()
                since_log = 0
                if not math.isfinite(mean):
                    raise TrainError(f"loss is {mean} at step {step}: lower --lr, or check "
                                     "the data")
                el = time.perf_counter() - t0
                if deadline is not None:
                    out_of_time = _agree(time.perf_counter() >= deadline, device, world)
                last = {"step": step, "epoch": epoch, "loss": round(mean, 6),
                        "images_per_s": round(seen * world / el, 1)}
                if rank == 0:
                    with open(metrics_f, "a") as f:
                        f.write(json.dumps(last) + "\n")
                    if tb is not None:
                        tb.add_scalar("train/loss", mean, step)
                        tb.add_scalar("train/images_per_s", last["images_per_s"], step)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean:.4f}", img_s=last["images_per_s"])
                    else:
                        log.info("step %d loss %.4f %.1f img/s", step, mean,
                                 last["images_per_s"])
            if rank == 0 and step % cfg.checkpoint_every == 0:
                _save(ck_path, model, opt, step, epoch, in_epoch, best, cfg)
            if finished():
                break
        if in_epoch == 0:
            raise TrainError(f"an epoch of {cfg.data} gave no batch: fewer training pairs "
                             f"per process than --batch-size {cfg.batch_size}")
        start_in_epoch = 0
        if finished():
            break  # mid-epoch: the checkpoint below records the position
        epoch += 1
        in_epoch = 0
        if rank == 0 and val_set is not None and epoch % max(cfg.val_every, 1) == 0:
            last = validate()
        if rank == 0:
            _save(ck_path, model, opt, step, epoch, 0, best, cfg)
    if out_of_time and rank == 0:
        log.info("--max-minutes %g reached at step %d", cfg.max_minutes, step)
    if (rank == 0 and val_set is not None and (cfg.max_steps or out_of_time)
            and last.get("split") != "val"):
        last = validate()  # a run cut short still reports validation and best.pt
    if bar is not None:
        bar.close()
    if tb is not None:
        tb.close()
    if rank == 0:
        _save(ck_path, model, opt, step, epoch, in_epoch, best, cfg)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return last


def _agree(flag: bool, device: torch.device, world: int) -> bool:
    """True on every rank when ``flag`` is true on any (ranks must stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _world() -> int:
    return torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1


def _tensorboard(path: Path):
    """A TensorBoard writer when tensorboard is installed, else None (JSONL is always kept)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


def _save(path: Path, model, opt, step, epoch, in_epoch, best, cfg) -> None:
    save_checkpoint(path, {
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "model_config": model.cfg.as_dict(), "train_config": asdict(cfg),
        # The crop side the model learnt on; unmask aligns faces to it.
        "image_size": image_size(cfg.data),
        "step": step, "epoch": epoch, "world": _world(),
        "step_in_epoch": in_epoch,
        "best": best, "rng": _rng_state(), "format": "maskface-checkpoint/1"})
