"""The pure core: types, errors, config, the Sampler/Scorer seams, prompt rendering,
the job queue and the search itself. No I/O beyond reading config, no model framework."""
