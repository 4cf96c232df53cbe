"""The pure risk functions on hand-computed learners (features, fallback, reasons, labels,
metrics, model selection, leakage)."""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from moocassets.schema import RAW_DATA, frame_from_records
from moocassets.transforms import risk

COURSE = "course-v1:UEL+NLTT241225+2025_S2"
AS_OF = pd.Timestamp("2025-11-01T00:00:00Z")


def learner(user_id: int, course_id: str = COURSE, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "user_id": user_id, "course_id": course_id, "is_dropout": False, "as_of": AS_OF,
        "enrollment_date": pd.Timestamp("2025-09-01T00:00:00Z"),
        "days_since_last_activity": 0, "weeks_since_enrollment": 8,
        "course_elapsed_fraction": 0.5, "pace_gap": 0.0, "mooc_completion_rate": 50.0,
        "discussion_total_interactions": 0,
    }
    row.update(fields)
    return row


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    return frame_from_records(RAW_DATA, rows)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


# ---- features -----------------------------------------------------------------------------------


def test_feature_matrix_fills_never_active_with_days_since_enrollment() -> None:
    f = frame(
        learner(1, days_since_last_activity=23, pace_gap=-18.0, h5p_completion_rate=0.08),
        learner(2, days_since_last_activity=None, weeks_since_enrollment=3, pace_gap=None,
                mooc_completion_rate=None, course_elapsed_fraction=None),
    )
    x = risk.feature_matrix(f)
    assert list(x.columns) == list(risk.FEATURES)
    assert not x.isna().any().any()
    a, b = x.iloc[0], x.iloc[1]
    assert a["inactive_days"] == 23 and a["inactive_over_7"] == 16
    assert a["log_inactive_days"] == pytest.approx(math.log(24))
    assert a["never_active"] == 0 and a["pace_gap"] == -18.0 and a["h5p_done_rate"] == 0.08
    assert a["elapsed_x_inactive"] == pytest.approx(0.5 * math.log(24))
    # never active, enrolled 3 weeks ago: 21 idle days; unknown pace → on schedule; elapsed 0.5
    assert b["inactive_days"] == 21 and b["never_active"] == 1
    assert b["pace_gap"] == 0.0 and b["completion"] == 0.0 and b["elapsed"] == 0.5


def test_inactive_days_are_capped() -> None:
    x = risk.feature_matrix(frame(learner(1, days_since_last_activity=400)))
    assert x.loc[0, "inactive_days"] == 60


# ---- fallback -----------------------------------------------------------------------------------


def test_fallback_is_the_documented_logistic() -> None:
    f = frame(
        learner(1, days_since_last_activity=0, pace_gap=0.0),
        learner(2, days_since_last_activity=14, pace_gap=0.0),
        learner(3, days_since_last_activity=7, pace_gap=-30.0),
        learner(4, days_since_last_activity=None, weeks_since_enrollment=3, pace_gap=10.0),
    )
    p = risk.fallback_model().predict(f)
    assert p == pytest.approx([
        sigmoid(-3.0),
        sigmoid(-3.0 + 0.2 * 14),
        sigmoid(-3.0 + 0.2 * 7 + 0.03 * 30),
        sigmoid(-3.0 + 0.2 * 21 + 1.0 - 0.03 * 10),
    ])
    assert risk.fallback_model().name == "fallback-rules-v1"


def test_score_frame_fills_the_three_columns_in_range() -> None:
    f = frame(learner(1, days_since_last_activity=23, pace_gap=-18.0), learner(2))
    out = risk.score_frame(risk.fallback_model(), f)
    RAW_DATA.validate_frame(RAW_DATA.coerce_frame(out))
    assert out["dropout_risk_score"].between(0, 1).all()
    assert out.loc[0, "dropout_risk_score"] > out.loc[1, "dropout_risk_score"]
    assert out.loc[0, "dropout_risk_reasons"] == (
        "no activity for 23 days; 18 points behind the course schedule")
    assert out.loc[1, "dropout_risk_reasons"] == ""  # active today, on schedule: nothing to say
    assert set(out["dropout_risk_model"]) == {"fallback-rules-v1"}


# ---- reasons ------------------------------------------------------------------------------------


def _hand_model(**weights: float) -> risk.RiskModel:
    n = len(risk.FEATURES)
    return risk.RiskModel(
        name="hand", kind="logreg", version=1, features=risk.FEATURES, center=(0.0,) * n,
        scale=(1.0,) * n, coef=tuple(weights.get(f, 0.0) for f in risk.FEATURES), intercept=0.0,
    )


def test_reasons_are_ranked_by_contribution_and_worded_for_teachers() -> None:
    # contributions (log-odds): inactivity 0.1·23 = 2.3; pace −0.05·−18 = 0.9; h5p −3·(0.08−0)
    # = −0.24 (lowers risk here: center 0) → use a center so low completion raises the risk
    n = len(risk.FEATURES)
    center = [0.0] * n
    center[risk.FEATURES.index("h5p_done_rate")] = 0.6
    model = risk.RiskModel(
        name="hand", kind="logreg", version=1, features=risk.FEATURES, center=tuple(center),
        scale=(1.0,) * n,
        coef=tuple({"inactive_days": 0.1, "pace_gap": -0.05, "h5p_done_rate": -3.0,
                    "forum": -0.1}.get(f, 0.0) for f in risk.FEATURES),
        intercept=0.0,
    )
    f = frame(learner(7, days_since_last_activity=23, pace_gap=-18.0,
                      h5p_completed_contents=2, h5p_completion_rate=0.08))
    # h5p: −3·(0.08−0.6) = 1.56 > pace 0.9; forum contributes 0 (< threshold) → not named
    assert risk.risk_reasons(model, f) == [
        "no activity for 23 days; 2 of 25 H5P exercises done; 18 points behind the course schedule"
    ]
    assert risk.risk_reasons(model, f, top=1) == ["no activity for 23 days"]


def test_never_active_reason_names_the_enrollment_age() -> None:
    f = frame(learner(3, days_since_last_activity=None, weeks_since_enrollment=4))
    assert risk.risk_reasons(risk.fallback_model(), f) == [
        "never active since enrolling 4 weeks ago"]


# ---- leakage ------------------------------------------------------------------------------------


def _random_learners(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        never = rng.random() < 0.1
        rows.append(learner(
            100 + i,
            days_since_last_activity=None if never else int(rng.integers(0, 40)),
            weeks_since_enrollment=int(rng.integers(0, 12)),
            course_elapsed_fraction=float(round(rng.random(), 4)),
            pace_gap=float(round(rng.normal(-10, 20), 2)),
            mooc_completion_rate=float(round(rng.uniform(0, 100), 2)),
            h5p_completed_contents=int(rng.integers(0, 20)),
            h5p_completion_rate=float(round(rng.random(), 4)),
            h5p_overall_percentage=float(round(rng.uniform(0, 100), 2)),
            video_completion_rate=float(round(rng.random(), 4)),
            discussion_total_interactions=int(rng.integers(0, 5)),
            mooc_grade_percentage=float(round(rng.uniform(0, 100), 2)),
            mooc_is_passed=bool(rng.random() < 0.3),
            mooc_letter_grade="Pass",
            is_dropout=bool(rng.random() < 0.3),
            current_chapter="Chương 1", current_section="Bài 1.1", current_unit="Video",
        ))
    return frame(*rows)


def _fitted(seed: int = 5) -> risk.RiskModel:
    f = _random_learners(300, seed)
    y = (risk.feature_matrix(f)["inactive_days"] > 12).astype(int)
    return risk.fit_model(f, y)


@pytest.mark.parametrize("which", ["fallback", "fitted"])
def test_score_ignores_grade_pass_label_and_position_columns(which: str) -> None:
    model = risk.fallback_model() if which == "fallback" else _fitted()
    base = _random_learners(60, 1)
    changed = base.copy()
    changed["mooc_grade_percentage"] = 100.0 - changed["mooc_grade_percentage"].fillna(0)
    changed["mooc_letter_grade"] = "F"
    changed["mooc_is_passed"] = ~changed["mooc_is_passed"].astype(bool)
    changed["is_dropout"] = ~changed["is_dropout"].astype(bool)
    changed["current_chapter"] = "Chương 9: Ôn tập và tổng kết"
    changed["current_section"] = "Bài 9.4"
    changed["current_unit"] = "Câu hỏi ôn tập"
    a, b = risk.score_frame(model, base), risk.score_frame(model, changed)
    pd.testing.assert_series_equal(a["dropout_risk_score"], b["dropout_risk_score"])
    assert a["dropout_risk_reasons"].tolist() == b["dropout_risk_reasons"].tolist()
    # and the score can be computed with those columns absent altogether
    only_inputs = base.loc[:, [*risk.RISK_INPUT_COLUMNS]]
    np.testing.assert_allclose(model.predict(only_inputs), model.predict(base))
    assert not set(risk.RISK_INPUT_COLUMNS) & set(risk.LEAKAGE_COLUMNS)


def test_score_does_change_with_its_inputs() -> None:
    """Guard against a constant score passing the leakage test."""
    base = _random_learners(20, 2)
    idle = base.assign(days_since_last_activity=45)
    model = risk.fallback_model()
    assert (model.predict(idle) > model.predict(base)).sum() >= 15


# ---- training data and model selection ----------------------------------------------------------


def _snap(uid: int, course: str, frac: float, dropout: bool, days: int | None) -> dict[str, Any]:
    return learner(uid, course, course_elapsed_fraction=frac, is_dropout=dropout,
                   days_since_last_activity=days,
                   as_of=pd.Timestamp("2025-09-01T00:00:00Z") + pd.Timedelta(days=100 * frac))


def test_training_target_is_the_label_at_the_course_end() -> None:
    ended, running = "course-v1:A+1+1", "course-v1:B+2+2"
    history = frame(
        _snap(1, ended, 0.5, False, 3), _snap(1, ended, 1.0, True, 30),  # will drop out
        _snap(2, ended, 0.5, False, 1), _snap(2, ended, 1.0, False, 2),  # stays
        _snap(3, ended, 0.5, False, 1),  # unenrolled before the end: no label
        _snap(4, running, 0.5, False, 10),  # running course: no label
    )
    assert risk.ended_course_ids(history) == [ended]
    rows, target = risk.training_rows(history)
    assert rows["user_id"].tolist() == [1, 2]
    assert target.tolist() == [1, 0]
    assert (rows["course_elapsed_fraction"] < 1).all()  # the end snapshot is not a training row


def _synthetic_history(courses: int, learners: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(courses):
        cid = f"course-v1:S+{c}+1"
        for u in range(learners):
            quits = rng.random() < 0.3
            for frac in (0.25, 0.5, 0.75, 1.0):
                days = int(rng.integers(10, 40)) if quits and frac >= 0.5 else int(
                    rng.integers(0, 6))
                rows.append(_snap(1000 + u, cid, frac, bool(quits and frac == 1.0), days))
    return frame(*rows)


def test_fallback_when_history_is_thin() -> None:
    one_course = _synthetic_history(1, 300)
    model, why = risk.select_model(one_course)
    assert model.kind == "fallback" and "1 ended course" in why
    few_learners = _synthetic_history(3, 50)  # 150 labelled learners < 200
    model, why = risk.select_model(few_learners)
    assert model.kind == "fallback" and "150 labelled" in why
    assert risk.select_model(few_learners.iloc[0:0])[0].kind == "fallback"


def test_learned_model_when_enough_history_and_it_is_picklable() -> None:
    history = _synthetic_history(3, 80)
    model, why = risk.select_model(history)
    assert model.kind == "logreg", why
    assert model.name == "logreg-v1 (3 courses, 240 learners)"
    assert model.n_rows == 3 * 80 * 3 and len(model.training_courses) == 3
    assert model.coef[risk.FEATURES.index("inactive_days")] > 0
    for f, w in zip(model.features, model.coef, strict=True):
        assert risk.EXPECTED_SIGN[f] * w >= 0, f  # every weight points the plausible way
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_allclose(clone.predict(history), model.predict(history))


# ---- metrics ------------------------------------------------------------------------------------


def test_auc_and_brier_by_hand() -> None:
    y = [0, 0, 1, 1]
    assert risk.auc(y, [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert risk.auc(y, [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert risk.auc([1, 1], [0.2, 0.3]) is None
    assert risk.brier(y, [0.0, 0.5, 1.0, 0.5]) == pytest.approx((0 + 0.25 + 0 + 0.25) / 4)


def test_inactivity_rule_flags_seven_idle_days_and_never_active() -> None:
    f = frame(learner(1, days_since_last_activity=6), learner(2, days_since_last_activity=7),
              learner(3, days_since_last_activity=None))
    binary, days = risk.inactivity_rule(f)
    assert binary.tolist() == [0.0, 1.0, 1.0]
    assert days[0] < days[1] < days[2]


def test_checkpoint_rows_pick_the_nearest_snapshot_per_course() -> None:
    history = _synthetic_history(2, 3)
    at = risk.checkpoint_rows(history, 0.5)
    assert set(at["course_elapsed_fraction"]) == {0.5} and len(at) == 6
    assert risk.checkpoint_rows(history, 0.62).empty  # nothing within 0.07


def test_grouped_evaluation_reports_every_checkpoint_for_model_and_rule() -> None:
    res = risk.evaluate_grouped(_synthetic_history(4, 60), folds=4)
    assert res["courses"] == 4 and res["folds"] == 4
    mid = res["by_checkpoint"]["0.5"]
    assert mid["n"] == 240 and mid["model_auc"] > 0.9 and mid["rule_auc"] > 0.9
    flat = risk.quality_metadata(res)
    assert {"auc_p25", "brier_p50", "rule_auc_p75", "rule_days_auc_p50"} <= set(flat)
    assert all(isinstance(v, float) for v in flat.values())


# ---- teacher summary ----------------------------------------------------------------------------


def test_teacher_summary_bands_and_top_learners_without_names() -> None:
    f = frame(*[learner(10 + i, days_since_last_activity=d)
                for i, d in enumerate([0, 1, 2, 9, 12, 20, 25, 30, 40, 50, 55, 59])])
    scored = risk.score_frame(risk.fallback_model(), f)
    md = risk.teacher_summary(scored)
    p = scored["dropout_risk_score"]
    low, med, high = (p < 0.3).sum(), ((p >= 0.3) & (p < 0.6)).sum(), (p >= 0.6).sum()
    assert f"| low | 0%–30% | {low} |" in md
    assert f"| medium | 30%–60% | {med} |" in md
    assert f"| high | ≥ 60% | {high} |" in md
    top_rows = [ln for ln in md.splitlines() if ln.startswith(f"| {COURSE} |")]
    assert len(top_rows) == 10
    assert top_rows[0].split("|")[2].strip() == "21"  # user 21: 59 idle days, the highest risk
    assert "no activity for 59 days" in top_rows[0]
    assert risk.risk_band(0.29) == "low" and risk.risk_band(0.3) == "medium"
    assert risk.risk_band(0.6) == "high"
