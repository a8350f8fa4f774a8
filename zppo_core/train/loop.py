"""THE training loop: one rollout step, the same for every method (GRPO, ZPPO, the baselines).

One rollout step (ZPPO.md §1, Alg. 1; numbers match the `# step N` comments below):

  1. Draw `n_new` new questions from the data stream (one pass over the data; the cursor is checkpointed),
     skipping those whose plain prompt (image tokens included) exceeds `data.max_prompt_tokens` (counted:
     data/filtered_questions).
  2. The method picks the step's prompts X from them (e.g. adds questions replayed from its buffer).
  3. Plain rollouts: G_S student samples per x in X, each graded (binary reward: the rule grader, the judge for
     what it cannot decide, `train/reward.py`) -> one plain group per x.
  4. The method plans extra prompts from the graded plain groups (BCQ/NCQ, hints, ...; it may call the
     teacher through the step context).
  5. Extra rollouts: G_S student samples per extra prompt, graded against x's gold answer -> one group per
     extra prompt (its own group id: plain/BCQ/NCQ never share a group). A prompt's forced response prefix (the
     Prefix baseline) is part of the prompt ids, so only the continuation is sampled and trained.
 5b. The method says which groups the update trains on (RL methods: all of them; Off-Distill: the teacher's
     correct responses; the drift baseline: plain groups with a teacher response as one more rollout).
  6. Advantages over the trained groups at once, before any update: A' = r - mean(group), then normalised over
     the rollouts of non-trivial groups (or the configured variant).
  7. Update: the trained rollouts shuffled into I equal mini-batches (I = the objective's updates_per_step, else
     algo.updates_per_step), π_old by the engine or the trainer (`old_logprobs.py`); one AdamW step on each over
     fp32 masters (forward in the compute dtype, `models/precision.py`; fp32 grad-norm clip), micro-batches
     gradient-accumulated with a token-level normaliser per mini-batch (a prompt repeated in a micro-batch runs
     once, its KV cache expanded to its rows: `models/logprobs.py`). An objective that compares
     distributions with the teacher's (distillation) gets both models' logits along each sequence and no π_old.
  8. The method observes the plain groups (buffer refresh: admit hard, graduate solved, FIFO-evict).
  9. Sync the rollout engine's weights; the step's train, method and perf metrics (wall time per phase,
     tokens/s, peak memory: `perf.py`) go to the tracker.

The step tail (`run`), after every step:

  10. Evaluate: the `eval.suites` every `eval.every` steps and after the last step (every configured suite, so
      a run's final scores are at its final step, with their n and standard error; that eval's per-sample
      verdicts become the table eval/samples_step_<N>.json); after the last step also the held-out eval
      (`run.final_eval_per_level`, synthetic data), so the last metrics line and checkpoint carry eval/heldout/*.
      Accuracies are logged in percent, like the eval suites' scores.
  11. Log: the step's line in `metrics.jsonl` (train, method and eval metrics together), then `on_step(step,
      metrics)`, which may ask the run to stop (a sweep's pruner does).
  12. Checkpoint: the method's reports, then a full checkpoint, every `run.checkpoint_every` steps, after
      `run.checkpoint_minutes` of wall clock, after the last step and before stopping early.
  13. Stop when `on_step` asked for it, when `stop_requested()` says so (a SIGTERM/SIGINT caught by `zppo train`:
      the step finishes and is checkpointed, then the run stops, resumable), or after `stop_after` steps (tests).

Ranks (`zppo_core.dist`, FSDP2 student): steps 1, 2, 4, 5b, 8 are deterministic replicas (same inputs, the run's
Python RNG is the same on every rank; a digest is compared after each step) rather than one owner plus broadcasts,
since the hooks call the teacher and those calls are sharded over the ranks. Rollouts (3, 5, the teacher's) are
dealt round-robin by prompt (a group never spans ranks); the student's groups of other ranks arrive without token
ids, the teacher's arrive whole (the Prefix baseline forces their tokens, the drift baseline injects them). A
forced response prefix travels with its prompt to the rank that samples it. Each rank trains on the groups it
sampled (its teacher groups for Off-Distill) and computes the teacher's logits for its own micro-batches. Step 6
normalises over all ranks' rollouts; step 7 cuts the global rollout list into the same I mini-batches as one rank
would, each rank training on its members with the global token count (times the world size: FSDP2 averages
gradients). Rank 0 alone logs and prints; evaluation is sharded; stop decisions are all-reduced. One rank runs the
single-process loop.

The loop never looks at the method's name: a method is the `Method` protocol of `methods/base.py` (four step
hooks, an objective, its state and its reports). Image questions take the same path: every prompt (plain, the method's
extra prompts, the teacher's) is rendered with the question's images by `PromptRenderer.prompt` (the images once,
before the text), sampled through `rollout.base.generate_prompts`, and trained on with the same image inputs.
Periodic and final evaluation come from `zppo_core.suites`, which sits below train (the loop never imports
`zppo_core.eval`, and eval never imports train).
Deviation from the paper: none in the algorithm; scale (n_new, G_S, lengths, lr) comes from the preset.

Why this file is long: it is the one place steps 1-13 run in order, rank-aware (rollouts with their grading and
judge call, the mini-batch update with π_old and micro-batching, per-phase timing, state and checkpoints, the step
tail); the pieces that stand alone live beside it (`old_logprobs.py`, `reward.py`, `checkpoint.py`,
`tasks/filter.py`, `perf.py`, FSDP2 and DCP in `zppo_core.dist`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from zppo_core.algo.advantages import group_advantages, trivial_group_fraction
from zppo_core.algo.reformulate import plain_prompt
from zppo_core.config.schema import ZPPOConfig
from zppo_core.dist import LOCAL, Dist, rank_seed, stop_requested
from zppo_core.dist.data import ShardedEngine, light
from zppo_core.dist.fsdp import FullWeights, gradient_sync, idle_backward, is_sharded, local_value
from zppo_core.models.kv import why_not_shared_prompt
from zppo_core.models.load import PromptRenderer, chat_kwargs
from zppo_core.models.logprobs import completion_forward, sequence_logprobs, teacher_completion_logits
from zppo_core.models.precision import Precision
from zppo_core.rollout.base import ChatEngine, Engine, SamplingParams, generate_prompts
from zppo_core.run_dir import RunDir
from zppo_core.tasks.filter import draw_fitting
from zppo_core.tracking import NullTracker, Tracker
from zppo_core.tracking.stats import eval_uncertainty, sample_rows, stderr
from zppo_core.train import checkpoint as ckpt_io
from zppo_core.train import old_logprobs as pi_old
from zppo_core.train.methods.base import ExtraPrompt, Method, StepContext
from zppo_core.train.perf import PhaseTimer, memory_metrics, reset_gpu_peak
from zppo_core.train.reward import Rewarder
from zppo_core.types import Group, Question, Rollout


@dataclass
class TrainState:
    step: int = 0  # completed rollout steps
    history: list[dict[str, float]] = field(default_factory=list)


PAD_SLACK = 1.5  # a micro-batch pads to at most 1.5x its real tokens (a few long BCQ prompts were padding the
# plain rows of their micro-batch to ~2.5x their real tokens on the tiny preset: bench/method_step.py)


class Trainer:
    def __init__(
        self,
        cfg: ZPPOConfig,
        run_dir: Path,
        model,
        tokenizer,
        engine: Engine,
        stream,
        method: Method,
        tracker: Tracker | None = None,
        teacher: Engine | ChatEngine | None = None,  # in-process, or served (chat messages)
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        judge: Engine | ChatEngine | None = None,  # reward.judge (None: rule grader only), prompts by judge_render
        judge_render: Callable[[str], list[int]] | None = None,  # (default: this tokenizer, the judge's keywords)
        processor=None,
        dist: Dist = LOCAL,
        teacher_model=None,  # the teacher as a torch model (its logits for distillation), or None
    ):
        """With several ranks: `model` is this rank's FSDP2-sharded student, `engine` samples from its own full
        copy (synced after every update), `tracker` and `on_step` are real on rank 0 only."""
        self.cfg = cfg
        self.dist = dist
        self.run_dir = RunDir(run_dir)
        self.model = model
        self.tokenizer = tokenizer
        self.engine = engine
        self.teacher = teacher
        self.teacher_model = teacher_model
        self.stream = stream
        self.method = method
        self.tracker = tracker or NullTracker()
        self.on_step = on_step
        self.rng = random.Random(cfg.run.seed)
        self.state = TrainState()
        self.precision = Precision.from_config(cfg)  # bf16 compute over fp32 master weights, or fp32
        self.precision.check_trainable(model)
        # the training forward runs a prompt repeated in a micro-batch once (`models.logprobs`); under FSDP2, whose
        # forwards are collective, every micro-batch (an idle one too) makes the shared path's two calls on every rank
        self.share_prompts = why_not_shared_prompt(model) is None
        self.fixed_calls = self.share_prompts and is_sharded(model)
        o = cfg.optim
        # the fused AdamW kernel (TRL's default `adamw_torch_fused`): one pass over all fp32 masters per step, same
        # update up to float rounding (~1e-8); a checkpoint's param_groups carry the flag, so a resume keeps it
        params = list(model.parameters())
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
        self.optimizer = torch.optim.AdamW(
            params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay, fused=fused or None
        )
        self.sampling = SamplingParams(
            n=cfg.rollout.group_size,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            max_new_tokens=cfg.rollout.max_new_tokens,
        )
        self.processor = processor  # a vision-language student's processor (images, chat template), or None
        # text (+ a question's images) -> prompt ids and image inputs (cached) per role's chat-template keywords
        # (the teacher shares the student's tokenizer and processor)
        self.renders = {role: PromptRenderer(tokenizer, processor, template_kwargs=chat_kwargs(cfg, role),
                                             min_pixels=cfg.data.min_pixels, max_pixels=cfg.data.max_pixels)
                        for role in ("student", "teacher", "compression", "judge")}
        self.render = self.renders["student"]
        self.rewarder = Rewarder(judge, (judge_render or self.renders["judge"]) if judge is not None else None,
                                 max_new_tokens=cfg.reward.judge_max_new_tokens)
        self._next_group_id = 0
        self.own_groups: set[int] = set()  # ids of the groups this rank sampled (this step's: train_step resets it)
        self._last_checkpoint = time.monotonic()
        self.stopped_early = False  # on_step asked to stop before run.steps
        self.preempted = False  # a stop request (Slurm's time-limit/preemption signal): checkpointed, not finished
        self.phases = PhaseTimer()  # wall seconds per phase of the current step -> perf/*_time_s
        self.stop_requested: Callable[[], bool] | None = None  # polled after each step (a caught signal)
        self.interrupted = False  # stop_requested() stopped the run before run.steps
        torch.manual_seed(rank_seed(cfg.run.seed, dist.rank))  # the run's seed on rank 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.state.step,
            "history": self.state.history,
            "stream": self.stream.state_dict(),
            "method": self.method.state_dict(),
            "python_rng": self.rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "next_group_id": self._next_group_id,
        }

    def load_checkpoint(self, path: Path) -> None:
        """Resume from a checkpoint of either format (single-process or sharded) at this world size."""
        state = ckpt_io.load_checkpoint(path, self.model, self.optimizer, self.dist, seed=self.cfg.run.seed)
        self.state = TrainState(step=state["step"], history=state["history"])
        self.stream.load_state_dict(state["stream"])
        self.method.load_state_dict(state["method"])
        self.rng.setstate(state["python_rng"])
        self._next_group_id = state["next_group_id"]
        self._sync_engine()

    def replicated_state(self) -> dict[str, Any]:
        """What every rank holds the same copy of (compared across ranks after every step)."""
        return {"step": self.state.step, "stream": self.stream.state_dict(), "method": self.method.state_dict(),
                "python_rng": self.rng.getstate(), "next_group_id": self._next_group_id}

    def _sync_engine(self) -> None:
        """The rollout engine samples from the current weights (several ranks: gathered, collective)."""
        self.engine.sync_weights(FullWeights(self.model) if is_sharded(self.model) else self.model)

    def save_checkpoint(self) -> Path:
        """Collective with several ranks; the last step's sharded checkpoint also gets its HF model directory."""
        return ckpt_io.save_checkpoint(
            self.run_dir.path,
            self.state.step,
            self.model,
            self.processor if self.processor is not None else self.tokenizer,  # a VLM's checkpoint keeps its processor
            self.optimizer,
            self.state_dict(),
            keep=self.cfg.run.keep_checkpoints,
            dist=self.dist,
            export=self.state.step >= self.cfg.run.steps,
        )

    # ------------------------------------------------------------------ rollouts
    def _rollout_groups(
        self, engine: Engine, items: list[tuple[str, Question, str]], n: int, metas: list[dict] | None = None,
        render: PromptRenderer | None = None, prefixes: list[list[int]] | None = None, whole: bool = False,
    ) -> list[Group]:
        """items: (kind, question, prompt text), the same list on every rank; prefixes: response-side token ids
        forced after each rendered prompt (graded as part of the response, never trained). Returns one graded group
        per item, in order, on every rank: each rank samples and grades its round-robin share (its own groups whole,
        the others' `light` unless `whole`; one judge call per rank for its share). Group ids follow the items'
        order, so they are the same on every rank and for any world size."""
        if not items:
            return []
        base = self._next_group_id
        self._next_group_id += len(items)
        indexed = [(base + i, item, metas[i] if metas is not None else {}, list(prefixes[i]) if prefixes else [])
                   for i, item in enumerate(items)]  # a forced prefix travels with its prompt
        return self.dist.map_shards(indexed, lambda mine: self._sample_groups(engine, mine, n, render),
                                    light=None if whole else light)

    def _sample_groups(self, engine: Engine, items: list[tuple[int, tuple[str, Question, str], dict, list[int]]],
                       n: int, render: PromptRenderer | None = None) -> list[Group]:
        """This rank's share: (group id, (kind, question, prompt text), meta, forced prefix ids) -> one graded group
        each; their ids join `self.own_groups` (the groups this rank trains on when the method trains them)."""
        render = render or self.render
        prompts = [render.prompt(text, q.images) for _, (_, q, text), _, _ in items]  # the question's images, once
        prefixes = [pre for _, _, _, pre in items]
        if any(pre and (p.mm is not None or isinstance(engine, ChatEngine)) for p, pre in zip(prompts, prefixes)):
            raise ValueError("a forced response prefix needs a text prompt and an engine that takes token ids (not "
                             "image inputs, not a served chat model)")
        prompts = [replace(p, ids=p.ids + list(pre)) if pre else p for p, pre in zip(prompts, prefixes)]
        prefix_texts = [self.tokenizer.decode(pre, skip_special_tokens=True) if pre else "" for pre in prefixes]
        params = SamplingParams(
            n=n,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_new_tokens=self.sampling.max_new_tokens,
        )
        outs = generate_prompts(engine, prompts, params, template_kwargs=render.template_kwargs)
        graded = iter(self.rewarder.grade([(q, pre + c.text) for (_, (_, q, _), _, _), pre, comps
                                           in zip(items, prefix_texts, outs) for c in comps]))
        groups = []
        for (gid, (kind, q, text), meta, pre), prompt, pre_text, comps in zip(items, prompts, prefix_texts, outs):
            meta = dict(meta)
            if pre:
                meta["response_prefix"] = pre_text
            g = Group(id=gid, kind=kind, question=q, prompt_text=text, meta=meta)
            self.own_groups.add(gid)
            for c in comps:
                r = next(graded)
                g.rollouts.append(Rollout(q.id, g.id, kind, prompt.ids, c, r.reward, r.extracted,
                                          prompt_mm=prompt.mm, judged=r.judged))
            groups.append(g)
        return groups

    def teacher_sample(self, questions: list[Question], n: int) -> list[Group]:
        """G_T teacher rollouts per question, whole on every rank (the Prefix baseline forces their token ids, the
        drift baseline injects them, Off-Distill trains the sampling rank's share)."""
        if self.teacher is None:
            raise RuntimeError("this method needs a teacher but none was loaded")
        closer = self.cfg.data.closer
        with self.phases("teacher_rollout"):
            return self._rollout_groups(self.teacher, [("teacher", q, plain_prompt(q, closer)) for q in questions],
                                        n, render=self.renders["teacher"], whole=True)

    def teacher_generate(self, texts: list[str], max_new_tokens: int, images: list | None = None) -> list[str]:
        """One greedy teacher completion per user-message text (candidate compression); `images[i]`: the images
        text i is about (its question's), shown to the teacher with it."""
        if self.teacher is None:
            raise RuntimeError("this method needs a teacher but none was loaded")
        if not texts:
            return []
        images = images if images is not None else [()] * len(texts)
        compress = self.renders["compression"]
        with self.phases("compression"):
            teacher = ShardedEngine(self.teacher, self.dist) if self.dist.enabled else self.teacher  # split over ranks
            outs = generate_prompts(teacher,
                                    [compress.prompt(t, im) for t, im in zip(texts, images)],
                                    SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens),
                                    template_kwargs=compress.template_kwargs)
        return [o[0].text for o in outs]

    def student_logprobs(self, rollouts: list[Rollout]) -> list[list[float]]:
        """Per-token log-probs of the rollouts' completions under the student's current weights (no gradient). With
        several ranks every rank calls it with the same rollouts (whole: the teacher's), since the sharded forwards
        are collective."""
        with self.precision.autocast(next(self.model.parameters()).device):
            return sequence_logprobs(self.model, [r.prompt_ids for r in rollouts],
                                     [r.completion.token_ids for r in rollouts], self.tokenizer.pad_token_id,
                                     self.cfg.algo.micro_batch_size)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        t0 = time.perf_counter()
        self.phases.reset()
        self.own_groups = set()
        device = next(self.model.parameters()).device
        reset_gpu_peak(device)
        ctx = StepContext(
            step=self.state.step + 1,
            rng=self.rng,
            teacher_sample=self.teacher_sample if self.teacher is not None else None,
            teacher_generate=self.teacher_generate if self.teacher is not None else None,
            student_logprobs=self.student_logprobs,
        )

        # step 1: new questions from the data stream (prompts over data.max_prompt_tokens skipped)
        new, data_metrics = self._draw_questions(cfg.algo.n_new)
        # step 2: the method picks the step's prompts (new + replay)
        prompts = self.method.select_prompts(new, ctx)
        # step 3: plain rollouts, graded
        t_roll = time.perf_counter()
        with self.phases("plain_rollout"):
            plain = self._rollout_groups(
                self.engine, [("plain", q, plain_prompt(q, cfg.data.closer)) for q in prompts], cfg.rollout.group_size
            )
        # step 4: extra prompts planned by the method (BCQ/NCQ/...; teacher rollouts and compressions time themselves)
        extras: list[ExtraPrompt] = self.method.extra_prompts(plain, ctx)
        # step 5: extra rollouts, each prompt its own group
        with self.phases("extra_rollout"):
            extra_groups = self._rollout_groups(
                self.engine, [(e.kind, e.question, e.text) for e in extras], cfg.rollout.group_size,
                metas=[e.meta for e in extras], prefixes=[e.prefix_ids for e in extras],
            )
        rollout_time = time.perf_counter() - t_roll
        groups = plain + extra_groups  # every group of the step, on every rank
        rollouts = [r for g in groups for r in g.rollouts]  # the step's rollouts in their global order
        # step 5b: the groups the update trains on (RL: all of them; Off-Distill's teacher rollouts time themselves)
        trained = self.method.train_groups(groups, ctx)
        n_trained = sum(len(g.rollouts) for g in trained)
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)  # [N] every sampled rollout
        gids = torch.tensor([r.group_id for r in rollouts], dtype=torch.long)  # [N]

        # steps 6-7: advantages (statistics over all ranks' rollouts), then I mini-batch updates
        t_upd = time.perf_counter()
        upd, _, _ = self.learn(trained, {g.id for g in trained if g.id in self.own_groups})
        update_time = time.perf_counter() - t_upd

        # step 8: the method observes the plain groups (buffer refresh); its metrics are in ctx.metrics
        self.method.observe(plain, groups, ctx)

        # step 9: sync weights, the step's metrics
        self._sync_engine()
        self.state.step += 1
        step_time = time.perf_counter() - t0
        gen_tokens = self.dist.sum([sum(len(r.completion.token_ids) for g in self.dist.mine(plain)
                                        + self.dist.mine(extra_groups) for r in g.rollouts)])[0]
        plain_rewards = [r.reward for g in plain for r in g.rollouts]
        metrics = {
            "train/reward_mean": float(rewards.mean()),
            "train/accuracy": 100.0 * sum(plain_rewards) / max(len(plain_rewards), 1),  # percent, like evals
            "train/hard_frac": sum(g.mean_reward < cfg.zppo.tau for g in plain) / max(len(plain), 1),
            "train/trivial_group_frac": trivial_group_fraction(rewards, gids),
            "train/groups": float(len(groups)),
            "train/rollouts": float(len(rollouts)),
            "train/trained_sequences": float(n_trained),
            "train/response_len": gen_tokens / max(len(rollouts), 1),
            "train/truncated_frac": sum(not r.completion.finished for r in rollouts) / max(len(rollouts), 1),
            **upd,
            **self.rewarder.metrics(rollouts),
            **data_metrics,
            "perf/step_time_s": step_time,
            "perf/rollout_time_s": rollout_time,
            "perf/update_time_s": update_time,
            "perf/rollout_tokens_per_s": gen_tokens / max(rollout_time, 1e-9),
            **self._phase_metrics(step_time, update_time, upd["perf/train_tokens"]),
            **memory_metrics(device),
            **ctx.metrics,
        }
        self.state.history.append({"step": self.state.step, **metrics})
        self.tracker.log_metrics(metrics, step=self.state.step)
        if self.dist.enabled:  # data cursor, buffer, RNG, group ids: the same on every rank, or stop
            self.dist.check_replicas(f"after step {self.state.step}", self.replicated_state())
        return metrics

    def _phase_metrics(self, step_time: float, update_time: float, train_tokens: float) -> dict[str, float]:
        """The step's wall time by phase: plain rollouts, teacher rollouts, compressions, extra (BCQ/NCQ) rollouts,
        update, and the rest (the method's planning and bookkeeping, advantages, weight sync); they add up to
        perf/step_time_s. perf/rollout_time_s (kept) spans plain rollouts to extra rollouts, the teacher included."""
        ph = {k: self.phases.seconds.get(k, 0.0)
              for k in ("plain_rollout", "teacher_rollout", "compression", "extra_rollout")}
        out = {f"perf/{k}_time_s": v for k, v in ph.items()}
        out["perf/other_time_s"] = max(step_time - update_time - sum(ph.values()), 0.0)
        out["perf/update_tokens_per_s"] = train_tokens / max(update_time, 1e-9)
        return out

    def _draw_questions(self, n: int) -> tuple[list[Question], dict[str, float]]:
        """Step 1: n new questions whose plain prompt fits `data.max_prompt_tokens`; data/filtered_questions."""
        limit, closer = self.cfg.data.max_prompt_tokens, self.cfg.data.closer
        if limit is None:
            return self.stream.next(n), {}
        # an image question's prompt counts its image tokens too (rendered once here, cached for its rollouts)
        new, skipped = draw_fitting(self.stream, n,
                                    lambda q: len(self.render.prompt(plain_prompt(q, closer), q.images).ids) <= limit)
        return new, {"data/filtered_questions": float(skipped)}

    def learn(self, groups: list[Group], mine: set[int]) -> tuple[dict[str, float], torch.Tensor, list[int]]:
        """Steps 6-7 on the step's `groups` (every rank's, in the step's order), this rank training on those whose
        id is in `mine`: advantages normalised over all ranks' rollouts, then the I mini-batch updates. Returns
        the update metrics, this rank's advantages [n] and their indices among the step's rollouts."""
        cfg = self.cfg
        rollouts = [r for g in groups for r in g.rollouts]  # global order
        positions = [i for i, r in enumerate(rollouts) if r.group_id in mine]  # this rank's rollouts
        local = [rollouts[i] for i in positions]  # whole (token ids, log-probs)
        rewards = torch.tensor([r.reward for r in local], dtype=torch.float32)  # [n]
        gids = torch.tensor([r.group_id for r in local], dtype=torch.long)  # [n]
        # step 6: once, before the updates
        adv = group_advantages(rewards, gids, mode=cfg.algo.adv_norm, eps=cfg.algo.adv_eps,
                               all_reduce=self.dist.sum_tensor if self.dist.enabled else None)  # [n]
        # step 7
        return self._update(local, adv, positions, len(rollouts)), adv, positions

    def _micro_batches(self, rollouts: list[Rollout], chunk: list[int]) -> list[list[int]]:
        """Split a mini-batch into micro-batches of similar length (BCQ/NCQ prompts are much longer than plain
        ones, and padding everything to the longest would multiply the work): sort by length, then cut before
        `micro_batch_size` sequences, before `micro_batch_tokens` padded tokens, and before the padded tokens
        would exceed PAD_SLACK x the real ones. With `share_prompts` (the forward runs a repeated prompt once,
        `models.logprobs`) the rows of one prompt are kept adjacent (a unit sorted by its prompt + longest
        completion, its rows by completion length) and start a new micro-batch rather than be split, so they land
        in one micro-batch where the limits allow, and a micro-batch costs U x its longest prompt + B x its longest
        completion (U distinct prompts, B rows; its real tokens count each prompt once); else B x (longest prompt
        + longest completion). The mini-batch's members never change, and neither does the gradient: each
        micro-batch's loss is normalised by the whole mini-batch's token count."""
        cfg = self.cfg.algo
        lens = {i: (len(rollouts[i].prompt_ids), len(rollouts[i].completion.token_ids)) for i in chunk}
        key: dict[int, Any] = {i: tuple(rollouts[i].prompt_ids) if self.share_prompts else i for i in chunk}
        units: dict[Any, list[int]] = {}
        for i in chunk:
            units.setdefault(key[i], []).append(i)
        ordered = sorted((sorted(u, key=lambda i: (lens[i][1], i)) for u in units.values()),
                         key=lambda u: (lens[u[0]][0] + max(lens[i][1] for i in u), u[0]))

        def fits(rows: list[int]) -> bool:
            P, T = max(lens[i][0] for i in rows), max(lens[i][1] for i in rows)
            prompts = {key[i]: lens[i][0] for i in rows}
            padded = P * len(prompts) + T * len(rows)
            real = sum(prompts.values()) + sum(lens[i][1] for i in rows)
            return (len(rows) <= cfg.micro_batch_size and padded <= cfg.micro_batch_tokens
                    and padded <= PAD_SLACK * real)

        out: list[list[int]] = []
        cur: list[int] = []
        for unit in ordered:
            if cur and not fits(cur + unit) and fits(unit):  # a prompt's rows start a micro-batch of their own
                out.append(cur)
                cur = []
            for i in unit:  # (a unit too big for one micro-batch is cut where it must)
                if cur and not fits(cur + [i]):
                    out.append(cur)
                    cur = []
                cur.append(i)
        if cur:
            out.append(cur)
        return out

    def _forward(self, mb: list[Rollout], keep_logits: bool = False):
        """The training forward in the compute dtype: logprobs [b, T] (grad), mask [b, T], entropy [b, T], and the
        logits [b, T, V] (grad) with `keep_logits` (else None). An empty micro-batch (a rank with fewer than the
        others) runs a one-token forward and returns Nones: FSDP2's forwards are collective, so every rank runs as
        many."""
        device = next(self.model.parameters()).device
        with self.precision.autocast(device):
            if not mb:
                self._idle_forward()
                return None, None, None, None
            return completion_forward(
                self.model,
                [r.prompt_ids for r in mb],
                [r.completion.token_ids for r in mb],
                self.tokenizer.pad_token_id,
                with_entropy=True,
                keep_logits=keep_logits,
                mm=[r.prompt_mm for r in mb] if any(r.prompt_mm for r in mb) else None,  # their images
                share_prompts=self.share_prompts,
                fixed_calls=self.fixed_calls,
            )  # [b, T], [b, T], [b, T], [b, T, V] or None

    def _idle_forward(self):
        """The forward of a rank with no rollouts in a micro-batch (FSDP2's forwards are collective): one pad token,
        the calls every micro-batch makes (the shared path's two with `fixed_calls`, else one). Log-probs [1, 1]."""
        pad = self.tokenizer.pad_token_id
        if self.fixed_calls:
            return completion_forward(self.model, [[pad]], [[pad]], pad, fixed_calls=True)[0]
        device = next(self.model.parameters()).device
        out = self.model(input_ids=torch.tensor([[pad]], device=device), logits_to_keep=1)
        return out.logits[:, -1:].float()

    def _update(self, rollouts: list[Rollout], adv: torch.Tensor, positions: list[int] | None = None,
                n_global: int | None = None) -> dict[str, float]:
        """Step 7 on this rank's `rollouts` (global indices `positions` among the step's `n_global`; default: all
        of them). The global rollout list is shuffled with the run's RNG and cut into I mini-batches exactly as one
        rank would; each rank trains on its members of each, normalised by the mini-batch's global token count.
        train/ratio_mean, train/approx_kl (and the clip fractions, entropy) are token-weighted means over all I
        mini-batches and all ranks; the per-mini-batch and mismatch metrics are `StepOldLogprobs.metrics`."""
        cfg, d = self.cfg, self.dist
        self.model.train()
        n_global = len(rollouts) if n_global is None else n_global
        order = list(range(n_global))
        self.rng.shuffle(order)
        objective = self.method.objective
        distill = objective.needs_teacher_logits  # a JSD to the teacher: no π_old, no ratio
        I = objective.updates_per_step or cfg.algo.updates_per_step
        chunks = [c for c in (order[i * n_global // I : (i + 1) * n_global // I] for i in range(I)) if c]
        if positions is not None:
            where = {p: i for i, p in enumerate(positions)}
            chunks = [[where[p] for p in c if p in where] for c in chunks]  # this rank's members, local indices
        plans = [self._micro_batches(rollouts, c) for c in chunks]
        # global token count per mini-batch; the same number of micro-batches on every rank (forwards are collective)
        tokens = d.sum([float(sum(len(rollouts[i].completion.token_ids) for i in c)) for c in chunks])
        plans = [p + [[]] * (int(n) - len(p)) for p, n in zip(plans, d.max([float(len(p)) for p in plans]))]
        # π_old: the engine's, or the trainer's (a no-grad forward now, before the first update)
        olds = None if distill else pi_old.StepOldLogprobs(
            cfg.algo.old_logprobs, cfg.algo.tis_cap, lambda mb: self._forward(mb)[:3], rollouts,
            [idx for mbs in plans for idx in mbs])
        sums: dict[str, float] = {}  # stat name -> token-weighted sum (the objective's stats, entropy)
        total_tokens = 0.0
        grad_norms = []
        losses = []
        for k_mb, (micro_batches, n_tokens) in enumerate(zip(plans, tokens)):
            self.optimizer.zero_grad(set_to_none=True)
            loss_total = 0.0
            mb_sums = [0.0, 0.0, 0.0]  # tokens, ratio sum, k3 sum of this rank's part of the mini-batch
            for j, idx in enumerate(micro_batches):
                gradient_sync(self.model, j == len(micro_batches) - 1)  # reduce-scatter once per mini-batch
                if not idx:  # fewer micro-batches here than on another rank: forwards are collective
                    if self.fixed_calls:
                        with self.precision.autocast(next(self.model.parameters()).device):
                            lp = self._idle_forward()  # [1, 1]
                        (lp.sum() * 0.0).backward()
                    else:
                        idle_backward(self.model, self.tokenizer.pad_token_id)
                    continue
                mb = [rollouts[i] for i in idx]
                logprobs, mask, entropy, logits = self._forward(mb, keep_logits=distill)  # [b, T] x3, [b, T, V]
                teacher_logits = teacher_completion_logits(self.teacher_model, mb, self.tokenizer.pad_token_id) \
                    if distill else None  # [b, T, V]
                old, extra = olds.old(idx, mb, logprobs, mask, first=k_mb == 0) if olds is not None \
                    else (logprobs.detach(), {})  # [b, T], {is_weights: [b, T]}
                a = adv[idx].to(logprobs.device)  # [b]
                # FSDP2 averages gradients over the ranks: the world-size factor makes them sums again
                loss, stats = objective.loss(logprobs, old, a, mask, num_tokens=n_tokens / d.world, logits=logits,
                                             teacher_logits=teacher_logits, **extra)
                loss.backward()
                loss_total += float(loss.detach())
                tok = float(mask.sum())
                total_tokens += tok
                m = {**stats.metrics(), "train/entropy": float((entropy * mask).sum()) / max(tok, 1.0)}
                if not distill:
                    mb_sums = [mb_sums[0] + tok, mb_sums[1] + m["train/ratio_mean"] * tok,
                               mb_sums[2] + m["train/approx_kl"] * tok]
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v * tok
            if olds is not None:
                olds.end_mini_batch(*mb_sums)
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)  # global norm, fp32 grads
            grad_norms.append(local_value(gn))
            self.optimizer.step()
            losses.append(loss_total)
        self.optimizer.zero_grad(set_to_none=True)
        # the stat names every rank saw (a rank that trained nothing has none), in one order, before summing
        keys = list(dict.fromkeys(k for part in d.gather_objects(list(sums)) for k in part))
        gathered = d.sum([sums.get(k, 0.0) for k in keys] + [total_tokens] + losses)  # over the ranks
        total_tokens = gathered[len(keys)]
        out = {k: v / max(total_tokens, 1.0) for k, v in zip(keys, gathered)}  # token-weighted means
        losses = [v / d.world for v in gathered[len(keys) + 1 :]]
        out["train/loss"] = sum(losses) / max(len(losses), 1)
        out["train/grad_norm"] = sum(grad_norms) / max(len(grad_norms), 1)
        out["perf/train_tokens"] = total_tokens
        if olds is not None:
            olds.reduce(d)
            out.update(olds.metrics())
        return out

    # ------------------------------------------------------------------ the step tail (steps 10-13)
    def periodic_eval(self) -> dict[str, float]:
        """The configured eval suites on the current policy, logged as eval/<family>/* at this step."""
        from zppo_core.suites.evaluate import evaluate_suites

        ev = self.cfg.eval
        judge = ShardedEngine(self.teacher, self.dist) if self.teacher is not None else None
        report = evaluate_suites(
            ShardedEngine(self.engine, self.dist), self.render, ev.suites, ev,
            train_families=list(self.cfg.data.families), closer=self.cfg.data.closer, judge=judge,
            judge_render=self.renders["judge"], scale=self.cfg.scale,
        )
        metrics = {**report.metrics(), **eval_uncertainty(report.results)}  # each score with its n and se
        self.tracker.log_metrics(metrics, step=self.state.step)
        self.state.history[-1].update(metrics)
        if self.state.step == self.cfg.run.steps:  # the final eval's verdicts: a table (paired comparisons of runs)
            self.tracker.log_table(sample_rows(report.results, per_benchmark=None),
                                   f"eval/samples_step_{self.state.step:06d}.json")
        if report.skipped and self.state.step == self.cfg.eval.every:  # say it once, on the first eval
            self.tracker.log_text("\n".join(report.skipped.values()), "eval/skipped.txt")
        return metrics

    def final_eval(self) -> dict[str, float]:
        """Held-out accuracy (in-distribution families' eval split) at the end of a tiny run."""
        from zppo_core.suites.heldout import evaluate_questions, heldout_questions

        qs = heldout_questions(list(self.cfg.data.families), self.cfg.run.final_eval_per_level)
        res = evaluate_questions(ShardedEngine(self.engine, self.dist), self.render, qs, self.cfg.data.closer,
                                 max_new_tokens=self.cfg.rollout.max_new_tokens)
        metrics = {"eval/heldout/accuracy": 100.0 * res.accuracy,
                   "eval_n/heldout/accuracy": float(res.n_questions),
                   "eval_se/heldout/accuracy": stderr([100.0 * a for a in res.per_question])}
        metrics.update({f"eval/heldout/level_{k}": 100.0 * v for k, v in res.by_level.items()})
        metrics.update({f"eval/heldout/{k}": 100.0 * v for k, v in res.by_family.items()})
        self.tracker.log_metrics(metrics, step=self.state.step)
        self.state.history[-1].update(metrics)
        return metrics

    def _eval_step(self) -> dict[str, float]:
        """Step 10: the eval suites every `eval.every` steps and after the last step (a run's end point is always
        evaluated); the held-out eval after the last step (synthetic data only), so the last metrics line and the
        last checkpoint carry eval/heldout/*."""
        cfg, step, out = self.cfg, self.state.step, {}
        t0 = time.perf_counter()
        if cfg.eval.every and cfg.eval.suites and (step % cfg.eval.every == 0 or step == cfg.run.steps):
            out.update(self.periodic_eval())
        if step == cfg.run.steps and cfg.run.final_eval_per_level and not cfg.data.path:
            out.update(self.final_eval())
        if out:
            out["perf/eval_time_s"] = time.perf_counter() - t0
            self.tracker.log_metrics({"perf/eval_time_s": out["perf/eval_time_s"]}, step=step)
            self.state.history[-1]["perf/eval_time_s"] = out["perf/eval_time_s"]
        return out

    def _log_step(self, metrics: dict[str, float], stop_after: int | None) -> bool:
        """Step 11: the step's line in metrics.jsonl, then `on_step` (rank 0). True when the run should stop now:
        `on_step` asked for it (e.g. a pruned sweep trial), a stop was requested on any rank (a Slurm time limit or
        preemption: `self.preempted`; a local signal: `self.interrupted`), or `stop_after` steps are done
        (interruption tests). All ranks agree."""
        asked = False
        if self.dist.is_main:
            self.run_dir.append_metrics(self.state.step, metrics)
            asked = bool(self.on_step(self.state.step, metrics)) if self.on_step is not None else False
        signalled = self.stop_requested is not None and bool(self.stop_requested())
        asked, requested, signalled = self.dist.any(asked, stop_requested() is not None, signalled)
        unfinished = self.state.step < self.cfg.run.steps
        self.stopped_early = asked and unfinished
        self.preempted = requested and unfinished
        self.interrupted = not asked and signalled and unfinished
        return asked or requested or self.interrupted or (stop_after is not None and self.state.step >= stop_after)

    def _checkpoint_step(self, stopping: bool) -> None:
        """Step 12: the method's reports and a checkpoint every `run.checkpoint_every` steps, after
        `run.checkpoint_minutes` of wall clock (rank 0's clock), after the last step, and before stopping early."""
        cfg, step = self.cfg, self.state.step
        minutes_due = (cfg.run.checkpoint_minutes is not None and self.dist.is_main
                       and time.monotonic() - self._last_checkpoint >= 60 * cfg.run.checkpoint_minutes)
        if self.dist.enabled and cfg.run.checkpoint_minutes is not None:
            [minutes_due] = self.dist.any(minutes_due)
        if stopping or minutes_due or step % cfg.run.checkpoint_every == 0 or step == cfg.run.steps:
            if self.dist.is_main:  # the method's state is replicated: rank 0's reports are the run's
                self.method.report(self.tracker, self.run_dir.reports, step)
            self.save_checkpoint()
            self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ run
    def run(self, stop_after: int | None = None) -> TrainState:
        """Train until `run.steps`, until `stop_after` completed steps (used to test interruption), until
        `on_step` returns True (stopped early, e.g. a pruned sweep trial), or until a stop is requested
        (`zppo_core.dist.request_stop`: checkpointed, `self.preempted`). Sets `self.stopped_early`."""
        self.stopped_early = self.preempted = False
        self._last_checkpoint = time.monotonic()
        while self.state.step < self.cfg.run.steps:
            metrics = self.train_step()  # steps 1-9
            # step 10: evaluate
            metrics.update(self._eval_step())
            # step 11: log (metrics.jsonl, on_step)
            stop = self._log_step(metrics, stop_after)
            # step 12: checkpoint
            self._checkpoint_step(stopping=stop)
            # step 13: stop
            if stop:
                break
        return self.state
