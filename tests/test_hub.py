"""Loading by Hub address (``hf://``, ``official:``) through a Hugging Face cache laid out as
huggingface_hub lays it out, offline; the official .pth path against ``ssamba convert``; every
error one line naming the address with nothing added to the cache; the socket guard."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx2
import pytest
import torch
from cli_helpers import run_expecting_error, write_tone
from conftest import NetworkBlocked
from hub_helpers import cache_files, folder_files, write_hub_cache

import ssamba
from ssamba.checkpoints import hub
from ssamba.cli import main as cli_main
from ssamba.errors import CheckpointError

FIX = Path(__file__).parent / "fixtures" / "official"
OFFICIAL_FILE = "ssamba_tiny_400.pth"


@pytest.fixture(scope="module")
def fbank() -> torch.Tensor:
    return torch.load(FIX / "inputs.pt", weights_only=True)["fbank"]


def outputs(model, fbank) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_features(fbank)


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return ssamba.create_model("ssamba_tiny", depth=2, embed_dim=32, input_tdim=64).eval()


# ----------------------------------------------------------------------------- no network in tests

def test_tests_cannot_open_network_connections():
    with pytest.raises(NetworkBlocked):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlocked):
            sock.connect(("8.8.8.8", 53))
    finally:
        sock.close()
    with pytest.raises(httpx2.ConnectError, match="tests must not use the network"):   # httpx wraps the OSError
        httpx2.get("https://huggingface.co/api/models/attentionisallyouneed369/ssamba", timeout=1)


# ----------------------------------------------------------------------------- addresses

def test_address_grammar():
    a = hub.parse_address("hf://me/enc")
    assert (a.repo_id, a.path, a.revision, a.is_file) == ("me/enc", "", None, False)
    a = hub.parse_address("hf://me/enc@v1.0/sub/file.pth")
    assert (a.repo_id, a.path, a.revision, a.is_file) == ("me/enc", "sub/file.pth", "v1.0", True)
    assert hub.parse_address("hf://me/enc@refs%2Fpr%2F1").revision == "refs/pr/1"
    a = hub.parse_address("official:ssamba_base_250@abc")
    assert (a.repo_id, a.path, a.revision) == (hub.OFFICIAL_REPO, "ssamba_base_250.pth", "abc")
    assert len(hub.OFFICIAL_CHECKPOINTS) == 9 and "ssamba_small_300" in hub.OFFICIAL_CHECKPOINTS
    assert hub.is_address("hf://a/b") and hub.is_address("official:x") and not hub.is_address(Path("hf:/a"))
    with pytest.raises(CheckpointError, match=r"^hf://me: not a Hub address"):
        hub.parse_address("hf://me")
    with pytest.raises(CheckpointError, match=r"revision goes after the repository name: hf://me/r@REVISION/f.pth"):
        hub.parse_address("hf://me/r/f.pth@main")
    with pytest.raises(CheckpointError, match=r"^official:ssamba_huge_400: unknown official checkpoint; known: "):
        hub.parse_address("official:ssamba_huge_400")


# ----------------------------------------------------------------------------- loading from the cache

def test_official_pth_from_the_hub_equals_convert_then_load(hub_cache, tmp_path, fbank, capsys):
    """Must show: the official .pth served from the cache, converted on the fly, gives outputs
    bit-identical to `ssamba convert` of the same file and `ssamba.load` of the result."""
    write_hub_cache(hub_cache, hub.OFFICIAL_REPO, {OFFICIAL_FILE: FIX / "ssamba_official.pth"})
    assert cli_main(["convert", str(FIX / "ssamba_official.pth"), str(tmp_path / "converted")]) == 0
    expected = outputs(ssamba.load(tmp_path / "converted"), fbank)
    for address in (f"hf://{hub.OFFICIAL_REPO}/{OFFICIAL_FILE}", "official:ssamba_tiny_400"):
        assert torch.equal(outputs(ssamba.load(address), fbank), expected), address
    # convert from the address: the same directory contents
    assert cli_main(["convert", "official:ssamba_tiny_400", str(tmp_path / "from_hub")]) == 0
    assert folder_files(tmp_path / "from_hub") == folder_files(tmp_path / "converted")
    capsys.readouterr()


def test_checkpoint_repo_revisions_and_subfolders_from_the_cache(hub_cache, tmp_path, fbank):
    old, new = tiny(0), tiny(1)
    old.save_pretrained(tmp_path / "old")
    new.save_pretrained(tmp_path / "new")
    first = write_hub_cache(hub_cache, "me/enc", folder_files(tmp_path / "old"), revision="v1")
    write_hub_cache(hub_cache, "me/enc", {**folder_files(tmp_path / "new"),
                                          **{f"sub/{k}": v for k, v in folder_files(tmp_path / "old").items()}})
    x = fbank[:, :64]
    assert torch.equal(outputs(ssamba.load("hf://me/enc"), x), outputs(new, x))
    assert torch.equal(outputs(ssamba.load("hf://me/enc@v1"), x), outputs(old, x))
    assert torch.equal(outputs(ssamba.load(f"hf://me/enc@{first.name}"), x), outputs(old, x))
    assert torch.equal(outputs(ssamba.load("hf://me/enc/sub"), x), outputs(old, x))
    assert ssamba.load("hf://me/enc", input_tdim=128).config.input_tdim == 128   # overrides still apply


def test_every_model_entry_point_takes_an_address(hub_cache, tmp_path, fbank, capsys):
    from ssamba.downstream.finetune import FinetuneConfig, build_encoder
    from ssamba.hear import get_scene_embeddings, load_model
    from ssamba.inference import embed

    tiny(0).save_pretrained(tmp_path / "enc")
    write_hub_cache(hub_cache, "me/enc", folder_files(tmp_path / "enc"))
    wav = write_tone(tmp_path / "a.wav", seconds=0.5)
    local = embed([wav], tmp_path / "enc")
    assert (embed([wav], "hf://me/enc") == local).all()
    audio = torch.zeros(1, 8000)
    assert torch.equal(get_scene_embeddings(audio, load_model("hf://me/enc")),
                       get_scene_embeddings(audio, load_model(str(tmp_path / "enc"))))
    encoder = build_encoder(FinetuneConfig(fstride=16, tstride=16), 64, init="hf://me/enc")
    assert encoder.training and torch.equal(encoder.pos_embed, ssamba.load(tmp_path / "enc").pos_embed)
    assert cli_main(["embed", str(wav), "--model", "hf://me/enc", "--out", str(tmp_path / "e.npy")]) == 0
    assert (torch.from_numpy(__import__("numpy").load(tmp_path / "e.npy")) == torch.from_numpy(local)).all()
    capsys.readouterr()


# ----------------------------------------------------------------------------- errors, offline

def test_offline_errors_are_one_line_naming_the_address(hub_cache, tmp_path, capsys):
    write_hub_cache(hub_cache, "me/notes", {"README.md": b"# not a model\n", "junk.pth": b"hello"})
    before = cache_files(hub_cache)
    cases = {
        "hf://me/absent": "hf://me/absent: me/absent is not in the Hugging Face cache",
        "hf://me/absent/x.pth": "hf://me/absent/x.pth: x.pth in me/absent is not in the Hugging Face cache",
        "hf://me/notes@v9": "hf://me/notes@v9: me/notes at revision 'v9' is not in the Hugging Face cache",
        "official:ssamba_base_400": "official:ssamba_base_400: ssamba_base_400.pth in attentionisallyouneed369/ssamba",
        "hf://me/notes": "hf://me/notes: not a ssamba checkpoint repository (no config.json or model.safetensors",
        "hf://me/notes/junk.pth": "hf://me/notes/junk.pth: not a loadable PyTorch checkpoint",
    }
    for address, start in cases.items():
        with pytest.raises(CheckpointError) as info:
            ssamba.load(address)
        message = str(info.value)
        assert message.startswith(start) and "\n" not in message and str(hub_cache) not in message.split("(")[0], message
        if "not in the Hugging Face cache" in start:
            assert "offline mode is on" in message
    wav = write_tone(tmp_path / "a.wav", seconds=0.5)
    line = run_expecting_error(capsys, ["embed", str(wav), "--model", "hf://me/absent", "--out", str(tmp_path / "e.npy")])
    assert "hf://me/absent:" in line
    line = run_expecting_error(capsys, ["convert", "hf://me/notes/junk.pth", str(tmp_path / "out")])
    assert "hf://me/notes/junk.pth: not a loadable PyTorch checkpoint" in line
    assert cache_files(hub_cache) == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "e.npy").exists()


# ----------------------------------------------------------------------------- errors, online (HTTP boundary)

@pytest.fixture
def online(hub_cache, monkeypatch):
    """huggingface_hub online, with its HEAD request answered by the test (``online.answer``) and its
    GET by ``online.body`` (bytes, or an exception after writing half of them)."""
    from huggingface_hub import constants, file_download

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    class Server:
        answer = None
        body = b""
        cut = None

    def metadata(url, **kwargs):
        if isinstance(Server.answer, BaseException):
            raise Server.answer
        return Server.answer

    def http_get(url, temp_file, **kwargs):
        data = Server.body
        if Server.cut is not None:
            temp_file.write(data[:len(data) // 2])
            raise Server.cut
        temp_file.write(data)

    monkeypatch.setattr(file_download, "get_hf_file_metadata", metadata)
    monkeypatch.setattr(file_download, "http_get", http_get)
    return Server


def _http_error(cls, status: int, url: str = "https://huggingface.co/me/r/resolve/main/f.pth"):
    response = httpx2.Response(status, request=httpx2.Request("HEAD", url))
    return cls(f"{status} Client Error", response=response)


def test_hub_errors_are_one_line_and_leave_the_cache_clean(online, hub_cache, tmp_path, capsys):
    from huggingface_hub import errors

    cases = [
        (_http_error(errors.RepositoryNotFoundError, 401), "no such repository on the Hub, or it is private"),
        (_http_error(errors.GatedRepoError, 403), "gated repository: accept its conditions"),
        (_http_error(errors.RemoteEntryNotFoundError, 404), "no file f.pth in the repository"),
        (_http_error(errors.RevisionNotFoundError, 404), "no revision"),
        (httpx2.ConnectError("[Errno -2] Name or service not known"), "f.pth in me/r is not in the Hugging Face cache"),
    ]
    for error, expected in cases:
        online.answer = error
        line = run_expecting_error(capsys, ["convert", "hf://me/r/f.pth", str(tmp_path / "out")])
        assert f"hf://me/r/f.pth: {expected}" in line, line
        assert isinstance(error, errors.HfHubHTTPError) or "the Hub could not be reached" in line
    assert not [f for f in cache_files(hub_cache) if "blobs" in f or "snapshots" in f]
    assert not (tmp_path / "out").exists()


def test_local_files_only_asks_nothing_of_the_hub(online, hub_cache, tmp_path):
    online.answer = AssertionError("local_files_only must not send a request")
    with pytest.raises(CheckpointError, match=r"^hf://me/r/f.pth: f.pth in me/r is not in the Hugging Face cache .* "
                                              r"offline mode is on \(HF_HUB_OFFLINE=1 or local_files_only\)"):
        ssamba.load("hf://me/r/f.pth", local_files_only=True)
    tiny(0).save_pretrained(tmp_path / "enc")
    write_hub_cache(hub_cache, "me/enc", folder_files(tmp_path / "enc"))
    assert ssamba.load("hf://me/enc", local_files_only=True, input_tdim=128).config.input_tdim == 128


def test_a_download_cut_short_leaves_nothing_and_a_full_one_loads(online, hub_cache, tmp_path, fbank, capsys):
    from huggingface_hub.file_download import HfFileMetadata

    data = (FIX / "ssamba_official.pth").read_bytes()
    commit = "c" * 40
    online.answer = HfFileMetadata(commit_hash=commit, etag="e" * 64, size=len(data), xet_file_data=None,
                                   location="https://huggingface.co/me/r/resolve/main/f.pth")
    online.body = data
    for cut, expected in ((OSError("Consistency check failed: file should be of size 9 but has size 4"),
                           "the download was cut short"),
                          (httpx2.RemoteProtocolError("peer closed connection"), "the Hub could not be reached")):
        online.cut = cut
        line = run_expecting_error(capsys, ["embed", str(write_tone(tmp_path / "a.wav", 0.5)), "--model",
                                            "hf://me/r/f.pth", "--out", str(tmp_path / "e.npy")])
        assert f"hf://me/r/f.pth: {expected}" in line, line
        assert not [f for f in cache_files(hub_cache) if "blobs/" in f or "snapshots/" in f], cache_files(hub_cache)
    online.cut = None
    model = ssamba.load("hf://me/r/f.pth")
    assert torch.equal(outputs(model, fbank), outputs(ssamba.load(FIX / "ssamba_official.pth"), fbank))
    pointer = hub_cache / "models--me--r" / "snapshots" / commit / "f.pth"
    assert pointer.is_symlink() and pointer.read_bytes() == data
    assert not [f for f in cache_files(hub_cache) if f.endswith(".incomplete")]


# ----------------------------------------------------------------------------- the environment, `ssamba models`

def test_cli_honours_hf_hub_cache_and_offline_from_the_environment(tmp_path):
    """A fresh process: huggingface_hub reads HF_HUB_CACHE / HF_HUB_OFFLINE itself (no patching)."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "cache"
    write_hub_cache(cache, hub.OFFICIAL_REPO, {OFFICIAL_FILE: FIX / "ssamba_official.pth"})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "home")}
    run = subprocess.run([sys.executable, "-m", "ssamba", "convert", "official:ssamba_tiny_400", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert folder_files(tmp_path / "out")["model.safetensors"] == \
        folder_files(ssamba.models.convert_official(FIX / "ssamba_official.pth", tmp_path / "direct"))["model.safetensors"]


def test_models_lists_short_names_cache_and_repo(hub_cache, monkeypatch, capsys):
    import huggingface_hub

    write_hub_cache(hub_cache, hub.OFFICIAL_REPO, {OFFICIAL_FILE: b"x"})
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.startswith("  official:")]
    assert [r[0] for r in rows] == [f"official:{n}" for n in hub.OFFICIAL_CHECKPOINTS]
    assert [r[2] for r in rows].count("cached") == 1 and rows[2][2] == "cached"
    assert out[-1] == f"Hub repo not listed: hf://{hub.OFFICIAL_REPO}: offline mode is on (HF_HUB_OFFLINE=1)"

    class Listing:
        def __init__(self, token=None):
            pass

        def list_repo_files(self, repo_id):
            return ["README.md", "ssamba_tiny_400.pth", "ssamba_tiny_250.pth", "ssamba_huge_400.pth"]

    monkeypatch.setattr(huggingface_hub, "HfApi", Listing)
    assert cli_main(["models"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"hf://{hub.OFFICIAL_REPO} holds 4 files; not there: ssamba_base_250.pth")
    assert "other checkpoints: ssamba_huge_400.pth" in last


def test_checkpoint_repo_errors_online_are_one_line(online, hub_cache, monkeypatch, tmp_path, capsys):
    """hf://OWNER/REPO goes through snapshot_download, whose first request is the repo's info."""
    from huggingface_hub import HfApi, errors

    def fail(self, *args, **kwargs):
        raise online.answer

    monkeypatch.setattr(HfApi, "repo_info", fail)
    url = "https://huggingface.co/api/models/me/private"
    for error, expected in ((_http_error(errors.GatedRepoError, 403, url), "gated repository"),
                            (_http_error(errors.RepositoryNotFoundError, 401, url), "no such repository on the Hub"),
                            (_http_error(errors.RevisionNotFoundError, 404, url), "no revision 'v2'"),
                            (httpx2.ConnectError("no route to host"), "me/private at revision 'v2' is not in the "
                                                                      "Hugging Face cache")):
        online.answer = error
        line = run_expecting_error(capsys, ["convert", "hf://me/private@v2", str(tmp_path / "out")])
        assert f"hf://me/private@v2: {expected}" in line, line
        assert isinstance(error, errors.HfHubHTTPError) or "and the Hub could not be reached" in line
    assert not [f for f in cache_files(hub_cache) if "blobs" in f or "snapshots" in f]


def test_probe_by_address_keys_its_embedding_cache_on_the_commit(hub_cache, tmp_path):
    """The probe's cached embeddings are keyed by the resolved snapshot file, which names the commit:
    the same address reuses them, the repo moved to new weights recomputes them."""
    from dataset_layouts import write_csv_dataset

    from ssamba.downstream.probe import probe

    csv_path = write_csv_dataset(tmp_path / "data", ["c0", "c1"], per_class=4, folds=2, seconds=0.5, spread=12)
    tiny(0).save_pretrained(tmp_path / "enc0")
    tiny(1).save_pretrained(tmp_path / "enc1")
    write_hub_cache(hub_cache, "me/enc", folder_files(tmp_path / "enc0"))
    first = probe("hf://me/enc", csv_path, tmp_path / "run", features="speechcommands")
    cache = tmp_path / "run" / "embeddings.npz"
    stamp = cache.stat().st_mtime_ns
    assert probe("hf://me/enc", csv_path, tmp_path / "run", features="speechcommands")["runs"] == first["runs"]
    assert cache.stat().st_mtime_ns == stamp
    write_hub_cache(hub_cache, "me/enc", folder_files(tmp_path / "enc1"))   # main now points at new weights
    probe("hf://me/enc", csv_path, tmp_path / "run", features="speechcommands")
    assert cache.stat().st_mtime_ns != stamp
