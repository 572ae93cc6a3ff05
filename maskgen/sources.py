"""Where source faces come from: CelebA as users download it, any folder or file list, or demo.

A source is resolved once, in the parent process, into a sorted list of :class:`SourceItem` (a
small picklable reference plus its split); workers read the bytes themselves with
:func:`read_source`. Reading never decodes: decoding errors belong to :mod:`.decode`, and it
reads only regular files (a FIFO, device or folder named like an image is an unreadable source,
never a hang). A folder is listed following each real directory once: directory links that lead
to a folder already listed (a loop such as ``ln -s . self``) are reported and skipped.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .identities import (
    CELEBA_IDENTITY_FILE,
    IdentityError,
    folder_identity,
    identity_split,
    lookup_identity,
    read_identity_file,
)
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


log = logging.getLogger("maskface.sources")


class SourceError(RuntimeError):
    """A source that cannot be used at all (as opposed to one bad image inside it)."""


@dataclass(frozen=True)
class SourceItem:
    """One source image: ``key`` is unique and safe as a WebDataset key (no dots or slashes)."""

    key: str
    kind: str  # "file", "zip" or "demo"
    ref: str  # file path; "zip path::member"; demo name
    split: str
    identity: str | None = None  # the person in it, where the source says (see identities)


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
        return read_regular_file(item.ref)
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


def _what(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "a character device"
            if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "not a regular file")


def read_regular_file(path: str | os.PathLike) -> bytes:
    """The bytes of a regular file (a link to one is followed). Anything else raises OSError
    without blocking: a FIFO is opened non-blocking and refused, a device is never opened."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path}: {_what(st.st_mode)}, not an image file")
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with open(fd, "rb") as f:
        st = os.fstat(f.fileno())  # it may have been replaced since the stat above
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path}: {_what(st.st_mode)}, not an image file")
        return f.read()


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


@dataclass
class FolderListing:
    """What :func:`list_folder` found under a folder, as paths relative to it."""

    files: list[str] = field(default_factory=list)  # images (and broken links named like one)
    others: list[tuple[str, str]] = field(default_factory=list)  # (path, what): not files
    repeats: list[tuple[str, str]] = field(default_factory=list)  # (link, folder): skipped
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, why)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def list_folder(root: Path) -> FolderListing:
    """Every image under ``root``, sorted: recursive, extensions in any case, hidden files and
    folders skipped. Links are followed, but each real folder is listed once: the real tree
    first, then links to folders outside it; a link to a folder already listed (a loop, or a
    second way to the same photos) goes in ``repeats``. Entries named like an image that are
    not regular files (FIFOs, devices, sockets, folders) go in ``others``; broken links stay in
    ``files`` (they fail, with a reason, when read)."""
    out = FolderListing()
    seen: set[tuple[int, int]] = set()
    st = os.stat(root)
    seen.add((st.st_dev, st.st_ino))
    links: list[tuple[str, str]] = []  # (relative path, path) of folder links, for later

    def walk(path: str, rel: str) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            out.unreadable.append((rel or ".", e.strerror or str(e)))
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            r = os.path.join(rel, e.name) if rel else e.name
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if _is_image_name(e.name):
                    out.others.append((r, "a folder"))
                if e.is_symlink():
                    links.append((r, e.path))
                    continue
                try:
                    st = e.stat()
                except OSError as err:
                    out.unreadable.append((r, err.strerror or str(err)))
                    continue
                if (st.st_dev, st.st_ino) in seen:  # a bind mount of a folder already listed
                    out.repeats.append((r, r))
                    continue
                seen.add((st.st_dev, st.st_ino))
                walk(e.path, r)
            elif _is_image_name(e.name):
                try:
                    st = e.stat()
                except OSError:  # a broken link (or a link loop): read, it fails with a reason
                    out.files.append(r)
                    continue
                if stat.S_ISREG(st.st_mode):
                    out.files.append(r)
                else:
                    out.others.append((r, _what(st.st_mode)))

    walk(str(root), "")
    while links:  # links to folders, after the real tree; each may add more
        r, path = links.pop(0)
        try:
            st = os.stat(path)
        except OSError as err:
            out.unreadable.append((r, err.strerror or str(err)))
            continue
        if (st.st_dev, st.st_ino) in seen:
            out.repeats.append((r, os.path.relpath(os.path.realpath(path), os.path.realpath(root))))
            continue
        seen.add((st.st_dev, st.st_ino))
        walk(path, r)
    out.files.sort()
    out.others.sort()
    return out


def image_files(root: Path) -> list[str]:
    """Paths (relative to ``root``, sorted) of every image file under it (see
    :func:`list_folder`)."""
    return list_folder(root).files


def folder_items(root: Path, ratios: tuple[float, float, float]) -> list[SourceItem]:
    """Every image under ``root`` (see :func:`list_folder`), hash-split. Entries named like an
    image that are not files are sources too, so that each gets a failure record."""
    listing = list_folder(root)
    if listing.repeats:
        log.warning("%s: %d folder link(s) lead to a folder already listed and were not "
                    "followed again: %s", root, len(listing.repeats),
                    ", ".join(f"{a} -> {b}" for a, b in listing.repeats[:5])
                    + (" ..." if len(listing.repeats) > 5 else ""))
    for r, why in listing.unreadable:
        log.warning("%s: folder %s could not be listed (%s); its images are not used", root, r,
                    why)
    rels = sorted(listing.files + [r for r, _ in listing.others])
    if not rels:
        raise SourceError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    keys = _unique_keys(rels)
    return sorted((SourceItem(k, "file", str(root / r), hash_split(k, ratios))
                   for k, r in zip(keys, rels, strict=True)), key=lambda i: i.key)


def list_items(list_file: Path, ratios: tuple[float, float, float]) -> list[SourceItem]:
    """Images named one per line in a text file (relative paths are relative to the file)."""
    base = list_file.parent
    paths = []
    try:
        text = list_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"--src {list_file}: not a readable text list of image paths "
                          f"({e})") from e
    for line in text.splitlines():
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
    partition_file = celeba_partition_file(root)
    if partition_file is not None:
        partition = parse_partition_file(partition_file.read_text())

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


def celeba_partition_file(root: Path) -> Path | None:
    """CelebA's ``list_eval_partition.txt`` under ``root`` (or its ``Eval/``), if there."""
    for cand in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"):
        if cand.is_file():
            return cand
    return None


def assign_identities(src: str, items: list[SourceItem], identity: str, *,
                      celeba_root: str | None = None,
                      ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
                      ) -> tuple[str, list[SourceItem]]:
    """Give ``items`` (of ``--src src``, from :func:`resolve_source`) their identities by
    ``--identity`` (``auto``, ``none``, ``folder`` or a file: see :mod:`.identities`) and split
    each by its identity, except where CelebA's official partition decides.

    Returns the identity mode in force (``none``, ``folder`` or ``file:PATH``, for the
    manifest) and the items. Raises :class:`SourceError` for an identity mode the source
    cannot give."""
    is_celeba = src == "celeba"
    base: Path | None = None  # what relative paths are relative to
    if is_celeba:
        root = Path(celeba_root or os.environ.get(CELEBA_ENV) or CELEBA_DEFAULT).expanduser()
    elif src != "demo":
        p = Path(src).expanduser()
        base = p if p.is_dir() else p.parent
    if identity == "auto":
        if not is_celeba:
            return "none", items
        partition = celeba_partition_file(root)
        found = partition.parent / CELEBA_IDENTITY_FILE if partition is not None else None
        if found is None or not found.is_file():
            return "none", items
        identity = str(found)
    if identity == "none":
        return "none", items
    if src == "demo":
        raise SourceError(f"--identity {identity}: the demo source has no identities "
                          "(use --identity none)")
    if identity == "folder":
        if is_celeba:
            raise SourceError("--identity folder: CelebA is one flat folder; its identities "
                              f"are in {CELEBA_IDENTITY_FILE} (pass it as --identity FILE)")
        mode = "folder"
        names = [folder_identity(_relative(i, base)) for i in items]
    else:
        path = Path(identity).expanduser()
        if not path.is_file():
            raise SourceError(f"--identity {identity!r}: 'auto', 'none', 'folder' or an "
                              "existing file of 'PATH IDENTITY' lines")
        try:
            table = read_identity_file(path)
        except IdentityError as e:
            raise SourceError(str(e)) from e
        mode = f"file:{path}"
        names = [lookup_identity(table, _celeba_name(i) if is_celeba else _relative(i, base))
                 for i in items]
    out = []
    for item, name in zip(items, names, strict=True):
        # CelebA's split is its official one (the partition file, or its id ranges).
        split = identity_split(name, ratios) if name is not None and not is_celeba else item.split
        out.append(SourceItem(item.key, item.kind, item.ref, split, name))
    return mode, out


def _relative(item: SourceItem, base: Path | None) -> str:
    """An item's path relative to the folder (or list file's folder) of its source."""
    if base is None or item.kind != "file":
        return item.ref
    rel = os.path.relpath(item.ref, base)
    return item.ref if rel.startswith("..") else rel


def _celeba_name(item: SourceItem) -> str:
    """A CelebA item's file name, as CelebA's lists name it (``000001.jpg``)."""
    ref = item.ref.split("::", 1)[-1]
    return os.path.basename(ref)
