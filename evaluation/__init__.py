"""Evaluation: a run against real data it was not tuned to (fidelity, ML utility, privacy
attacks, coverage, the report and the quality gate), and rebalancing of under-covered strata."""
