"""What the study computes from scored runs: statistics, rankings, regret, sensitivity, tables,
findings and figures."""
