"""Dropout risk score vs the rule "inactive ≥ 7 days" on held-out simulated courses.

    .venv/bin/python -m benchmarks.risk_evaluation [--courses 10] [--learners 120] [--seed 3]

1. A simulated world whose courses have all ended is replayed week by week through the project's
   own source clients and transforms (:mod:`moocassets.replay`, in-process, no DB): the same
   ``raw_data`` feature + label rows the pipeline stores in ``raw_data_history``.
2. Grouped cross-validation by course (leave-one-course-out by default): each course is scored by a
   model trained only on the other courses (:func:`moocassets.transforms.risk.evaluate_grouped`).
3. The target is the simulator's ground truth (``world.outcomes``: not passed and no activity in
   the last 21 days of the course), not the pipeline's own label.
4. At 25 %, 50 % and 75 % of each course: AUC and Brier of the model, of the rule as a 0/1 flag
   (idle ≥ 7 days or never active) and the AUC of "days idle" as a continuous score; the fallback
   rule (no training) is reported too.

Results go to stdout and ``benchmarks/results/risk_evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moocassets.replay import course_history, ended_world, simulated_sources, truth_frame
from moocassets.transforms import risk

RESULTS = Path(__file__).parent / "results" / "risk_evaluation.json"


def _truth_lookup(truth: pd.DataFrame) -> Any:
    def lookup(rows: pd.DataFrame) -> np.ndarray:
        merged = rows[["user_id", "course_id"]].merge(truth, on=["user_id", "course_id"],
                                                      how="left")
        if merged["dropped_out"].isna().any():
            raise ValueError("a replayed learner is missing from the simulator's outcomes")
        return merged["dropped_out"].astype(int).to_numpy()

    return lookup


def run(courses: int, learners: int, seed: int, folds: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    world = ended_world(courses, learners, seed)
    frames, truths = [], []
    with simulated_sources(world) as sources:
        for cid in world.courses:
            frames.append(course_history(sources, cid))
            truths.append(truth_frame(world, cid))
    history = pd.concat(frames, ignore_index=True)
    truth = pd.concat(truths, ignore_index=True)
    replay_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    lookup = _truth_lookup(truth)
    model_eval = risk.evaluate_grouped(history, truth=lookup, folds=folds)
    fallback_eval = risk.evaluate_grouped(
        history, truth=lookup, folds=folds, fit=lambda _rows, _y: risk.fallback_model()
    )
    rows, target = risk.training_rows(history)
    agreement = float((lookup(rows) == target.to_numpy()).mean())
    final = risk.fit_model(rows, target)
    eval_s = time.perf_counter() - t1
    return {
        "setup": {
            "courses": courses, "learners_per_course": learners, "seed": seed,
            "folds": model_eval["folds"], "snapshots": int(history[["course_id", "as_of"]]
                                                            .drop_duplicates().shape[0]),
            "history_rows": len(history), "labelled_rows": len(rows),
            "python": platform.python_version(),
        },
        "label_agreement_with_truth": agreement,
        "final_dropout_rate": float(truth["dropped_out"].mean()),
        "by_checkpoint": {
            cp: {
                **{k: v for k, v in m.items()},
                "fallback_auc": fallback_eval["by_checkpoint"][cp]["model_auc"],
                "fallback_brier": fallback_eval["by_checkpoint"][cp]["model_brier"],
            }
            for cp, m in model_eval["by_checkpoint"].items()
        },
        "final_model": {
            "name": final.name,
            "weights": {f: round(w, 4) for f, w in zip(final.features, final.coef, strict=True)},
            "intercept": round(final.intercept, 4),
        },
        "timing_s": {"replay": round(replay_s, 1), "evaluation": round(eval_s, 1)},
    }


def _fmt(v: float | None) -> str:
    return "  n/a" if v is None else f"{v:.3f}"


def report(res: dict[str, Any]) -> str:
    s = res["setup"]
    lines = [
        f"{s['courses']} held-out courses × {s['learners_per_course']} learners, "
        f"{s['snapshots']} weekly snapshots, {s['folds']}-fold grouped CV by course "
        f"(target: simulator truth; pipeline label agrees on "
        f"{res['label_agreement_with_truth']:.1%}; final dropout rate "
        f"{res['final_dropout_rate']:.1%})",
        "",
        "checkpoint |   n  | model AUC | rule AUC | days AUC | fallback AUC | model Brier | "
        "rule Brier | fallback Brier",
    ]
    for cp, m in res["by_checkpoint"].items():
        lines.append(
            f"   {float(cp):>4.0%}    | {int(m['n']):4d} |   {_fmt(m['model_auc'])}   |  "
            f"{_fmt(m['rule_auc'])}  |  {_fmt(m['rule_days_auc'])}   |     "
            f"{_fmt(m['fallback_auc'])}    |    {_fmt(m['model_brier'])}    |   "
            f"{_fmt(m['rule_brier'])}    |   {_fmt(m['fallback_brier'])}"
        )
    lines += ["", f"final model: {res['final_model']['name']}",
              f"time: replay {res['timing_s']['replay']} s, "
              f"evaluation {res['timing_s']['evaluation']} s"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.risk_evaluation")
    parser.add_argument("--courses", type=int, default=10)
    parser.add_argument("--learners", type=int, default=120)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--folds", type=int, default=10, help="course groups (10: leave-one-out)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    res = run(args.courses, args.learners, args.seed, args.folds)
    print(report(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
