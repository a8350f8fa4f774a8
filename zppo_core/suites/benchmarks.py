"""Registry of the paper's 31 evaluation benchmarks (``shared/method/benchmarks.md``; ZPPO.md §6).

Each :class:`Benchmark` says where its public data comes from (hub id, config(s), split(s)), how a row of the
public schema becomes a question (field names, how the options are laid out, what the gold answer looks like,
which prompt the model sees), how a response is scored and aggregated, and the paper's numbers at every scale.

Scoring kinds (``Benchmark.scoring``, the paper's column), deterministic parsing first:

* ``"rule"``: the last ``\\boxed{}`` against the gold with LaTeX/numeric equivalence (mathruler, with the
  paper's degree/percent retry); rows that carry options are scored as multiple choice instead.
* ``"choice"``: a multiple-choice letter extracted from the response.
* ``"exact"``: the benchmark's deterministic metric on a short answer (InfoVQA ANLS, OCRBench v2's per-type
  metrics), never judged.
* ``"official_judge"``: the benchmark's own judge prompt decides; no parsing.

``judge_fallback`` means "then judge": when deterministic parsing finds no answer, the teacher judges. Which
judge prompt (``judge``), which per-answer metric (``metric``), which headline (``aggregate``) and which prompt
(``prompt``) a benchmark uses are named here and implemented in :mod:`~zppo_core.suites.judges`,
:mod:`~zppo_core.suites.metrics`, :mod:`~zppo_core.suites.aggregate` and :mod:`~zppo_core.suites.prompts`; each module
says where its rules come from. ``not_comparable`` says why a score cannot be set beside the paper's number.

Field names follow the public dataset cards and the hub copies; the loader also accepts a few common
alternatives (``question``/``problem``/``prompt`` ...) so small schema drift does not break loading.
Pure data: imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BENCHMARKS",
    "BY_NAME",
    "FAMILIES",
    "FAMILY_AVERAGES",
    "REFERENCE_KEYS",
    "SCORING_KINDS",
    "SUITES",
    "Benchmark",
    "get_benchmark",
    "resolve_suite",
]

FAMILIES = ("VLM", "LLM", "Video")
SCORING_KINDS = ("rule", "choice", "exact", "official_judge")
# columns of the paper's tables: base Qwen3.5-0.8B, ZPPO at each student scale, the 27B teacher
REFERENCE_KEYS = ("base-0.8b", "0.8b", "2b", "4b", "9b", "teacher")
CHOICE_LAYOUTS = ("none", "list", "columns", "gpqa", "dict", "inline")
ANSWER_FORMATS = ("text", "letter", "index", "choice_text", "list", "babyvision")
PROMPTS = ("default", "as_is", "query", "babyvision", "charxiv", "mmmu_pro", "hle", "mmvu")
METRICS = ("default", "anls", "mathvista", "vlms_blind", "ocrbench_v2")
AGGREGATES = ("mean", "wemath", "mmmu_pro", "ocrbench_v2", "charxiv", "dynamath", "by_task")
JUDGE_NAMES = ("default", "babyvision", "charxiv", "mmvet", "hle", "multichallenge", "mmvu")
VIDEO_LAYOUTS = ("flat", "url", "mvbench", "videommmu")


@dataclass(frozen=True)
class Benchmark:
    """One evaluation benchmark: public data location and schema, prompt, scoring, the paper's numbers.

    Data layout fields:
      config / configs: the hub config when there is one (``config``), or several configs evaluated together
        (``configs``, each in its own sub-folder ``data_dir/<folder>/<config>/`` or files named after it); never
        both. hub_aliases: other hub ids of the same data (lmms-eval moved several), named in the fetch hint.
      split / extra_splits: the split the paper evaluates (plus further splits evaluated together, DynaMath's
        10 variants).
      data_name: folder under the data dir when it differs from ``name`` (two benchmarks sharing one dataset).
      subsets: named row subsets, the first the default (MMLU-Redux: "ok" rows as lm-evaluation-harness, or
        "all"); subset_option: the ``eval`` config field that picks one.
    Schema fields (names in the public dataset):
      id_field (None: row index), id_suffix_field (appended to the id when the id is shared by several rows:
      WeMath's ``key``), question_field (None: the question is in the image), answer_field,
      choices_field + choices_layout: "none" | "list" (a list, or a string holding a Python/JSON list, of option
        texts, optionally prefixed "A. ") | "columns" (one column per option, ``choice_columns``) | "gpqa"
        (``choice_columns`` = correct answer then incorrect ones; shuffled deterministically per question id)
        | "dict" (letter -> text) | "inline" (one string "A. x; B. y ...");
      answer_format: "text" | "letter" | "index" (0-based int) | "choice_text" (the text of the right option)
        | "list" (several accepted answers) | "babyvision" (``choiceAns`` index or ``blankAns`` by ``ansType``);
      image_fields (all are collected; each may hold one image or a list), image_rows_optional (rows with an
      image are skipped, and counted, on a text-only model: HLE), video_field + video_layout (see
      :mod:`~zppo_core.suites.media`), subtitles (Video-MME), meta_fields (raw fields the metric needs),
      row_filter: (field, regex, keep) keeps rows whose field matches (keep=True) or does not (keep=False);
      expand: "charxiv" turns one row into its reasoning + 4 descriptive questions.
    Protocol fields: prompt, metric, aggregate, judge (names, see the module docstring); not_comparable: why the
      score is not the paper's metric ("" when it is).
    """

    name: str
    title: str
    family: str
    dataset_id: str
    split: str
    scoring: str
    judge_fallback: bool
    reference: dict[str, float] = field(hash=False)
    config: str | None = None
    configs: tuple[str, ...] = ()
    extra_splits: tuple[str, ...] = ()
    data_name: str | None = None
    hub_aliases: tuple[str, ...] = ()
    subsets: tuple[tuple[str, tuple[str, str, bool] | None], ...] = ()
    subset_option: str | None = None
    id_field: str | None = "id"
    id_suffix_field: str | None = None
    question_field: str | None = "question"
    answer_field: str = "answer"
    choices_field: str | None = None
    choices_layout: str = "none"
    choice_columns: tuple[str, ...] = ()
    answer_format: str = "text"
    image_fields: tuple[str, ...] = ()
    image_rows_optional: bool = False
    video_field: str | None = None
    video_layout: str = "flat"
    subtitles: bool = False
    meta_fields: tuple[str, ...] = ()
    row_filter: tuple[str, str, bool] | None = None
    expand: str | None = None
    prompt: str = "default"
    metric: str = "default"
    aggregate: str = "mean"
    judge: str = "default"
    not_comparable: str = ""
    notes: str = ""

    def __post_init__(self):
        checks = (("family", self.family, FAMILIES), ("scoring", self.scoring, SCORING_KINDS),
                  ("choices_layout", self.choices_layout, CHOICE_LAYOUTS),
                  ("answer_format", self.answer_format, ANSWER_FORMATS), ("prompt", self.prompt, PROMPTS),
                  ("metric", self.metric, METRICS), ("aggregate", self.aggregate, AGGREGATES),
                  ("judge", self.judge, JUDGE_NAMES), ("video_layout", self.video_layout, VIDEO_LAYOUTS))
        for what, value, valid in checks:
            if value not in valid:
                raise ValueError(f"{self.name}: {what} {value!r} not in {valid}")
        if self.config is not None and self.configs:
            raise ValueError(f"{self.name}: give config or configs, not both")
        if set(self.reference) != set(REFERENCE_KEYS):
            raise ValueError(f"{self.name}: reference keys must be {REFERENCE_KEYS}")
        if self.scoring == "exact" and self.metric == "default":
            raise ValueError(f"{self.name}: deterministic ('exact') scoring needs the benchmark's metric")
        if self.subsets and not self.subset_option:
            raise ValueError(f"{self.name}: subsets need a subset_option (the eval config field choosing one)")

    @property
    def folder(self) -> str:
        """Folder name under the data dir (``data_name`` or ``name``)."""
        return self.data_name or self.name

    @property
    def subsets_of(self) -> tuple[str, ...]:
        """The subset names (the first is the default); () when the benchmark has none."""
        return tuple(n for n, _ in self.subsets)

    def subset_filter(self, subset: str | None) -> tuple[str, str, bool] | None:
        """The row filter of `subset` (None: the default subset); ValueError naming the valid subsets."""
        if not self.subsets:
            return None
        chosen = subset or self.subsets[0][0]
        for n, flt in self.subsets:
            if n == chosen:
                return flt
        raise ValueError(f"{self.name}: unknown subset {chosen!r}; valid: {', '.join(self.subsets_of)}")

    @property
    def splits(self) -> tuple[str, ...]:
        """All splits evaluated together: ``split`` then ``extra_splits``."""
        return (self.split, *self.extra_splits)

    @property
    def multiple_choice(self) -> bool:
        """True when rows carry options (``choices_layout`` other than "none")."""
        return self.choices_layout != "none"


def _ref(base: float, s08: float, s2: float, s4: float, s9: float, teacher: float) -> dict[str, float]:
    return dict(zip(REFERENCE_KEYS, (base, s08, s2, s4, s9, teacher)))


# --- hub configs of multi-config benchmarks ---------------------------------------------------------------------
MMMU_PRO_CONFIGS = ("standard (10 options)", "standard (4 options)", "vision")
MVBENCH_CONFIGS = (
    "action_sequence", "action_prediction", "action_antonym", "fine_grained_action", "unexpected_action",
    "object_existence", "object_interaction", "object_shuffle", "moving_direction", "action_localization",
    "scene_transition", "action_count", "moving_count", "moving_attribute", "state_change",
    "fine_grained_pose", "character_order", "egocentric_navigation", "episodic_reasoning",
    "counterfactual_inference",
)
CEVAL_CONFIGS = (
    "accountant", "advanced_mathematics", "art_studies", "basic_medicine", "business_administration",
    "chinese_language_and_literature", "civil_servant", "clinical_medicine", "college_chemistry",
    "college_economics", "college_physics", "college_programming", "computer_architecture", "computer_network",
    "discrete_mathematics", "education_science", "electrical_engineer", "environmental_impact_assessment_engineer",
    "fire_engineer", "high_school_biology", "high_school_chemistry", "high_school_chinese", "high_school_geography",
    "high_school_history", "high_school_mathematics", "high_school_physics", "high_school_politics",
    "ideological_and_moral_cultivation", "law", "legal_professional", "logic", "mao_zedong_thought", "marxism",
    "metrology_engineer", "middle_school_biology", "middle_school_chemistry", "middle_school_geography",
    "middle_school_history", "middle_school_mathematics", "middle_school_physics", "middle_school_politics",
    "modern_chinese_history", "operating_system", "physician", "plant_protection", "probability_and_statistics",
    "professional_tour_guide", "sports_science", "tax_accountant", "teacher_qualification",
    "urban_and_rural_planner", "veterinary_medicine",
)
MMLU_SUBJECTS = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality", "international_law",
    "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing", "medical_genetics",
    "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy", "prehistory",
    "professional_accounting", "professional_law", "professional_medicine", "professional_psychology",
    "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology", "world_religions",
)
VIDEO_MMMU_CONFIGS = ("Perception", "Comprehension", "Adaptation")
AIME25_CONFIGS = ("AIME2025-I", "AIME2025-II")

_B = Benchmark
_OCR_NOT_ALL = "only when every item's task type has its metric here (TEDS, BLEU/METEOR and spotting types are skipped)"
BENCHMARKS: tuple[Benchmark, ...] = (
    # ---------------------------------------------------------------- VLM (16)
    _B("AI2D", "AI2 Diagrams", "VLM", "lmms-lab/ai2d", "test", "rule", True, _ref(65.6, 76.5, 85.3, 89.6, 90.8, 92.1),
       hub_aliases=("lmms-lab-encoder/ai2d",), id_field=None, choices_field="options", choices_layout="list",
       answer_format="index", image_fields=("image",)),
    _B("BabyVision", "BabyVision", "VLM", "UnipatAI/BabyVision", "train", "rule", True,
       _ref(6.7, 13.9, 18.6, 27.8, 26.3, 30.4), id_field="taskId", image_fields=("image",), choices_field="options",
       choices_layout="list", answer_format="babyvision", prompt="babyvision", judge="babyvision",
       notes="gold: chr(65 + choiceAns) when ansType is 'choice', else blankAns"),
    _B("CharXiv", "CharXiv (reasoning + descriptive)", "VLM", "princeton-nlp/CharXiv", "validation", "official_judge",
       False, _ref(54.3, 63.9, 73.9, 82.8, 83.7, 86.0), id_field=None, question_field="reasoning_q",
       answer_field="reasoning_a", image_fields=("image",), expand="charxiv", prompt="charxiv", judge="charxiv",
       aggregate="charxiv", notes="one row = 1 reasoning + 4 descriptive questions; test answers are hidden"),
    _B("DynaMath", "DynaMath (501 seeds x 10 variants)", "VLM", "DynaMath/DynaMath_Sample", "sample_variant1", "rule",
       True, _ref(17.8, 31.1, 52.7, 63.9, 66.7, 70.5),
       extra_splits=tuple(f"sample_variant{i}" for i in range(2, 11)), answer_field="ground_truth",
       image_fields=("decoded_image",), aggregate="dynamath"),
    _B("EmbSpatial", "EmbSpatial-Bench", "VLM", "FlagEval/EmbSpatial-Bench", "test", "rule", True,
       _ref(67.9, 71.5, 79.5, 82.4, 82.1, 84.2), id_field="question_id", choices_field="answer_options",
       choices_layout="list", answer_format="index", image_fields=("image",)),
    _B("InfoVQA", "InfographicVQA", "VLM", "lmms-lab/DocVQA", "validation", "exact", False,
       _ref(68.6, 75.3, 84.6, 88.8, 91.4, 91.5), config="InfographicVQA", hub_aliases=("lmms-lab-encoder/DocVQA",),
       id_field="questionId", answer_field="answers", answer_format="list", image_fields=("image",), metric="anls",
       notes="test answers are hidden, so validation; ANLS (tau 0.5) on the short answer"),
    _B("MathVerse", "MathVerse testmini", "VLM", "CaraJ/MathVerse-lmmseval", "testmini", "rule", True,
       _ref(43.5, 59.3, 76.0, 85.7, 88.1, 89.1), config="testmini", id_field="sample_index",
       image_fields=("image",), notes="options, when any, are inside the question text; gold is then a letter"),
    _B("MathVision", "MathVision", "VLM", "MathLLMs/MathVision", "test", "rule", True,
       _ref(16.4, 29.2, 50.5, 72.2, 75.9, 80.0), choices_field="options", choices_layout="list",
       answer_format="letter", image_fields=("decoded_image",)),
    _B("MathVista", "MathVista testmini", "VLM", "AI4Math/MathVista", "testmini", "rule", True,
       _ref(60.7, 73.2, 80.5, 85.4, 87.5, 88.2), id_field="pid", question_field="query", choices_field="choices",
       choices_layout="list", answer_format="choice_text", image_fields=("decoded_image",), prompt="query",
       metric="mathvista", notes="the model sees `query` (hint with the answer's type/precision, and the choices)"),
    _B("MMMU-Pro", "MMMU-Pro (all 3 configs)", "VLM", "MMMU/MMMU_Pro", "test", "rule", True,
       _ref(26.8, 37.6, 53.2, 67.1, 70.2, 74.0), configs=MMMU_PRO_CONFIGS, choices_field="options",
       choices_layout="list", answer_format="letter", image_fields=("image", *(f"image_{i}" for i in range(1, 8))),
       prompt="mmmu_pro", aggregate="mmmu_pro",
       notes="vision: the image alone (question and options are in it); headline = mean(standard-10, vision)"),
    _B("MM-Vet", "MM-Vet", "VLM", "lmms-lab/MMVet", "test", "official_judge", False,
       _ref(53.2, 59.9, 77.1, 79.8, 83.9, 84.9), hub_aliases=("lmms-lab-encoder/MMVet",), id_field="question_id",
       image_fields=("image",), prompt="as_is", judge="mmvet",
       notes="the question alone (as MM-Vet's own inference); the official few-shot judge gives partial credit"),
    _B("OCRBench-v2-EN", "OCRBench v2 English", "VLM", "ling99/OCRBench_v2", "test", "exact", False,
       _ref(40.0, 42.5, 48.8, 54.6, 56.7, 55.7), data_name="OCRBench-v2", answer_field="answers",
       answer_format="list", image_fields=("image",), row_filter=("type", r"(?i)(?:^|[\s_])cn$", False),
       meta_fields=("bbox",), prompt="as_is", metric="ocrbench_v2", aggregate="ocrbench_v2",
       notes="English = task types without the ' cn' suffix; comparable " + _OCR_NOT_ALL),
    _B("OCRBench-v2-ZH", "OCRBench v2 Chinese", "VLM", "ling99/OCRBench_v2", "test", "exact", False,
       _ref(17.0, 18.7, 26.0, 33.0, 35.6, 33.5), data_name="OCRBench-v2", answer_field="answers",
       answer_format="list", image_fields=("image",), row_filter=("type", r"(?i)(?:^|[\s_])cn$", True),
       meta_fields=("bbox",), prompt="as_is", metric="ocrbench_v2", aggregate="ocrbench_v2",
       notes="Chinese = task types ending in ' cn'; comparable " + _OCR_NOT_ALL),
    _B("VisualPuzzles", "VisualPuzzles", "VLM", "neulab/VisualPuzzles", "train", "rule", True,
       _ref(20.5, 35.0, 42.0, 54.5, 56.4, 61.9), choices_field="options", choices_layout="list",
       answer_format="letter", image_fields=("image",)),
    _B("VLMs-are-Blind", "VLMs are Blind", "VLM", "XAI/vlmsareblind", "valid", "rule", True,
       _ref(42.8, 44.7, 60.5, 74.9, 79.4, 92.1), id_field=None, question_field="prompt",
       answer_field="groundtruth", image_fields=("image",), prompt="as_is", metric="vlms_blind",
       aggregate="by_task", notes="the row's prompt sets the answer format ({n}, Yes/No ...); no boxed instruction"),
    _B("WeMath", "WeMath testmini", "VLM", "We-Math/We-Math", "testmini", "rule", True,
       _ref(54.4, 71.7, 82.6, 92.6, 92.9, 93.8), id_field="ID", id_suffix_field="key", choices_field="option",
       choices_layout="inline", answer_format="letter", image_fields=("image_path",), aggregate="wemath",
       notes="official Score (strict) over the 525 two/three-step problems; loose beside it"),
    # ---------------------------------------------------------------- LLM (10)
    _B("AIME25", "AIME 2025 (30 problems)", "LLM", "opencompass/AIME2025", "test", "rule", True,
       _ref(3.3, 3.3, 26.7, 56.7, 70.0, 70.0), configs=AIME25_CONFIGS, id_field=None),
    _B("AIME26", "AIME 2026", "LLM", "MathArena/aime_2026", "train", "rule", True,
       _ref(0.0, 0.0, 40.0, 66.7, 73.3, 76.7), id_field="problem_idx", question_field="problem"),
    _B("C-Eval", "C-Eval val (52 subjects)", "LLM", "ceval/ceval-exam", "val", "choice", True,
       _ref(52.3, 57.6, 74.0, 86.1, 87.2, 91.2), configs=CEVAL_CONFIGS, choices_layout="columns",
       choice_columns=("A", "B", "C", "D"), answer_format="letter",
       notes="flat accuracy over the 1,346 questions (ids restart in every subject: items are (subject, id))"),
    _B("GPQA-Diamond", "GPQA Diamond (198)", "LLM", "Idavidrein/gpqa", "train", "choice", True,
       _ref(12.1, 42.4, 60.6, 77.3, 78.8, 83.3), config="gpqa_diamond", id_field="Record ID",
       question_field="Question", answer_field="Correct Answer", choices_layout="gpqa",
       choice_columns=("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"),
       answer_format="letter", notes="options shuffled deterministically per Record ID (sha256 seed); the hub "
       "ships gpqa_diamond.csv"),
    _B("HLE", "Humanity's Last Exam", "LLM", "cais/hle", "test", "official_judge", False,
       _ref(2.2, 5.0, 5.1, 8.3, 9.8, 16.0), image_fields=("image",), image_rows_optional=True, prompt="hle",
       judge="hle", notes="the ~14% with an image (a data URI) are skipped and counted on a text-only model"),
    _B("IMO-AnswerBench", "IMO-AnswerBench", "LLM", "OpenEvals/IMO-AnswerBench", "train", "rule", True,
       _ref(3.3, 10.5, 29.5, 48.0, 49.8, 51.3), id_field="Problem ID", question_field="Problem",
       answer_field="Short Answer", notes="the official release is answerbench.csv"),
    _B("MMLU", "MMLU test", "LLM", "cais/mmlu", "test", "choice", True, _ref(57.7, 63.0, 76.4, 86.0, 88.1, 91.6),
       config="all", id_field=None, choices_field="choices", choices_layout="list", answer_format="index"),
    _B("MMLU-Pro", "MMLU-Pro", "LLM", "TIGER-Lab/MMLU-Pro", "test", "choice", True,
       _ref(41.7, 51.7, 68.2, 79.7, 82.0, 86.3), id_field="question_id", choices_field="options",
       choices_layout="list", answer_format="letter"),
    _B("MMLU-Redux", "MMLU-Redux 2.0", "LLM", "edinburgh-dawg/mmlu-redux-2.0", "test", "choice", True,
       _ref(62.5, 69.0, 82.9, 90.1, 91.7, 94.3), configs=MMLU_SUBJECTS, id_field=None, choices_field="choices",
       choices_layout="list", answer_format="index", subset_option="mmlu_redux_subset",
       subsets=(("ok", ("error_type", r"^ok$", True)), ("all", None)),
       notes="default: rows annotated error_type 'ok' (lm-evaluation-harness, fxmarty/mmlu-redux-2.0-ok); "
       "eval.mmlu_redux_subset=all grades every row against its original label"),
    _B("MultiChallenge", "MultiChallenge", "LLM", "ScaleAI/MultiChallenge", "train", "official_judge", False,
       _ref(16.6, 28.6, 40.6, 56.0, 56.8, 57.5), id_field="QUESTION_ID", question_field="CONVERSATION",
       answer_field="PASS_CRITERIA", judge="multichallenge",
       notes="multi-turn: the conversation is in meta['messages']; the judge sees TARGET_QUESTION + PASS_CRITERIA"),
    # ---------------------------------------------------------------- Video (5)
    _B("MMVU", "MMVU validation (1,000)", "Video", "yale-nlp/MMVU", "validation", "official_judge", False,
       _ref(39.0, 42.5, 59.0, 70.6, 74.2, 75.7), hub_aliases=("lmms-eval/MMVU",), choices_field="choices",
       choices_layout="dict", answer_format="text", video_field="video", video_layout="url", prompt="mmvu",
       judge="mmvu", notes="`video` is the hub URL; the local file is its path, videos/<Subject>/<n>.mp4"),
    _B("MVBench", "MVBench (20 task configs)", "Video", "OpenGVLab/MVBench", "train", "rule", True,
       _ref(51.6, 56.6, 62.7, 69.6, 71.7, 74.6), configs=MVBENCH_CONFIGS, id_field=None,
       choices_field="candidates", choices_layout="list", answer_format="choice_text", video_field="video",
       video_layout="mvbench", notes="hub copy: json/<task>.json + video/<task folder>/<clip>"),
    _B("Video-MME", "Video-MME without subtitles", "Video", "lmms-lab/Video-MME", "test", "rule", True,
       _ref(50.3, 53.9, 62.4, 68.5, 70.2, 76.1), data_name="Video-MME", hub_aliases=("lmms-eval/Video-MME",),
       id_field="question_id", choices_field="options", choices_layout="list", answer_format="letter",
       video_field="videoID"),
    _B("Video-MME-sub", "Video-MME with subtitles", "Video", "lmms-lab/Video-MME", "test", "rule", True,
       _ref(51.6, 54.9, 63.9, 70.2, 72.8, 76.0), data_name="Video-MME", hub_aliases=("lmms-eval/Video-MME",),
       id_field="question_id", choices_field="options", choices_layout="list", answer_format="letter",
       video_field="videoID", subtitles=True, notes="subtitles from <folder>/subtitle/<videoID>.srt"),
    _B("Video-MMMU", "Video-MMMU", "Video", "lmms-lab/VideoMMMU", "test", "rule", True,
       _ref(48.8, 56.4, 68.1, 80.2, 82.1, 84.7), configs=VIDEO_MMMU_CONFIGS, hub_aliases=("lmms-eval/VideoMMMU",),
       choices_field="options", choices_layout="list", answer_format="letter", image_fields=("image",),
       video_field="id", video_layout="videommmu",
       notes="videos in per-discipline folders <Discipline>/<id>.mp4; some Adaptation questions are open-ended"),
)
del _B

BY_NAME: dict[str, Benchmark] = {b.name: b for b in BENCHMARKS}
_LOWER: dict[str, Benchmark] = {b.name.lower(): b for b in BENCHMARKS}

SUITES: dict[str, list[Benchmark]] = {
    "vlm": [b for b in BENCHMARKS if b.family == "VLM"],
    "llm": [b for b in BENCHMARKS if b.family == "LLM"],
    "video": [b for b in BENCHMARKS if b.family == "Video"],
    "all": list(BENCHMARKS),
}

# The paper's family averages (Tabs. 1-2): method -> family -> scale -> percent. The teacher row has one value
# per family, under the key "teacher".
_AVG_ROWS = {
    "Base": ((41.0, 56.8, 66.9, 70.2), (25.2, 45.3, 61.6, 64.9), (48.3, 60.6, 71.5, 73.8)),
    "Off-Distill†": ((41.5, 57.3, 67.3, 70.5), (22.5, 43.1, 60.7, 64.7), (45.0, 58.6, 69.7, 72.6)),
    "On-Distill†": ((42.3, 58.0, 67.8, 71.0), (23.2, 43.7, 61.2, 65.1), (45.8, 59.2, 70.3, 73.1)),
    "GRPO": ((43.8, 58.7, 68.2, 71.2), (27.1, 46.7, 62.1, 65.7), (49.6, 61.2, 70.6, 73.2)),
    "GRPO†": ((45.4, 59.2, 68.7, 71.4), (28.7, 47.3, 62.7, 66.2), (50.5, 61.9, 70.9, 73.4)),
    "GRPO+Both (no buffer)": ((45.2, 58.9, 68.5, 71.3), (28.3, 47.0, 62.8, 66.0), (49.6, 61.2, 70.9, 73.4)),
    "GRPO†+BCQ": ((48.6, 60.8, 69.6, 72.0), (31.5, 49.1, 64.1, 67.5), (52.0, 62.6, 71.3, 73.6)),
    "GRPO†+NCQ": ((46.2, 60.1, 69.9, 72.5), (29.4, 48.5, 64.6, 68.3), (51.0, 62.3, 71.6, 73.9)),
    "ZPPO": ((50.3, 62.0, 70.9, 73.0), (33.1, 50.4, 65.5, 68.8), (52.8, 63.2, 71.8, 74.2)),
}
_SCALES = ("0.8b", "2b", "4b", "9b")
FAMILY_AVERAGES: dict[str, dict[str, dict[str, float]]] = {
    method: {fam: dict(zip(_SCALES, vals)) for fam, vals in zip(FAMILIES, rows)} for method, rows in _AVG_ROWS.items()
}
FAMILY_AVERAGES["27B teacher"] = {"VLM": {"teacher": 75.5}, "LLM": {"teacher": 71.8}, "Video": {"teacher": 77.4}}
del _AVG_ROWS


def get_benchmark(name: str) -> Benchmark:
    """The benchmark called `name` (case-insensitive); ValueError listing the valid names otherwise."""
    b = _LOWER.get(name.strip().lower())
    if b is None:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(BY_NAME)}")
    return b


def resolve_suite(spec: str) -> list[Benchmark]:
    """Benchmarks of a suite name (vlm, llm, video, all) or a comma-separated list of names, case-insensitive.

    Order is kept and duplicates are dropped. Raises ValueError (one line naming the valid suites and names)
    on an empty spec or any unknown name.
    """
    parts = [p.strip() for p in (spec or "").split(",") if p.strip()]
    valid = f"valid suites: {', '.join(SUITES)}; valid benchmarks: {', '.join(BY_NAME)}"
    if not parts:
        raise ValueError(f"empty suite {spec!r}; {valid}")
    out: list[Benchmark] = []
    seen: set[str] = set()
    unknown = []
    for p in parts:
        key = p.lower()
        found = SUITES.get(key) or ([_LOWER[key]] if key in _LOWER else None)
        if found is None:
            unknown.append(p)
            continue
        for b in found:
            if b.name not in seen:
                seen.add(b.name)
                out.append(b)
    if unknown:
        raise ValueError(f"unknown suite or benchmark {', '.join(map(repr, unknown))}; {valid}")
    return out
