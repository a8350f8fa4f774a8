"""Seed-level statistics and the comparison table on a fixed synthetic set of per-seed results, hand-checked:
t intervals, paired differences vs GRPO, ablation rows, curve areas, buffer fates, unfinished runs left out."""

from __future__ import annotations

import json
import math

import pytest

from zppo_core.run_dir import RunDir
from zppo_core.tracking.comparison import RunRecord, build, markdown
from zppo_core.tracking.seeds import curve_area, paired, summarize, t_quantile


def test_t_quantiles_are_the_textbook_ones():
    assert t_quantile(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(3) == pytest.approx(3.1824, abs=1e-4)
    assert t_quantile(1000) == pytest.approx(1.9623, abs=1e-4)


def test_summary_by_hand():
    # 40, 42, 44, 46: mean 43, sd = sqrt((9+1+1+9)/3) = 2.5820, se = 1.2910, half = 3.1824 * 1.2910 = 4.1085
    s = summarize([40, 42, 44, 46])
    assert (s.n, s.mean) == (4, 43.0)
    assert s.sd == pytest.approx(math.sqrt(20 / 3), abs=1e-12)
    assert s.half_width == pytest.approx(3.18245 * math.sqrt(20 / 3) / 2, abs=1e-4)
    assert s.lo == pytest.approx(43 - 4.1085, abs=1e-3) and s.hi == pytest.approx(43 + 4.1085, abs=1e-3)
    assert s.fmt() == "43.0 ± 4.1"
    one = summarize([7.0])
    assert (one.n, one.mean, one.lo, one.half_width) == (1, 7.0, None, None) and one.fmt() == "7.0"
    assert summarize([]).fmt() == "–"


def test_paired_differences_use_common_seeds_only():
    a = {0: 10.0, 1: 20.0, 2: 30.0, 3: 99.0}
    b = {0: 12.0, 1: 21.0, 2: 33.0}  # seed 3 missing: left out of the pairs
    d = paired(a, b)  # differences 2, 1, 3: mean 2, sd 1, half = 4.3027 * 1 / sqrt(3) = 2.4841
    assert (d.n, d.mean, d.sd) == (3, 2.0, 1.0)
    assert d.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-5)


def test_curve_area_is_the_trapezoid_mean():
    assert curve_area([(20, 10.0), (40, 30.0), (60, 30.0)]) == pytest.approx((20 * 20 + 20 * 30) / 40)  # 25
    assert curve_area([(5, 3.0)]) == 3.0 and curve_area([]) is None


# per-seed held-out end values, hand-chosen: (grpo, zppo, grpo_buffer) for seeds 0..3
END = {"grpo": [40, 42, 44, 46], "zppo": [45, 46, 48, 53], "grpo_buffer": [44, 44, 46, 50]}


def _write_runs(tmp_path, steps=4):
    records = []
    for m, ends in END.items():
        for seed, end in enumerate(ends):
            rd = RunDir(tmp_path / f"{m}-s{seed}")
            rd.path.mkdir()
            for step in range(1, steps + 1):
                # the loop's units: hard share a fraction, accuracy a percent
                row = {"train/hard_frac": 0.5, "train/accuracy": 25.0, "perf/step_time_s": 2.0, "train/rollouts": 128.0}
                if step in (2, 4):  # eval every 2 steps: AUC over steps 2 and 4 = mean of the two values
                    row.update({"eval/tiny/avg": end - 10.0 if step == 2 else float(end),
                                "eval/tiny-ood/avg": 10.0 + seed})
                if m == "zppo":
                    row.update({"zppo/bcq_accuracy": 50.0, "zppo/bcq_match_positive": 0.75, "zppo/bcq_instances": 2.0,
                                "zppo/ncq_instances": 2.0})
                rd.append_metrics(step, row)
            if m != "grpo":
                (rd.reports / "graduation").mkdir(parents=True)
                table = [{"entry_bin": 0.0, "fate": "graduated"}, {"entry_bin": 0.0, "fate": "evicted"},
                         {"entry_bin": 12.5, "fate": "buffered"}]
                (rd.reports / "graduation" / "table.json").write_text(json.dumps(table))
            records.append(RunRecord.read(m, seed, rd.path, steps, wall_s=60.0 * (seed + 1)))
    return records


def test_table_on_fixed_per_seed_results(tmp_path):
    records = _write_runs(tmp_path)
    # an unfinished run (stopped at step 3) of a fourth method: listed as missing, never counted
    rd = RunDir(tmp_path / "grpo_both-s0")
    rd.path.mkdir()
    for step in (1, 2, 3):
        rd.append_metrics(step, {"eval/tiny/avg": 99.0})
    records.append(RunRecord.read("grpo_both", 0, rd.path, 4))
    labels = {"grpo": "GRPO", "zppo": "ZPPO", "grpo_buffer": "GRPO†", "grpo_both": "GRPO+Both"}
    res = build(records, ["grpo", "grpo_buffer", "zppo", "grpo_both"], [0, 1, 2, 3], labels)
    assert res["suites"] == ["tiny", "tiny-ood"]
    grpo = res["methods"]["grpo"]["summary"]
    assert grpo["tiny/end"]["mean"] == 43.0 and grpo["tiny/end"]["half_width"] == pytest.approx(4.1085, abs=1e-3)
    assert grpo["tiny/auc"]["mean"] == 38.0  # (end - 10 + end) / 2 averaged over seeds
    assert grpo["tiny-ood/end"]["mean"] == 11.5  # 10, 11, 12, 13
    z = res["methods"]["zppo"]
    # zppo − grpo per seed: 5, 4, 4, 7 -> mean 5, sd = sqrt((0+1+1+4)/3) = sqrt(2), half = 3.1824 * sqrt(2) / 2
    assert z["vs_reference"]["tiny/end"]["mean"] == 5.0
    assert z["vs_reference"]["tiny/end"]["half_width"] == pytest.approx(3.18245 * math.sqrt(2) / 2, abs=1e-4)
    assert z["vs_reference"]["tiny-ood/end"]["sd"] == 0.0  # identical OOD per seed: no difference at all
    [abl] = [a for a in res["ablations"] if a["a"] == "grpo_buffer"]  # the only ablation with both methods run
    # zppo − grpo_buffer per seed: 1, 2, 2, 3 -> mean 2, sd = sqrt(2/3)
    assert abl["diff"]["tiny/end"]["mean"] == 2.0 and abl["diff"]["tiny/end"]["sd"] == pytest.approx(math.sqrt(2 / 3))
    # every rate in percent, whether the loop logged a percent (accuracies) or a fraction (shares)
    assert z["diagnostics"]["plain accuracy, last 10 steps"]["mean"] == 25.0
    assert z["diagnostics"]["hard share, first 10 steps"]["mean"] == 50.0
    assert z["diagnostics"]["BCQ answer = teacher's"]["mean"] == 75.0
    assert z["diagnostics"]["BCQ accuracy"]["mean"] == 50.0 and z["diagnostics"]["BCQ+NCQ instances / step"]["mean"] \
        == 4.0
    assert "BCQ accuracy" not in res["methods"]["grpo"]["diagnostics"]
    assert z["wall_minutes"]["mean"] == 2.5  # 1, 2, 3, 4 minutes
    buf = z["buffer"]  # 4 seeds x (1 graduated + 1 evicted from bin 0, 1 still buffered in bin 12.5)
    assert buf["fates_by_entry_bin"] == {"0": {"graduated": 4, "evicted": 4, "buffered": 0},
                                         "12.5": {"graduated": 0, "evicted": 0, "buffered": 4}}
    assert buf["graduated_share_all"] == 0.5 and buf["graduated_share_of_departed"]["12.5"] is None
    assert "buffer" not in res["methods"]["grpo"]
    assert res["methods"]["grpo_both"]["seeds_done"] == [] and res["missing"] == [
        {"method": "grpo_both", "seed": 0, "run_dir": str(rd.path), "last_step": 3}]
    md = markdown(res, title="t", command="zppo reproduce --scale tiny --seeds 4")
    assert "| GRPO | 4 | 43.0 ± 4.1 | 38.0 ± 4.1 | 11.5 ± 2.1 | 11.5 ± 2.1 |" in md
    assert "| ZPPO | +5.0 ± 2.3 |" in md and "| GRPO+Both | 0 | – | – | – | – |" in md
    assert "| GRPO† | 50.0% | 4/8 | 0/0 |" in md
    assert "grpo_both seed 0 (step 3)" in md and "`zppo reproduce --scale tiny --seeds 4`" in md
