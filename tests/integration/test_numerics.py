"""Issue 11 on the loop with real tiny models: π_old from the trainer vs the engine, the engine/trainer mismatch,
truncated IS, bf16 compute over fp32 masters end to end, the judge in the reward, chat-template keywords per
role, and the plain-prompt token filter.

Test doubles only where the issue allows them: an engine that perturbs the real engine's log-probs (to create a
mismatch the CPU engine does not have), a scripted judge engine (to decide verdicts), and a scripted HTTP server
standing in for vLLM's OpenAI server (the real client; vLLM itself runs in tests/vllm)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from zppo_core.config import load_config
from zppo_core.models.load import load_pair
from tests.unit.test_openai_engine import echo_chat, models, server  # noqa: F401 (server: the HTTP fixture)
from zppo_core.rollout import make_engine
from zppo_core.rollout.openai_engine import EndpointSpec, OpenAIChatEngine
from zppo_core.train.loop import Trainer
from zppo_core.train.methods.registry import build_method
from zppo_core.train.run import make_judge, make_stream, train
from zppo_core.types import Completion, Question


def _cfg(test_overrides, *sets, method="grpo"):
    return load_config("tiny", method=method, overrides=test_overrides + ["tracking.enabled=false", *sets])


def _trainer(prepared, cfg, tmp_path, wrap=None, judge=None, teacher=False):
    method = build_method(cfg)
    student, tmodel = load_pair(cfg, str(prepared / "student"),
                                str(prepared / "teacher") if (teacher or method.needs_teacher) else None)
    engine = make_engine(cfg, student.model, student.tokenizer)
    t_engine = make_engine(cfg, tmodel.model, tmodel.tokenizer) if tmodel is not None else None
    return Trainer(cfg, tmp_path, student.model, student.tokenizer, wrap(engine) if wrap else engine,
                   make_stream(cfg), method, teacher=t_engine, judge=judge)


class RecordingObjective:
    """The method's real objective, recording the per-token ratios it was given at each call."""

    def __init__(self, inner):
        self.inner, self.ratios = inner, []
        self.needs_teacher_logits, self.updates_per_step = inner.needs_teacher_logits, inner.updates_per_step

    def loss(self, logprobs, old, adv, mask, num_tokens, **kw):
        self.ratios.append(torch.exp(logprobs.detach() - old)[mask.bool()])
        return self.inner.loss(logprobs, old, adv, mask, num_tokens=num_tokens, **kw)


class PerturbedEngine:
    """The real engine, whose returned log-probs are shifted by ±delta per token (another engine's numerics)."""

    def __init__(self, inner, delta):
        self.inner, self.delta = inner, delta

    def generate(self, prompts, params):
        out = self.inner.generate(prompts, params)
        return [[Completion(c.token_ids, [lp + self.delta * (-1) ** t for t, lp in enumerate(c.logprobs)], c.text,
                            c.finished) for c in comps] for comps in out]

    def sync_weights(self, model):
        self.inner.sync_weights(model)


def _first_ratios(prepared, test_overrides, tmp_path, mode, wrap=None, *sets):
    cfg = _cfg(test_overrides, f"algo.old_logprobs={mode}", "run.seed=4", *sets)
    tr = _trainer(prepared, cfg, tmp_path / mode, wrap=wrap)
    rec = RecordingObjective(tr.method.objective)
    tr.method.objective = rec
    m = tr.train_step()
    return m, rec


def test_trainer_and_engine_pi_old_agree_on_the_tiny_model(prepared, test_overrides, tmp_path):
    """fp32 tiny: the transformers engine shares the model, so π_old from the engine equals the trainer's: the first
    mini-batch's per-token ratios of both paths are 1 within 1e-5, and the trainer path is exactly 1."""
    me, rec_e = _first_ratios(prepared, test_overrides, tmp_path, "engine")
    mt, rec_t = _first_ratios(prepared, test_overrides, tmp_path, "trainer")
    # the same seed draws the same rollouts; 16 rollouts in 2 mini-batches of one micro-batch each, so the first
    # objective call is the first mini-batch
    assert len(rec_e.ratios) == len(rec_t.ratios) == 2
    re_, rt = rec_e.ratios[0], rec_t.ratios[0]  # [tokens]
    assert re_.shape == rt.shape
    assert (re_ - 1).abs().max() < 1e-5 and (rt - 1).abs().max() == 0.0
    assert (re_ - rt).abs().max() < 1e-5
    assert mt["train/ratio_mean_first"] == 1.0 and mt["train/approx_kl_first"] == 0.0
    assert me["rollout/logprob_abs_diff_max"] < 1e-5 and mt["rollout/logprob_abs_diff_max"] < 1e-5
    assert me["train/accuracy"] == mt["train/accuracy"]  # same rollouts


def test_a_perturbing_engine_shows_a_mismatch_and_the_trainer_path_still_starts_at_ratio_one(
        prepared, test_overrides, tmp_path):
    delta = 0.05
    wrap = lambda e: PerturbedEngine(e, delta)  # noqa: E731
    mt, rec_t = _first_ratios(prepared, test_overrides, tmp_path, "trainer", wrap)
    assert mt["rollout/logprob_abs_diff_mean"] == pytest.approx(delta, abs=1e-4)
    assert mt["train/ratio_mean_first"] == 1.0 and (rec_t.ratios[0] - 1).abs().max() == 0.0
    # the engine path takes the perturbed log-probs as π_old: its first mini-batch is off by exp(±δ)
    me, rec_e = _first_ratios(prepared, test_overrides, tmp_path, "engine", wrap)
    assert (rec_e.ratios[0] - 1).abs().max() > 0.04 and me["train/approx_kl_first"] > 1e-4
    assert me["rollout/logprob_abs_diff_mean"] == pytest.approx(delta, abs=1e-4)
    # truncated IS: ρ = exp(π_old - π_engine) = exp(∓δ) per token; with cap 1 every ρ > 1 is cut to 1
    mc, _ = _first_ratios(prepared, test_overrides, tmp_path, "trainer", wrap, "algo.tis_cap=1.0")
    assert math.exp(-delta) - 1e-4 < mc["train/tis_weight_mean"] < 1.0


def test_bf16_compute_trains_fp32_masters_and_checkpoints_them(prepared, test_overrides, tmp_path):
    cfg = _cfg(test_overrides, "model.dtype=bfloat16", "run.steps=2", "algo.old_logprobs=trainer")
    before = load_file(str(prepared / "student" / "model.safetensors"))
    res = train(cfg, run_dir=tmp_path / "run")
    ptr = (res.run_dir / "checkpoints" / "latest").read_text().strip()
    after = load_file(str(res.run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))
    assert {v.dtype for v in after.values()} == {torch.float32}  # the checkpoint keeps the fp32 masters
    changed = torch.cat([(after[k] != before[k]).flatten() for k in before]).float().mean()
    assert changed > 0.99  # lr 1e-4 here; every master weight moves
    opt = torch.load(res.run_dir / "checkpoints" / ptr / "optimizer.pt", weights_only=False)
    assert {t.dtype for s in opt["state"].values() for k, t in s.items() if k != "step"} == {torch.float32}
    for row in res.history:
        assert row["train/ratio_mean_first"] == 1.0  # trainer π_old under the same autocast
        assert all(math.isfinite(v) for v in row.values())


class ScriptedJudge:
    """A judge engine replying with a fixed text to every prompt; records the prompts."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        return [[Completion([0], [0.0], self.reply, True)] for _ in prompts]


@pytest.mark.parametrize("reply, reward", [('{"correct": true}', 1.0), ('{"correct": tru', 0.0)])
def test_the_judge_decides_rollouts_without_a_parsable_answer(prepared, test_overrides, tmp_path, reply, reward):
    """Short responses (8 tokens) leave many rollouts without a closed box: the scripted judge decides exactly
    those, in one call per rollout phase; a malformed verdict counts as wrong."""
    judge = ScriptedJudge(reply)
    cfg = _cfg(test_overrides, "rollout.max_new_tokens=8", "reward.judge=teacher")
    tr = _trainer(prepared, cfg, tmp_path, judge=judge)
    seen = []
    grade = tr.rewarder.grade
    tr.rewarder.grade = lambda pairs: seen.extend(grade(pairs)) or seen[-len(pairs):]
    m = tr.train_step()
    undecided = [g for g in seen if g.extracted is None]
    assert undecided and all(g.judged and g.reward == reward for g in undecided)
    assert all(not g.judged for g in seen if g.extracted is not None)
    assert judge.calls == [len(undecided)]  # GRPO: one phase, one batched call
    assert m["train/judged_frac"] == pytest.approx(len(undecided) / len(seen))


def test_chat_template_keywords_reach_each_role_and_the_prompt_filter_counts(prepared, test_overrides, tmp_path):
    cfg = _cfg(test_overrides, "model.chat_template_kwargs.compression={enable_thinking: false}",
               "model.chat_template_kwargs.judge={enable_thinking: false, mode: judge}", "zppo.compression=teacher",
               "data.max_prompt_tokens=23", method="zppo")
    tr = _trainer(prepared, cfg, tmp_path)
    tok = tr.tokenizer
    tok.chat_template = ("{% if enable_thinking is defined and not enable_thinking %}[nothink]{% endif %}"
                         "{% if mode is defined %}[{{ mode }}]{% endif %}" + tok.chat_template)
    prompts = []
    real = tr.teacher.generate
    tr.teacher.generate = lambda p, params: prompts.append([tok.decode(x) for x in p]) or real(p, params)
    assert tok.decode(tr.render("1+2")).startswith("<|user|>")
    assert tok.decode(tr.renders["compression"]("1+2")).startswith("[nothink]<|user|>")
    assert tok.decode(tr.renders["judge"]("1+2")).startswith("[nothink][judge]<|user|>")
    assert tok.decode(tr.renders["teacher"]("1+2")).startswith("<|user|>")
    tr.teacher_generate(["compress this"], 4)
    assert prompts[-1] == ["[nothink]<|user|>compress this<|assistant|>"]
    student_prompts = []
    real_student = tr.engine.generate
    tr.engine.generate = lambda p, params: student_prompts.append(p) or real_student(p, params)
    m = tr.train_step()
    # the filter: every plain prompt of the step (the first rollout phase, nothing replayed yet) fits in 23
    # tokens, and the skipped questions are counted
    assert m["data/filtered_questions"] > 0
    assert len(student_prompts[0]) == 4 and all(len(p) <= 23 for p in student_prompts[0])


def test_bf16_trainer_pi_old_resume_equals_uninterrupted(prepared, test_overrides, tmp_path):
    """Mixed precision keeps exact resume: the fp32 masters and fp32 AdamW state round-trip through the checkpoint."""
    cfg = _cfg(test_overrides, "model.dtype=bfloat16", "algo.old_logprobs=trainer", "run.steps=3", "run.seed=5",
               "run.final_eval_per_level=0")
    full = train(cfg, run_dir=tmp_path / "full")
    part = tmp_path / "part"
    train(cfg, run_dir=part, stop_after=2)
    resumed = train(None, run_dir=part, resume=True)

    def weights(rd):
        ptr = (rd / "checkpoints" / "latest").read_text().strip()
        return load_file(str(rd / "checkpoints" / ptr / "model" / "model.safetensors"))

    wf, wr = weights(full.run_dir), weights(resumed.run_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]  # noqa: E731
    assert strip(full.history) == strip(resumed.history)


def test_a_served_teacher_gets_each_roles_chat_template_keywords(prepared, test_overrides, tmp_path, server):
    """A served teacher (the real client against a scripted HTTP server, tests/unit/test_openai_engine.py) renders
    prompts itself, so the role's keywords travel with the request: teacher rollouts, compression calls and the
    teacher as judge (built by run.make_judge) each send their own, over the endpoint's."""
    server.on("/models", models("teacher")).on("/chat/completions", echo_chat)
    cfg = _cfg(test_overrides, "model.chat_template_kwargs.teacher={enable_thinking: true}",
               "model.chat_template_kwargs.compression={enable_thinking: false}",
               "model.chat_template_kwargs.judge={enable_thinking: false, mode: judge}", "reward.judge=teacher",
               method="zppo")
    teacher = OpenAIChatEngine(EndpointSpec(url=server.url, chat_template_kwargs={"keep": 1}), backoff_s=0.0)
    student, _ = load_pair(cfg, str(prepared / "student"), None)
    judge, judge_render = make_judge(cfg, teacher, student.tokenizer)
    tr = Trainer(cfg, tmp_path, student.model, student.tokenizer, make_engine(cfg, student.model, student.tokenizer),
                 make_stream(cfg), build_method(cfg), teacher=teacher, judge=judge, judge_render=judge_render)
    q = Question(id="q1", prompt="Name the sign.", answer="STOP", meta={"answer_type": "free_form"})
    assert tr.teacher_generate(["compress this"], 4) == ["compress this#0"]
    groups = tr.teacher_sample([q], 2)  # free-form, the echo is no match: the judge (the served teacher) decides
    assert [r.judged for r in groups[0].rollouts] == [True, True]
    posts = [b for k, b, _ in server.requests if k == "POST /chat/completions"]
    kinds = [b["chat_template_kwargs"] for b in posts]
    assert kinds[0] == {"keep": 1, "enable_thinking": False}  # compression
    assert kinds[1] == {"keep": 1, "enable_thinking": True}  # teacher rollouts (n=2 in one request)
    assert kinds[2:] == [{"keep": 1, "enable_thinking": False, "mode": "judge"}] * 2  # one greedy call per verdict
    assert '{"correct": true}' in posts[2]["messages"][0]["content"]  # the strict-JSON judge prompt
