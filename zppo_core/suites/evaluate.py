"""evaluate(engine, suite) -> per-benchmark scores + per-sample records.

Two kinds of benchmark share one driver:

* **tiny suites** (offline, synthetic): `tiny` = the held-out split of the run's training families (one
  benchmark per family), `tiny-ood` = each training family's out-of-distribution counterpart
  (`tasks.OOD_OF`, e.g. modsum -> modsum_long: more terms than training ever shows). The visual ones (need a
  vision-language model): `tiny-vl` = the held-out split of the run's visual families (all of them when it trained
  on none), `tiny-vl-ood` = their ood counterparts (more cells than training shows), `tiny-vl-blank` = `tiny-vl`
  with every image replaced by a white one (the control: a model that reads the images scores at or below the
  blind baseline there, which every visual benchmark reports as its `chance` part). Graded by the rule grader.
* **the paper's 31** (`eval/benchmarks.py`), read from a local data directory (`eval/data.py`), scored
  deterministically first and by an LLM judge (the teacher, temperature 0) only where parsing fails, or always
  with the benchmark's own judge prompt (`eval/scoring.py`, `eval/judges.py`).

Scores are percentages, like the paper's tables: each benchmark's own headline (`eval/aggregate.py`) over its
questions, each question keyed by (config, split, id) and scored as the mean over its `samples` (pass@1 as
mean@k). A result says whether it is comparable with the paper's number (`BenchmarkResult.not_comparable`:
the benchmark's metric is not fully reproduced, items were skipped, only a `--limit` subset ran, an official
judge was missing); the delta is given only when it is. Metric names: `eval/<family>/<benchmark>` and
`eval/<family>/avg`, family in vlm | llm | video | tiny | tiny-ood, so the same benchmark logs under the same
name whichever suite it was evaluated in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from zppo_core.suites.heldout import evaluate_questions, heldout_questions
from zppo_core.rollout.base import Engine, SamplingParams
from zppo_core.tasks import OOD_OF, VISUAL_IN_DIST, is_visual
from zppo_core.tasks.visual import chance_accuracy

TINY_SUITES = ("tiny", "tiny-ood", "tiny-vl", "tiny-vl-ood", "tiny-vl-blank")

Progress = Callable[[str, int, int], None]  # (benchmark, done, total)


@dataclass
class SampleRecord:
    benchmark: str
    id: str
    sample: int
    response: str
    extracted: str | None
    correct: bool
    how: str  # rule | choice | exact | judge | no-answer | a metric name (anls, ocrbench_v2, mathvista ...)
    judge_output: str | None = None  # the judge's raw reply when the judge decided
    config: str | None = None  # with `split` and `id`: which question of the benchmark this is
    split: str | None = None
    score: float | None = None  # the credit in [0, 1] (partial for ANLS, OCRBench v2, MM-Vet); None: correct

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class BenchmarkResult:
    name: str
    family: str  # VLM | LLM | Video | tiny | tiny-ood
    n: int  # items
    score: float  # percent: the benchmark's headline (mean@k of its own metric)
    reference: float | None = None  # the paper's number at the evaluated scale, when there is one
    by_level: dict[int, float] = field(default_factory=dict)  # tiny suites: percent per level
    records: list[SampleRecord] = field(default_factory=list)
    judged: int = 0  # samples whose verdict came from the judge
    parts: dict[str, float] = field(default_factory=dict)  # sub-scores (configs, categories, strict/loose ...)
    not_comparable: str = ""  # why the score cannot be set beside the paper's number ("" when it can)
    skipped_items: dict[str, int] = field(default_factory=dict)  # reason -> items left out (not evaluated)

    @property
    def comparable(self) -> bool:
        """True when the paper has a number here and this score is measured as the paper's is."""
        return self.reference is not None and not self.not_comparable

    @property
    def delta(self) -> float | None:
        return self.score - self.reference if self.comparable else None

    def summary(self) -> dict[str, Any]:
        return {"benchmark": self.name, "family": self.family, "n": self.n, "score": round(self.score, 2),
                "reference": self.reference, "comparable": self.comparable,
                "not_comparable": self.not_comparable or None,
                "delta": None if self.delta is None else round(self.delta, 2), "judged": self.judged,
                "parts": {k: round(v, 2) for k, v in self.parts.items()},
                "skipped_items": dict(self.skipped_items),
                "by_level": {str(k): round(v, 2) for k, v in self.by_level.items()}}


@dataclass
class EvalReport:
    results: list[BenchmarkResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # benchmark -> why (e.g. what data to place where)

    def family_averages(self) -> dict[str, float]:
        fam: dict[str, list[float]] = {}
        for r in self.results:
            fam.setdefault(r.family, []).append(r.score)
        return {k: sum(v) / len(v) for k, v in fam.items()}

    def family_comparable(self) -> dict[str, bool]:
        """Per family: True when its average can be set beside the paper's family average (every benchmark of
        the family in the registry was evaluated, each comparable)."""
        from zppo_core.suites.benchmarks import BENCHMARKS

        members: dict[str, int] = {}
        for b in BENCHMARKS:
            members[b.family] = members.get(b.family, 0) + 1
        out = {}
        for fam in self.family_averages():
            rs = [r for r in self.results if r.family == fam]
            out[fam] = len(rs) == members.get(fam, -1) and all(r.comparable for r in rs)
        return out

    def metrics(self) -> dict[str, float]:
        out = {f"eval/{r.family.lower()}/{r.name}": r.score for r in self.results}
        out.update({f"eval/{k.lower()}/avg": v for k, v in self.family_averages().items()})
        return out

    def records(self) -> list[SampleRecord]:
        return [rec for r in self.results for rec in r.records]


# ---------------------------------------------------------------------------------------------- tiny


def tiny_benchmarks(suite: str, train_families: Sequence[str]) -> list[str]:
    """Family names evaluated by a tiny suite for a run trained on `train_families`."""
    if suite in ("tiny-vl", "tiny-vl-blank", "tiny-vl-ood"):
        visual = [f for f in train_families if is_visual(f)] or list(VISUAL_IN_DIST)
        return visual if suite != "tiny-vl-ood" else tiny_benchmarks("tiny-ood", visual)
    if suite == "tiny":
        return list(train_families)
    if suite == "tiny-ood":
        missing = [f for f in train_families if f not in OOD_OF]
        if missing:
            raise ValueError(f"tiny-ood: no out-of-distribution family is defined for {', '.join(missing)}")
        return [OOD_OF[f] for f in train_families]
    raise ValueError(f"unknown tiny suite {suite!r}; valid: {', '.join(TINY_SUITES)}")


def evaluate_tiny(
    engine: Engine,
    render: Callable[[str], list[int]],
    suite: str,
    train_families: Sequence[str],
    closer: str,
    params: SamplingParams,
    per_level: int,
    limit: int | None = None,
    progress: Progress | None = None,
) -> list[BenchmarkResult]:
    """One benchmark per family of the suite, through the held-out evaluator (the same questions for every run
    and checkpoint), as percentages with per-sample records."""
    out = []
    for name in tiny_benchmarks(suite, train_families):
        qs = heldout_questions([name], per_level)[: limit or None]
        if progress:
            progress(name, 0, len(qs))
        if any(q.images for q in qs) and not getattr(engine, "supports_images", False):
            raise ValueError(f"{suite}: {name} is a visual family and the model is text-only; evaluate a "
                             "vision-language model (e.g. a tiny-vl run) or drop the suite")
        res = evaluate_questions(engine, render, qs, closer, samples=params.n, temperature=params.temperature,
                                 top_p=params.top_p, max_new_tokens=params.max_new_tokens, top_k=params.top_k,
                                 presence_penalty=params.presence_penalty, blank=suite == "tiny-vl-blank")
        records = [SampleRecord(name, q.id, i, text, extracted, reward == 1.0,
                                "rule" if extracted is not None else "no-answer")
                   for q, g in zip(qs, res.graded) for i, (text, reward, extracted) in enumerate(g)]
        if progress:
            progress(name, len(qs), len(qs))
        parts = {"chance": 100.0 * chance_accuracy(qs)} if is_visual(name) else {}
        out.append(BenchmarkResult(
            name=name, family=suite, n=len(qs), score=100.0 * res.accuracy,
            by_level={k: 100.0 * v for k, v in res.by_level.items()}, records=records, parts=parts))
    return out


# ---------------------------------------------------------------------------------------------- paper


def image_messages(item, frame_times: list[float] | None = None, n_frames: int = 0) -> list[dict[str, Any]]:
    """An item as one user message in the Hugging Face multimodal content format: one image placeholder per
    image (in order), then the prompt text. A video item's `n_frames` frames (images too, see `media.sample_frames`)
    come first, introduced by a line naming their times."""
    content: list[dict[str, Any]] = []
    if n_frames:
        when = ", ".join(f"{t:.1f}s" for t in frame_times) if frame_times else "in order"
        content.append({"type": "text", "text": f"The video, as {n_frames} frames sampled uniformly ({when}):"})
        content += [{"type": "image"} for _ in range(n_frames)]
    content += [{"type": "image"} for _ in item.images]
    return [{"role": "user", "content": content + [{"type": "text", "text": item.prompt}]}]


def request_for(item, frames: int) -> tuple[list[dict[str, Any]], list]:
    """(messages, images) of an item for a vision-language engine; a video becomes `frames` sampled frames."""
    if not getattr(item, "video", None):
        return image_messages(item), list(item.images)
    from zppo_core.suites.media import sample_frames

    config, split, iid = item.key
    video, times = sample_frames(item.video, frames, where=f"{config}/{split}/{iid}")
    return image_messages(item, times, len(video)), video + list(item.images)


def unscorable(bench, item, engine) -> str | None:
    """Why `item` is left out of `bench` on `engine` (counted, never sent to the model), or None: an image row
    of a benchmark whose image rows are optional (HLE) on a text-only model; an OCRBench v2 task type whose
    metric is not implemented here."""
    if getattr(item, "images", None) and bench.image_rows_optional and not getattr(engine, "supports_images", False):
        return "image questions on a text-only model"
    if bench.metric == "ocrbench_v2":
        from zppo_core.suites.metrics import ocrbench_v2_unsupported

        why = ocrbench_v2_unsupported(item)
        return f"no metric here for {why}" if why else None
    return None


def _not_comparable(bench, skipped: dict[str, int], complete: bool, limited: bool, judge: bool,
                    frames: int = 0) -> str:
    reasons = []
    if frames:
        reasons.append(f"video given as {frames} sampled frames (images), not through the model's video path")
    if bench.not_comparable:
        reasons.append(bench.not_comparable)
    if skipped:
        reasons.append("; ".join(f"{n} item(s) skipped: {why}" for why, n in skipped.items()))
    if not complete:
        reasons.append("a part of the headline is missing")
    if limited:
        reasons.append("a subset (--limit)")
    if bench.scoring == "official_judge" and not judge:
        reasons.append("no judge (its official judge decides every answer)")
    return "; ".join(reasons)


def evaluate_benchmark(
    engine: Engine,
    render: Callable[[str], list[int]],
    bench,
    items: list,
    params: SamplingParams,
    judge: Engine | None = None,
    judge_render: Callable[[str], list[int]] | None = None,
    judge_max_new_tokens: int = 256,
    scale: str | None = None,
    progress: Progress | None = None,
    chunk: int = 64,
    limited: bool = False,
    video_frames: int = 8,
) -> BenchmarkResult:
    """One benchmark of the paper's registry on already-loaded items: sample, score deterministically, send
    only the undecided samples to the judge (or count them wrong when there is no judge), then the benchmark's
    own headline (:func:`zppo_core.suites.aggregate.aggregate`). Items the run cannot score are left out and
    counted (:func:`unscorable`); `limited` says the items are a subset (``--limit``). Both make the score not
    comparable with the paper's number."""
    from zppo_core.suites.aggregate import aggregate
    from zppo_core.suites.scoring import Verdict, judge_verdicts, score

    skipped: dict[str, int] = {}
    kept = []
    for it in items:
        why = unscorable(bench, it, engine)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
        else:
            kept.append(it)
    items = kept
    with_images = any(getattr(it, "images", None) or getattr(it, "video", None) for it in items)
    if with_images and not getattr(engine, "supports_images", False):
        raise ValueError(f"{bench.name}: the model is text-only and this benchmark needs images or video; evaluate "
                         "a vision-language model (--model DIR) or drop the benchmark from the suite")
    verdicts: list[tuple[Any, int, str, Verdict]] = []
    if progress:
        progress(bench.name, 0, len(items))
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        if with_images:  # a vision-language engine: each item's frames/images, then its text, in one user message
            comps = engine.generate_multimodal([request_for(it, video_frames) for it in part], params)
        else:  # multi-turn rows (e.g. MultiChallenge) carry their conversation; the rest are one user message
            comps = engine.generate([render(it.meta.get("messages") or it.prompt) for it in part], params)
        for it, cs in zip(part, comps):
            for i, c in enumerate(cs):
                verdicts.append((it, i, c.text, score(bench, it, c.text)))
        if progress:
            progress(bench.name, start + len(part), len(items))
    # undecided = no parsable answer (judge fallback) or an official-judge benchmark; without a judge: wrong
    undecided = [k for k, (_, _, _, v) in enumerate(verdicts) if v.correct is None]
    judged = 0
    if undecided and judge is not None and judge_render is not None:
        jv = judge_verdicts(judge, judge_render, [(verdicts[k][0], verdicts[k][2], bench) for k in undecided],
                            max_new_tokens=judge_max_new_tokens)
        for k, v in zip(undecided, jv):
            it, i, text, old = verdicts[k]
            verdicts[k] = (it, i, text, Verdict(correct=bool(v.correct), extracted=old.extracted or v.extracted,
                                                how="judge", judge_output=v.judge_output, score=v.score))
        judged = len(undecided)
    records: list[SampleRecord] = []
    per_item: dict[tuple, tuple[Any, list[float]]] = {}
    for it, i, text, v in verdicts:
        config, split, iid = it.key
        records.append(SampleRecord(bench.name, iid, i, text, v.extracted, bool(v.correct), v.how, v.judge_output,
                                    config, split, v.value))
        per_item.setdefault(it.key, (it, []))[1].append(v.value)
    headline, parts, complete = aggregate(bench, list(per_item.values()))
    return BenchmarkResult(name=bench.name, family=bench.family, n=len(items), score=headline,
                           reference=bench.reference.get(scale) if scale else None, records=records, judged=judged,
                           parts=parts, skipped_items=skipped,
                           not_comparable=_not_comparable(bench, skipped, complete, limited, judge is not None,
                                                          video_frames if any(it.video for it in items) else 0))


# ---------------------------------------------------------------------------------------------- suites


def split_suites(spec: str | Sequence[str]) -> list[str]:
    """'tiny,tiny-ood' or ['tiny', 'llm'] -> ['tiny', 'tiny-ood', 'llm'] (order kept, duplicates dropped)."""
    parts = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    out: list[str] = []
    for p in (p.strip() for p in parts):
        if p and p not in out:
            out.append(p)
    return out


def plan_suites(spec: str | Sequence[str]) -> tuple[list[str], list]:
    """(tiny suite names, paper Benchmark objects) for a suite spec; ValueError naming the valid choices."""
    tiny, paper, rest = [], [], []
    for p in split_suites(spec):
        if p.lower() in TINY_SUITES:
            tiny.append(p.lower())
        else:
            rest.append(p)
    if rest:
        from zppo_core.suites.benchmarks import resolve_suite

        try:
            paper = resolve_suite(",".join(rest))  # order kept, duplicates dropped
        except ValueError as err:
            raise ValueError(f"{err} (offline tiny suites: {', '.join(TINY_SUITES)})") from None
    if not tiny and not paper:
        raise ValueError("empty suite; use tiny, tiny-ood, vlm, llm, video, all or benchmark names")
    return tiny, paper


def sampling_from(ev) -> SamplingParams:
    """The evaluation decoding of an `eval` config section (temperature 0.6, top-p 0.95, top-k 20, ...)."""
    return SamplingParams(n=ev.samples, temperature=ev.temperature, top_p=ev.top_p, top_k=ev.top_k,
                          presence_penalty=ev.presence_penalty, max_new_tokens=ev.max_new_tokens)


def evaluate_suites(
    engine: Engine,
    render: Callable[[str], list[int]],
    spec: str | Sequence[str],
    ev,
    train_families: Sequence[str] = (),
    closer: str = "",
    judge: Engine | None = None,
    judge_render: Callable[[str], list[int]] | None = None,
    scale: str | None = None,
    data_dir: str | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Evaluate every benchmark of `spec` that can be evaluated; the rest go to `report.skipped` with the
    reason (missing local data: exactly what to place where)."""
    tiny, paper = plan_suites(spec)
    params = sampling_from(ev)
    report = EvalReport()
    for suite in tiny:
        report.results.extend(evaluate_tiny(engine, render, suite, train_families, closer, params,
                                            ev.per_level, ev.limit, progress))
    if not paper:
        return report
    from zppo_core.suites.data import data_path, default_data_dir, load_items, missing_message

    root = data_dir or ev.data_dir or default_data_dir()
    for bench in paper:
        if data_path(bench, root) is None:
            report.skipped[bench.name] = missing_message(bench, root)
            continue
        subset = getattr(ev, bench.subset_option) if bench.subset_option else None
        items = load_items(bench, root, limit=ev.limit, subset=subset)
        limited = ev.limit is not None and len(items) >= ev.limit
        try:
            report.results.append(evaluate_benchmark(engine, render, bench, items, params, judge, judge_render,
                                                     scale=scale, progress=progress, limited=limited,
                                                     video_frames=ev.video_frames))
        except ValueError as err:  # e.g. an image benchmark on a text-only model
            report.skipped[bench.name] = str(err)
    return report
