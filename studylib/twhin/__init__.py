"""TwHIN: heterogeneous-graph embeddings (users, tweets, authors) trained with torchrec.

graph.py (edges: generate, read, split), model.py (config + torchrec model), train.py
(training loop, checkpoints, DMP), evaluate.py (link prediction), export.py (embeddings for
the Heavy Ranker), cli.py (the `twhin-*` subcommands).
"""
