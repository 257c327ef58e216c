"""The demo report's goals table: each goal counted from the results, met or not stated plainly."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ssamba.demo.evaluate import ProbeResult
from ssamba.demo.report import bands_sentence, goals, verdict

TASKS = [SimpleNamespace(name=n) for n in ("voice_pack", "word", "drum_instrument", "language")]


def result(task: str, method: str, accuracy: float, half_width: float = 0.05) -> ProbeResult:
    return ProbeResult(task, method, accuracy, accuracy - half_width, accuracy + half_width, 0.0, 8,
                       np.zeros(1), np.zeros(1))


def results(table: dict[str, tuple[float, ...]]) -> list[ProbeResult]:
    """method -> accuracy per task (in TASKS order)."""
    return [result(t.name, method, acc) for method, accs in table.items() for t, acc in zip(TASKS, accs)]


PROBES = {
    "log-mel stats": (0.70, 0.20, 0.50, 0.84),
    "SSAMBA random init": (0.30, 0.20, 0.30, 0.80),
    "SSAMBA pretrained": (0.45, 0.22, 0.30, 0.80),            # apart from random init on voice only
    "SSAMBA pretrained, mean‖std": (0.60, 0.35, 0.45, 0.95),  # above log-mel, apart, on word only
    "SSAST pretrained": (0.40, 0.25, 0.35, 0.65),
}
FINETUNED = {
    "SSAMBA random init, fine-tuned": (0.20, 0.10, 0.30, 0.50),
    "SSAMBA pretrained, fine-tuned": (0.35, 0.25, 0.32, 0.49),  # ahead on 3, apart on 2
    "SSAST pretrained, fine-tuned": (0.30, 0.30, 0.40, 0.40),   # SSAMBA ahead on 2 only
}


def test_each_goal_is_counted_and_judged():
    table = goals(results(PROBES | FINETUNED), TASKS)
    assert [row[1] for row in table] == ["ahead on 3, intervals apart on 2", "ahead on 3", "intervals apart on 2",
                                         "intervals apart on 2"]
    rows = {row[0]: row[2:] for row in table}
    ft_random = next(v for k, v in rows.items() if k.startswith("fine-tuned pretrained SSAMBA beats"))
    assert ft_random == ["ahead on 3 of 4, 2 with intervals apart", "met"]
    vs_ssast = next(v for k, v in rows.items() if "SSAST" in k)
    assert vs_ssast == ["ahead on 2 of 4, 0 with intervals apart", "not met"]
    # the best of mean, mean‖std and fine-tuned counts: mean‖std is apart on word and language
    vs_logmel = next(v for k, v in rows.items() if "log-mel" in k)
    assert vs_logmel == ["ahead on 2 of 4, 2 with intervals apart", "met"]
    # ... and the bands pooling too: apart on drum as well
    with_bands = goals(results(PROBES | FINETUNED | {"SSAMBA pretrained, bands": (0.5, 0.2, 0.65, 0.8)}), TASKS)
    assert next(r[2:] for r in with_bands if "log-mel" in r[0]) == ["ahead on 3 of 4, 3 with intervals apart", "met"]
    probe = next(v for k, v in rows.items() if k.startswith("probe:"))
    assert probe == ["ahead on 2 of 4, 1 with intervals apart", "not met"]


def test_without_fine_tuning_the_ssast_goal_uses_the_probes():
    rows = goals(results(PROBES), TASKS)
    assert len(rows) == 3 and not any(r[0].startswith("fine-tuned") for r in rows)
    vs_ssast = next(r for r in rows if "SSAST" in r[0])
    assert "probed" in vs_ssast[0] and vs_ssast[2:] == ["ahead on 2 of 4, 1 with intervals apart", "not met"]


def test_counts_scale_with_the_number_of_tasks():
    one = [TASKS[0]]
    rows = goals([r for r in results(PROBES | FINETUNED) if r.task == TASKS[0].name], one)
    needed = {r[0]: r[1] for r in rows}
    assert list(needed.values()) == ["ahead on 1, intervals apart on 1", "ahead on 1", "intervals apart on 1",
                                     "intervals apart on 1"]


def test_verdict_sentences_and_win_counts_follow_the_intervals():
    lines, wins = verdict(results(PROBES), TASKS)
    assert wins == {"random init": 1, "log-mel stats": 0}
    voice, word = lines[0], lines[1]
    assert "better than random init (45.0 vs 30.0 %)" in voice and "worse than log-mel stats (45.0 vs 70.0 %)" in voice
    assert "not distinguishable from random init" in word and "not distinguishable from log-mel stats" in word


def test_bands_sentence_counts_pretrained_against_random_init_with_the_spectrum_kept():
    assert bands_sentence(results(PROBES), TASKS) is None   # a run without bands rows says nothing
    bands = {"SSAMBA pretrained, bands": (0.56, 0.30, 0.40, 0.98), "SSAMBA random init, bands": (0.61, 0.25, 0.51, 0.97)}
    text = bands_sentence(results(PROBES | bands), TASKS)
    # ahead on word and language, overlapping (intervals +-0.05); drum behind, apart (0.35-0.45 vs 0.46-0.56)
    assert "ahead of its random initialisation on 2 of 4 tasks, 0 with intervals apart" in text
    assert "behind with intervals apart on 1" in text and "drum_instrument 40.0 vs 51.0" in text
