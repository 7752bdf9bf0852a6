"""Short neutral review openings for the server benches (bench/lib/openings.py has 120 for sentiment)."""

PROMPTS = [
    "I watched this movie last night and",
    "The first twenty minutes of this film",
    "My brother recommended this one to me, so",
    "The story follows a young woman who moves to the city and",
    "When the lights went down in the theater,",
    "This is the third film by the director, and",
    "I rented this movie on a Friday night because",
    "The soundtrack was composed by a newcomer, and",
]
