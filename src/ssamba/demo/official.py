"""The authors' SSAMBA-tiny weights in the demo, when they can be had.

The demo's own encoders are pretrained for minutes on a CPU; the official ones for GPU-days on
AudioSet-2M + LibriSpeech. When ``official:ssamba_tiny_400`` is in the Hugging Face cache or the
Hub can be reached, the demo probes and fine-tunes it beside its own encoders (one more row per
task); otherwise the report says in one line that it was skipped and why, and nothing else changes.
A machine without network is found out with one connection attempt of a few seconds, not
huggingface_hub's retries.
"""

from __future__ import annotations

import socket
from dataclasses import asdict, dataclass
from typing import Callable
from urllib.parse import urlparse

from ssamba.checkpoints import hub
from ssamba.errors import CheckpointError
from ssamba.models.checkpoint import load_state

OFFICIAL_NAME = "ssamba_tiny_400"
METHOD = "official SSAMBA-tiny"       # the method name of its rows in the results
TRAINED_ON = "AudioSet-2M + LibriSpeech (960 h), 400 of 512 patches masked, by the SSAMBA authors"
CONNECT_TIMEOUT_S = 5.0


@dataclass
class OfficialWeights:
    """What the demo knows about the official weights: their address and file, and either the
    local path (``used``) or why they were skipped."""

    address: str
    file: str
    trained_on: str
    used: bool
    path: str | None = None
    reason: str | None = None
    shape: str | None = None      # width and depth read from the file, e.g. "D=192, 24 layers"
    window_frames: int | None = None   # the demo's window it runs at (its own is 1024 frames)

    def sentence(self) -> str:
        """One line for the report."""
        if self.used:
            window = "" if self.window_frames is None else (
                f" and the same {self.window_frames}-frame windows (positional embedding cropped to them, as the "
                "official fine-tuning does for shorter clips)")
            return (f"Official weights: `{self.file}` ({self.address}; SSAMBA {self.shape}, pretrained on "
                    f"{self.trained_on}), probed and fine-tuned with the same recipes{window}: rows \"{METHOD}\".")
        return f"Official SSAMBA-tiny weights ({self.address}) skipped: {self.reason}."

    def row(self) -> dict:
        return asdict(self)


def _hub_reachable() -> str | None:
    """None when the Hub answers a TCP connection, else why not (offline mode, no route, no DNS)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "offline mode (HF_HUB_OFFLINE=1) and they are not in the Hugging Face cache"
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"not in the Hugging Face cache and {url.hostname} cannot be reached ({exc.strerror or exc})"
    return None


def fetch_official(name: str = OFFICIAL_NAME, say: Callable[[str], None] = lambda line: None) -> OfficialWeights:
    """The official checkpoint ``name`` from the cache, else downloaded if the Hub is reachable."""
    address = f"{hub.OFFICIAL_SCHEME}{name}"
    info = OfficialWeights(address=address, file=hub.OFFICIAL_CHECKPOINTS[name], trained_on=TRAINED_ON, used=False)
    try:
        path = hub.resolve(address, local_files_only=True)
    except CheckpointError:
        info.reason = _hub_reachable()
        if info.reason is not None:
            return info
        say(f"[demo]   downloading {address} ({hub.parse_address(address)})")
        try:
            path = hub.resolve(address)
        except CheckpointError as exc:
            info.reason = str(exc).removeprefix(f"{address}: ")
            return info
    try:   # a file that is not a checkpoint is skipped here, not after the demo's other stages
        config = load_state(path)[0]
    except CheckpointError as exc:
        info.reason = str(exc).replace(str(path), address).removeprefix(f"{address}: ")
        return info
    info.used, info.path, info.shape = True, str(path), f"D={config.embed_dim}, {config.depth} layers"
    return info


def skipped(reason: str, name: str = OFFICIAL_NAME) -> OfficialWeights:
    """The record of official weights not tried (``reason``)."""
    return OfficialWeights(address=f"{hub.OFFICIAL_SCHEME}{name}", file=hub.OFFICIAL_CHECKPOINTS[name],
                           trained_on=TRAINED_ON, used=False, reason=reason)
