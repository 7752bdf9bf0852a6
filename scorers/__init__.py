"""Guide scorers: the small tuned/untuned pair that steers the search."""
