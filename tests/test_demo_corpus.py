"""Demo corpus: fetch/unpack/cache/manifest with injected package tools, folder reading,
the synthetic corpus layout, and the errors a user sees when the package tools are missing."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ssamba.demo import corpus as dc
from ssamba.demo.corpus import DEFAULT_PACKAGES, build_demo_corpus, load_corpus_dir, load_manifest, save_manifest
from ssamba.demo.synthetic import (
    PACKAGE_AUDIO_DIRS,
    SyntheticCorpusConfig,
    make_synthetic_corpus,
    write_synthetic_package,
)
from ssamba.errors import DataError

VERSIONS = {
    "hedgewars-data": "1.0.2-6",
    "hydrogen-drumkits": "2017.09.19~dfsg-1",
    "tuxpaint-stamps-default": "1:2022.06.04-1",  # with an epoch: written as %3a in file names
    "sonic-pi-samples": "3.2.2~repack-8",
}


class FakeApt:
    """Stands in for apt-get download + dpkg-deb -x: a .deb is a few bytes naming the
    package, unpacking writes the synthetic package tree. Counts the calls."""

    def __init__(self):
        self.fetched: list[str] = []
        self.unpacked: list[str] = []

    def fetch(self, package: str, directory: Path) -> Path:
        self.fetched.append(package)
        version = VERSIONS[package].replace(":", "%3a")
        deb = directory / f"{package}_{version}_all.deb"
        deb.write_bytes(f"fake deb of {package}".encode())
        return deb

    def unpack(self, deb: Path, destination: Path) -> None:
        package = deb.name.split("_")[0]
        self.unpacked.append(package)
        write_synthetic_package(package, destination)

    def build(self, cache: Path, **kwargs):
        kwargs.setdefault("expected_sha256", lambda package: None)
        return build_demo_corpus(cache, fetch=self.fetch, unpack=self.unpack, **kwargs)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_first_build_fetches_unpacks_prunes_and_records_every_package(tmp_path):
    apt = FakeApt()
    corpus = apt.build(tmp_path)
    assert apt.fetched == list(DEFAULT_PACKAGES) and apt.unpacked == list(DEFAULT_PACKAGES)
    assert [p.name for p in corpus.packages] == list(DEFAULT_PACKAGES)
    for record in corpus.packages:
        assert record.version == VERSIONS[record.name]
        assert record.sha256 == _sha(tmp_path / record.deb)
        assert record.size == (tmp_path / record.deb).stat().st_size
    # only audio (+ drumkit.xml) is left; no partial folders
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".deb" and p.name != "manifest.json"]
    assert left and all(p.suffix in (".ogg", ".wav", ".flac") or p.name == "drumkit.xml" for p in left)
    assert not list(tmp_path.rglob("copyright")) and not list(tmp_path.rglob("*.txt"))
    assert not list(tmp_path.glob("*.partial"))
    assert {f.source for f in corpus.files} == set(DEFAULT_PACKAGES)
    audio = sorted(p for p in left if p.name != "drumkit.xml")
    assert sorted(f.path for f in corpus.files) == audio
    for f in corpus.files:
        assert f.path == tmp_path / f.relpath
        info = sf.info(str(f.path))
        assert f.sample_rate == info.samplerate == 16000
        assert f.duration == pytest.approx(info.frames / info.samplerate, abs=1e-3)
        assert f.size == f.path.stat().st_size
    on_disk = load_manifest(tmp_path / "manifest.json")
    assert on_disk.files == corpus.files and on_disk.packages == corpus.packages


def test_second_build_uses_the_cache_without_apt(tmp_path):
    first = FakeApt().build(tmp_path)
    again = FakeApt()

    def no_fetch(package, directory):
        raise AssertionError(f"apt-get called for cached {package}")

    second = build_demo_corpus(tmp_path, fetch=no_fetch, unpack=again.unpack, expected_sha256=lambda p: None)
    assert again.unpacked == []
    assert second.files == first.files and second.packages == first.packages
    assert second.fetch_seconds == 0.0


def test_corrupted_deb_is_fetched_again_and_only_that_one(tmp_path):
    FakeApt().build(tmp_path)
    deb = next(tmp_path.glob("hydrogen-drumkits_*.deb"))
    deb.write_bytes(b"truncated")
    apt = FakeApt()
    corpus = apt.build(tmp_path)
    assert apt.fetched == ["hydrogen-drumkits"] and apt.unpacked == ["hydrogen-drumkits"]
    record = next(p for p in corpus.packages if p.name == "hydrogen-drumkits")
    assert record.sha256 == _sha(deb) == hashlib.sha256(b"fake deb of hydrogen-drumkits").hexdigest()


def test_deleted_audio_file_triggers_a_fresh_unpack_without_fetch(tmp_path):
    first = FakeApt().build(tmp_path)
    victim = next(f for f in first.files if f.source == "tuxpaint-stamps-default")
    victim.path.unlink()
    apt = FakeApt()
    second = apt.build(tmp_path)
    assert apt.fetched == [] and apt.unpacked == ["tuxpaint-stamps-default"]
    assert victim.path.is_file() and len(second.files) == len(first.files)


def test_unrecorded_deb_is_checked_against_apt_lists(tmp_path):
    """A .deb with no manifest entry (interrupted build) is kept only if it has the hash the
    apt lists give; otherwise, or when no hash is known, it is fetched again."""
    apt = FakeApt()
    good = apt.fetch("sonic-pi-samples", tmp_path)
    apt.fetched.clear()
    corpus = apt.build(tmp_path, packages=["sonic-pi-samples"], expected_sha256=lambda p: _sha(good))
    assert apt.fetched == [] and apt.unpacked == ["sonic-pi-samples"]
    assert corpus.packages[0].sha256 == _sha(good)

    (tmp_path / "manifest.json").unlink()
    good.write_bytes(b"partial")
    apt = FakeApt()
    apt.build(tmp_path, packages=["sonic-pi-samples"], expected_sha256=lambda p: "0" * 64)
    assert apt.fetched == ["sonic-pi-samples"]

    (tmp_path / "manifest.json").unlink()
    apt = FakeApt()
    apt.build(tmp_path, packages=["sonic-pi-samples"])  # no hash known anywhere
    assert apt.fetched == ["sonic-pi-samples"]


def test_missing_apt_get_raises_data_error_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(dc.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"apt-get not found.*--corpus DIR"):
        build_demo_corpus(tmp_path, packages=["sonic-pi-samples"])
    assert not list(tmp_path.glob("*.deb")) and not (tmp_path / "manifest.json").exists()


def test_missing_dpkg_deb_raises_data_error(tmp_path, monkeypatch):
    apt = FakeApt()
    monkeypatch.setattr(dc.shutil, "which", lambda name: None if name == "dpkg-deb" else f"/usr/bin/{name}")
    with pytest.raises(DataError, match=r"dpkg-deb not found.*--corpus DIR"):
        build_demo_corpus(tmp_path, packages=["sonic-pi-samples"], fetch=apt.fetch, expected_sha256=lambda p: None)


def test_failed_fetch_reports_apt_message(tmp_path, monkeypatch):
    monkeypatch.setattr(dc.shutil, "which", lambda name: f"/usr/bin/{name}")

    def failing_run(cmd, **kwargs):
        assert cmd[:2] == ["apt-get", "download"] and kwargs["cwd"] == tmp_path
        return subprocess.CompletedProcess(cmd, 100, "", "E: Unable to locate package sonic-pi-samples\n")

    monkeypatch.setattr(dc.subprocess, "run", failing_run)
    with pytest.raises(DataError, match=r"apt-get download sonic-pi-samples failed \(exit 100: E: Unable to locate"):
        build_demo_corpus(tmp_path, packages=["sonic-pi-samples"], expected_sha256=lambda p: None)


def test_package_without_audio_is_an_error(tmp_path):
    apt = FakeApt()

    def unpack_nothing(deb, destination):
        (destination / "usr/share/doc").mkdir(parents=True)
        (destination / "usr/share/doc/README").write_text("no audio here")

    with pytest.raises(DataError, match="holds no audio"):
        build_demo_corpus(tmp_path, packages=["sonic-pi-samples"], fetch=apt.fetch, unpack=unpack_nothing,
                          expected_sha256=lambda p: None)


def test_manifest_round_trip_and_bad_manifest(tmp_path):
    corpus = load_corpus_dir(make_synthetic_corpus(tmp_path / "c", packages=["hydrogen-drumkits"]))
    path = save_manifest(corpus, tmp_path / "m.json")
    back = load_manifest(path, root=corpus.root)
    assert back.files == corpus.files and back.root == corpus.root
    assert any(f.labels.get("drum_instrument_from") == "drumkit.xml" for f in back.files)
    path.write_text('{"format": 99}')
    with pytest.raises(DataError, match=r"m\.json: unreadable demo corpus manifest"):
        load_manifest(path)


def test_synthetic_corpus_has_the_package_layout_and_labels(tmp_path):
    cfg = SyntheticCorpusConfig()
    corpus = load_corpus_dir(make_synthetic_corpus(tmp_path, cfg))
    rel = {f.relpath: f for f in corpus.files}
    voices = f"hedgewars-data/{PACKAGE_AUDIO_DIRS['hedgewars-data']}"
    assert rel[f"{voices}/Pirate/Hello.ogg"].labels == {"voice_pack": "Pirate", "word": "Hello"}
    assert rel[f"{voices}/Robot/Jump2.ogg"].labels == {"voice_pack": "Robot", "word": "Jump"}
    drums = f"hydrogen-drumkits/{PACKAGE_AUDIO_DIRS['hydrogen-drumkits']}"
    assert rel[f"{drums}/KitA/Kick-0.wav"].labels["drum_instrument"] == "kick"
    assert rel[f"{drums}/KitB/SN-1.wav"].labels["drum_instrument"] == "snare"
    assert rel[f"{drums}/KitC/CHH-1.flac"].labels["drum_instrument"] == "hihat"
    assert rel[f"{drums}/KitA/beats_01-10.flac"].labels == {
        "drum_kit": "KitA", "drum_instrument": "kick", "drum_instrument_from": "drumkit.xml"}
    assert rel[f"{drums}/KitA/VP Click.flac"].labels == {"drum_kit": "KitA"}
    stamps = f"tuxpaint-stamps-default/{PACKAGE_AUDIO_DIRS['tuxpaint-stamps-default']}"
    assert rel[f"{stamps}/food/fruit/fruit2_desc_ru.ogg"].labels == {"language": "ru", "stamp": f"{stamps}/food/fruit/fruit2"}
    sonic = f"sonic-pi-samples/{PACKAGE_AUDIO_DIRS['sonic-pi-samples']}"
    assert rel[f"{sonic}/bd_boom.flac"].labels == {"sample_family": "bd"}
    n_voice = len(cfg.packs) * len(cfg.words)
    n_drum = len(cfg.kits) * (7 * cfg.takes_per_drum + 2)
    n_desc = len(cfg.stamp_folders) * cfg.stamps_per_folder * len(cfg.languages)
    assert len(corpus.files) == n_voice + n_drum + n_desc + len(cfg.sonic_samples)
    # deterministic: the same config writes the same samples
    again = load_corpus_dir(make_synthetic_corpus(tmp_path / "again", cfg))
    a, _ = sf.read(str(rel[f"{drums}/KitA/Kick-0.wav"].path))
    b, _ = sf.read(str(again.root / f"{drums}/KitA/Kick-0.wav"))
    np.testing.assert_array_equal(a, b)


def test_load_corpus_dir_errors_and_generic_folders(tmp_path):
    with pytest.raises(DataError, match="nowhere: --corpus directory not found"):
        load_corpus_dir(tmp_path / "nowhere")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/a.txt").write_text("x")
    with pytest.raises(DataError, match="no audio files"):
        load_corpus_dir(tmp_path)
    sr = 16000
    tone = 0.1 * np.sin(np.arange(sr) / sr * 2 * np.pi * 440).astype(np.float32)
    for folder in ("birds", "cars"):
        (tmp_path / folder / "sub").mkdir(parents=True)
        sf.write(str(tmp_path / folder / "sub" / "x.wav"), tone, sr)
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), sr)
    corpus = load_corpus_dir(tmp_path)
    assert sorted(f.relpath for f in corpus.files) == ["birds/sub/x.wav", "cars/sub/x.wav"]  # empty file left out
    assert {f.labels["folder"] for f in corpus.files} == {"birds/sub", "cars/sub"}
    assert all(f.duration == pytest.approx(1.0) for f in corpus.files)
    (tmp_path / "cars" / "broken.ogg").write_bytes(b"not audio at all")
    with pytest.raises(DataError, match=r"broken\.ogg: not readable as audio"):
        load_corpus_dir(tmp_path)


def test_pretraining_clips_cover_all_packages_and_clip_long_files(tmp_path):
    corpus = load_corpus_dir(make_synthetic_corpus(tmp_path))
    clips = corpus.pretraining_clips()
    assert [c.path for c in clips] == [f.path for f in corpus.files] and all(c.duration is None for c in clips)
    limit = 0.3
    clipped = corpus.pretraining_clips(max_duration=limit)
    for clip, f in zip(clipped, corpus.files):
        assert clip.offset == 0.0
        assert clip.duration == (None if f.duration <= limit else limit)
    assert any(c.duration == limit for c in clipped) and any(c.duration is None for c in clipped)
    leave_out = {corpus.files[0].path, corpus.files[5].path}
    assert {c.path for c in corpus.pretraining_clips(exclude=leave_out)} == {f.path for f in corpus.files} - leave_out
    stats = corpus.by_source()
    assert stats["dir"]["files"] == len(corpus.files)
    assert stats["dir"]["hours"] == pytest.approx(corpus.total_duration / 3600, abs=1e-4)
