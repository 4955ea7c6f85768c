#!/bin/bash
# One `make study WEIGHTS=` on a finished study (run it from the study's folder), each call with
# weights never seen before, so nothing cached for other weights is reused. Time it with
#   farm-bench -n 3 --warmup 0 --timeout 400 -- benchmarks/rescore_time.sh
# Its output goes to /tmp/rescore_time.log.
set -euo pipefail
stamp=$(date +%s%N)
weights=$(mktemp /tmp/rescore_weights_XXXXXX.yaml)
.venv/bin/python - "$weights" "$stamp" <<'PY'
import sys
from studylib.ranker.weights import load_weights
published = load_weights("april_2023").as_published()
fav = next(k for k in published if k.endswith("_fav"))
published[fav] = 0.5 + (int(sys.argv[2]) % 997) / 1000  # a fav weight no earlier call used
open(sys.argv[1], "w").write("".join(f"{k}: {v}\n" for k, v in published.items()))
PY
make study WEIGHTS="$weights" >> /tmp/rescore_time.log 2>&1
rm -f "$weights"
