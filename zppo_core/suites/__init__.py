"""Evaluation suites: what to evaluate and how to score it, given an engine.

The tiny held-out and out-of-distribution sets (`heldout`), the paper's 31 benchmarks (`benchmarks`: registry and
reference numbers; `data`: local data, read by `files` (layouts, file formats), `media` (images, videos) and `rows`
(row -> questions, prompts from `prompts`, CharXiv's from `charxiv`); `scoring`: rule scoring and the LLM judge,
with the benchmarks' own metrics in `metrics`, judge protocols in `judges` and headlines in `aggregate`) and the
driver `evaluate.evaluate_suites(engine, render, suite, ...)`. Nothing here loads a model, writes a file or logs to MLflow.

Why this sits below both `train` and `eval`: three clients evaluate an engine — `train.prepare` (measures the tiny
student it built), the training loop (periodic `eval.every` and the final held-out eval) and `eval.run` (`zppo
eval`: which weights, results files, MLflow). `train` and `eval` never import each other (tests/unit/
test_boundaries.py), so the evaluation they share lives one layer down, beside `tasks` and `rollout`.
"""
