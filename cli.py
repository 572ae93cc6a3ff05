"""The ``maskface`` command line: generate, types, preview, verify, export-folder, pairs, train,
eval, unmask, demo, export.

Every command writes its result (the summary line, table, list or JSON a script captures) to
stdout, and progress, per-item notes and warnings, pointers to where files went and errors to
stderr, so that ``maskface CMD > result`` holds the result alone."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

import click

from . import __version__
from .training.registry import AUGMENTS, BASELINES, LR_SCHEDULES, NORMS, VARIANTS


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskface")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """maskface: synthetic masked-face datasets and mask removal."""
    _setup_logging(verbose)
    import importlib.util

    if importlib.util.find_spec("cv2") is None:
        # The base install leaves OpenCV to an extra, so that there is only ever one.
        raise click.ClickException(
            "OpenCV is not installed: pip install 'maskface[landmarks]' (generation, with "
            "MediaPipe's OpenCV) or 'maskface[opencv]' (training and unmask only)")


@main.command()
@click.option("--src", default="demo", show_default=True,
              help="'celeba', 'demo', a folder of images (recursive) or a .txt list of paths.")
@click.option("--out", default="out/generate", show_default=True, type=click.Path(),
              help="Output directory (shards per split, manifest.json, failures.jsonl).")
@click.option("--types", default="all", show_default=True,
              help="'all' or a comma list of mask types (see `maskface types`).")
@click.option("--per-face", default="1", show_default=True,
              help="Mask types per face: a number (drawn per face from the seed) or 'all'.")
@click.option("--jobs", default=-1, show_default=True,
              help="Worker processes: 1 or more (more than the cores is capped at the cores), "
                   "or -1 for all cores.")
@click.option("--seed", default=0, show_default=True, help="Same seed, same bytes.")
@click.option("--size", default=256, show_default=True,
              help="Side of the aligned face crop, 64 to 2048.")
@click.option("--landmarks-cache", type=click.Path(), default=None,
              help="Landmark cache file (.npz); default OUT/landmarks.npz. Reuse one to "
                   "re-render without detecting (MediaPipe then need not be installed).")
@click.option("--scheduler", default=None,
              help="Dask scheduler address (tcp://host:8786): run the shards on that cluster.")
@click.option("--shard-index", type=int, default=None, help="This machine's part (0-based)...")
@click.option("--num-shards", type=int, default=None, help="...of this many parts.")
@click.option("--shard-size", default=256, show_default=True,
              help="Most source images per shard (a split's shards get equal shares).")
@click.option("--split-ratios", default="0.8,0.1,0.1", show_default=True,
              help="train,val,test ratios where the source has no official split.")
@click.option("--celeba-root", type=click.Path(), default=None,
              help="CelebA directory (else $MASKFACE_CELEBA, else ~/data/celeba).")
@click.option("--templates", "template_dirs", multiple=True, type=click.Path(exists=True),
              help="Extra directory of mask templates (repeatable).")
@click.option("--image-format", type=click.Choice(["jpg", "png"]), default="jpg",
              show_default=True, help="png stores pairs losslessly (masked == clean outside "
                                      "the mask, on disk too).")
@click.option("--jpeg-quality", default=95, show_default=True, help="1 to 100.")
@click.option("--wear", default="proper=1", show_default=True,
              help="Wear styles with probabilities, e.g. "
                   "proper=0.8,nose-exposed=0.12,under-chin=0.08.")
@click.option("--frame-cut", default=0.0, show_default=True,
              help="Share of faces whose photo is cut off between the lower lip and the chin "
                   "(as in tight real photos; below the cut flat grey, as unmask shows a model).")
@click.option("--hands/--no-hands", default=True, show_default=True,
              help="Find hands over the lower face and keep them in front of the masks.")
@click.option("--hair/--no-hair", default=True, show_default=True,
              help="Find hair over the cheeks (where its colour tells it from the skin) and "
                   "keep it in front of the masks.")
@click.option("--limit", type=int, default=None, help="Use only the first N sources (by key).")
@click.option("--identity", default="auto", show_default=True,
              help="Who each image shows, kept in the metadata and splitting by person: "
                   "'folder' (the image's parent folder), a FILE of 'PATH IDENTITY' lines, "
                   "'none', or 'auto' (CelebA's identity_CelebA.txt beside its "
                   "list_eval_partition.txt, else none).")
@click.option("--crop", default="default", show_default=True,
              help="The crop: 'default' (--size, the whole lower face) or 'arcface112' "
                   "(arcface128, arcface224, ...): the five-point face-recognition template.")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on a terminal).")
def generate(src, out, types, per_face, jobs, seed, size, landmarks_cache, scheduler,
             shard_index, num_shards, shard_size, split_ratios, celeba_root, template_dirs,
             image_format, jpeg_quality, wear, frame_cut, hands, hair, limit, identity, crop,
             progress) -> None:
    """Write masked/clean/mask training pairs as WebDataset tar shards."""
    from .maskgen.pipeline import GenerateConfig, GenerateError, run_generate
    from .maskgen.sources import SourceError
    from .maskgen.split import parse_ratios

    with _click_errors(GenerateError, SourceError, ValueError):
        cfg = GenerateConfig(
            src=src, out=out, types=types, per_face=per_face, seed=seed, size=size,
            shard_size=shard_size, split_ratios=parse_ratios(split_ratios),
            celeba_root=celeba_root, jpeg_quality=jpeg_quality, image_format=image_format,
            templates=tuple(template_dirs), wear=wear, frame_cut=frame_cut, hands=hands,
            hair=hair, limit=limit, identity=identity, crop=crop, jobs=jobs,
            landmarks_cache=landmarks_cache, scheduler=scheduler, shard_index=shard_index,
            num_shards=num_shards, progress=progress)
        s = run_generate(cfg)
    d = s.as_dict()
    fails = ", ".join(f"{k} {v}" for k, v in d["failures"].items()) or "none"
    click.echo(f"faces in {s.faces_in}, masked {s.faces_ok}, pairs out {s.pairs}, "
               f"failures: {fails}; {s.seconds:.1f} s, {d['faces_per_s'] or 0:.1f} faces/s"
               + (f" ({s.skipped_shards} shards already done)" if s.skipped_shards else "")
               + (f" ({s.redone_shards} finished shards made again: the source changed)"
                  if s.redone_shards else ""))
    click.echo(f"output: {out}", err=True)  # a pointer, not the result: stderr


@main.command("types")
@click.option("--templates", "template_dirs", multiple=True, type=click.Path(exists=True))
@click.option("--verbose", "detail", is_flag=True, help="Also print each type's description.")
def types_cmd(template_dirs, detail) -> None:
    """List the registered mask types, one per line."""
    from .maskgen.templates import registry

    try:
        reg = registry(tuple(template_dirs))
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    for name, t in reg.items():
        click.echo(f"{name}\t{t.description}" if detail else name)


@main.command()
@click.option("--src", default="demo", show_default=True)
@click.option("--out", default="preview.png", show_default=True, type=click.Path())
@click.option("--shards", "shard_dir", type=click.Path(exists=True), default=None,
              help="Instead of rendering, show pairs a `generate` run wrote to this directory "
                   "(masked | mask | clean under the source key and mask type).")
@click.option("--samples", default=24, show_default=True, help="Pairs shown with --shards.")
@click.option("--types", default="all", show_default=True)
@click.option("--faces", default=6, show_default=True, help="Rows (faces) in the sheet.")
@click.option("--keys", default=None,
              help="Comma list of source keys to show, in this order (else the first --faces; "
                   "with --shards, only these faces' pairs).")
@click.option("--wear", default="proper", show_default=True,
              help="Wear style to show: proper, nose-exposed or under-chin.")
@click.option("--seed", default=0, show_default=True)
@click.option("--size", default=192, show_default=True, help="Tile size in the sheet.")
@click.option("--celeba-root", type=click.Path(), default=None)
@click.option("--templates", "template_dirs", multiple=True, type=click.Path(exists=True))
@click.option("--crop", default="default", show_default=True,
              help="The crop, as in generate: default, or arcface112 (arcface128, ...), "
                   "whose side sets the tile size.")
@click.option("--hands/--no-hands", default=True, show_default=True,
              help="Keep the hands over the lower face in front of the masks, as generate does.")
@click.option("--hair/--no-hair", default=True, show_default=True,
              help="Keep the hair over the cheeks in front of the masks, as generate does.")
@click.option("--frame-cut", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1),
              help="Share of faces cut off by the frame below the lips, as generate cuts them "
                   "(1: every face).")
def preview(src, out, shard_dir, samples, types, faces, keys, wear, seed, size, celeba_root,
            template_dirs, crop, hands, hair, frame_cut) -> None:
    """A contact sheet PNG: each face clean, then with every selected mask type (or, with
    --shards, the pairs a run wrote)."""
    from .maskgen.preview import make_sheet, sheet_from_shards
    from .maskgen.sources import SourceError

    # An option the chosen mode does not use is refused rather than silently ignored: a
    # sheet that looks right but was not made as asked is worse than an error.
    if shard_dir:
        _refuse_given(RENDER_ONLY, "only for rendering from --src; --shards shows the pairs "
                                   "as generate wrote them (--keys and --samples choose which)")
    else:
        _refuse_given(("samples",), "only with --shards (rendering shows --faces rows)")
    with _click_errors(ValueError, SourceError):
        if shard_dir:
            info = sheet_from_shards(shard_dir, out, samples=samples, keys=_key_list(keys))
        else:
            info = make_sheet(src, out, types=types, faces=faces, seed=seed, size=size,
                              celeba_root=celeba_root, templates=tuple(template_dirs),
                              keys=_key_list(keys), wear=wear, crop=crop,
                              hands=hands, hair=hair, frame_cut=frame_cut)
    click.echo(json.dumps(info))


@main.command()
@click.argument("out", type=click.Path())
def verify(out) -> None:
    """Check that a `maskface generate` output is whole: every shard its manifest.json lists
    is there and has the listed samples, members, size and sha256, no other shard is there,
    and failures.jsonl has the listed records. Exits 1, naming each bad file, if not."""
    from .maskgen.shards import verify_output

    rep = verify_output(out)
    for note in rep.notes:
        click.echo(f"note: {note}", err=True)
    for problem in rep.problems:
        click.echo(f"BAD {problem}", err=True)
    if rep.problems:
        raise click.ClickException(f"{out}: {len(rep.problems)} problem(s) in {rep.shards} "
                                   "shards (see above)")
    click.echo(f"{out}: {rep.shards} shards, {rep.pairs} pairs, all whole")  # the result: stdout


@main.command("export-folder")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.argument("dest", type=click.Path())
@click.option("--split", default=None, help="Only this split (default: every split).")
@click.option("--with-clean", is_flag=True,
              help="Also write each photo's clean image ({source}_clean.jpg) beside its masked "
                   "samples.")
def export_folder_cmd(out, dest, split, with_clean) -> None:
    """Copy a generate output made with --identity into DEST/{split}/{identity}/{key}.jpg (a
    folder per person, as torchvision's ImageFolder reads it) with DEST/{split}.csv as its
    index. The shards' images are copied as they are, not rendered again."""
    from .maskgen.folder_export import ExportError, export_folder
    from .maskgen.shards import ShardError

    with _click_errors(ExportError, ShardError):
        s = export_folder(out, dest, split=split, with_clean=with_clean)
    for sp, n in s.images.items():
        click.echo(f"{dest}/{sp}: {n} images of {s.identities[sp]} identities "
                   f"(index {dest}/{sp}.csv)")


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--n", "n", required=True, type=click.IntRange(min=1),
              help="Pairs of each kind (same identity, different identities).")
@click.option("--split", default="test", show_default=True)
@click.option("--seed", default=0, show_default=True, help="Same seed, same pairs.")
@click.option("--file", "path", type=click.Path(), default=None,
              help="Where to write them (default OUT/pairs-{split}.txt).")
def pairs(out, n, split, seed, path) -> None:
    """Write LFW-style verification pairs (a masked sample against another photo's clean
    image, same or different identity) from a generate output made with --identity; the paths
    are those `maskface export-folder OUT DEST --with-clean` writes under DEST."""
    from pathlib import Path

    from .maskgen.folder_export import ExportError
    from .maskgen.shards import ShardError
    from .maskgen.verification_pairs import write_pairs

    with _click_errors(ExportError, ShardError):
        info = write_pairs(out, path or Path(out) / f"pairs-{split}.txt", n=n, split=split,
                           seed=seed)
    click.echo(json.dumps(info))


# preview's options that only rendering from sources uses (its parameters' names).
RENDER_ONLY = ("src", "types", "faces", "wear", "seed", "size", "celeba_root", "template_dirs",
               "crop", "hands", "hair", "frame_cut")


def _refuse_given(names: tuple[str, ...], why: str) -> None:
    """A usage error naming those of the current command's options ``names`` that the user
    gave (on the command line or through the environment), with ``why``."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [p for p in ctx.command.params if p.name in names
             and ctx.get_parameter_source(p.name) not in (None, ParameterSource.DEFAULT)]
    if given:
        flags = ", ".join("/".join(p.opts + p.secondary_opts) for p in given)
        raise click.UsageError(f"{flags}: {why}")


def _key_list(keys: str | None) -> list[str] | None:
    """``--keys a,b``, spaces after the commas allowed (no source key starts or ends with one
    that a user would type on purpose)."""
    if not keys:
        return None
    return [k.strip() for k in keys.split(",") if k.strip()] or None


def _os_error(e: OSError) -> str:
    """One line for a file the command could not read or write: what, and which file."""
    where = f": {e.filename}" if e.filename else ""
    return f"{e.strerror or e}{where}"


@contextlib.contextmanager
def _click_errors(*kinds: type[Exception]):
    """Turn the command's own errors (``kinds``) and a file it cannot read or write into one
    line for the user, without a traceback."""
    try:
        yield
    except kinds as e:
        raise click.ClickException(str(e)) from e
    except OSError as e:
        raise click.ClickException(_os_error(e)) from e


@main.command()
@click.option("--data", required=True, type=click.Path(), help="A `maskface generate` output.")
@click.option("--out", required=True, type=click.Path(), help="Run directory.")
@click.option("--model", default="ra-unet", show_default=True, type=click.Choice(list(VARIANTS)))
@click.option("--width", default=64, show_default=True, type=click.IntRange(min=1),
              help="Channels of the first level (doubled at each level below).")
@click.option("--depth", default=5, show_default=True, type=click.IntRange(min=2, max=8),
              help="Levels (the paper's 5: 64...1024 channels at width 64).")
@click.option("--norm", default="none", show_default=True, type=click.Choice(list(NORMS)),
              help="none: the paper's RA-UNet; batch: BatchNorm after every conv.")
@click.option("--mask-head/--no-mask-head", default=True, show_default=True,
              help="A fourth output channel that learns where the mask is (BCE + Dice); "
                   "--no-mask-head: the paper's plain network.")
@click.option("--augment", default="paper", show_default=True, type=click.Choice(list(AUGMENTS)),
              help="paper: flips and the paper's colour jitter (on the device); flip; none.")
@click.option("--epochs", default=40, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", type=click.IntRange(min=1), default=None,
              help="Stop after this many steps.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many minutes (at a log interval; validates and saves).")
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(min=1),
              help="Per process (GPU).")
@click.option("--lr", default=1e-4, show_default=True,
              type=click.FloatRange(min=0, min_open=True))
@click.option("--lr-schedule", default="constant", show_default=True,
              type=click.Choice(list(LR_SCHEDULES)),
              help="constant (the paper's); cosine: down to 2 % of --lr over --max-steps "
                   "(or --epochs).")
@click.option("--hole-weight", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Weight of an extra L1 loss over the mask's pixels (mask-head models: "
                   "their output is used there only); 0: the paper's loss.")
@click.option("--bare-fraction", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs shown without a mask (input = clean face, empty mask), so "
                   "a mask-head model learns to leave bare faces alone.")
@click.option("--mask-recolour", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs whose mask (input only) gets a random colour and "
                   "brightness, for masks in colours the templates lack (mask-head models).")
@click.option("--mask-texture", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs whose mask is made opaque: its own colour, smooth shading and "
                   "folds instead of the face's shading the renderer gives it, as on real masks "
                   "(mask-head models).")
@click.option("--mask-rim", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs given a rim around the mask (a hem, a light lining, a "
                   "shadow; 1 px to 3 % of the side wide), which the mask head learns as part of "
                   "the mask (mask-head models).")
@click.option("--grey-fraction", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs turned grey, input and target alike.")
@click.option("--erase-fraction", default=0.0, show_default=True,
              type=click.FloatRange(min=0, max=1, max_open=True),
              help="Share of pairs whose mask, grown a little, is erased to flat grey in the "
                   "input: the model learns to paint a face into a hole and restores in two "
                   "passes (find the mask, erase it, paint), so nothing of a real mask's "
                   "colour comes through (mask-head models).")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from a trained model's weights (a checkpoint or .safetensors, e.g. "
                   "the bundled one) to fine-tune it; the network options must match it.")
@click.option("--loss", default="l1", show_default=True, type=click.Choice(["l1", "mse"]),
              help="Second term of ssim_l1: L1 (the paper's text) or MSE (its code).")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--precision", default="auto", show_default=True,
              type=click.Choice(["auto", "bf16", "fp32"]),
              help="bf16: autocast and channels_last (auto picks it on CUDA); fp32: the paper's.")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--resume", type=click.Choice(["yes", "auto"]), is_flag=False, flag_value="yes",
              default=None, help="Continue from OUT/checkpoints/last.pt (`--resume`: it must "
              "exist; `--resume auto`: start fresh when it does not).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="DataLoader workers per process [default: the cores less two, 1 to 12].")
@click.option("--seed", default=0, show_default=True)
@click.option("--checkpoint-every", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Steps between saves of last.pt (a run also saves at its end).")
@click.option("--val-every", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Steps between validations (a run also validates at its end).")
@click.option("--log-every", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--val-batches", default=50, show_default=True, type=click.IntRange(min=1),
              help="Validation batches (of --batch-size) each time.")
def train(data, out, model, width, depth, norm, mask_head, augment, epochs, max_steps,
          max_minutes, batch_size, lr, lr_schedule, hole_weight, bare_fraction, mask_texture,
          mask_recolour, mask_rim, grey_fraction, erase_fraction, init, loss, device, precision,
          compile_, resume, workers, seed, checkpoint_every, val_every, log_every,
          val_batches) -> None:
    """Train the RA-UNet (or a variant) on generated shards. Multi-GPU: torchrun."""
    from .maskgen.shards import ShardError
    from .training.train import TrainConfig, TrainError
    from .training.train import train as run

    try:
        cfg = TrainConfig(
            data=data, out=out, model=model, width=width, depth=depth, norm=norm,
            mask_head=mask_head, augment=augment, epochs=epochs, max_steps=max_steps,
            max_minutes=max_minutes, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
            hole_weight=hole_weight, bare_fraction=bare_fraction, mask_texture=mask_texture,
            mask_recolour=mask_recolour, mask_rim=mask_rim, grey_fraction=grey_fraction,
            erase_fraction=erase_fraction,
            init=init, loss=loss,
            device=device, precision=precision, compile=compile_, resume=resume or "no",
            workers=workers, seed=seed,
            checkpoint_every=checkpoint_every, val_every=val_every, log_every=log_every,
            val_batches=val_batches)
        last = run(cfg)
    except (TrainError, ShardError) as e:
        raise click.ClickException(str(e)) from e
    # Under torchrun every rank returns the metrics; one line keeps stdout a single JSON value.
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(json.dumps(last))


@main.command("eval")
@click.option("--checkpoint", "checkpoints", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="A `maskface train` checkpoint or .safetensors model (repeat for an "
                   "ablation table) [default: the bundled model].")
@click.option("--label", "labels", multiple=True,
              help="Report name per --checkpoint, in the same order (default: model name).")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="A `maskface generate` output.")
@click.option("--split", default="test", show_default=True)
@click.option("--out", required=True, type=click.Path(), help="Report directory.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate the first N pairs only.")
@click.option("--baselines", default=",".join(BASELINES), show_default=True,
              help="Comma list; empty for none.")
@click.option("--composite/--no-composite", default=True, show_default=True,
              help="Also report each checkpoint composited (its output only inside the mask "
                   "it found: by its mask head, or where it changed the picture).")
@click.option("--timing/--no-timing", default=True, show_default=True,
              help="Measure the networks' batch-1 latency and batched throughput.")
@click.option("--timing-batch", type=click.IntRange(min=1), default=None,
              help="Batch for throughput (default 64 on CUDA, 16 on the CPU).")
def eval_cmd(checkpoints, labels, data, split, out, device, batch_size, limit, baselines,
             composite, timing, timing_batch) -> None:
    """PSNR/SSIM/MAE of checkpoints and baselines on held-out pairs; writes OUT/report.json,
    OUT/report.md and OUT/sheet.png."""
    from .maskgen.shards import ShardError
    from .training.checkpoint import CheckpointError
    from .training.evaluate import EvalConfig, EvalError, run_eval

    checkpoints = checkpoints or (_bundled_model(),)
    cfg = EvalConfig(checkpoints=tuple(checkpoints), labels=tuple(labels), data=data,
                     split=split, out=out, device=device, batch_size=batch_size, limit=limit,
                     baselines=tuple(b for b in baselines.split(",") if b),
                     composite=composite, timing=timing, timing_batch=timing_batch)
    try:
        report = run_eval(cfg, progress=_progress_bar("eval", limit))
    except (EvalError, CheckpointError, ShardError) as e:
        raise click.ClickException(str(e)) from e
    from .training.evaluate import fmt

    for name, m in report["methods"].items():
        t = m.get("ms_per_sample_b1")
        click.echo(f"{name:28s} PSNR {fmt(m['psnr'], 2):>6}  SSIM {fmt(m['ssim'], 4)}  "
                   f"masked {fmt(m['psnr_masked'], 2):>6} / {fmt(m['ssim_masked'], 4)}"
                   + (f"  {t:.2f} ms/sample" if t is not None else ""))
    click.echo(f"report: {out}/report.md", err=True)  # a pointer, not the result: stderr


@main.command()
@click.argument("photos", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A `maskface train` checkpoint or .safetensors model [default: the bundled "
                   "model].")
@click.option("--out", required=True, type=click.Path(),
              help="Output folder: NAME.png per restored photo (a photo left unchanged keeps "
                   "its own file and bytes), summary.json, sheets/sheet-NN.jpg.")
@click.option("--max-faces", type=click.IntRange(min=1), default=None,
              help="Restore at most N faces a photo (largest first; default all).")
@click.option("--composite", is_flag=True,
              help="For a model without a mask head: replace only what it changed instead of "
                   "the whole lower face (a mask-head model always blends by its own mask).")
@click.option("--side-by-side", is_flag=True,
              help="Also write compare/NAME.jpg (before | after).")
@click.option("--skin-tone/--no-skin-tone", default=True, show_default=True,
              help="A restored lower face the model painted in no skin colour (a grey or "
                   "blue-grey smear) takes the colour of the face's own skin; its shape and "
                   "lightness stay the model's.")
@click.option("--device", default="auto", show_default=True,
              type=click.Choice(["auto", "cpu", "cuda"]))
def unmask(photos, checkpoint, out, max_faces, composite, side_by_side, skin_tone,
           device) -> None:
    """Remove masks from photos (files or folders): every face is found, restored and blended
    back. Photos without a face, or without a mask, are copied unchanged and listed in
    summary.json."""
    from .training.checkpoint import CheckpointError
    from .training.predict import Predictor
    from .training.unmask import UnmaskError, find_photos, unmask_files

    try:
        pred = Predictor.load(checkpoint or _bundled_model(), device)
        total = len(find_photos(photos))
        s = unmask_files(photos, pred, out, max_faces=max_faces, composite=composite,
                         side_by_side=side_by_side, skin_tone=skin_tone,
                         progress=_progress_bar("unmask", total, "photo"))
    except (CheckpointError, UnmaskError) as e:
        raise click.ClickException(str(e)) from e
    for r in s["results"]:
        if r["status"] != "restored":
            click.echo(f"{r['source']}: {r['status']} ({r['reason']}); copied unchanged",
                       err=True)
    click.echo(f"{_count(s['photos'], 'photo')}: {s['photos_restored']} restored "
               f"({_count(s['faces_restored'], 'face')}, {s['pixels_changed']:,} pixels "
               f"changed), {s['no_mask']} with no mask found, {s['no_face']} without a face, "
               f"{s['unreadable']} unreadable, {s['errors']} failed; "
               f"{s['seconds_per_photo']} s a photo. Output: {out}")


@main.command()
@click.option("--out", default="out/demo", show_default=True, type=click.Path())
@click.option("--steps", default=300, show_default=True, help="Training steps.")
@click.option("--jobs", default=-1, show_default=True)
def demo(out, steps, jobs) -> None:
    """generate -> train -> eval -> unmask on the built-in faces, on the CPU, in minutes;
    writes OUT/index.md."""
    from .demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, steps=steps, jobs=jobs))
    click.echo(f"done: {out}/index.md")


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--onnx", "onnx_path", type=click.Path(), default=None,
              help="ONNX file to write (dynamic batch and size, checked against PyTorch).")
@click.option("--safetensors", "weights_path", type=click.Path(), default=None,
              help="Safetensors file to write: the model in half precision with its config "
                   "and crop size, no pickle (what ships in assets/models/).")
@click.option("--about", multiple=True, metavar="KEY=TEXT",
              help="Provenance stored in a --safetensors file's metadata (repeatable).")
@click.option("--average", "average_with", type=click.Path(exists=True, dir_okay=False),
              default=None, help="With --safetensors: average the weights with this model's "
              "(the same network, fine-tuned from it or it from this one).")
@click.option("--average-weight", default=0.5, show_default=True,
              type=click.FloatRange(min=0, max=1),
              help="The --average model's share of the weights.")
@click.option("--opset", default=17, show_default=True)
def export(checkpoint, onnx_path, weights_path, about, average_with, average_weight,
           opset) -> None:
    """Export a checkpoint [default: the bundled model] to ONNX and/or safetensors."""
    from .training.checkpoint import CheckpointError, export_weights
    from .training.export import export_onnx

    if not onnx_path and not weights_path:
        raise click.UsageError("give --onnx FILE and/or --safetensors FILE")
    bad = [a for a in about if "=" not in a]
    if bad:
        raise click.UsageError(f"--about takes KEY=TEXT, got {bad[0]!r}")
    if average_with and onnx_path:
        raise click.UsageError("--average writes a --safetensors file; export that to ONNX")
    checkpoint = checkpoint or _bundled_model()
    try:
        if weights_path:
            info = export_weights(checkpoint, weights_path, dict(a.split("=", 1) for a in about),
                                  average_with, average_weight)
            click.echo(json.dumps(info))
        if onnx_path:  # with both, a JSON line each
            click.echo(json.dumps(export_onnx(checkpoint, onnx_path, opset)))
    except (CheckpointError, RuntimeError) as e:
        raise click.ClickException(str(e)) from e


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _bundled_model() -> str:
    """The model that ships in the package, for commands given no --checkpoint."""
    from .training.checkpoint import DEFAULT_MODEL

    if not DEFAULT_MODEL.exists():
        raise click.ClickException(f"no bundled model at {DEFAULT_MODEL}; give --checkpoint")
    return str(DEFAULT_MODEL)


def _progress_bar(desc: str, total: int | None, unit: str = "pair"):
    """A tqdm update callback on a terminal, else None."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    return bar.update


if __name__ == "__main__":  # pragma: no cover
    main()
