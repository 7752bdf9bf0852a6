"""Neutral movie-review openings for training a guide (bench/trained_guide.py): 240 of them.

Written from parts (who watched what, when, how the sentence goes on) so there are
enough to train on, and checked against the 120 evaluation openings of
bench/lib/openings.py: no training opening shares a 5-gram (five words in a row) with
any of them, so the evaluation measures what the guide learned, not what it saw.
"""
from __future__ import annotations

import re

from bench.lib.openings import OPENINGS

WHO = [
    "My roommate picked this picture for our movie night",
    "We streamed this feature on a borrowed laptop",
    "My aunt took me along to this matinee",
    "Our book club chose this adaptation",
    "I finally sat down with this documentary",
    "A coworker lent me her copy of this drama",
    "My parents suggested this comedy",
    "I queued up this western",
    "We projected this animated feature on a bedsheet",
    "The campus cinema screened this thriller",
    "My neighbor insisted we see this musical",
    "I stumbled onto this mystery late one night",
    "Our film class was assigned this war picture",
    "My cousin dragged me to this science fiction epic",
    "I picked this period piece off a library shelf",
    "We caught this romance at a drive-in",
    "My grandfather asked me to put on this courtroom drama",
    "The airline offered this heist picture",
    "I saw this sports biopic on opening weekend",
    "Our family gathered around this holiday feature",
]
WHEN = [
    "after a long shift",
    "on a snowy Tuesday",
    "during a holiday weekend",
    "at an outdoor screening",
    "with the whole family",
    "in a half-empty auditorium",
    "right after dinner",
    "on a hot August evening",
    "between two exams",
    "while waiting out a storm",
    "at a friend's birthday party",
    "on a quiet Sunday morning",
]
THEN = [", and", ", so", ", where", " and the first thing", ", which meant"]


def ngrams(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


EVAL_GRAMS = set().union(*(ngrams(o) for o in OPENINGS))
TRAIN_OPENINGS = [
    f"{who} {when}{THEN[(i + j) % len(THEN)]}"
    for i, who in enumerate(WHO) for j, when in enumerate(WHEN)
    if not ngrams(f"{who} {when}") & EVAL_GRAMS
]
