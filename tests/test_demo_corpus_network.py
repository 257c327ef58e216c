"""The real thing: fetch Debian packages with apt-get download and check manifest and labels
on real files. Needs the network and apt lists (`apt-get update`); CI runs `-m network`."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
import soundfile as sf

from ssamba.demo.corpus import build_demo_corpus
from ssamba.demo.tasks import build_demo_tasks

pytestmark = pytest.mark.network


def _apt_field(package: str, name: str) -> str:
    out = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith(f"{name}:"))


@pytest.fixture(autouse=True)
def _need_apt():
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get/dpkg-deb not installed")
    if subprocess.run(["apt-cache", "show", "sonic-pi-samples"], capture_output=True).returncode != 0:
        pytest.skip("apt lists do not know the demo packages (run apt-get update)")


def test_real_sonic_pi_samples_build_manifest_and_cache(tmp_path):
    """sonic-pi-samples is the smallest of the four packages (22 MB)."""
    package = "sonic-pi-samples"
    corpus = build_demo_corpus(tmp_path, packages=[package])
    (record,) = corpus.packages
    deb = tmp_path / record.deb
    assert record.sha256 == hashlib.sha256(deb.read_bytes()).hexdigest() == _apt_field(package, "SHA256")
    assert record.version == _apt_field(package, "Version")
    assert record.size == int(_apt_field(package, "Size"))
    assert len(corpus.files) > 100
    assert all(f.path.suffix in (".flac", ".wav") for f in corpus.files)
    assert not [p for p in (tmp_path / package).rglob("*") if p.is_file() and p.suffix not in (".flac", ".wav")]
    for f in corpus.files[::20]:
        info = sf.info(str(f.path))
        assert f.sample_rate == info.samplerate and f.duration == pytest.approx(info.frames / info.samplerate, abs=1e-3)
    families = {f.labels.get("sample_family") for f in corpus.files if "/samples/" in f.relpath}
    assert {"bd", "ambi", "loop", "drum"} <= families
    clips = corpus.pretraining_clips(max_duration=2.0)
    assert len(clips) == len(corpus.files) and max(c.duration or 0 for c in clips) == 2.0

    def no_fetch(package, directory):
        raise AssertionError("apt-get called although the cache is valid")

    again = build_demo_corpus(tmp_path, packages=[package], fetch=no_fetch)
    assert again.files == corpus.files


@pytest.mark.slow
def test_real_drum_kits_give_a_drum_task(tmp_path):
    """hydrogen-drumkits (143 MB): instrument labels and the kits-held-out task on real samples."""
    corpus = build_demo_corpus(tmp_path, packages=["hydrogen-drumkits"])
    labels = {f.relpath.split("/drumkits/")[1]: f.labels.get("drum_instrument") for f in corpus.files}
    assert labels["ForzeeStereo/Kick-0.wav"] == "kick"
    assert labels["BJA_Pacific/SN_01.aiff"] == "snare"
    assert labels["Millo_MultiLayered3/hh_01.flac"] == "hihat"
    assert labels["rumpf_kit_z01_h2/beats_06-38.flac"] == "kick"  # from drumkit.xml: "c3 - bass drum 1"
    (task,) = build_demo_tasks(corpus.files)
    assert task.name == "drum_instrument" and {"kick", "snare", "hihat", "tom", "cymbal"} <= set(task.classes)
    assert not {i.group for i in task.train_items} & {i.group for i in task.test_items}
    assert len(task.train_items) > 300 and len(task.test_items) > 100
