"""A Hugging Face Hub cache laid out exactly as huggingface_hub lays it out, for offline tests:

    CACHE/models--OWNER--REPO/refs/REVISION             the commit hash (no newline)
    CACHE/models--OWNER--REPO/snapshots/COMMIT/FILE     -> relative symlink to ../../blobs/SHA256
    CACHE/models--OWNER--REPO/blobs/SHA256              the file's bytes

(``conftest.hub_cache`` points huggingface_hub at such a cache for one test.)"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def repo_folder(cache: Path, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def write_hub_cache(cache: Path, repo_id: str, files: dict[str, bytes | Path], revision: str = "main",
                    commit: str | None = None) -> Path:
    """Put ``files`` (path in repo -> bytes or a file to copy) into the cache as commit ``commit``
    (default: a hash of the contents) and point ``refs/revision`` at it; returns the snapshot folder."""
    blobs = {name: (data.read_bytes() if isinstance(data, Path) else data) for name, data in files.items()}
    commit = commit or hashlib.sha1(b"".join(sorted(blobs.values())) + repo_id.encode()).hexdigest()
    root = repo_folder(cache, repo_id)
    snapshot = root / "snapshots" / commit
    for name, data in blobs.items():
        digest = hashlib.sha256(data).hexdigest()
        blob = root / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        pointer = snapshot / name
        pointer.parent.mkdir(parents=True, exist_ok=True)
        if pointer.is_symlink() or pointer.exists():
            pointer.unlink()
        pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    if revision != commit:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / revision).write_text(commit)
    return snapshot


def cache_files(cache: Path) -> set[str]:
    """Every file and link under the cache (what a failed request must not add to)."""
    return {str(p.relative_to(cache)) for p in Path(cache).rglob("*") if p.is_file() or p.is_symlink()}


def folder_files(folder: Path) -> dict[str, bytes]:
    """Checkpoint folder contents as ``write_hub_cache`` takes them."""
    return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
