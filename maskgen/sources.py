"""Where source faces come from: CelebA as users download it, any folder or file list, or demo.

A source is resolved once, in the parent process, into a sorted list of :class:`SourceItem` (a
small picklable reference plus its split); workers read the bytes themselves with
:func:`read_source`. Reading never decodes: decoding errors belong to :mod:`.decode`.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .split import celeba_split_by_id, hash_split, parse_partition_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CELEBA_ENV = "MASKFACE_CELEBA"
CELEBA_DEFAULT = Path("~/data/celeba")
CELEBA_HELP = (
    "CelebA was not found at {where}.\n"
    "Get it from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Align&Cropped Images: "
    "img_align_celeba.zip, and Eval/list_eval_partition.txt), then either\n"
    "  * put img_align_celeba.zip (read in place, no need to extract) or the extracted\n"
    "    img_align_celeba/ (or the in-the-wild img_celeba/) folder in that directory, or\n"
    "  * pass --celeba-root DIR, or set MASKFACE_CELEBA=DIR.\n"
    "list_eval_partition.txt beside them (or in Eval/) gives the official split; without it the\n"
    "official id ranges are used."
)


class SourceError(RuntimeError):
    """A source that cannot be used at all (as opposed to one bad image inside it)."""


@dataclass(frozen=True)
class SourceItem:
    """One source image: ``key`` is unique and safe as a WebDataset key (no dots or slashes)."""

    key: str
    kind: str  # "file", "zip" or "demo"
    ref: str  # file path; "zip path::member"; demo name
    split: str


def resolve_source(src: str, *, celeba_root: str | None = None,
                   ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
                   ) -> tuple[str, list[SourceItem]]:
    """Resolve ``--src`` (``celeba``, ``demo``, a directory or a text file list) to items.

    Returns a description of the source (for the manifest) and the items sorted by key.
    Raises :class:`SourceError` with an actionable message when the source cannot be used.
    """
    if src == "demo":
        return "demo", demo_items(ratios)
    if src == "celeba":
        root = Path(celeba_root or os.environ.get(CELEBA_ENV) or CELEBA_DEFAULT).expanduser()
        return f"celeba:{root}", celeba_items(root, ratios)
    p = Path(src).expanduser()
    if p.is_dir():
        return f"folder:{p}", folder_items(p, ratios)
    if p.is_file() and p.suffix.lower() in (".txt", ".lst", ".list"):
        return f"list:{p}", list_items(p, ratios)
    if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS:
        key = safe_key(p.stem)
        return f"file:{p}", [SourceItem(key, "file", str(p), hash_split(key, ratios))]
    raise SourceError(f"--src {src!r}: not 'celeba', 'demo', a directory, an image or a .txt "
                      "list of image paths")


def read_source(item: SourceItem) -> bytes:
    """The raw bytes of one source image (raises OSError when unreadable)."""
    if item.kind == "file":
        return Path(item.ref).read_bytes()
    if item.kind == "zip":
        import zlib

        zpath, member = item.ref.split("::", 1)
        try:
            return _open_zip(zpath).read(member)
        except (zipfile.BadZipFile, KeyError, zlib.error) as e:
            # A damaged member is one unreadable image, not a reason to stop the run.
            raise OSError(f"{zpath}: member {member}: {e}") from e
    if item.kind == "demo":
        from .demo import demo_bytes

        return demo_bytes(item.ref)
    raise ValueError(f"unknown source kind {item.kind!r}")


@lru_cache(maxsize=4)
def _open_zip(path: str) -> zipfile.ZipFile:
    # One handle per process: zip members are read in place, never extracted.
    return zipfile.ZipFile(path)


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def safe_key(text: str) -> str:
    """A WebDataset-safe key: letters, digits, ``_`` and ``-`` only (dots would split the key)."""
    return _UNSAFE.sub("_", text).strip("_") or "img"


def _unique_keys(rel_paths: list[str]) -> list[str]:
    """Keys from relative paths; colliding ones (``a.jpg`` and ``a.png``) get a hash suffix."""
    import hashlib

    keys = [safe_key(os.path.splitext(r)[0].replace(os.sep, "__")) for r in rel_paths]
    seen: dict[str, int] = {}
    for k in keys:
        seen[k] = seen.get(k, 0) + 1
    out = []
    for k, r in zip(keys, rel_paths, strict=True):
        if seen[k] > 1:
            k = f"{k}-{hashlib.blake2b(r.encode(), digest_size=4).hexdigest()}"
        out.append(k)
    return out


def image_files(root: Path) -> list[str]:
    """Paths (relative to ``root``, sorted) of every image under it: recursive, extensions in
    any case, hidden files and folders skipped."""
    rels = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."):
                rels.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(rels)


def folder_items(root: Path, ratios: tuple[float, float, float]) -> list[SourceItem]:
    """Every image under ``root`` (see :func:`image_files`), hash-split."""
    rels = image_files(root)
    if not rels:
        raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    keys = _unique_keys(rels)
    return sorted((SourceItem(k, "file", str(root / r), hash_split(k, ratios))
                   for k, r in zip(keys, rels, strict=True)), key=lambda i: i.key)


def list_items(list_file: Path, ratios: tuple[float, float, float]) -> list[SourceItem]:
    """Images named one per line in a text file (relative paths are relative to the file)."""
    base = list_file.parent
    paths = []
    for line in list_file.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            paths.append(str(p if p.is_absolute() else base / p))
    if not paths:
        raise SourceError(f"{list_file} lists no images")
    keys = _unique_keys([os.path.relpath(p, base) if not p.startswith("/") else p.lstrip("/")
                         for p in paths])
    return sorted((SourceItem(k, "file", p, hash_split(k, ratios))
                   for k, p in zip(keys, paths, strict=True)), key=lambda i: i.key)


def demo_items(ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[SourceItem]:
    """The built-in ``demo`` source's items (pictures of :mod:`.demo`), split by key hash like
    any folder."""
    from .demo import demo_names

    return sorted((SourceItem(name.replace(".", "_"), "demo", name, hash_split(name, ratios))
                   for name in demo_names()), key=lambda i: i.key)


def celeba_items(root: Path, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
                 ) -> list[SourceItem]:
    """CelebA under ``root``: ``img_align_celeba/``, ``img_celeba/``, ``img_align_celeba.zip``
    or the JPEGs directly; split by ``list_eval_partition.txt`` or the official id ranges."""
    if not root.exists():
        raise SourceError(CELEBA_HELP.format(where=root))
    partition: dict[str, str] = {}
    for cand in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"):
        if cand.is_file():
            partition = parse_partition_file(cand.read_text())
            break

    found: list[tuple[str, str, str]] = []  # (file name, kind, ref)
    for sub in ("img_align_celeba", "img_celeba", "img_align_celeba_png"):
        d = root / sub
        if d.is_dir():
            found = [(f, "file", str(d / f)) for f in sorted(os.listdir(d))
                     if f.lower().endswith(IMAGE_EXTENSIONS)]
            break
    if not found:
        for zname in ("img_align_celeba.zip", "img_celeba.zip"):
            z = root / zname
            if z.is_file():
                with zipfile.ZipFile(z) as zf:
                    names = [n for n in zf.namelist()
                             if n.lower().endswith(IMAGE_EXTENSIONS) and not n.endswith("/")]
                found = [(os.path.basename(n), "zip", f"{z}::{n}") for n in sorted(names)]
                break
    if not found and root.is_dir():
        found = [(f, "file", str(root / f)) for f in sorted(os.listdir(root))
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise SourceError(CELEBA_HELP.format(where=root))

    items = []
    for name, kind, ref in found:
        stem = os.path.splitext(name)[0]
        split = partition.get(name) or partition.get(stem + ".jpg")
        if split is None and stem.isdigit():
            split = celeba_split_by_id(int(stem))
        key = safe_key(stem)
        items.append(SourceItem(key, kind, ref, split or hash_split(key, ratios)))
    return sorted(items, key=lambda i: i.key)
