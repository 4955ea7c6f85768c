"""A reproducible study of Twitter's "For You" Heavy Ranker and TwHIN embeddings.

Imports sit at the top of each module, except these: heavy dependencies that reading results must
not pay for (chapters 3–5 and the report re-run on every `make study WEIGHTS=` and never load
torch), and the notebook runner that only the pipeline needs. A module imports them inside the
function that uses them; `tests/test_imports.py` fails on any other import inside a function.
"""

LAZY_IMPORTS = (
    # torch and what loads it at import time
    "torch", "torchrec", "fbgemm_gpu", "studylib.runtime", "studylib.ranker.model", "studylib.ranker.runs",
    "studylib.ranker.scoring", "studylib.ranker.train", "studylib.ranker.cli", "studylib.data.reader",
    "studylib.data.popularity", "studylib.twhin.model", "studylib.twhin.train", "studylib.study.pipeline",
    # the notebook runner and the report's builders (the pipeline's only)
    "papermill", "nbformat", "nbclient", "jupyter_client", "PIL",
    # a person's JupyterLab session only, and the Sobol sampler (chapter 5 only)
    "ipywidgets", "matplotlib", "SALib",
)
