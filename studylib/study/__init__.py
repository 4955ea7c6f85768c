"""The study as the notebooks run it: where files live, the ranker's and TwHIN's cached steps, the
chapters' parameters and set-up, the pipeline and the report."""
