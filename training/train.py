"""``maskface train``: the whole training loop in one file.

Config, data, model, optimiser, bf16 autocast and channels_last on CUDA, optional
``torch.compile``, DDP when launched by ``torchrun``, validation and atomic checkpoints every so
many steps (and at the end, also of a run cut short), exact resume (model, optimiser, step,
epoch, position in the epoch; the epoch's data order is replayed from the seed, so resuming
needs the same batch size, workers, seed and ranks).
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .augment import AUGMENTS, grey_pairs, jitter_pair, recolour_masks, rim_masks, texture_masks
from .checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    pick_device,
    save_checkpoint,
    use_bf16,
)
from .data import DataError, ShardPairs, image_size, to_device
from .losses import hole_l1, mask_loss, ssim_l1
from .metrics import mask_iou, masked_psnr, psnr, ssim
from .model import NORMS, build_model, count_parameters, training_bytes
from .refill import erase_masks, two_pass
from .registry import LR_SCHEDULES

log = logging.getLogger("maskface.train")


RESUME = ("no", "yes", "auto")
# What a checkpoint from before an option existed was trained with.
FRESH_CONFIG = {"lr_schedule": "constant"}
FRESH = {"step": 0, "epoch": 0, "in_epoch": 0, "best": -math.inf}  # where a new run starts


class TrainError(CheckpointError):
    """Training cannot go on (bad checkpoint, bad data, NaN loss...)."""


def default_workers() -> int:
    """Loader workers per process: the cores this process's share of the machine has, less
    two for the trainer itself, at most 12, at least 1."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min((cores or 1) // local - 2, 12))


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    model: str = "ra-unet"
    width: int = 64
    depth: int = 5
    norm: str = "none"  # the paper's RA-UNet has no BatchNorm in its blocks; "batch" adds it
    # A fourth output channel that learns where the mask is (the paper's plain network: False).
    mask_head: bool = True
    mask_weight: float = 1.0  # weight of the mask loss (BCE + Dice) beside ssim_l1
    # Weight of an extra L1 term over the true mask's pixels only (0: the paper's loss). A
    # mask-head model's output is used inside its mask alone, so that is where quality counts.
    hole_weight: float = 0.0
    # Fraction of each batch shown bare (input = clean image, mask = empty): a mask-head model
    # learns that a face without a mask has nothing to restore (0: every pair masked).
    bare_fraction: float = 0.0
    augment: str = "paper"  # "paper": flip + the paper's colour jitter; "flip"; "none"
    # Fraction of pairs whose mask (input only) is made opaque: its own colour, smooth shading
    # and folds instead of the rendered face's shading, which real masks do not show.
    mask_texture: float = 0.0
    # Fraction of pairs whose mask region (input only) gets a random colour and brightness:
    # real masks come in colours the templates' palette lacks (0: as generated).
    mask_recolour: float = 0.0
    # Fraction of pairs given a rim around the mask (input, and the mask the head learns):
    # real masks' hems, linings and shadows, which the generated masks lack.
    mask_rim: float = 0.0
    grey_fraction: float = 0.0  # fraction of pairs turned grey, input and target alike
    # Fraction of pairs whose mask, grown a little, is erased to flat grey in the input: the
    # model learns to paint a face into a hole and then restores in two passes (refill.py).
    erase_fraction: float = 0.0
    # A trained model (checkpoint or .safetensors) whose weights a fresh run starts from, to
    # fine-tune it with a new schedule or new augmentations (None: random initialisation).
    init: str | None = None
    epochs: int = 40
    max_steps: int | None = None
    # Stop at the first log interval after this many minutes of this invocation (a budget on a
    # shared or rented machine); the run validates and checkpoints as at any other end.
    max_minutes: float | None = None
    batch_size: int = 8
    lr: float = 1e-4
    # "constant" (the paper's); "cosine": decays to 2 % of --lr over the run's steps
    # (--max-steps, or --epochs' worth), a function of the step so a resumed run follows it.
    lr_schedule: str = "constant"
    l1_weight: float = 1.0
    loss: str = "l1"  # "l1" (the paper's text) or "mse" (the paper's code)
    device: str = "auto"
    # "bf16": autocast to bfloat16 with channels_last tensors (the fast path on GPUs with tensor
    # cores); "fp32": the paper's plain precision; "auto": bf16 on CUDA, fp32 on the CPU.
    precision: str = "auto"
    compile: bool = False
    # "yes": continue from OUT/checkpoints/last.pt, which must exist; "auto": continue if it
    # exists, else start fresh (for jobs that restart themselves); "no": start fresh.
    resume: str = "no"
    seed: int = 0
    workers: int | None = None  # loader workers per process; None: default_workers()
    checkpoint_every: int = 1000  # steps between saves of last.pt (and at the end)
    val_every: int = 1000  # steps between validations (and at the end)
    log_every: int = 50
    val_batches: int = 50

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise TrainError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if self.resume not in RESUME:
            raise TrainError(f"resume must be one of {', '.join(RESUME)}, got {self.resume!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise TrainError(f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got "
                             f"{self.lr_schedule!r}")
        for name in ("bare_fraction", "mask_texture", "mask_recolour", "mask_rim",
                     "grey_fraction", "erase_fraction"):
            if not 0 <= getattr(self, name) < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be in [0, 1), got "
                                 f"{getattr(self, name)}")
        if (self.hole_weight or self.bare_fraction or self.mask_texture or self.mask_recolour
                or self.mask_rim or self.erase_fraction) and not self.mask_head:
            raise TrainError("--hole-weight, --bare-fraction, --mask-texture, --mask-recolour, "
                             "--mask-rim and --erase-fraction are for a --mask-head model (they "
                             "need the true mask)")
        if self.augment not in AUGMENTS:
            raise TrainError(f"--augment must be one of {', '.join(AUGMENTS)}, got "
                             f"{self.augment!r}")


def train(cfg: TrainConfig) -> dict:
    """Train (or resume); returns the last metrics."""
    if cfg.workers is None:
        cfg = TrainConfig(**asdict(cfg) | {"workers": default_workers()})
    rank, world, device = _start_processes(cfg.device)
    fast = use_bf16(cfg.precision, device)
    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    model = build_model(cfg.model, cfg.width, cfg.depth, cfg.norm, cfg.mask_head,
                        refill=cfg.erase_fraction > 0)
    _check_memory(model.cfg, cfg, device)
    if rank == 0:
        log.info("%s: %.2f M parameters", cfg.model, count_parameters(model) / 1e6)
    model = model.to(device, memory_format=torch.channels_last if fast else torch.preserve_format)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    state = dict(FRESH)
    if cfg.resume != "no":
        state = _resume(out / "checkpoints" / "last.pt", cfg, world, model, opt)
    elif (out / "checkpoints" / "last.pt").exists():
        raise TrainError(f"{out} already holds a run; give --resume to continue it, or a new "
                         "--out")
    if cfg.init and state["step"] == 0:  # a resumed run continues from its own weights
        _initialise(model, cfg.init)
        if rank == 0:
            log.info("starting from the weights of %s", cfg.init)
    train_set, val_set, loader = _data(cfg, rank, world, device)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = torch.compile(net)

    run = _Run(cfg, out, rank, world, device, fast, model, opt, state, val_set)
    try:
        last = run.loop(net, train_set, loader)
    finally:
        run.close()
        # The DDP wrapper goes before its process group: destroying the group under a live
        # wrapper can abort a rank after a clean finish.
        del net, loader
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return last


def _check_memory(model_cfg, cfg: TrainConfig, device: torch.device) -> None:
    """Refuse, before allocating, a run whose estimated memory is far over what the device
    has (an OOM kill says nothing; this says what to change)."""
    side = image_size(cfg.data) if Path(cfg.data).is_dir() else None
    if not side:
        return
    need = training_bytes(model_cfg, side, cfg.batch_size)
    have = _memory_available(device)
    if have and need > 1.5 * have:
        gib = 2**30
        raise TrainError(f"this run needs about {need / gib:.1f} GiB ({cfg.model}, width "
                         f"{cfg.width}, depth {cfg.depth}, batch {cfg.batch_size} at {side} px)"
                         f" and {device} has {have / gib:.1f} GiB: lower --batch-size, --width "
                         "or --depth")


def _memory_available(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _start_processes(name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; one process otherwise. The
    device is set before the process group starts, and the backend follows the device."""
    device = pick_device(name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world > 1 else device.index or 0)
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    if world > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.distributed.init_process_group("nccl", device_id=device)
        else:
            torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, device


def _initialise(model, path: str) -> None:
    """Load a trained model's weights into ``model``, which must be the same network."""
    ck = load_checkpoint(path, "cpu")
    trained = model_from_checkpoint(ck, path)
    # How the model is used (one pass or two) may change in a fine-tune; its shape may not.
    if replace(trained.cfg, refill=False) != replace(model.cfg, refill=False):
        raise TrainError(f"--init {path} holds a {trained.cfg.as_dict()} model, not "
                         f"{model.cfg.as_dict()}; use its --model/--width/--depth/--norm/"
                         "--mask-head")
    model.load_state_dict(trained.state_dict())


def _resume(path: Path, cfg: TrainConfig, world: int, model, opt) -> dict:
    """Load ``last.pt`` into the model and optimiser; the run's position, best score, RNGs."""
    if not path.exists():
        if cfg.resume != "auto":
            raise TrainError(f"--resume: there is no {path} to continue from; give "
                             "`--resume auto` to start fresh when there is none")
        old = path.parent.parent / "metrics.jsonl"
        if old.exists():  # a run killed before its first save: keep its log apart
            old.rename(old.with_name("metrics-unfinished.jsonl"))
        log.info("--resume auto: no %s yet, starting at step 0", path)
        return dict(FRESH)
    ck = load_checkpoint(path, "cpu")  # RNG states must stay CPU tensors
    if ck.get("model_config") != model.cfg.as_dict():
        raise TrainError(f"{path} holds a {ck.get('model_config')} model, not "
                         f"{model.cfg.as_dict()}; use the same --model/--width/--depth/--norm")
    # The epoch's order is replayed from these; another value would replay another order.
    was = ck.get("train_config", {}) | {"world": ck.get("world", 1)}
    now = asdict(cfg) | {"world": world}
    keys = ["batch_size", "workers", "seed", "world", "data", "augment", "lr_schedule"]
    if cfg.lr_schedule == "cosine":  # the schedule is planned over the run's length
        keys += ["max_steps", "epochs"]
    changed = [k for k in keys if was.get(k, FRESH_CONFIG.get(k)) != now[k]]
    if changed:
        raise TrainError(f"--resume with other {', '.join(changed)} than {path} was trained "
                         "with would not continue the same run; use the same values or a "
                         "new --out")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    _set_rng_state(ck["rng"])
    log.info("resumed at step %d (epoch %d, batch %d)", ck["step"], ck["epoch"],
             ck["step_in_epoch"])
    return {"step": ck["step"], "epoch": ck["epoch"], "in_epoch": ck["step_in_epoch"],
            # A best score of another measure (older runs kept SSIM) does not compare.
            "best": (ck.get("best", -math.inf)
                     if ck.get("best_metric", "ssim") == best_metric(cfg) else -math.inf)}


def _data(cfg: TrainConfig, rank: int, world: int, device: torch.device):
    """The training set, the validation set (None without a val split) and the loader."""
    try:
        train_set = ShardPairs(cfg.data, "train", seed=cfg.seed, rank=rank, world=world,
                               flip=cfg.augment != "none", with_mask=cfg.mask_head,
                               workers=cfg.workers)
    except DataError as e:
        raise TrainError(str(e)) from e
    try:
        val_set = ShardPairs(cfg.data, "val", shuffle=False, flip=False,
                             with_mask=cfg.mask_head, workers=min(cfg.workers, 2))
    except DataError:
        val_set = None
    readers = max(cfg.workers, 1) * world
    if rank == 0 and len(train_set.shards) < readers:
        log.warning("%d training shards for %d loader workers x %d ranks: workers share "
                    "shards (each reads all of its shard); `maskface generate --shard-size` "
                    "smaller makes more shards", len(train_set.shards), max(cfg.workers, 1),
                    world)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, num_workers=cfg.workers,
                        pin_memory=device.type == "cuda", drop_last=True,
                        persistent_workers=cfg.workers > 0,
                        prefetch_factor=4 if cfg.workers > 0 else None)
    return train_set, val_set, loader


class _Run:
    """The state of one training run and what it does at each step, log, validation, save."""

    def __init__(self, cfg: TrainConfig, out: Path, rank: int, world: int,
                 device: torch.device, fast: bool, model, opt, state: dict, val_set) -> None:
        self.cfg, self.out, self.rank, self.world = cfg, out, rank, world
        self.device, self.fast, self.model, self.opt = device, fast, model, opt
        self.step, self.epoch = state["step"], state["epoch"]
        self.start_in_epoch, self.best = state["in_epoch"], state["best"]
        self.in_epoch = self.start_in_epoch
        self.val_set = val_set
        self.val_loader = None
        if val_set is not None and rank == 0:
            workers = min(cfg.workers, 2)
            self.val_loader = DataLoader(val_set, batch_size=cfg.batch_size,
                                         num_workers=workers, persistent_workers=workers > 0,
                                         pin_memory=device.type == "cuda")
        self.metrics = out / "metrics.jsonl"
        out.mkdir(parents=True, exist_ok=True)
        self.deadline = (time.perf_counter() + 60 * cfg.max_minutes if cfg.max_minutes
                         else None)
        self.out_of_time = False
        self.running = torch.zeros((), device=device)
        self.since_log = 0
        # Throughput is timed over training steps only: the clock restarts after compiling
        # (the first step), validation and saving.
        self.clock, self.timed_images = None, 0
        self.tb = _tensorboard(out / "tb") if rank == 0 else None
        self.bar = None
        self.last_report = time.perf_counter()
        self.last: dict = {}
        self.total_steps = 1  # set by loop() from --max-steps or --epochs

    # -- the loop -------------------------------------------------------------------------
    def finished(self) -> bool:
        return bool(self.cfg.max_steps and self.step >= self.cfg.max_steps) or self.out_of_time

    def loop(self, net, train_set: ShardPairs, loader: DataLoader) -> dict:
        cfg = self.cfg
        steps_per_epoch = self._steps_per_epoch(train_set)
        total = cfg.max_steps or (steps_per_epoch or max(train_set.count, 0) // cfg.batch_size
                                  ) * cfg.epochs
        self.total_steps = max(total, 1)
        if self.rank == 0 and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, initial=self.step, unit="step", desc="train",
                            dynamic_ncols=True)
        validated_at = -1
        while not self.finished() and (cfg.max_steps or self.epoch < cfg.epochs):
            train_set.set_epoch(self.epoch)
            self.in_epoch = 0
            for batch in loader:
                if self.in_epoch < self.start_in_epoch:  # replay the order up to where we were
                    self.in_epoch += 1
                    continue
                if steps_per_epoch and self.in_epoch >= steps_per_epoch:
                    break
                self._train_step(net, batch)
                if self.step % cfg.log_every == 0 or self.finished():
                    self._log()
                if self.step % cfg.val_every == 0:
                    self._validate()
                    validated_at = self.step
                if self.step % cfg.checkpoint_every == 0:
                    self._save_last()
                if self.finished():
                    break
            if self.in_epoch == 0:
                raise TrainError(f"an epoch of {cfg.data} gave no batch: fewer training pairs "
                                 f"per process than --batch-size {cfg.batch_size}")
            self.start_in_epoch = 0
            if self.finished():
                break  # mid-epoch: the checkpoint below records the position
            self.epoch += 1
            self.in_epoch = 0
        if self.out_of_time and self.rank == 0:
            log.info("--max-minutes %g reached at step %d", cfg.max_minutes, self.step)
        if validated_at != self.step:
            self._validate()  # every run, cut short or not, ends validated
        self._check_ranks_agree()
        self._save_last()
        return self.last

    def _check_ranks_agree(self) -> None:
        """With several ranks, every rank must end with the same weights (DDP averages the
        gradients); a difference means they trained apart, and the run says so."""
        if self.world == 1:
            return
        with torch.no_grad():
            mine = torch.stack([p.double().sum() for p in self.model.parameters()]).sum()
            lo, hi = mine.clone(), mine.clone()
            torch.distributed.all_reduce(lo, op=torch.distributed.ReduceOp.MIN)
            torch.distributed.all_reduce(hi, op=torch.distributed.ReduceOp.MAX)
        if (hi - lo).abs().item() > 1e-6 * max(1.0, mine.abs().item()):
            raise TrainError(f"the {self.world} ranks ended with different weights "
                             f"({lo.item():.6g} .. {hi.item():.6g}): gradients were not "
                             "averaged across them")

    def _steps_per_epoch(self, train_set: ShardPairs) -> int | None:
        """With several ranks, the number of steps every rank reaches in an epoch (ranks must
        take the same number); None for one process (every batch the loader gives)."""
        if self.world == 1:
            return None
        if train_set.count <= 0:
            raise TrainError(f"{self.cfg.data} has no manifest.json: several ranks need the "
                             "pair count to agree on an epoch's length")
        # A rank's share can fall short of count / world by one sample per part of a shard,
        # and each loader worker drops its own last partial batch.
        parts = len(train_set.shards) * train_set.parts
        steps = ((train_set.count // self.world - parts) // self.cfg.batch_size
                 - max(self.cfg.workers, 1))
        if steps < 1:
            raise TrainError(f"too few training pairs ({train_set.count}) for {self.world} "
                             f"ranks with --batch-size {self.cfg.batch_size}")
        return steps

    def _train_step(self, net, batch: dict) -> None:
        cfg = self.cfg
        b = to_device(batch, self.device, channels_last=self.fast)
        x, y, mask = b["masked"], b["clean"], b.get("mask")
        # Seeded by the step, so a resumed run draws what the uninterrupted one would have.
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)
        if cfg.augment == "paper":
            x, y = jitter_pair([x, y], g)
        # New draws come after the older ones, so runs without these options are unchanged.
        if cfg.mask_texture:  # before the recolouring, which then colours it too
            x = texture_masks(x, mask, cfg.mask_texture, g)
        if cfg.mask_recolour:
            x = recolour_masks(x, mask, cfg.mask_recolour, g)
        if cfg.mask_rim:
            x, mask = rim_masks(x, mask, cfg.mask_rim, g)
        if cfg.grey_fraction:
            x, y = grey_pairs([x, y], cfg.grey_fraction, g)
        if cfg.bare_fraction:
            x, mask = bare_pairs(x, y, mask, cfg.bare_fraction, g)
        erased = None
        if cfg.erase_fraction:  # after bare pairs: a bare pair has no mask to erase
            x, erased = erase_masks(x, mask, cfg.erase_fraction, g)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.fast):
            pred = net(x)
        pred = pred.float()
        loss = ssim_l1(pred[:, :3], y, cfg.l1_weight, cfg.loss)
        if cfg.mask_head:
            # The mask head is read on the first pass only, which never sees a hole: erased
            # pairs would teach it that flat grey is a mask, and the grey beyond a tight
            # photo's edge would then be one.
            seen = slice(None) if erased is None else ~erased
            if erased is None or bool(seen.any()):
                loss = loss + cfg.mask_weight * mask_loss(pred[seen, 3:4], mask[seen])
            else:  # every pair erased: the head stays in the graph, as DDP needs its gradients
                loss = loss + pred[:, 3:4].sum() * 0
        if cfg.hole_weight:
            loss = loss + cfg.hole_weight * hole_l1(pred[:, :3], y, mask)
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.step, self.total_steps)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.running += loss.detach()
        self.since_log += 1
        self.step += 1
        self.in_epoch += 1
        if self.bar is not None:
            self.bar.update(1)
        if self.clock is None:  # the first step (compiling, warming up) is not timed
            self._restart_clock()
        else:
            self.timed_images += len(x)

    def _restart_clock(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.clock, self.timed_images = time.perf_counter(), 0

    # -- log, validate, save --------------------------------------------------------------
    def _log(self) -> None:
        """The one host sync per log interval; with several ranks, the mean over all of them
        (and a NaN anywhere stops them all)."""
        if self.world > 1:
            torch.distributed.all_reduce(self.running)
            self.running /= self.world
        mean = (self.running / max(self.since_log, 1)).item()
        self.running.zero_()
        self.since_log = 0
        if not math.isfinite(mean):
            raise TrainError(f"loss is {mean} at step {self.step}: lower --lr, or check the data")
        now = time.perf_counter()
        rate = (self.timed_images * self.world / (now - self.clock)
                if self.clock and self.timed_images else None)
        if self.deadline is not None:
            self.out_of_time = _agree(now >= self.deadline, self.device, self.world)
        self.last = {"step": self.step, "epoch": self.epoch, "loss": round(mean, 6),
                     "images_per_s": round(rate, 1) if rate else None}
        self._restart_clock()
        if self.rank != 0:
            return
        self._write(self.last)
        if self.tb is not None:
            self.tb.add_scalar("train/loss", mean, self.step)
            if rate:
                self.tb.add_scalar("train/images_per_s", rate, self.step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{mean:.4f}", img_s=self.last["images_per_s"])
        elif now - self.last_report >= 30 or self.finished():
            # Off a terminal: a line about every 30 s, not one per interval.
            self.last_report = now
            log.info("step %d loss %.4f %s img/s", self.step, mean,
                     self.last["images_per_s"] or "-")

    def _validate(self) -> None:
        """Validation PSNR/SSIM (and the masked input's), a sample grid, best.pt."""
        if self.rank != 0 or self.val_loader is None:
            return
        v = evaluate(self.model, self.val_loader, self.device, self.cfg.val_batches, self.fast)
        v |= {"step": self.step, "epoch": self.epoch, "split": "val"}
        self._write(v)
        if self.tb is not None:
            for k in ("psnr", "ssim", "psnr_input", "ssim_input", "psnr_masked", "mask_iou"):
                if k in v:
                    self.tb.add_scalar(f"val/{k}", v[k], self.step)
        log.info("step %d val PSNR %.2f SSIM %.4f (input %.2f / %.4f)%s%s", self.step,
                 v["psnr"], v["ssim"], v["psnr_input"], v["ssim_input"],
                 f" masked PSNR {v['psnr_masked']:.2f}" if "psnr_masked" in v else "",
                 f" mask IoU {v['mask_iou']:.3f}" if "mask_iou" in v else "")
        sample = next(iter(self.val_loader))
        with torch.no_grad():
            b = to_device(sample, self.device)
            net = self.model.eval()
            x = b["masked"][:4]
            pred = two_pass(net, x) if net.cfg.refill else net(x)
        self.model.train()
        save_grid(self.out / "samples" / f"step-{self.step:07d}.png", b, pred)
        score = v[best_metric(self.cfg)]
        if score > self.best:
            self.best = score
            # best.pt is for using the model, not resuming: weights and configs only.
            self._save(self.out / "checkpoints" / "best.pt", with_optimizer=False)
        self.last = v
        self._restart_clock()

    def _save_last(self) -> None:
        if self.rank == 0:
            self._save(self.out / "checkpoints" / "last.pt", with_optimizer=True)
        self._restart_clock()

    def _save(self, path: Path, with_optimizer: bool) -> None:
        state = {
            "model": self.model.state_dict(),
            "model_config": self.model.cfg.as_dict(), "train_config": asdict(self.cfg),
            # The crop side the model learnt on; unmask aligns faces to it.
            "image_size": image_size(self.cfg.data),
            "step": self.step, "epoch": self.epoch, "world": self.world,
            "step_in_epoch": self.in_epoch, "best": self.best,
            "best_metric": best_metric(self.cfg)}
        if with_optimizer:
            state |= {"optimizer": self.opt.state_dict(), "rng": _rng_state()}
        save_checkpoint(path, state)

    def _write(self, record: dict) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
        self.val_loader = None


def learning_rate(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate at ``step`` of ``total``: constant, or a cosine from ``cfg.lr`` down
    to 2 % of it at the last step."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    t = min(step / max(total, 1), 1.0)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def bare_pairs(x: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, fraction: float,
               g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with each pair, with probability ``fraction``, made bare: its input the clean
    face and its mask empty (the target stays the clean face)."""
    bare = (torch.rand(len(x), generator=g) < fraction).to(x.device).view(-1, 1, 1, 1)
    return torch.where(bare, clean, x), torch.where(bare, torch.zeros_like(mask), mask)


def best_metric(cfg: TrainConfig) -> str:
    """What best.pt is the best of: a mask-head model is used inside its mask only, so the
    masked region's PSNR; the paper's plain network, the whole image's SSIM."""
    return "psnr_masked" if cfg.mask_head else "ssim"


def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device,
             max_batches: int, autocast: bool) -> dict:
    """PSNR/SSIM of the model and of the masked input itself (the baseline) on a loader's
    batches; with a mask head, the IoU of its mask (thresholded at 0.5) with the true one. A
    refill model is measured on its two passes, as it is used."""
    model.eval()
    sums: dict[str, float] = {"psnr": 0.0, "ssim": 0.0, "psnr_input": 0.0, "ssim_input": 0.0}
    n = 0
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= max_batches:
                break
            b = to_device(batch, device, channels_last=autocast)
            x, y = b["masked"], b["clean"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                p = two_pass(model, x) if model.cfg.refill else model(x).float().clamp(0, 1)
            sums["psnr"] += psnr(p[:, :3], y).sum().item()
            sums["ssim"] += ssim(p[:, :3], y).sum().item()
            sums["psnr_input"] += psnr(x, y).sum().item()
            if "mask" in b:
                sums["psnr_masked"] = sums.get("psnr_masked", 0.0) + masked_psnr(
                    p[:, :3], y, b["mask"]).nan_to_num(0.0).sum().item()
            sums["ssim_input"] += ssim(x, y).sum().item()
            if p.shape[1] > 3 and "mask" in b:
                sums["mask_iou"] = sums.get("mask_iou", 0.0) + mask_iou(
                    p[:, 3:4], b["mask"]).sum().item()
            n += len(x)
    model.train()
    return {k: round(v / max(n, 1), 4) for k, v in sums.items()} | {"samples": n}


def save_grid(path: Path, batch: dict, pred: torch.Tensor, rows: int = 4) -> None:
    """A PNG of masked | output | clean rows (and the predicted mask, with a mask head)."""
    import cv2

    k = min(rows, len(pred))
    tiles = []
    for i in range(k):
        row = [batch["masked"][i], pred[i, :3], batch["clean"][i]]
        if pred.shape[1] > 3:
            row.append(pred[i, 3:4].expand(3, -1, -1))
        tiles.append(torch.cat([t.float().cpu() for t in row], dim=2))
    img = (torch.cat(tiles, dim=1).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_RGB2BGR))


def _agree(flag: bool, device: torch.device, world: int) -> bool:
    """True on every rank when ``flag`` is true on any (ranks must stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor(float(flag), device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item())


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    np.random.set_state(("MT19937", np.array(s["numpy"], np.uint32), s["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(s["python"]), None))


def _tensorboard(path: Path):
    """A TensorBoard writer when tensorboard is installed, else None (JSONL is always kept)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))
