"""Labels and probe tasks of the demo corpus.

Labels come only from where a file sits and what it is called, so the same rules work on
the unpacked Debian packages, on a generated corpus and on any `--corpus DIR`:

- `.../voices/<pack>/<Word>.ogg` (hedgewars-data): `voice_pack`, `word` (trailing digits
  dropped: `Jump1`, `Jump2` -> `Jump`, so near-identical takes never straddle a split).
- `.../drumkits/<kit>/<sample>` (hydrogen-drumkits): `drum_kit`, `drum_instrument` from the
  file name with `DRUM_KEYWORDS`; names without a keyword fall back to the instrument name the
  kit's `drumkit.xml` gives that file; samples neither maps are left unlabelled.
- `.../<stamp>_desc_<lang>.ogg` (tuxpaint-stamps-default): `language`, `stamp`.
- `.../sonic-pi/samples/<family>_<name>.flac` (sonic-pi-samples): `sample_family` (bd, ambi, loop...;
  no task uses it, the package is pretraining audio).
- anything else: `folder` (its parent folder relative to the corpus root) for `--corpus DIR`.

Every task holds out whole groups (words, packs, kits, stamps): no test group has an item in
training. Splits are drawn from `random.Random` seeded by (seed, task name), so they are
deterministic and independent of file order.
"""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from ssamba.errors import DataError

if TYPE_CHECKING:  # only for annotations: ssamba.demo.corpus imports this module
    from ssamba.data.manifests import Manifest
    from ssamba.demo.corpus import CorpusFile

# ----------------------------------------------------------------------------- labels

_VOICE = re.compile(r"(?:^|/)voices/(?P<pack>[^/]+)/(?P<stem>[^/]+)\.[^./]+$")
_DRUM = re.compile(r"(?:^|/)drumkits/(?P<kit>[^/]+)/(?P<stem>[^/]+)\.[^./]+$")
_DESC = re.compile(r"^(?P<stamp>.+)_desc_(?P<lang>[A-Za-z]{2,3}(?:_[A-Za-z]{2})?)\.[^./]+$")
_SONIC = re.compile(r"(?:^|/)sonic-pi/samples/(?P<family>[A-Za-z]+)_[^/]+$")
_LOCALISED_PACK = re.compile(r"_[a-z]{2}$")  # Default_ru, Russian_pl: same file names, other language

# Drum instrument classes, tried in this order against the sample's normalised name
# ("HiHatClosed-0" -> "hi hat closed 0", "SN3_01" -> "sn 3 01"). The first class whose
# pattern matches wins, so "SnareRim" is a snare and "CrashRide18Bell" a cymbal.
# Deliberately unmapped (too ambiguous): rim/stick/click, "drum", "fx", a bare "bell".
DRUM_KEYWORDS: dict[str, str] = {
    "kick": r"kick|bass ?drum|\bbd\b|\bk\b",
    "snare": r"snare|\b(?:sn|sd|sr)\b",
    "hihat": r"hi ?hat|hhat|hat|\bhh|\b(?:chh|ohh|ho)\b",
    "tom": r"\btom|tom\b|\b(?:tm|ft|t)\b",
    "cymbal": r"crash|ride|china|splash|cymbal|\b(?:cc|rc|rd|cra)\b",
    "clap": r"clap|snap",
    "perc": r"cowbell|\bcb\b|agogo|tambourine|maraca|shake|conga|bongo|clave|wood ?block"
    r"|djembe|dununba|kenkeni|sangban|cajon|waterglass|whistle|triangle|cabasa|guiro|timbale",
}
_DRUM_RULES = [(name, re.compile(pattern)) for name, pattern in DRUM_KEYWORDS.items()]


def normalise_name(name: str) -> str:
    """Lower-case words of a file stem: camelCase, digits and separators split by spaces."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])", " ", name)
    return " ".join(re.split(r"[^A-Za-z0-9]+", spaced)).lower().strip()


def drum_instrument(name: str) -> str | None:
    """Drum class (a key of `DRUM_KEYWORDS`) of a sample or instrument name, or None."""
    words = normalise_name(name)
    for label, pattern in _DRUM_RULES:
        if pattern.search(words):
            return label
    return None


def read_drumkit_xml(path: Path) -> dict[str, str]:
    """Hydrogen `drumkit.xml`: sample file name -> the name of the instrument that plays it."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(f"{path}: unreadable drumkit.xml ({err})") from err
    mapping: dict[str, str] = {}
    for instrument in root.iter():
        if _local(instrument.tag) != "instrument":
            continue
        name = next((c.text or "" for c in instrument if _local(c.tag) == "name"), "")
        for node in instrument.iter():
            if _local(node.tag) == "filename" and node.text:
                mapping.setdefault(Path(node.text.strip()).name, name.strip())
    return mapping


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def derive_labels(relpath: str, kit_instruments: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of one file from its path relative to the corpus root (see module docstring).

    `kit_instruments`: the `read_drumkit_xml` mapping of the file's kit, if it has one.
    """
    voice = _VOICE.search(relpath)
    if voice:
        stem = voice["stem"]
        return {"voice_pack": voice["pack"], "word": re.sub(r"\d+$", "", stem) or stem}
    drum = _DRUM.search(relpath)
    if drum:
        labels = {"drum_kit": drum["kit"]}
        instrument = drum_instrument(drum["stem"])
        source = "file name"
        if instrument is None and kit_instruments:
            instrument = drum_instrument(kit_instruments.get(Path(relpath).name, ""))
            source = "drumkit.xml"
        if instrument is not None:
            labels.update(drum_instrument=instrument, drum_instrument_from=source)
        return labels
    sonic = _SONIC.search(relpath)
    if sonic:
        return {"sample_family": sonic["family"].lower()}
    directory, _, filename = relpath.rpartition("/")
    desc = _DESC.match(filename)
    if desc:
        return {"language": desc["lang"], "stamp": f"{directory}/{desc['stamp']}" if directory else desc["stamp"]}
    return {"folder": directory or "."}


# ----------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class TaskItem:
    """One labelled clip of a task. `group` is the held-out unit (word, pack, kit, stamp)."""

    path: Path
    label: str
    group: str


@dataclass
class DemoTask:
    """A probe task: classes, and train/test items whose groups never overlap."""

    name: str
    description: str
    classes: list[str]
    train_items: list[TaskItem]
    test_items: list[TaskItem]
    group_kind: str = "group"
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> number of items left out

    def class_counts(self) -> dict[str, dict[str, int]]:
        """{"train": {class: n}, "test": {class: n}} in `classes` order."""
        return {
            split: {c: Counter(i.label for i in items).get(c, 0) for c in self.classes}
            for split, items in (("train", self.train_items), ("test", self.test_items))
        }

    @property
    def chance(self) -> float:
        """Accuracy of always answering the most common test class."""
        counts = Counter(i.label for i in self.test_items)
        return max(counts.values()) / len(self.test_items) if self.test_items else 0.0

    def summary(self) -> dict:
        """JSON-ready description: sizes, groups, balance, what was dropped."""
        counts = self.class_counts()
        return {
            "name": self.name,
            "description": self.description,
            "held_out": self.group_kind,
            "classes": len(self.classes),
            "train_items": len(self.train_items),
            "test_items": len(self.test_items),
            "train_groups": len({i.group for i in self.train_items}),
            "test_groups": len({i.group for i in self.test_items}),
            "majority_test_accuracy": round(self.chance, 4),
            "class_counts": counts,
            "dropped": dict(self.dropped),
        }

    def to_manifest(self) -> "Manifest":
        """The task as a `ssamba.data.manifests.Manifest` (splits "train"/"test", groups kept),
        ready for `AudioClassificationDataset`."""
        from ssamba.data.manifests import AudioItem, DatasetSpec, Manifest

        index = {c: i for i, c in enumerate(self.classes)}
        items = [
            AudioItem(path=i.path, labels=(index[i.label],), split=split, group=i.group)
            for split, chosen in (("train", self.train_items), ("test", self.test_items))
            for i in chosen
        ]
        spec = DatasetSpec(name=self.name, class_names=list(self.classes), splits=("train", "test"))
        return Manifest(spec=spec, items=items)


@dataclass
class TaskConfig:
    """How tasks are cut from the corpus.

    test_fraction:      share of groups (not items) held out for testing.
    min_train, min_test: a class needs at least this many items on each side, else it is dropped.
    max_per_class:      cap on items per class and side (seeded subsample; None keeps all).
    min_pack_fraction:  word task keeps words spoken in at least this share of its packs.
    candidates:         number of seeded group shuffles tried; the one keeping most classes wins.
    """

    seed: int = 0
    test_fraction: float = 0.3
    min_train: int = 5
    min_test: int = 2
    max_per_class: int | None = None
    min_pack_fraction: float = 0.6
    candidates: int = 64


def _split_groups(
    labelled: list[tuple[Path, str, str]], rng: random.Random, cfg: TaskConfig
) -> tuple[list[TaskItem], list[TaskItem], dict[str, int]]:
    """Hold out whole groups: try `cfg.candidates` shuffles, keep the one whose test share of
    items is closest to `cfg.test_fraction` among those keeping the most classes, then drop
    classes below the minimum counts."""
    by_group: dict[str, list[TaskItem]] = defaultdict(list)
    for path, label, group in labelled:
        by_group[group].append(TaskItem(path, label, group))
    groups = sorted(by_group)
    if len(groups) < 2:
        raise DataError(f"need at least 2 groups to hold one out, found {len(groups)}")
    total = len(labelled)
    best = None
    for _ in range(max(1, cfg.candidates)):
        order = groups[:]
        rng.shuffle(order)
        test_groups, n_test = set(), 0
        for g in order:
            if n_test >= cfg.test_fraction * total or len(test_groups) == len(groups) - 1:
                break
            test_groups.add(g)
            n_test += len(by_group[g])
        train = [i for g in groups if g not in test_groups for i in by_group[g]]
        test = [i for g in groups if g in test_groups for i in by_group[g]]
        kept = _kept_classes(train, test, cfg)
        score = (len(kept), -abs(len(test) / total - cfg.test_fraction))
        if best is None or score > best[0]:
            best = (score, train, test, kept)
    _, train, test, kept = best
    dropped = sum(1 for i in train + test if i.label not in kept)
    train = [i for i in train if i.label in kept]
    test = [i for i in test if i.label in kept]
    return train, test, ({"class below minimum count": dropped} if dropped else {})


def _kept_classes(train: list[TaskItem], test: list[TaskItem], cfg: TaskConfig) -> set[str]:
    n_train, n_test = Counter(i.label for i in train), Counter(i.label for i in test)
    return {c for c in n_train if n_train[c] >= cfg.min_train and n_test[c] >= cfg.min_test}


def _cap(items: list[TaskItem], limit: int | None, rng: random.Random) -> list[TaskItem]:
    """At most `limit` items per class (seeded choice, original order kept)."""
    if limit is None:
        return items
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        by_class[item.label].append(index)
    keep = {i for idx in by_class.values() for i in (rng.sample(idx, limit) if len(idx) > limit else idx)}
    return [item for index, item in enumerate(items) if index in keep]


def make_task(
    name: str,
    description: str,
    group_kind: str,
    labelled: Sequence[tuple[Path, str, str]],
    cfg: TaskConfig,
    dropped: dict[str, int] | None = None,
) -> DemoTask:
    """A held-out-group task from (path, label, group) triples (sorted first, so file order
    does not matter)."""
    labelled = sorted(labelled, key=lambda t: (str(t[0]), t[1], t[2]))
    rng = random.Random(f"{cfg.seed}:{name}")
    train, test, why = _split_groups(labelled, rng, cfg)
    if not train or not test:
        raise DataError(f"task {name}: no class has >= {cfg.min_train} train and >= {cfg.min_test} test items")
    train, test = _cap(train, cfg.max_per_class, rng), _cap(test, cfg.max_per_class, rng)
    classes = sorted({i.label for i in train})
    return DemoTask(name, description, classes, train, test, group_kind, {**(dropped or {}), **why})


def voice_pack_task(files: Sequence["CorpusFile"], cfg: TaskConfig) -> DemoTask:
    """(1) Which hedgewars voice pack speaks? Words are held out: test words are never heard
    in training, so the probe must recognise the voice, not the word."""
    rows = [(f.path, f.labels["voice_pack"], f.labels["word"]) for f in files if "voice_pack" in f.labels]
    return make_task("voice_pack", "voice-pack identification, words held out", "word", rows, cfg)


def word_task(files: Sequence["CorpusFile"], cfg: TaskConfig) -> DemoTask:
    """(2) Which word is said? Voice packs are held out: test voices are never heard in
    training. Only packs that speak English (localised packs like `Default_ru` reuse the file
    names for another language) and words present in `min_pack_fraction` of them."""
    voices = [f for f in files if "voice_pack" in f.labels]
    english = [f for f in voices if not _LOCALISED_PACK.search(f.labels["voice_pack"])]
    packs = {f.labels["voice_pack"] for f in english}
    packs_of_word: dict[str, set[str]] = defaultdict(set)
    for f in english:
        packs_of_word[f.labels["word"]].add(f.labels["voice_pack"])
    common = {w for w, p in packs_of_word.items() if len(p) >= cfg.min_pack_fraction * len(packs)}
    rows = [(f.path, f.labels["word"], f.labels["voice_pack"]) for f in english if f.labels["word"] in common]
    dropped = {"localised voice pack": len(voices) - len(english), "word in too few packs": len(english) - len(rows)}
    return make_task("word", "word recognition, voice packs held out", "voice pack", rows, cfg,
                     {k: v for k, v in dropped.items() if v})


def drum_task(files: Sequence["CorpusFile"], cfg: TaskConfig) -> DemoTask:
    """(3) Which drum instrument class? Drum kits are held out: test kits are never heard in
    training. Classes come from `DRUM_KEYWORDS`; unmapped samples are dropped."""
    drums = [f for f in files if "drum_kit" in f.labels]
    rows = [(f.path, f.labels["drum_instrument"], f.labels["drum_kit"]) for f in drums if "drum_instrument" in f.labels]
    dropped = {"no instrument keyword": len(drums) - len(rows)} if len(drums) > len(rows) else {}
    return make_task("drum_instrument", "drum instrument class, drum kits held out", "drum kit", rows, cfg, dropped)


def language_task(files: Sequence["CorpusFile"], cfg: TaskConfig) -> DemoTask:
    """(4) In which language is a tuxpaint stamp described? Stamps are held out: a test
    stamp's description is never heard in training in any language."""
    rows = [(f.path, f.labels["language"], f.labels["stamp"]) for f in files if "language" in f.labels]
    return make_task("language", "language of spoken stamp descriptions, stamps held out", "stamp", rows, cfg)


def folder_task(files: Sequence["CorpusFile"], cfg: TaskConfig) -> DemoTask:
    """For `--corpus DIR` without a known layout: the top-level folder is the class, each
    file its own group (so this split holds out files, not speakers or recordings)."""
    rows = []
    for f in files:
        folder = f.labels.get("folder", ".")
        if folder != ".":
            rows.append((f.path, folder.split("/")[0], str(f.path)))
    return make_task("folder", "top-level folder of each file, files held out", "file", rows, cfg)


TASK_BUILDERS: dict[str, tuple[str, Callable[[Sequence["CorpusFile"], TaskConfig], DemoTask]]] = {
    "voice_pack": ("voice_pack", voice_pack_task),
    "word": ("voice_pack", word_task),
    "drum_instrument": ("drum_instrument", drum_task),
    "language": ("language", language_task),
}


def build_demo_tasks(
    files: Sequence["CorpusFile"], cfg: TaskConfig | None = None, names: Sequence[str] | None = None
) -> list[DemoTask]:
    """Every task the corpus has labels for (or just `names`). With none of the known layouts
    but several top-level folders, the single task is `folder_task`.

    Raises DataError if a requested task has no data or no task can be built at all.
    """
    cfg = cfg or TaskConfig()
    present = {key for f in files for key in f.labels}
    wanted = list(names) if names is not None else [n for n, (key, _) in TASK_BUILDERS.items() if key in present]
    tasks = []
    for name in wanted:
        if name == "folder":
            tasks.append(folder_task(files, cfg))
            continue
        if name not in TASK_BUILDERS:
            raise DataError(f"unknown demo task {name!r}; known: {sorted(TASK_BUILDERS) + ['folder']}")
        key, builder = TASK_BUILDERS[name]
        if key not in present:
            raise DataError(f"task {name}: the corpus has no files labelled with {key!r}")
        tasks.append(builder(files, cfg))
    if not tasks and names is None:
        folders = {f.labels["folder"].split("/")[0] for f in files if f.labels.get("folder", ".") != "."}
        if len(folders) >= 2:
            tasks.append(folder_task(files, cfg))
    if not tasks:
        raise DataError("no demo task can be built: no voices/, drumkits/ or *_desc_<lang> files "
                        "and fewer than 2 top-level folders")
    return tasks
