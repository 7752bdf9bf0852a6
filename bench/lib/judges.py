"""Judges for `w2s make-prefs --judge bench.lib.judges:NAME`: answer text -> float, higher is preferred."""
from __future__ import annotations

import re

_vader = None


def vader_compound(text: str) -> float:
    """VADER's compound sentiment in [-1, 1] (the judge bench/sentiment.py scores with)."""
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return _vader.polarity_scores(text)["compound"]


vader = vader_compound  # the name bench/trained_guide.py's preference data was first made with


# Held-out judges: other lexicons and rules than VADER's, so that a guide trained on VADER's labels is
# also judged by something it never saw (bench/trained_guide.py's report).
_afinn = None


def textblob_polarity(text: str) -> float:
    """TextBlob's pattern-lexicon polarity in [-1, 1] (adjectives with modifiers and negation)."""
    from textblob import TextBlob

    return TextBlob(text).sentiment.polarity


def afinn_sum(text: str) -> float:
    """AFINN-165: the sum of its word valences (-5..5 each) over the text."""
    global _afinn
    if _afinn is None:
        from afinn import Afinn

        _afinn = Afinn()
    return _afinn.score(text)


# A second, non-sentiment preference: plain words (bench/plain_words.py). The training signal is this
# file's own Flesch reading ease; the held-out judges are textstat's (its own syllable counter, pyphen's
# hyphenation dictionary) and textstat's Dale-Chall score (a list of 3,000 familiar words, no syllables).
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_VOWELS = re.compile(r"[aeiouy]+")


def _syllables(word: str) -> int:
    w = word.lower()
    n = len(_VOWELS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:  # a silent final e
        n -= 1
    return max(1, n)


def flesch_ease(text: str) -> float:
    """Flesch reading ease (higher = plainer): short sentences of short words. Under 3 words scores 0."""
    words = _WORD.findall(text)
    if len(words) < 3:
        return 0.0
    sentences = max(1, len(re.findall(r"[.!?]+(?:\s|$)", text.strip())))
    return 206.835 - 1.015 * len(words) / sentences - 84.6 * sum(map(_syllables, words)) / len(words)


def textstat_flesch(text: str) -> float:
    """textstat's Flesch reading ease: the same formula, other code (pyphen syllables, its own sentence split)."""
    import textstat

    return float(textstat.flesch_reading_ease(text))


def textstat_dale_chall(text: str) -> float:
    """textstat's Dale-Chall readability (lower = plainer): the share of words off a familiar-word list."""
    import textstat

    return float(textstat.dale_chall_readability_score(text))
