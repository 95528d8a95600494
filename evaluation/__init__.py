"""Evaluation: score predictions against references with the study's metrics and better ones, compare systems,
plot, report, and gate a candidate model before it is published.

Modules: `parse` (generated text -> record), `metrics` (plain functions over lists of records), `bertscore`,
`stats` (paired tests), `scoring` (one system's full scorecard), `plots`, `report`, `runner` (predictions
through the serving analyzer), `gate`, `cli` (`news-enhancer eval ...`).
"""
