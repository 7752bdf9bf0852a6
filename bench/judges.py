"""Judges for `w2s make-prefs --judge bench/judges.py:NAME`: answer text -> float, higher is preferred."""
from __future__ import annotations

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
