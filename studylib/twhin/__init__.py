"""TwHIN: heterogeneous-graph embeddings (users, tweets, authors) trained with torchrec.

graph.py (the edge format and readers) ← planted.py (the planted world's graph) and splits.py
(train/valid/test); config.py (the strict schema of twhin_*.yaml) → model.py (tables,
translations, loss) → runs.py (a run's files, reading a run) → train.py (the loop, fused table
optimizers, DMP, checkpoints); evaluate.py (link prediction beside popularity and the oracle) and
export.py (the ranker's embedding tables) read runs; cli.py (the `twhin-*` subcommands).
"""
