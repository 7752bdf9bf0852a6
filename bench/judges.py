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
