"""``maskface generate``: plan shards, run them in parallel, resume, and account for every input.

The run is split into shard tasks, each a fixed, sorted list of source images of one split. A
task's output depends only on its images, the templates and the seed, so the shards are the same
bytes whatever ``--jobs`` is, on one machine or on a Dask cluster. A finished task leaves its
shard (renamed into place when whole) and a small state file; a re-run skips those and redoes
the rest. A finished shard's state records the digest of its source list, and the run's whole
source list is kept in the state folder: when a re-run finds that the source changed (images
added, removed, renamed), it says what changed and makes again exactly the finished shards whose
sources are no longer the planned ones, so nothing is dropped silently. When every task is done,
the parent writes ``manifest.json`` (with each shard's counts and sha256), ``failures.jsonl``
and the merged landmark cache.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from .crops import DEFAULT_CROP, crop_side, parse_crop
from .landmark_cache import CacheEntry, LandmarkCache, digest_bytes
from .shards import PARTIAL_SUFFIX
from .sources import SourceItem, assign_identities, read_source, resolve_source
from .split import SPLITS
from .templates import WEAR_SHIFT, select_types

if TYPE_CHECKING:  # the worker's modules (numba, OpenCV) are not imported in the parent
    from .samples import MaskableFace

log = logging.getLogger("maskface.generate")

STATE_DIR = ".state"
PLAN_FILE = "sources.jsonl"  # the run's planned sources, one JSON line each, in order
_STATE_NAME = re.compile(r"^(train|val|test)-(\d{6})$")
_SHARD_NAME = re.compile(r"^shard-\d{6}\.tar(\.partial)?$")
# Sources decoded together, whose landmarks are found together before they are rendered (see
# generate_shard): at most this many, holding at most this many pixels (~100 MB of RGB).
DETECT_CHUNK = 64
DETECT_CHUNK_PIXELS = 32_000_000
# Off a terminal, a progress line this often (seconds) while shards run.
PROGRESS_EVERY = 30.0


class GenerateError(RuntimeError):
    """The run as a whole cannot go on (bad arguments, no usable image, foreign output dir)."""


@dataclass(frozen=True)
class GenerateConfig:
    """Everything that decides a run's output (and how it is executed)."""

    src: str = "demo"
    out: str = "out/generate"
    types: str = "all"
    per_face: str = "1"  # a number, or "all"
    seed: int = 0
    size: int = 256
    shard_size: int = 256  # source images per shard
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    celeba_root: str | None = None
    jpeg_quality: int = 95
    image_format: str = "jpg"  # "jpg", or "png" for byte-exact pairs on disk
    templates: tuple[str, ...] = ()  # extra template directories
    wear: str = "proper=1"  # wear styles with their probabilities
    limit: int | None = None  # first N sources (by key) only
    # Share of faces whose photo is cut off between the lower lip and the chin, as in tight
    # real photos: the crop below the cut is flat grey, as unmask shows it (align.grey_below).
    frame_cut: float = 0.0
    # Where identities come from: "auto", "none", "folder" or an identity file (see
    # identities); run_generate replaces it by the mode in force ("none", "folder", "file:P").
    identity: str = "auto"
    crop: str = "default"  # the crop faces are aligned to: "default" (--size) or "arcfaceN"
    # Look for hands near each face and keep them in front of the masks (see maskgen/hands.py).
    hands: bool = True
    # Look for hair over the cheeks and keep it in front of the masks (see maskgen/hair.py).
    hair: bool = True
    # Execution only: these never change the output.
    jobs: int = -1
    landmarks_cache: str | None = None
    scheduler: str | None = None
    shard_index: int | None = None
    num_shards: int | None = None
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise

    def output_fingerprint(self, source_desc: str) -> dict:
        """The settings that decide the bytes written; a resume must match them."""
        return {"source": source_desc, "types": self.types, "per_face": self.per_face,
                "seed": self.seed, "size": self.size, "shard_size": self.shard_size,
                "split_ratios": list(self.split_ratios), "jpeg_quality": self.jpeg_quality,
                "image_format": self.image_format, "templates": list(self.templates),
                "wear": self.wear,
                "limit": self.limit, "version": __version__, "shard_plan": "equal",
                **({"frame_cut": self.frame_cut} if self.frame_cut else {}),
                **({"identity": self.identity} if self.identity not in ("auto", "none")
                   else {}),
                **({"crop": self.crop} if self.crop != DEFAULT_CROP else {}),
                "occluders": ",".join(k for k, on in (("hands", self.hands),
                                                      ("hair", self.hair)) if on) or "none"}

    @property
    def crop_size(self) -> int:
        """The side of the crops written: ``size``, or the arcface crop's own."""
        return crop_side(self.crop, self.size)


@dataclass
class ShardTask:
    split: str
    index: int
    items: list[SourceItem]

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"

    @property
    def state_name(self) -> str:
        return f"{self.split}-{self.index:06d}"

    @functools.cached_property
    def digest(self) -> str:
        """What the shard is made from: its sources (key, kind, reference, split), in order."""
        return sources_digest(self.items)


def _source_row(item: SourceItem) -> list[str]:
    """A source as the digests and the plan file record it: key, kind, reference, split, and
    its identity where it has one (a changed identity changes the shard's bytes)."""
    row = [item.key, item.kind, item.ref, item.split]
    return row if item.identity is None else [*row, item.identity]


def sources_digest(items: list[SourceItem]) -> str:
    """The sha256 of a list of sources, as the state files and the manifest record it."""
    text = json.dumps([_source_row(i) for i in items], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Summary:
    faces_in: int = 0
    faces_ok: int = 0
    pairs: int = 0
    skipped_shards: int = 0
    redone_shards: int = 0  # finished before, but on sources that are no longer the planned ones
    failures: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["failures"] = dict(sorted(self.failures.items()))
        d["faces_per_s"] = round(self.faces_in / self.seconds, 2) if self.seconds else None
        d["pairs_per_s"] = round(self.pairs / self.seconds, 2) if self.seconds else None
        return d


def plan_tasks(items: list[SourceItem], shard_size: int) -> list[ShardTask]:
    """Group items (sorted by key) into shard tasks per split, in a fixed global order.

    Each split gets as few shards as ``shard_size`` allows, of equal size (within one item):
    a small remainder shard would leave one worker alone at the end of a run, and one
    data-loader worker or DDP rank short of samples in training."""
    tasks = []
    for split in SPLITS:
        chunk = [i for i in items if i.split == split]
        count = -(-len(chunk) // shard_size)
        start = 0
        for n in range(count):
            size = len(chunk) // count + (n < len(chunk) % count)
            tasks.append(ShardTask(split, n, chunk[start:start + size]))
            start += size
    return tasks


def run_generate(cfg: GenerateConfig) -> Summary:
    """Run (or resume) a generation; returns the summary of what this invocation did."""
    t_start = time.perf_counter()
    out = Path(cfg.out)
    type_names = select_types(cfg.types, cfg.templates)
    _check_options(cfg, type_names)
    source_desc, items = resolve_source(cfg.src, celeba_root=cfg.celeba_root,
                                        ratios=cfg.split_ratios)
    identity, items = assign_identities(cfg.src, items, cfg.identity,
                                        celeba_root=cfg.celeba_root, ratios=cfg.split_ratios)
    cfg = replace(cfg, identity=identity)
    if cfg.limit is not None:
        items = items[: cfg.limit]
    tasks = plan_tasks(items, cfg.shard_size)
    state = out / STATE_DIR
    _make_output_dir(out)
    _claim_output(state, cfg.output_fingerprint(source_desc))
    redone = _reconcile(out, tasks, items)

    mine = tasks
    if cfg.num_shards:
        mine = [t for k, t in enumerate(tasks) if k % cfg.num_shards == cfg.shard_index]
    done = {t.state_name for t in mine if _is_complete(out, t)}
    pending = [t for t in mine if t.state_name not in done]

    cache_path = Path(cfg.landmarks_cache) if cfg.landmarks_cache else out / "landmarks.npz"
    cache = LandmarkCache.load(cache_path)
    for part in _landmark_parts(out):  # detections of shards finished before an interruption
        cache.update(LandmarkCache.load(part).entries)

    summary = Summary(skipped_shards=len(done), redone_shards=redone)
    log.info("%s: %d images in %d shards (%d already done), types: %s", source_desc, len(items),
             len(mine), len(done), ",".join(type_names))
    results = _execute(pending, cfg, type_names, cache)
    for r in results:
        summary.faces_in += r["faces_in"]
        summary.faces_ok += r["faces_ok"]
        summary.pairs += r["pairs"]
        summary.failures.update(f["reason"] for f in r["failures"])
        for k, v in r["seconds"].items():
            summary.stage_seconds[k] = round(summary.stage_seconds.get(k, 0.0) + v, 3)

    complete = all(_is_complete(out, t) for t in tasks)
    if complete:
        _finalize(out, cfg, source_desc, tasks, type_names, cache, cache_path)
    summary.seconds = round(time.perf_counter() - t_start, 3)
    (state / "last_run.json").write_text(json.dumps(summary.as_dict(), indent=1))
    if complete:
        manifest = json.loads((out / "manifest.json").read_text())
        if manifest["pairs"] == 0:
            raise GenerateError(
                f"no usable image in {source_desc}: {manifest['failed_sources']} sources "
                f"failed ({', '.join(f'{k}: {v}' for k, v in manifest['failures'].items())}); "
                f"see {out / 'failures.jsonl'}")
    else:
        left = sum(not _is_complete(out, t) for t in tasks)
        log.info("this part is done; %d of %d shards of the whole run are still to do (run the "
                 "other parts, then the same command without --shard-index to finish)", left,
                 len(tasks))
    return summary


def _check_options(cfg: GenerateConfig, type_names: list[str]) -> None:
    if cfg.per_face != "all" and (not cfg.per_face.isdigit() or int(cfg.per_face) < 1):
        raise GenerateError(f"--per-face must be a positive number or 'all', got {cfg.per_face!r}")
    if cfg.per_face != "all" and int(cfg.per_face) > len(type_names):
        raise GenerateError(f"--per-face {cfg.per_face}: more than the {len(type_names)} mask "
                            "type(s) selected (--per-face all draws each of them)")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise GenerateError(f"--jpeg-quality must be between 1 and 100, got {cfg.jpeg_quality}")
    if cfg.limit is not None and cfg.limit < 1:
        raise GenerateError(f"--limit must be at least 1, got {cfg.limit}")
    if cfg.jobs != -1 and cfg.jobs < 1:
        raise GenerateError(f"--jobs must be a number of worker processes (1 or more), or -1 "
                            f"for all cores; got {cfg.jobs}")
    if cfg.num_shards is not None and cfg.num_shards < 1:
        raise GenerateError(f"--num-shards must be at least 1, got {cfg.num_shards}")
    if cfg.size < 64 or cfg.size > 2048:
        raise GenerateError(f"--size must be between 64 and 2048, got {cfg.size}")
    if parse_crop(cfg.crop) is not None and cfg.size != GenerateConfig.size:
        raise GenerateError(f"--size {cfg.size}: --crop {cfg.crop} has its own side; --size "
                            "sets the default crop's")
    if cfg.image_format not in ("jpg", "png"):
        raise GenerateError(f"--image-format must be jpg or png, got {cfg.image_format!r}")
    if (cfg.shard_index is None) != (cfg.num_shards is None):
        raise GenerateError("--shard-index and --num-shards go together")
    if cfg.num_shards is not None and not 0 <= cfg.shard_index < cfg.num_shards:
        raise GenerateError(f"--shard-index must be in [0, {cfg.num_shards}), "
                            f"got {cfg.shard_index}")
    parse_wear(cfg.wear)
    if not 0 <= cfg.frame_cut <= 1:  # NaN fails this too
        raise GenerateError(f"--frame-cut must be between 0 and 1, got {cfg.frame_cut}")
    if cfg.shard_size < 1:
        raise GenerateError("--shard-size must be at least 1")
    for n in type_names:
        if not n.replace("-", "").isalnum():
            raise GenerateError(f"mask type name {n!r}: use letters, digits and '-' only")


def _make_output_dir(out: Path) -> None:
    """Create OUT and its state folder, or say in one line why not."""
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--out {out}: exists and is not a folder")
    try:
        (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenerateError(f"--out {out}: cannot create it ({e.strerror or e})") from e


def _read_json(path: Path) -> dict:
    """A state or config file, or a one-line error naming it."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GenerateError(f"{path} is unreadable ({e}); delete it, or use another "
                            "--out") from e


def _claim_output(state: Path, fingerprint: dict) -> None:
    """Refuse to mix two different runs in one output directory."""
    f = state / "config.json"
    text = json.dumps(fingerprint, indent=1, sort_keys=True)
    if f.exists():
        old = _read_json(f)
        if old != fingerprint:
            diff = sorted(k for k in {*old, *fingerprint} if old.get(k) != fingerprint.get(k))
            raise GenerateError(
                f"{state.parent} holds a run with other settings ({', '.join(diff)} differ); "
                "use another --out, or delete that directory to start over")
        return
    _atomic_write(f, text)


def _is_complete(out: Path, t: ShardTask) -> bool:
    """The task's shard is there, and its state says it was made from the task's sources."""
    f = out / STATE_DIR / f"{t.state_name}.json"
    return (f.exists() and (out / t.split / f"{t.name}.tar").exists()
            and _state_matches(f, t))


def _state_matches(f: Path, t: ShardTask | None) -> bool:
    """Whether the state file ``f`` says its shard was made from task ``t``'s sources (a
    damaged state file does not: the shard is made again)."""
    if t is None:
        return False
    try:
        return json.loads(f.read_text()).get("sources_digest") == t.digest
    except (OSError, ValueError):
        return False


def _landmark_parts(out: Path) -> list[Path]:
    """The landmark cache parts of every shard this output has made (also of shards that a
    changed source re-planned away: their detections stay useful)."""
    return sorted((out / STATE_DIR).glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].landmarks.npz"))


def _reconcile(out: Path, tasks: list[ShardTask], items: list[SourceItem]) -> int:
    """Make the output's finished shards agree with this plan before anything is skipped.

    A finished shard counts only if its state's source digest is its task's. Finished shards
    made from other sources (the source changed since: images added, removed or renamed) lose
    their state and are made again, shards no longer in the plan are deleted, and a warning
    says what changed. Returns how many finished shards are made again."""
    state = out / STATE_DIR
    plan = {t.state_name: t for t in tasks}
    stale = []
    for f in sorted(state.glob("*-[0-9][0-9][0-9][0-9][0-9][0-9].json")):
        if not _STATE_NAME.match(f.stem):
            continue
        if not _state_matches(f, plan.get(f.stem)):
            stale.append(f)
    wanted = {f"{t.split}/{t.name}.tar" for t in tasks}
    extra = [p for split in SPLITS if (out / split).is_dir()
             for p in sorted((out / split).iterdir())
             if _SHARD_NAME.match(p.name)
             and f"{split}/{p.name.removesuffix(PARTIAL_SUFFIX)}" not in wanted]
    plan_file = state / PLAN_FILE
    text = "".join(json.dumps(_source_row(i)) + "\n" for i in items)
    try:
        before = plan_file.read_text() if plan_file.exists() else None
    except OSError:
        before = None
    if before is not None and before != text or stale or extra:
        log.warning("%s: %s", out, _what_changed(before, items, stale, extra))
        for f in stale:
            f.unlink(missing_ok=True)
        (out / "manifest.json").unlink(missing_ok=True)  # until the re-planned run is whole
        for p in extra:
            p.unlink(missing_ok=True)
    if before != text:
        _atomic_write(plan_file, text)
    return sum(f.stem in plan for f in stale)


def _few(keys: list[str], show: int = 5) -> str:
    if not keys:
        return "0"
    more = f" and {len(keys) - show} more" if len(keys) > show else ""
    return f"{len(keys)} ({', '.join(keys[:show])}{more})"


def _what_changed(before: str | None, items: list[SourceItem], stale: list[Path],
                  extra: list[Path]) -> str:
    """One line for the user: how the source differs from the one the finished shards were
    made from, and what is done about it."""
    parts = []
    if before is not None:
        old = {}
        for line in before.splitlines():
            try:
                key, *rest = json.loads(line)
            except ValueError:
                continue
            old[key] = rest
        new = {i.key: _source_row(i)[1:] for i in items}
        added = sorted(k for k in new if k not in old)
        removed = sorted(k for k in old if k not in new)
        changed = sorted(k for k in new if k in old and old[k] != new[k])
        parts.append(f"the source changed since this output was planned: {_few(added)} new, "
                     f"{_few(removed)} gone, {_few(changed)} with another file or split")
    else:
        parts.append("finished shards hold other sources than the source gives now (or were "
                     "made by a maskface that did not record them)")
    if stale:
        parts.append(f"{len(stale)} finished shard(s) no longer hold the planned sources and "
                     "are made again")
    if extra:
        parts.append(f"{len(extra)} shard file(s) no longer in the plan are deleted "
                     f"({', '.join(p.parent.name + '/' + p.name for p in extra[:3])}"
                     f"{' ...' if len(extra) > 3 else ''})")
    return "; ".join(parts)


def _execute(pending: list[ShardTask], cfg: GenerateConfig, type_names: list[str],
             cache: LandmarkCache) -> list[dict]:
    if not pending:
        return []
    # Biggest shards first (a small split's shards are smaller: plan_tasks makes them equal
    # within a split only), so the smaller ones fill the gaps at the end instead of one worker
    # finishing a big shard alone. Each shard's bytes depend only on its own task, so the order
    # changes nothing in the output.
    pending = sorted(pending, key=lambda t: -len(t.items))
    results = []
    progress = _Progress(cfg, pending)
    try:
        with _shard_results(pending, cfg, type_names, cache) as shards:
            for r in shards:
                results.append(r)
                progress.shard_done(r)
    finally:
        progress.close()
    return results


@contextmanager
def _shard_results(pending: list[ShardTask], cfg: GenerateConfig, type_names: list[str],
                   cache: LandmarkCache) -> Iterator[Iterator[dict]]:
    """The results of ``generate_shard`` for each task, as they finish: in this process for
    ``--jobs 1`` (joblib is not even imported: ~0.1 s), else from joblib's worker processes,
    or from the Dask cluster of ``--scheduler``."""
    jobs = -1 if cfg.scheduler else _worker_count(cfg.jobs, len(pending))
    args = [(t, cfg, type_names, cache.subset([i.key for i in t.items])) for t in pending]
    if jobs == 1 and not cfg.scheduler:
        yield (generate_shard(*a) for a in args)
        return
    from joblib import Parallel, delayed, parallel_config

    client = None
    # Workers end within a second of the parent's death (kill -9 included): see _watch_parent.
    backend: dict = {"backend": "loky", "initializer": _watch_parent, "initargs": (os.getpid(),)}
    if cfg.scheduler:
        try:
            from dask.distributed import Client
        except ImportError as e:
            raise GenerateError("--scheduler needs Dask: pip install 'maskface[dask]'") from e
        client = Client(cfg.scheduler)
        backend = {"backend": "dask"}
        jobs = -1
    try:
        with parallel_config(**backend):
            runner = Parallel(n_jobs=jobs, return_as="generator_unordered")
            yield runner(delayed(generate_shard)(*a) for a in args)
    finally:
        if client is not None:
            client.close()


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _worker_count(jobs: int, tasks: int) -> int:
    """Worker processes for ``--jobs`` (-1: all cores), capped at the cores (with a note) and
    at the number of shards to make."""
    cores = available_cores()
    if jobs == -1:
        jobs = cores
    elif jobs > cores:
        log.warning("--jobs %d: this machine has %d cores; using %d worker processes", jobs,
                    cores, cores)
        jobs = cores
    # No more workers than shards; but two at least where two or more were asked for, so that
    # the shards still run in worker processes (joblib runs one job in this process).
    return jobs if jobs <= 1 else max(2, min(jobs, tasks))


WATCH_EVERY = 0.25  # seconds between a worker's checks that its parent is alive


def _watch_parent(parent: int) -> None:
    """Run in each worker process as it starts: end the worker as soon as the process that
    started it (generate's main process) is gone, killed or not, instead of letting it finish
    its queued shards into OUT and idle for minutes."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_EVERY)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="maskface-parent-watch", daemon=True).start()


class _Progress:
    """How far a run is, as shard results come in: a tqdm bar on a terminal (or with
    ``--progress``); else a log line every PROGRESS_EVERY seconds from a timer thread, so that
    a log is not silent for minutes while long shards run, and one at the end."""

    def __init__(self, cfg: GenerateConfig, pending: list[ShardTask]) -> None:
        self.faces_total = sum(len(t.items) for t in pending)
        self.shards_total = len(pending)
        self.faces = self.shards = self.pairs = self.failed = 0
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._bar = self._timer = None
        if cfg.progress if cfg.progress is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=self.faces_total, unit="face", desc="generate",
                             dynamic_ncols=True)
        else:
            self._timer = threading.Thread(target=self._tick, name="generate-progress",
                                           daemon=True)
            self._timer.start()

    def shard_done(self, r: dict) -> None:
        """Count one shard's result."""
        with self._lock:
            self.faces += r["faces_in"]
            self.shards += 1
            self.pairs += r["pairs"]
            self.failed += len(r["failures"])
        if self._bar is not None:
            self._bar.update(r["faces_in"])
            self._bar.set_postfix(pairs=self.pairs, failed=self.failed)
        elif self.shards == self.shards_total:
            self._log()

    def close(self) -> None:
        """Stop the bar or the timer."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        if self._bar is not None:
            self._bar.close()

    def _tick(self) -> None:
        while not self._stop.wait(PROGRESS_EVERY):
            self._log()

    def _log(self) -> None:
        with self._lock:
            el = time.perf_counter() - self.t0
            log.info("%d/%d faces (%d of %d shards done), %d pairs, %d failures, %.1f faces/s, "
                     "%.0f s", self.faces, self.faces_total, self.shards, self.shards_total,
                     self.pairs, self.failed, self.faces / max(el, 1e-9), el)


def parse_wear(spec: str) -> dict[str, float]:
    """``"proper=0.8,nose-exposed=0.15,under-chin=0.05"`` -> probabilities (normalised)."""
    out: dict[str, float] = {}
    for part in spec.split(","):
        name, _, p = part.strip().partition("=")
        if name not in WEAR_SHIFT:
            raise GenerateError(f"--wear: unknown style {name!r}; known: {', '.join(WEAR_SHIFT)}")
        try:
            out[name] = float(p) if p else 1.0
        except ValueError as e:
            raise GenerateError(f"--wear: {part!r} is not NAME=PROBABILITY") from e
        if not math.isfinite(out[name]):
            raise GenerateError(f"--wear: {part!r}: the probability must be a finite number")
    total = sum(out.values())
    if total <= 0 or min(out.values()) < 0:
        raise GenerateError(f"--wear: probabilities must be >= 0 and not all 0, got {spec!r}")
    return {k: v / total for k, v in out.items()}


def generate_shard(task: ShardTask, cfg: GenerateConfig, type_names: list[str],
                   cache_entries: dict[str, CacheEntry]) -> dict:
    """Produce one shard (runs in a worker): every usable face of the task's sources, under
    the mask types it gets (:func:`.samples.face_samples`). Returns counts, failures, timings."""
    import cv2

    from .encode import encode_png_gray
    from .samples import SampleRules, face_samples, maskable_face
    from .shards import ShardWriter

    # Parallelism is across shard processes; OpenCV's own threads would only contend.
    cv2.setNumThreads(1)
    out = Path(cfg.out)
    ext = cfg.image_format
    rules = SampleRules(tuple(type_names), cfg.seed, cfg.per_face, parse_wear(cfg.wear),
                        cfg.frame_cut, cfg.templates, cfg.crop, cfg.hair)
    book = _ShardBook()
    items = task.items
    if cfg.identity != "none":  # a recognition dataset has no use for a face without its person
        for item in items:
            if item.identity is None:
                book.fail(item, "no-identity", f"--identity {cfg.identity} names no person "
                                               "for this image")
        items = [i for i in items if i.identity is not None]
    writer = ShardWriter(out / task.split / f"{task.name}.tar")
    with writer:
        for item, rgb, entry in _with_landmarks(items, cache_entries, book, cfg.hands):
            t = time.perf_counter()
            face = maskable_face(rgb, entry.points, cfg.size, item.key, rules,
                                 (entry.hands or ()) if cfg.hands else ())
            clean = _encode(face.framed(face.crop), cfg)
            shared_json = _face_json(item, face, entry, cfg)
            book.secs["align"] += time.perf_counter() - t
            book.faces_ok += 1
            t = time.perf_counter()
            for sample in face_samples(face, rules):
                t_drawn = time.perf_counter()
                book.secs["render"] += t_drawn - t
                if sample.reason:
                    book.fail(item, sample.reason, sample.detail, sample.type)
                else:
                    key = f"{item.key}_{sample.type}"
                    r = sample.rendered
                    own = json.dumps({"key": key, "type": sample.type, **r.meta},
                                     separators=(",", ":"))
                    writer.write(key, {f"masked.{ext}": _encode(face.framed(r.masked), cfg),
                                       f"clean.{ext}": clean,
                                       "mask.png": encode_png_gray(face.framed(r.mask)),
                                       "json": f"{own[:-1]},{shared_json[1:]}".encode()})
                    book.pairs += 1
                    book.types[sample.type] += 1
                    if item.identity is not None:
                        book.identities.add(item.identity)
                t = time.perf_counter()
                book.secs["encode_write"] += t - t_drawn

    state = out / STATE_DIR
    if book.new_cache:
        LandmarkCache(book.new_cache).save(state / f"{task.state_name}.landmarks.npz")
    result = {"split": task.split, "shard": task.name, "faces_in": len(task.items),
              "sources_digest": task.digest, "members": writer.members,
              "bytes": writer.size, "sha256": writer.sha256,
              "faces_ok": book.faces_ok, "pairs": book.pairs,
              "types": dict(sorted(book.types.items())), "failures": book.failures,
              "landmarks_found_with": sorted(book.found_with),
              **({"identities": sorted(book.identities)} if cfg.identity != "none" else {}),
              "seconds": {k: round(v, 4) for k, v in book.secs.items()}}
    _atomic_write(state / f"{task.state_name}.json", json.dumps(result))
    return result


@dataclass
class _ShardBook:
    """What a shard task accounts for besides the samples it writes."""

    failures: list[dict] = field(default_factory=list)
    secs: Counter = field(default_factory=Counter)  # seconds by stage
    new_cache: dict[str, CacheEntry] = field(default_factory=dict)  # landmarks found here
    found_with: set[str] = field(default_factory=set)  # what found the sources' landmarks
    identities: set[str] = field(default_factory=set)  # the people of the samples written
    types: Counter = field(default_factory=Counter)  # samples written by type
    faces_ok: int = 0
    pairs: int = 0

    def fail(self, item: SourceItem, reason: str, detail: str = "",
             mask_type: str | None = None) -> None:
        """Record a source (or, with ``mask_type``, one sample of it) that is not written."""
        rec = {"source": item.key, "ref": item.ref, "split": item.split, "reason": reason,
               "detail": detail}
        if item.identity is not None:
            rec["identity"] = item.identity
        if mask_type:
            rec["type"] = mask_type
        self.failures.append(rec)


def _with_landmarks(items: list[SourceItem], cache_entries: dict[str, CacheEntry],
                    book: _ShardBook, hands: bool
                    ) -> Iterator[tuple[SourceItem, np.ndarray, CacheEntry]]:
    """(item, picture, landmarks entry) for each usable source, in order. Sources are decoded
    a chunk at a time, and the landmarks of the chunk's new ones found together
    (detect_landmarks_many) before any of them is rendered: the landmark model runs on several
    faces at once, and the networks' weights stay in the CPU's caches. The output does not
    depend on the chunks."""
    chunk: list[tuple[SourceItem, np.ndarray, str]] = []
    pixels = 0
    for item, rgb, digest in _decoded(items, book):
        chunk.append((item, rgb, digest))
        pixels += rgb.shape[0] * rgb.shape[1]
        if len(chunk) >= DETECT_CHUNK or pixels >= DETECT_CHUNK_PIXELS:
            yield from _landmarks_of(chunk, cache_entries, book, hands)
            chunk, pixels = [], 0
    yield from _landmarks_of(chunk, cache_entries, book, hands)


def _decoded(items: list[SourceItem], book: _ShardBook
             ) -> Iterator[tuple[SourceItem, np.ndarray, str]]:
    """(item, picture, digest of its bytes) for each source that reads and decodes."""
    from .decode import BadImage, decode_image

    for item in items:
        t = time.perf_counter()
        try:
            data = read_source(item)
        except OSError as e:
            book.fail(item, "unreadable", f"{type(e).__name__}: {e}")
            continue
        digest = digest_bytes(data)
        t2 = time.perf_counter()
        book.secs["read"] += t2 - t
        try:
            rgb = decode_image(data)
        except BadImage as e:
            book.fail(item, e.reason, e.detail)
            continue
        finally:
            book.secs["decode"] += time.perf_counter() - t2
        yield item, rgb, digest


def _landmarks_of(chunk: list[tuple[SourceItem, np.ndarray, str]],
                  cache_entries: dict[str, CacheEntry], book: _ShardBook, hands: bool
                  ) -> Iterator[tuple[SourceItem, np.ndarray, CacheEntry]]:
    """The chunk's sources with their landmarks: from the cache where its entry is for the
    same bytes, else found now (and added to ``book.new_cache``); with ``hands``, the hands
    near each face too, where the entry has not looked for them."""
    from .landmarks import NoFace, detect_landmarks_many, runtime_description

    t = time.perf_counter()
    entries = [cache_entries.get(item.key) for item, _, _ in chunk]
    todo = [k for k, ((_, _, digest), e) in enumerate(zip(chunk, entries, strict=True))
            if e is None or e.digest != digest]
    found = detect_landmarks_many([chunk[k][1] for k in todo]) if todo else []
    for k, det in zip(todo, found, strict=True):
        digest = chunk[k][2]
        if isinstance(det, NoFace):  # every attempt failed: the main runtime is named
            entries[k] = CacheEntry(digest, None, det.reason, det.detail, 0,
                                    runtime_description())
        else:
            entries[k] = CacheEntry(digest, det.points, "", "", det.faces_found, det.found_with)
        book.new_cache[chunk[k][0].key] = entries[k]
    book.secs["detect"] += time.perf_counter() - t
    if hands:
        t = time.perf_counter()
        _look_for_hands(chunk, entries, book)
        book.secs["hands"] += time.perf_counter() - t
    for (item, rgb, _), entry in zip(chunk, entries, strict=True):
        book.found_with.add(entry.found_with)
        if entry.points is None:
            book.fail(item, entry.reason, entry.detail)
            continue
        yield item, rgb, entry


def _look_for_hands(chunk: list[tuple[SourceItem, np.ndarray, str]],
                    entries: list[CacheEntry | None], book: _ShardBook) -> None:
    """Find the hands near each face of the chunk whose entry has not looked for them (in
    place, and into ``book.new_cache``)."""
    from .hands import find_hands

    for k, ((item, rgb, _), e) in enumerate(zip(chunk, entries, strict=True)):
        if e is not None and e.points is not None and e.hands is None:
            entries[k] = replace(e, hands=find_hands(rgb, e.points))
            book.new_cache[item.key] = entries[k]


def _encode(img: np.ndarray, cfg: GenerateConfig) -> bytes:
    """An RGB picture of a pair in the run's image format."""
    from .encode import encode_jpeg, encode_png_rgb

    return encode_jpeg(img, cfg.jpeg_quality) if cfg.image_format == "jpg" else encode_png_rgb(img)


def _face_json(item: SourceItem, face: MaskableFace, entry: CacheEntry,
               cfg: GenerateConfig) -> str:
    """The JSON object of what every sample of a face shares, serialised once per face (each
    sample's own members go in front of its members). Landmarks are tenths of a pixel as
    integers: exact enough, and ~4x faster to write than floats."""
    text = json.dumps({
        "source": item.key, "source_ref": item.ref, "split": item.split,
        **({"identity": item.identity} if item.identity is not None else {}),
        "seed": cfg.seed, "size": cfg.crop_size,
        **({"crop": cfg.crop} if cfg.crop != DEFAULT_CROP else {}),
        "alignment": np.round(face.matrix, 6).tolist(), "pose": face.pose,
        **({"frame_cut": face.cut} if face.cut is not None else {}),
        "faces_found": entry.faces_found, "landmarks_unit": 0.1},
        separators=(",", ":"))
    return (f'{text[:-1]},"landmarks":'
            f'{_int_rows_json(np.round(face.points * 10).astype(np.int32))}}}')


def _int_rows_json(a: np.ndarray) -> str:
    """``json.dumps(a.tolist(), separators=(",", ":"))`` for a 2-D integer array, in one
    %-format: 0.1 instead of 0.2 ms for a face's landmarks."""
    rows, cols = a.shape
    row = "[" + ",".join(["%d"] * cols) + "],"
    return "[" + (row * rows % tuple(a.ravel().tolist()))[:-1] + "]"


def _finalize(out: Path, cfg: GenerateConfig, source_desc: str, tasks: list[ShardTask],
              type_names: list[str], cache: LandmarkCache, cache_path: Path) -> None:
    """Write manifest.json, failures.jsonl and the merged landmark cache (all deterministic)."""
    states = [_read_json(out / STATE_DIR / f"{t.state_name}.json") for t in tasks]
    failures = sorted((f for s in states for f in s["failures"]),
                      key=lambda f: (f["source"], f.get("type", "")))
    _atomic_write(out / "failures.jsonl", "".join(json.dumps(f) + "\n" for f in failures))
    splits: dict[str, dict] = {}
    per_type: Counter = Counter()
    for t, s in zip(tasks, states, strict=True):
        sp = splits.setdefault(t.split, {"shards": [], "pairs": 0, "faces": 0})
        sp["shards"].append({"path": f"{t.split}/{t.name}.tar", "pairs": s["pairs"],
                             "members": s["members"], "bytes": s["bytes"],
                             "sha256": s["sha256"], "sources": len(t.items),
                             "sources_digest": s["sources_digest"]})
        sp["pairs"] += s["pairs"]
        sp["faces"] += s["faces_ok"]
    reasons = Counter(f["reason"] for f in failures if "type" not in f)
    failed_sources = len({f["source"] for f in failures if "type" not in f})
    for s in states:
        per_type.update(s["types"])
    if cfg.identity != "none":
        people = {t.split: set() for t in tasks}
        for t, s in zip(tasks, states, strict=True):
            people[t.split].update(s.get("identities", []))
        for split, names in people.items():
            splits[split]["identities"] = len(names)
    manifest = {
        "format": "maskface-shards/1", "version": __version__,
        "config": cfg.output_fingerprint(source_desc), "types": type_names,
        "sources": sum(len(t.items) for t in tasks),
        "sources_digest": sources_digest([i for t in tasks for i in t.items]),
        "failed_sources": failed_sources,
        "pairs": sum(s["pairs"] for s in states), "failures": dict(sorted(reasons.items())),
        "render_failures": sum(1 for f in failures if "type" in f),
        "pairs_per_type": dict(sorted(per_type.items())), "splits": splits,
        # From the cache entries used, so a re-render from a cache reports the same; "" for
        # caches written before this was recorded.
        "landmarks_found_with": sorted({w for s in states
                                        for w in s.get("landmarks_found_with", [])}),
        **(identity_counts(people) if cfg.identity != "none" else {}),
        "members": [f"{{key}}.masked.{cfg.image_format}", f"{{key}}.clean.{cfg.image_format}",
                    "{key}.mask.png", "{key}.json"],
    }
    _atomic_write(out / "manifest.json", json.dumps(manifest, indent=1))
    # Entries come from the cache file or from these parts: without parts, nothing is new, and
    # the file is left alone (a complete cache may be shared read-only).
    parts = _landmark_parts(out)
    for part in parts:
        cache.update(LandmarkCache.load(part).entries)
    if parts:
        cache.save(cache_path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def identity_counts(people: dict[str, set[str]]) -> dict:
    """The manifest's identity summary from the people written in each split: how many in all,
    and how many are in more than one split (0 for an identity-disjoint split)."""
    seen: Counter = Counter(name for names in people.values() for name in names)
    crossing = sorted(name for name, n in seen.items() if n > 1)
    return {"identities": len(seen), "identities_in_several_splits": len(crossing),
            **({"identities_in_several_splits_examples": crossing[:10]} if crossing else {})}
