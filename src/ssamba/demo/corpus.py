"""The demo corpus: real recordings from four Debian packages, fetched once and cached.

`build_demo_corpus(cache_dir)` runs `apt-get download PKG` in `cache_dir` (no root needed),
checks the .deb's sha256, unpacks it with `dpkg-deb -x` into `cache_dir/<PKG>/`, deletes
everything that is not audio (keeping hydrogen's `drumkit.xml`, which names the instruments),
and writes `cache_dir/manifest.json`: per package its version, .deb sha256 and its audio files
(path relative to `cache_dir`, duration, sample rate, channels, size, derived labels). A
re-run whose .deb still has the recorded sha256 and whose files are all there touches
neither apt-get nor dpkg-deb; a .deb with another hash (partial or corrupted download) is
fetched again. Without apt-get/dpkg-deb, or when the fetch fails, `DataError` says what to
install or to pass `--corpus DIR`: no data is ever made up.

`load_corpus_dir(path)` reads any folder of audio the same way (labels from the relative
path, `ssamba.demo.tasks.derive_labels`); `ssamba.demo.synthetic.make_synthetic_corpus(dir)` writes a small
generated corpus with the packages' on-disk layout for tests and `ssamba demo --quick`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import soundfile as sf

from ssamba.audio.io import AUDIO_EXTENSIONS, list_audio_files
from ssamba.checkpoints.format import atomic_write_text
from ssamba.demo.tasks import derive_labels, read_drumkit_xml
from ssamba.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_PACKAGES = ("hedgewars-data", "hydrogen-drumkits", "tuxpaint-stamps-default", "sonic-pi-samples")
KEEP_EXTRA = ("drumkit.xml",)  # non-audio files kept after unpacking (instrument names)
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
FETCH_TIMEOUT_S = 1800
_HOW_TO_FIX = (
    "install apt and dpkg (Debian/Ubuntu: they are there by default; run `apt-get update` once "
    "if the package lists are empty), or pass --corpus DIR with a folder of your own audio"
)


@dataclass(frozen=True)
class CorpusFile:
    """One audio file of a corpus. `relpath` is relative to the corpus root (POSIX slashes)."""

    path: Path
    relpath: str
    source: str  # package name, or "dir" for a folder read by load_corpus_dir
    duration: float
    sample_rate: int
    channels: int
    size: int
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PackageRecord:
    """A fetched Debian package: name, version, the .deb's file name, size and sha256."""

    name: str
    version: str
    deb: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ClipRef:
    """A stretch of a file for pretraining: `duration` seconds from `offset` (None = to the end)."""

    path: Path
    offset: float = 0.0
    duration: float | None = None


@dataclass
class DemoCorpus:
    """A corpus on disk: its root, its audio files and (for the Debian corpus) its packages."""

    root: Path
    files: list[CorpusFile]
    packages: list[PackageRecord] = field(default_factory=list)
    fetch_seconds: float = 0.0  # time spent fetching + unpacking in this build (0 when cached)

    @property
    def total_duration(self) -> float:
        return float(sum(f.duration for f in self.files))

    def by_source(self) -> dict[str, dict[str, float]]:
        """Source -> {"files": n, "hours": h, "mean_seconds": s} (what each package brings)."""
        stats: dict[str, dict[str, float]] = {}
        for f in self.files:
            s = stats.setdefault(f.source, {"files": 0, "hours": 0.0})
            s["files"] += 1
            s["hours"] += f.duration / 3600
        for s in stats.values():
            s["mean_seconds"] = round(s["hours"] * 3600 / s["files"], 3)
            s["hours"] = round(s["hours"], 4)
        return stats

    def pretraining_clips(self, max_duration: float | None = None, exclude: Iterable[Path] = ()) -> list[ClipRef]:
        """Every file as unlabelled pretraining audio (all packages), each cut to its first
        `max_duration` seconds if given (so a few long music tracks do not dominate).
        `exclude`: paths to leave out, e.g. probe test items for a strictly held-out run."""
        skip = {Path(p).resolve() for p in exclude}
        return [
            ClipRef(f.path, 0.0, None if max_duration is None or f.duration <= max_duration else float(max_duration))
            for f in self.files
            if f.path.resolve() not in skip
        ]


# ----------------------------------------------------------------------------- reading audio folders


def _scan_audio(root: Path, subdir: Path, source: str) -> list[CorpusFile]:
    """CorpusFiles for the audio under `subdir` (relpaths relative to `root`); empty files
    are left out, unreadable ones raise DataError naming the file."""
    kits: dict[Path, dict[str, str]] = {}
    files = []
    for path in list_audio_files(subdir):
        try:
            info = sf.info(str(path))
        except Exception as err:  # soundfile raises RuntimeError/LibsndfileError/TypeError
            raise DataError(f"{path}: not readable as audio ({err})") from err
        if info.frames == 0 or info.samplerate <= 0:
            log.warning("%s: empty audio file, left out", path)
            continue
        kit_xml = path.parent / "drumkit.xml"
        if kit_xml.is_file() and path.parent not in kits:
            kits[path.parent] = read_drumkit_xml(kit_xml)
        relpath = path.relative_to(root).as_posix()
        files.append(
            CorpusFile(
                path=path,
                relpath=relpath,
                source=source,
                duration=round(info.frames / info.samplerate, 4),
                sample_rate=int(info.samplerate),
                channels=int(info.channels),
                size=path.stat().st_size,
                labels=derive_labels(relpath, kits.get(path.parent)),
            )
        )
    return files


def load_corpus_dir(path: str | Path) -> DemoCorpus:
    """Any folder of audio (ogg/wav/flac/aiff/mp3, recursive) as a corpus for `--corpus DIR`.
    Labels come from the relative paths (`derive_labels`): the Debian layouts are recognised
    anywhere below `path`, otherwise each file's folder is its label."""
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{root}: --corpus directory not found")
    files = _scan_audio(root, root, "dir")
    if not files:
        raise DataError(f"{root}: no audio files ({'/'.join(e[1:] for e in AUDIO_EXTENSIONS)}) found under --corpus")
    return DemoCorpus(root=root, files=files)


# ----------------------------------------------------------------------------- manifest


def save_manifest(corpus: DemoCorpus, path: str | Path) -> Path:
    """Write the corpus as JSON (paths relative to `corpus.root`)."""
    path = Path(path)
    data = {
        "format": MANIFEST_FORMAT,
        "packages": [asdict(p) for p in corpus.packages],
        "files": [{k: v for k, v in asdict(f).items() if k != "path"} for f in corpus.files],
    }
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False))
    return path


def load_manifest(path: str | Path, root: str | Path | None = None) -> DemoCorpus:
    """Read a manifest written by `save_manifest`; file paths resolve against `root`
    (default: the manifest's folder)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {MANIFEST_FORMAT}")
        base = Path(root) if root is not None else path.parent
        packages = [PackageRecord(**p) for p in data["packages"]]
        files = [CorpusFile(path=base / f["relpath"], **f) for f in data["files"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: unreadable demo corpus manifest ({err})") from err
    return DemoCorpus(root=base, files=files, packages=packages)


# ----------------------------------------------------------------------------- fetching


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def apt_fetch(package: str, directory: Path) -> Path:
    """`apt-get download PACKAGE` in `directory`; returns the .deb it wrote."""
    if shutil.which("apt-get") is None:
        raise DataError(f"apt-get not found: cannot fetch the demo corpus package {package}; {_HOW_TO_FIX}")
    try:
        run = subprocess.run(
            ["apt-get", "download", package], cwd=directory, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as err:
        raise DataError(f"apt-get download {package} timed out after {FETCH_TIMEOUT_S} s; {_HOW_TO_FIX}") from err
    if run.returncode != 0:
        reason = (run.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"apt-get download {package} failed (exit {run.returncode}: {reason}); {_HOW_TO_FIX}")
    deb = _find_deb(package, directory)
    if deb is None:
        raise DataError(f"apt-get download {package} wrote no {package}_*.deb in {directory}; {_HOW_TO_FIX}")
    return deb


def apt_expected_sha256(package: str) -> str | None:
    """The sha256 the local apt lists give for `package` (None if unknown): lets a re-run
    check a .deb that no manifest has recorded yet."""
    if shutil.which("apt-cache") is None:
        return None
    try:
        run = subprocess.run(["apt-cache", "show", package], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None
    for line in run.stdout.splitlines() if run.returncode == 0 else []:
        if line.startswith("SHA256:"):
            return line.split(":", 1)[1].strip()
    return None


def dpkg_unpack(deb: Path, destination: Path) -> None:
    """`dpkg-deb -x DEB DESTINATION` (extracts files; installs nothing, needs no root)."""
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"dpkg-deb not found: cannot unpack {deb.name}; {_HOW_TO_FIX}")
    run = subprocess.run(["dpkg-deb", "-x", str(deb), str(destination)], capture_output=True, text=True)
    if run.returncode != 0:
        reason = (run.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(f"{deb}: dpkg-deb -x failed ({reason}); delete it and run again, or pass --corpus DIR")


def _find_deb(package: str, directory: Path) -> Path | None:
    """The newest `<package>_<version>_<arch>.deb` in `directory`."""
    debs = sorted(directory.glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def deb_version(deb: Path) -> str:
    """Version from a Debian file name `name_version_arch.deb` (epoch `:` is `%3a` there)."""
    parts = deb.stem.split("_")
    return urllib.parse.unquote(parts[1]) if len(parts) >= 3 else "unknown"


def _prune_to_audio(directory: Path) -> None:
    """Delete everything under `directory` except audio files and `KEEP_EXTRA`, and empty folders."""
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_symlink():
            path.unlink()
        elif path.is_file():
            if path.suffix.lower() not in AUDIO_EXTENSIONS and path.name not in KEEP_EXTRA:
                path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _cached_files_ok(corpus: DemoCorpus, package: str) -> bool:
    files = [f for f in corpus.files if f.source == package]
    return bool(files) and all(f.path.is_file() and f.path.stat().st_size == f.size for f in files)


def build_demo_corpus(
    cache_dir: str | Path,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    fetch: Callable[[str, Path], Path] = apt_fetch,
    unpack: Callable[[Path, Path], None] = dpkg_unpack,
    expected_sha256: Callable[[str], str | None] = apt_expected_sha256,
    progress: Callable[[str], None] | None = None,
) -> DemoCorpus:
    """Fetch, unpack and index `packages` under `cache_dir`, re-using what is cached.

    `fetch(package, dir) -> deb`, `unpack(deb, dest)` and `expected_sha256(package)` default to
    apt-get download / dpkg-deb -x / apt-cache show; tests inject their own. `progress`
    receives one line per package. Raises DataError (with what to install, or `--corpus DIR`)
    when a package cannot be fetched or unpacked.
    """
    if not packages:
        raise DataError("build_demo_corpus: no packages given")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda line: log.info("%s", line))
    manifest_path = cache / MANIFEST_NAME
    old = DemoCorpus(cache, [])
    if manifest_path.is_file():
        try:
            old = load_manifest(manifest_path)
        except DataError as err:
            log.warning("%s; rebuilding it", err)
    recorded = {p.name: p for p in old.packages}

    records, files, spent = [], [], 0.0
    for package in packages:
        start = time.perf_counter()
        record = recorded.get(package)
        deb = cache / record.deb if record else _find_deb(package, cache)
        want = record.sha256 if record else (expected_sha256(package) if deb else None)
        have = sha256_file(deb) if deb is not None and deb.is_file() else None
        if have is None or want is None or have != want:
            if deb is not None and deb.is_file():
                say(f"{package}: cached {deb.name} {'unverifiable' if want is None else 'has a wrong sha256'}; fetching again")
                deb.unlink()
            say(f"{package}: apt-get download")
            deb = fetch(package, cache)
            have, record = sha256_file(deb), None
        if record is not None and _cached_files_ok(old, package):
            say(f"{package}: cached ({record.version}, sha256 ok)")
            records.append(record)
            files.extend(f for f in old.files if f.source == package)
            continue
        say(f"{package}: unpacking {deb.name}")
        target, partial = cache / package, cache / f"{package}.partial"
        for stale in (target, partial):
            if stale.exists():
                shutil.rmtree(stale)
        unpack(deb, partial)
        _prune_to_audio(partial)
        partial.rename(target)
        package_files = _scan_audio(cache, target, package)
        if not package_files:
            raise DataError(f"{deb}: package {package} holds no audio files")
        records.append(PackageRecord(package, deb_version(deb), deb.name, have, deb.stat().st_size))
        files.extend(package_files)
        spent += time.perf_counter() - start
        say(f"{package}: {len(package_files)} audio files in {time.perf_counter() - start:.1f} s")
        # write after each package, so an interrupted build keeps what it finished
        done = {r.name for r in records}
        later = [p for p in old.packages if p.name not in done]
        save_manifest(DemoCorpus(cache, files + [f for f in old.files if f.source not in done], records + later),
                      manifest_path)
    corpus = DemoCorpus(cache, files, records, fetch_seconds=spent)
    save_manifest(corpus, manifest_path)
    return corpus
