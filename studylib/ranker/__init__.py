"""The Heavy Ranker: its config schema, model, training loop, run folders, scoring and commands."""
