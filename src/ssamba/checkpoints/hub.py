"""Hugging Face Hub addresses: turn ``hf://...`` and ``official:...`` names into local files.

Address contract (everything else is a local path, used as is):

- ``hf://OWNER/REPO`` — a ssamba checkpoint repository (``config.json`` + ``model.safetensors``
  [+ ``extra_state.safetensors``]); resolves to the snapshot folder in the Hub cache.
- ``hf://OWNER/REPO/PATH`` — ``PATH`` ending in ``.pth``/``.pt`` is one file (an official
  checkpoint, converted on loading); any other ``PATH`` is a checkpoint folder inside the repo.
- ``@REVISION`` goes right after the repository name, as in huggingface_hub's ``HfFileSystem``:
  ``hf://OWNER/REPO@v1.0/FILE.pth``; a revision holding ``/`` is written URL-encoded
  (``refs%2Fpr%2F1``).
- ``official:NAME[@REVISION]`` — one of the authors' nine checkpoints (``official:ssamba_tiny_400``),
  i.e. ``hf://attentionisallyouneed369/ssamba/NAME.pth``.

Files come through huggingface_hub's cache (``hf_hub_download`` / ``snapshot_download``), so
``HF_HUB_CACHE`` / ``HF_HOME``, ``HF_HUB_OFFLINE``, ``HF_TOKEN`` and ``local_files_only`` work
as they do for every Hub library, and a download is written to a private ``.incomplete`` file
that is renamed into the cache only when complete (deleted when cut short). huggingface_hub
is imported inside the functions so that ``import ssamba`` does not pay for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ssamba.errors import CheckpointError

HF_SCHEME = "hf://"
OFFICIAL_SCHEME = "official:"
OFFICIAL_REPO = "attentionisallyouneed369/ssamba"
OFFICIAL_SIZES = ("tiny", "small", "base")
OFFICIAL_MASKED = (250, 300, 400)
#: short name -> file in OFFICIAL_REPO: size x masked patches (of 512) in pretraining
OFFICIAL_CHECKPOINTS = {f"ssamba_{size}_{masked}": f"ssamba_{size}_{masked}.pth"
                        for size in OFFICIAL_SIZES for masked in OFFICIAL_MASKED}
#: the files of a checkpoint folder that loading needs (extra_state only when present)
CHECKPOINT_FILES = ("config.json", "model.safetensors", "extra_state.safetensors")
FILE_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class HubAddress:
    """A parsed ``hf://`` address: repository, path inside it ("" = the repo root), revision."""

    repo_id: str
    path: str = ""
    revision: str | None = None
    text: str = ""

    @property
    def is_file(self) -> bool:
        return self.path.endswith(FILE_SUFFIXES)

    def __str__(self) -> str:
        return self.text or f"{HF_SCHEME}{self.repo_id}{'@' + self.revision if self.revision else ''}" \
                            f"{'/' + self.path if self.path else ''}"


def is_address(source) -> bool:
    """True for an ``hf://`` or ``official:`` string (not for local paths or Path objects)."""
    return isinstance(source, str) and source.startswith((HF_SCHEME, OFFICIAL_SCHEME))


def official_address(name: str, revision: str | None = None) -> str:
    """``hf://`` address of an official checkpoint's short name (``ssamba_tiny_400``)."""
    if name not in OFFICIAL_CHECKPOINTS:
        raise CheckpointError(f"{OFFICIAL_SCHEME}{name}: unknown official checkpoint; "
                              f"known: {', '.join(OFFICIAL_CHECKPOINTS)} (see `ssamba models`)")
    return f"{HF_SCHEME}{OFFICIAL_REPO}{'@' + revision if revision else ''}/{OFFICIAL_CHECKPOINTS[name]}"


def parse_address(text: str) -> HubAddress:
    """Parse an ``hf://`` or ``official:`` address; a malformed one is a one-line CheckpointError."""
    if text.startswith(OFFICIAL_SCHEME):
        name, _, revision = text[len(OFFICIAL_SCHEME):].partition("@")
        return _parse_hf(official_address(name, revision or None), text)
    return _parse_hf(text, text)


def _parse_hf(url: str, shown: str) -> HubAddress:
    parts = url[len(HF_SCHEME):].split("/")
    if len(parts) < 2 or not all(parts[:2]) or any(not p for p in parts[2:]):
        raise CheckpointError(f"{shown}: not a Hub address (expected hf://OWNER/REPO[@REVISION][/PATH])")
    owner, repo = parts[0], parts[1]
    repo, _, revision = repo.partition("@")
    path = "/".join(parts[2:])
    if "@" in path:
        raise CheckpointError(f"{shown}: the revision goes after the repository name: "
                              f"hf://{owner}/{repo}@REVISION/{path.split('@')[0]}")
    if not repo:
        raise CheckpointError(f"{shown}: no repository name")
    return HubAddress(f"{owner}/{repo}", path, unquote(revision) if revision else None, shown)


def resolve(source: str, local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """Local path of an address: the cached file (``.pth``) or the cached checkpoint folder.

    Downloads what the cache lacks unless offline (``HF_HUB_OFFLINE=1`` or ``local_files_only``).
    Every failure is a one-line CheckpointError naming the address.
    """
    address = parse_address(source)
    try:
        return _file(address, local_files_only, token) if address.is_file else \
            _folder(address, local_files_only, token)
    except CheckpointError:
        raise
    except Exception as exc:  # huggingface_hub / httpx errors of every kind: one line naming the address
        raise CheckpointError(f"{address}: {describe_hub_error(exc, address, local_files_only)}") from None


def _file(address: HubAddress, local_files_only: bool, token) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(address.repo_id, address.path, revision=address.revision,
                                local_files_only=local_files_only, token=token))


def _folder(address: HubAddress, local_files_only: bool, token) -> Path:
    from huggingface_hub import snapshot_download

    prefix = f"{address.path}/" if address.path else ""
    root = Path(snapshot_download(address.repo_id, revision=address.revision, local_files_only=local_files_only,
                                  token=token, allow_patterns=[prefix + name for name in CHECKPOINT_FILES]))
    folder = root / address.path if address.path else root
    missing = [name for name in CHECKPOINT_FILES[:2] if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{address}: not a ssamba checkpoint repository (no {' or '.join(missing)}; "
                              f"an official .pth is named as hf://{address.repo_id}/FILE.pth)")
    return folder


def describe_hub_error(exc: BaseException, address: HubAddress | None = None, local_files_only: bool = False) -> str:
    """One line saying what went wrong with a Hub request, from huggingface_hub's exception type."""
    from huggingface_hub import constants, errors

    what = (f"{address.path} in {address.repo_id}" if address.path else address.repo_id) if address else "the file"
    at = f" at revision {address.revision!r}" if address and address.revision else ""
    if isinstance(exc, errors.GatedRepoError):
        return "gated repository: accept its conditions on huggingface.co, then log in (`hf auth login` or HF_TOKEN)"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return ("no such repository on the Hub, or it is private and no valid token was given "
                "(`hf auth login` or HF_TOKEN)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"no revision {address.revision!r} in the repository" if address else "no such revision"
    if isinstance(exc, errors.LocalEntryNotFoundError):
        why = "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only)" \
            if constants.HF_HUB_OFFLINE or local_files_only else "the Hub could not be reached"
        return (f"{what}{at} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; "
                "connect once to download it")
    if isinstance(exc, errors.EntryNotFoundError):
        return f"no file {address.path if address else ''} in the repository{at}"
    if isinstance(exc, errors.HFValidationError):
        return f"invalid repository name ({_first_line(exc)})"
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return f"the Hub answered HTTP {status} ({_first_line(exc)})"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return "the download was cut short (size mismatch); nothing was kept in the cache, try again"
    if isinstance(exc, ConnectionError) or any(c.__name__ == "TransportError" for c in type(exc).__mro__):
        return f"the Hub could not be reached ({type(exc).__name__}: {_first_line(exc)})"
    return f"request failed ({type(exc).__name__}: {_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def cached_official() -> dict[str, Path | None]:
    """Official short name -> its file in the local Hub cache (None when not downloaded)."""
    from huggingface_hub import try_to_load_from_cache

    found = {}
    for name, filename in OFFICIAL_CHECKPOINTS.items():
        hit = try_to_load_from_cache(OFFICIAL_REPO, filename)
        found[name] = Path(hit) if isinstance(hit, str) else None
    return found


def list_repo_files(repo_id: str, token: str | bool | None = None) -> list[str]:
    """Files of a Hub repository (needs the network); a failure is one CheckpointError line."""
    from huggingface_hub import HfApi

    try:
        return sorted(HfApi(token=token).list_repo_files(repo_id))
    except Exception as exc:
        raise CheckpointError(f"hf://{repo_id}: {describe_hub_error(exc)}") from None


def check_repo_id(repo_id: str) -> None:
    """A push target must be OWNER/REPO (one-line CheckpointError otherwise)."""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise CheckpointError(f"{repo_id}: not a Hub repository id (expected OWNER/REPO)")


def upload_folder(folder: str | os.PathLike, repo_id: str, private: bool | None = None,
                  token: str | bool | None = None, commit_message: str = "Upload ssamba checkpoint") -> str:
    """Create ``repo_id`` if needed and upload ``folder``'s files as one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    check_repo_id(repo_id)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message)
    except Exception as exc:
        raise CheckpointError(f"hf://{repo_id}: upload failed: {describe_hub_error(exc)}") from None
    return str(getattr(info, "commit_url", info))
