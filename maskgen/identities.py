"""Who is in each source image, for masked-face recognition datasets.

``--identity`` says where a source's identities come from:

* ``folder``: the image's parent folder, as in LFW, VGGFace2, CASIA-WebFace and MS1M-style
  trees (``root/Aaron_Eckhart/0001.jpg`` is ``Aaron_Eckhart``);
* a file ``FILE``: ``path identity`` per line, where ``path`` is the image's path relative to
  the source folder (or to the list file), or just its file name, as CelebA's
  ``identity_CelebA.txt`` (``000001.jpg 2880``) gives it;
* ``none``: no identities (the split is a hash of each image's key, as before);
* ``auto`` (the default): CelebA's ``identity_CelebA.txt`` where it lies beside
  ``list_eval_partition.txt``, else ``none``.

With identities, a source's split is a hash of the identity, so no person is in two splits
(:func:`identity_split`), unless CelebA's official partition decides. An image whose identity
is unknown is not used, and ``generate`` records it as ``no-identity``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .split import hash_split

MODES = ("auto", "none", "folder")  # else the path of an identity file
CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
# Salted so that a person's split is not the split of an image whose key happens to equal
# the identity's name.
_SPLIT_SALT = "identity:"


class IdentityError(ValueError):
    """An ``--identity`` that cannot be used with this source."""


def parse_identity_file(text: str, name: str = "identity file") -> dict[str, str]:
    """Parse ``path identity`` lines (blank lines and ``#`` comments skipped; the identity is
    the last field, the path everything before it) to {path: identity}."""
    out: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        # The identity is the last field whatever the separator (a tab-separated path may hold
        # spaces); the path is everything before it.
        fields = line.rsplit(None, 1)
        path, identity = (fields[0].strip(), fields[1]) if len(fields) == 2 else ("", "")
        if not path or not identity:
            raise IdentityError(f"{name} line {line_no}: expected 'PATH IDENTITY', got "
                                f"{line!r}")
        out[path.replace(os.sep, "/")] = identity
    if not out:
        raise IdentityError(f"{name} lists no identities")
    return out


def read_identity_file(path: Path) -> dict[str, str]:
    """:func:`parse_identity_file` of a file, or an :class:`IdentityError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise IdentityError(f"--identity {path}: not a readable text file ({e})") from e
    return parse_identity_file(text, str(path))


def folder_identity(rel_path: str) -> str | None:
    """The identity of an image at ``rel_path`` (relative to the source folder) in a
    folder-per-identity tree: its parent folder's name; None for an image at the top."""
    parent = os.path.dirname(rel_path.replace(os.sep, "/"))
    return os.path.basename(parent) or None


def lookup_identity(table: dict[str, str], rel_path: str) -> str | None:
    """An image's identity in an identity file's ``table``: by its relative path, else by its
    file name (CelebA's lists name files only)."""
    rel = rel_path.replace(os.sep, "/")
    return table.get(rel) or table.get(os.path.basename(rel))


def identity_split(identity: str, ratios: tuple[float, float, float]) -> str:
    """The split of every image of one person: a hash of the identity with the run's ratios."""
    return hash_split(_SPLIT_SALT + identity, ratios)
