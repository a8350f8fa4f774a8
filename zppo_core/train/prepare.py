"""`prepare`: SFT that gives the tiny student and the tiny teacher their starting skills (tiny scale only).

A pretrained student "knows the format and solves easy questions"; a tiny model built from config knows
nothing, so `prepare` plays pretraining: supervised fine-tuning on correct responses
(`<think>scratchpad</think>\\boxed{answer}`) of the in-distribution task families. The student sees mostly easy
levels and is trained briefly, so after it a substantial share of training questions is *hard* for it (mean
accuracy < 0.5 over G_S samples); the teacher is larger, sees all levels and trains longer (≥ 90 % accuracy
is the target). Held-out (OOD) families are never used here.

`model.student=tiny-vl` (the vision-language pair) is built by `prepare_vl.py` through the same cache.

How it is fast (PREPARE_VERSION 2; measured with bench/prepare_time.py on 2 shared cores: 0.55x version 1's CPU
seconds, both processes together, and 0.42x its wall time, at the same skills):
each SFT step's sequences are packed into rows with a block-diagonal causal mask (`pack_rows`: the padded batch's
loss and gradient, without computing the padding that candidate prompts made 3x the mean); the matmuls run in
bf16 autocast where the CPU has native bf16 (`sft_precision`); the student and the teacher train concurrently, one
thread each; the teacher trains 450 steps instead of 550 (its accuracy is unchanged); the accuracy measurement
samples with the engine's decode loop. `prepare.sft_attention: eager` (the tiny preset's) replaces sdpa's CPU
kernel, whose bf16 backward with the packed mask took ~half of every step, by matmul + softmax: 1.4-2x faster
bf16 steps (other bits, so another cache key; at "sdpa" the key and the weights are version 2's). The tiny preset
also trains its teacher 150 + 220 steps instead of 250 + 200 (`tiny-hard` pins both to the old recipe).

Prepared models are cached under `prepare.cache_dir/<key>/{student,teacher}`, keyed by a hash of everything
that shapes them (architectures, SFT settings, families, closer, tokenizer, SFT precision, this module's version),
written atomically (temp dir + rename) under a file lock so concurrent runs (sweeps) prepare once. A prepare is
bit-for-bit reproducible on one machine kind (one torch thread per model; `report.json` holds each model's
weights sha256); across CPU kinds the BLAS kernels, and so the last bits, may differ.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from zppo_core.algo.reformulate import plain_prompt
from zppo_core.config.schema import ZPPOConfig
from zppo_core.models.kv import attention_mask
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model
from zppo_core.tasks import QuestionStream, get_family
from zppo_core.tasks.synthetic import make_beliefs

PREPARE_VERSION = 2  # 2: packed SFT rows, student and teacher trained concurrently
PREPARE_SEED = 1234  # prepared models are shared by all runs of a config, whatever the run's seed


def sft_precision() -> str:
    """"bf16" (autocast: bf16 matmuls, fp32 weights, optimizer and loss) where the CPU multiplies bf16 natively
    (AVX512-BF16 or AMX: 2-3x the fp32 matmul rate of MKL there), else "fp32" (emulated bf16 would be slower).
    The weights then depend on the machine kind, so the choice is part of the cache key."""
    native = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return "bf16" if any(getattr(torch.cpu, f, lambda: False)() for f in native) else "fp32"


# prepare settings added after PREPARE_VERSION 2, with the value that reproduces version 2: at that value they stay
# out of the cache key, so models prepared before the setting existed keep their key (and their cache).
KEY_NEUTRAL = {"sft_attention": "sdpa"}


def prepare_key_fields(cfg: ZPPOConfig) -> dict[str, Any]:
    """cfg.prepare as it enters the cache key: everything but cache_dir, and KEY_NEUTRAL settings only when set
    to another value."""
    fields = cfg.prepare.model_dump(exclude={"cache_dir"})
    return {k: v for k, v in fields.items() if k not in KEY_NEUTRAL or v != KEY_NEUTRAL[k]}


def cache_key(cfg: ZPPOConfig) -> str:
    if cfg.model.student == "tiny-vl":
        from zppo_core.train.prepare_vl import cache_key as vl_key

        return vl_key(cfg)
    tok = build_char_tokenizer()
    blob = {
        "v": PREPARE_VERSION,
        "precision": sft_precision(),
        "student": cfg.model.tiny_student.model_dump(),
        "teacher": cfg.model.tiny_teacher.model_dump(),
        "prepare": prepare_key_fields(cfg),
        "families": cfg.data.families,
        "closer": cfg.data.closer,
        "levels": cfg.data.levels,
        "template": cfg.zppo.template,
        "vocab": sorted(tok.get_vocab().items()),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_dir(cfg: ZPPOConfig) -> Path:
    return Path(os.path.expanduser(cfg.prepare.cache_dir)) / cache_key(cfg)


def is_prepared(cfg: ZPPOConfig) -> bool:
    return (cache_dir(cfg) / "report.json").is_file()


def ensure_prepared(cfg: ZPPOConfig, log: Callable[[str], None] = lambda s: None) -> Path:
    """Return the cached prepared directory (student/, teacher/, report.json), preparing it first if needed."""
    final = cache_dir(cfg)
    if (final / "report.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "report.json").is_file():  # someone else prepared it while we waited
            return final
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            if cfg.model.student == "tiny-vl":  # the vision-language pair: train/prepare_vl.py
                from zppo_core.train.prepare_vl import prepare_into as build
            else:
                build = _prepare_into
            report = build(cfg, tmp, log)
            (tmp / "report.json").write_text(json.dumps(report, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def sft_examples(
    cfg: ZPPOConfig,
    levels: dict[int, float] | None,
    seed: int,
    noise: dict[int, float] | None = None,
    candidate_share: float = 0.0,
    candidate_noise_scale: float = 0.0,
    beliefs: dict[tuple[int, int], int] | None = None,
    belief_rate: float = 0.0,
):
    """Endless (prompt text, response text) pairs over the in-distribution families.

    With `noise`, a share noise[level] of plain targets is a plausible wrong solution (a random slip); with
    `beliefs`, families that support it write the believed wrong result at those steps with `belief_rate`
    (misconceptions). With `candidate_share`, that share of items is shown as a BCQ prompt (one correct + one
    wrong candidate, random order) or an NCQ prompt (1-3 wrong candidates); their targets are the correct
    solution, noised at candidate_noise_scale × (noise, belief_rate) — a student that follows references.
    """
    from zppo_core.algo.reformulate import build_bcq, build_ncq, load_template

    template = load_template(cfg.zppo.template, "full")
    rng = random.Random(seed)
    stream = QuestionStream(cfg.data.families, levels, seed)
    noise = noise or {}
    while True:
        for q in stream.next(256):
            fam = get_family(q.family)
            p_wrong, p_belief = noise.get(q.level, 0.0), belief_rate
            kind = "plain"
            if candidate_share and rng.random() < candidate_share:
                kind = "bcq" if rng.random() < 0.5 else "ncq"
                p_wrong *= candidate_noise_scale
                p_belief *= candidate_noise_scale
            if rng.random() < p_wrong:
                target = fam.wrong_solution(q, rng)
            elif beliefs and hasattr(fam, "believed_solution"):
                target = fam.believed_solution(q, beliefs, p_belief, rng)
            else:
                target = fam.solution(q)
            if kind == "plain":
                prompt = plain_prompt(q, cfg.data.closer)
            elif kind == "bcq":
                prompt, _ = build_bcq(q.prompt, fam.solution(q), fam.wrong_solution(q, rng), rng, cfg.data.closer,
                                      template)
            else:
                wrong = [fam.wrong_solution(q, rng) for _ in range(rng.randint(1, 3))]
                prompt, _ = build_ncq(q.prompt, wrong, cfg.data.closer, template)
            yield prompt, target


def encode_pairs(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(prompt text, response text) pairs -> (prompt ids through the chat template, response ids + EOS).

    The same ids as `render(tokenizer, prompt)` and `tokenizer(response)` one by one; the batch is templated in one
    call and encoded by the fast tokenizer's backend directly (a third of the per-item cost)."""
    chats = tokenizer.apply_chat_template([[{"role": "user", "content": p}] for p, _ in pairs],
                                          add_generation_prompt=True, tokenize=False)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        enc = lambda text: backend.encode(text, add_special_tokens=False).ids  # noqa: E731
    else:
        enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tokenizer.eos_token_id
    return [(enc(c), enc(r) + [eos]) for c, (_, r) in zip(chats, pairs)]


def pack_rows(seqs: list[tuple[list[int], list[int]]], pad_id: int, row_len: int | None = None):
    """Pack (prompt ids, response ids) sequences into rows of at most `row_len` tokens (default: the longest
    sequence, so short sequences share rows and no row's attention grows beyond the padded batch's), first-fit
    decreasing, each sequence attending only to itself.

    Returns input_ids [R, S], position_ids [R, S] (restarting at 0 for every sequence), a boolean block-diagonal
    causal attention mask [R, 1, S, S] and targets [R, S] (the next token at response-predicting positions, -100
    elsewhere), with S the longest row. Padding at a row's end is a segment of its own, so no real token attends
    to it and no attention row is empty."""
    order = sorted(range(len(seqs)), key=lambda i: (-(len(seqs[i][0]) + len(seqs[i][1])), i))
    row_len = max(row_len or 0, len(seqs[order[0]][0]) + len(seqs[order[0]][1]))
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in order:
        n = len(seqs[i][0]) + len(seqs[i][1])
        for r in range(len(rows)):
            if fill[r] + n <= row_len:
                rows[r].append(i)
                fill[r] += n
                break
        else:
            rows.append([i])
            fill.append(n)
    R, S = len(rows), max(fill)
    ids = torch.full((R, S), pad_id, dtype=torch.long)  # [R, S]
    pos = torch.zeros((R, S), dtype=torch.long)  # [R, S]
    seg = torch.full((R, S), -1, dtype=torch.long)  # [R, S] segment (sequence) id within the row; -1: padding
    targets = torch.full((R, S), -100, dtype=torch.long)  # [R, S]
    for r, members in enumerate(rows):
        o = 0
        for k, i in enumerate(members):
            p, c = seqs[i]
            n = len(p) + len(c)
            ids[r, o : o + n] = torch.tensor(p + c, dtype=torch.long)
            pos[r, o : o + n] = torch.arange(n)
            seg[r, o : o + n] = k
            targets[r, o + len(p) - 1 : o + n - 1] = torch.tensor(c, dtype=torch.long)  # position t predicts t+1
            o += n
        pos[r, o:] = torch.arange(S - o)
    causal = torch.ones((S, S), dtype=torch.bool).tril()  # [S, S]
    mask = (seg[:, :, None] == seg[:, None, :]) & causal  # [R, S, S] same sequence (or both padding), causal
    return ids, pos, mask[:, None], targets


def sft(
    model,
    tokenizer,
    examples,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    log: Callable[[str], None] = lambda s: None,
    name: str = "model",
    row_len: int | None = None,
    bf16: bool = False,
) -> list[float]:
    """Cross-entropy on response tokens only (prompt tokens masked), AdamW, linear warmup + cosine decay.

    Each step's `batch_size` sequences are packed into rows (`pack_rows`): the loss and the
    gradient are those of the padded batch (every sequence sees only itself), without computing padding. `bf16`:
    the forward runs under bf16 autocast (weights, gradients, AdamW and the loss stay fp32). A model set to eager
    attention (`prepare.sft_attention`) gets the mask as 0 / -max scores instead of booleans."""
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))),
    )
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        seqs = encode_pairs(tokenizer, [next(examples) for _ in range(batch_size)])
        ids, pos, mask, targets = pack_rows(seqs, tokenizer.pad_token_id, row_len)  # [R, S] x3, [R, 1, S, S]
        mask = attention_mask(model, mask)  # [R, 1, S, S] (eager: the scores it adds)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits  # [R, S, V]
        sel = targets >= 0  # [R, S] response-predicting positions
        loss = F.cross_entropy(logits[sel].float(), targets[sel])  # mean over the batch's response tokens
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"prepare {name}: step {step + 1}/{steps} loss {sum(losses[-100:]) / len(losses[-100:]):.3f} "
                f"({time.perf_counter() - t0:.0f}s)")
    return losses


@torch.no_grad()
def measure(model, tokenizer, cfg: ZPPOConfig, n_questions: int, seed: int, samples: int = 8) -> dict[str, Any]:
    """Mean accuracy over `samples` training-temperature rollouts per training question, and the share of hard
    questions (mean accuracy < 0.5)."""
    from zppo_core.suites.heldout import evaluate_questions
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.models.load import render

    qs = QuestionStream(cfg.data.families, cfg.data.levels, seed).next(n_questions)
    engine = TransformersEngine(model, tokenizer, batch_size=cfg.rollout.batch_size)
    res = evaluate_questions(engine, lambda t: render(tokenizer, t), qs, cfg.data.closer, samples=samples,
                             temperature=1.0, top_p=1.0, max_new_tokens=cfg.rollout.max_new_tokens)
    return {
        "accuracy": res.accuracy,
        "hard_share": sum(a < 0.5 for a in res.per_question) / len(res.per_question),
        "accuracy_by_level": res.by_level,
        "n_questions": n_questions,
        "samples": samples,
    }


def _phases(cfg: ZPPOConfig, who: str, seed: int) -> list[tuple[int, Any, float, int]]:
    """(steps, example stream, peak lr, warmup) per SFT phase: the one-step skill first, then the level mixture."""
    p = cfg.prepare
    warm_levels = {min(lv for f in cfg.data.families for lv in get_family(f).levels): 1.0}
    if who == "student":
        mixture = sft_examples(cfg, p.student_levels, seed + 1, p.student_noise, p.candidate_prompt_share,
                               p.candidate_noise_scale, make_beliefs(p.misconceptions, seed), p.misconception_rate)
        steps = (p.student_warm_steps, p.student_steps)
    else:
        mixture = sft_examples(cfg, p.teacher_levels, seed + 1)
        steps = (p.teacher_warm_steps, p.teacher_steps)
    return [(steps[0], sft_examples(cfg, warm_levels, seed), p.lr, p.warmup_steps),
            (steps[1], mixture, p.lr * 0.5, 0)]


def prepare_one(cfg: ZPPOConfig, who: str, seed: int, out: Path, log) -> dict[str, Any]:
    """Build, SFT, measure and save one model ("student" or "teacher") into out/<who>, on one torch thread (the
    thread count is restored); returns its report entry."""
    spec = cfg.model.tiny_student if who == "student" else cfg.model.tiny_teacher
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(spec, tokenizer, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        losses: list[float] = []
        phases = _phases(cfg, who, seed)
        sampling_attention = model.config._attn_implementation
        if cfg.prepare.sft_attention != sampling_attention:
            model.set_attn_implementation(cfg.prepare.sft_attention)
        for i, (steps, examples, lr, warmup) in enumerate(phases):
            losses += sft(model, tokenizer, examples, steps, cfg.prepare.batch_size, lr, warmup, log,
                          f"{who} phase {i + 1}", bf16=sft_precision() == "bf16")
        if model.config._attn_implementation != sampling_attention:
            model.set_attn_implementation(sampling_attention)  # the report samples as runs do
        sft_seconds = time.perf_counter() - t0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            stats = measure(model, tokenizer, cfg, n_questions=128, seed=seed + 7)
    finally:
        torch.set_num_threads(threads)
    save_model(model, tokenizer, out / who)
    log(f"prepare {who}: accuracy {100 * stats['accuracy']:.0f}%, hard share {stats['hard_share']:.2f} "
        f"({sft_seconds:.0f}s SFT)")
    return {"params": sum(t.numel() for t in model.parameters()), "steps": sum(s for s, *_ in phases),
            "final_loss": losses[-1] if losses else None, "sft_seconds": round(sft_seconds, 1), **stats,
            "weights_sha256": weights_sha256(model),
            # CPU seconds of the process that prepared it, from its start (imports included): the two processes run
            # side by side, so on two idle cores the busier one's is about prepare's wall time
            "process_cpu_seconds": round(time.process_time(), 1)}


def weights_sha256(model) -> str:
    """Hash of the weights (names, shapes, dtypes and bytes, in state-dict order): bit-for-bit identity."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _prepare_into(cfg: ZPPOConfig, out: Path, log) -> dict[str, Any]:
    """The student is prepared in a worker process (`python -m zppo_core.train.prepare JOB`) while this process
    prepares the teacher: two cores busy, one torch thread each. Processes, not threads: the tiny models' many
    small ops would make two threads wait on each other's GIL, badly so on a loaded machine."""
    import subprocess
    import threading

    from zppo_core.config import dump_config

    rng = random.Random(PREPARE_SEED)
    seeds = {"student": rng.randrange(2**31), "teacher": rng.randrange(2**31)}
    report: dict[str, Any] = {"key": cache_key(cfg), "version": PREPARE_VERSION, "precision": sft_precision(),
                              "config": cfg.prepare.model_dump()}
    work = out / ".worker"
    work.mkdir()
    (work / "config.yaml").write_text(dump_config(cfg))
    job = {"config": str(work / "config.yaml"), "who": "student", "seed": seeds["student"], "out": str(out),
           "result": str(work / "student.json")}
    (work / "job.json").write_text(json.dumps(job))
    root = str(Path(__file__).resolve().parents[2])  # the zppo_core this process runs, first on the worker's path
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    with open(work / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "zppo_core.train.prepare", str(work / "job.json")],
                                stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        relay = threading.Thread(target=lambda: [log(line.rstrip("\n")) for line in proc.stdout], daemon=True)
        relay.start()
        try:
            report["teacher"] = prepare_one(cfg, "teacher", seeds["teacher"], out, log)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        relay.join()
    if proc.returncode != 0:
        tail = (work / "stderr.txt").read_text().strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"prepare worker for the student failed (exit {proc.returncode}): {tail[0]}")
    report["student"] = json.loads((work / "student.json").read_text())
    report["sft_wall_seconds"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(work)
    return {k: report[k] for k in ("key", "version", "precision", "config", "student", "teacher", "sft_wall_seconds")}


def _worker(job_file: str) -> None:
    from zppo_core.config import config_from_file

    job = json.loads(Path(job_file).read_text())
    result = prepare_one(config_from_file(job["config"]), job["who"], job["seed"], Path(job["out"]),
                         lambda s: print(s, flush=True))
    Path(job["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    _worker(sys.argv[1])
