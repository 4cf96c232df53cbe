"""The dropout risk score (spec/raw-data.md "The score"): features, models, reasons, evaluation.

Pure functions, no I/O. Everything reads ``raw_data`` / ``raw_data_history`` frames.

* :data:`RISK_INPUT_COLUMNS` is the ONE list of ``raw_data`` columns a score may read. It contains
  only information available at ``as_of`` and never the grade/pass columns, the label or the
  free-text position columns (``current_chapter/section/unit``): :func:`feature_matrix` selects
  exactly these columns before anything else, so nothing else can leak in.
* :data:`FEATURES` are the model features derived from them (:func:`feature_matrix`; no NULLs:
  every missing value has a documented neutral fill and, where it carries meaning, an indicator).
* A :class:`RiskModel` is a logistic model ``p = sigmoid(b + Σ w_j (x_j − c_j) / s_j)``: either
  learned (:func:`fit_model`: scikit-learn ``LogisticRegression`` on standardized features, which
  gives calibrated probabilities and explanations by coefficient × standardized deviation) or the
  hand-set :func:`fallback_model` used while there is too little labelled history.
* :func:`risk_reasons` turns the per-feature contributions into words a teacher reads.
* :func:`training_rows` builds the labelled set from history: learners of ENDED courses; each
  snapshot's target is the learner's ``is_dropout`` at the course end.
* :func:`evaluate_grouped` is leave-courses-out cross-validation, reported by course checkpoint
  next to the rule "inactive ≥ 7 days".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CHECKPOINTS",
    "FALLBACK_NAME",
    "FEATURES",
    "LEAKAGE_COLUMNS",
    "MIN_ENDED_COURSES",
    "MIN_LABELLED_LEARNERS",
    "MODEL_VERSION",
    "RISK_BANDS",
    "RISK_INPUT_COLUMNS",
    "RiskModel",
    "auc",
    "brier",
    "checkpoint_rows",
    "ended_course_ids",
    "evaluate_grouped",
    "evaluate_model",
    "fallback_model",
    "feature_matrix",
    "fit_model",
    "inactivity_rule",
    "quality_metadata",
    "risk_band",
    "risk_reasons",
    "score_frame",
    "select_model",
    "teacher_summary",
    "training_rows",
]

MODEL_VERSION = 1
FALLBACK_NAME = "fallback-rules-v1"
MIN_ENDED_COURSES = 2
MIN_LABELLED_LEARNERS = 200
CHECKPOINTS: tuple[float, ...] = (0.25, 0.5, 0.75)
RULE_DAYS = 7
RISK_BANDS: tuple[tuple[str, float], ...] = (("low", 0.0), ("medium", 0.3), ("high", 0.6))
"""Band name and its lower bound: low < 0.3 ≤ medium < 0.6 ≤ high."""

RISK_INPUT_COLUMNS: tuple[str, ...] = (
    "days_since_last_activity",
    "weeks_since_enrollment",
    "course_elapsed_fraction",
    "pace_gap",
    "mooc_completion_rate",
    "progress_percent",
    "h5p_completed_contents",
    "h5p_completion_rate",
    "h5p_overall_percentage",
    "video_completed_videos",
    "video_total_videos",
    "video_completion_rate",
    "video_watch_rate",
    "discussion_total_interactions",
)
"""The only raw_data columns the score reads (all known at ``as_of``)."""

LEAKAGE_COLUMNS: tuple[str, ...] = (
    "mooc_grade_percentage",
    "mooc_letter_grade",
    "mooc_is_passed",
    "is_dropout",
    "current_chapter",
    "current_section",
    "current_unit",
)
"""Columns the score must never read (grade/pass, the label, free-text position)."""

assert not set(RISK_INPUT_COLUMNS) & set(LEAKAGE_COLUMNS)

FEATURES: tuple[str, ...] = (
    "inactive_days",
    "inactive_over_7",
    "log_inactive_days",
    "never_active",
    "elapsed",
    "elapsed_x_inactive",
    "pace_gap",
    "completion",
    "progress",
    "h5p_done_rate",
    "h5p_score",
    "video_rate",
    "watch_rate",
    "forum",
)

# features → the reason group they explain (None: context, never a reason)
_REASON_GROUP: dict[str, str | None] = {
    "inactive_days": "inactivity",
    "inactive_over_7": "inactivity",
    "log_inactive_days": "inactivity",
    "never_active": "inactivity",
    "elapsed": None,
    "elapsed_x_inactive": "inactivity",
    "pace_gap": "pace",
    "completion": "completion",
    "progress": "completion",
    "h5p_done_rate": "h5p",
    "h5p_score": "h5p_score",
    "video_rate": "video",
    "watch_rate": "video",
    "forum": "forum",
}
EXPECTED_SIGN: dict[str, int] = {
    "inactive_days": 1,
    "inactive_over_7": 1,
    "log_inactive_days": 1,
    "never_active": 1,
    "elapsed": 0,
    "elapsed_x_inactive": 1,
    "pace_gap": -1,
    "completion": -1,
    "progress": -1,
    "h5p_done_rate": -1,
    "h5p_score": -1,
    "video_rate": -1,
    "watch_rate": -1,
    "forum": -1,
}
"""The direction each feature may push the risk (0: either). :func:`fit_model` drops a feature
whose fitted coefficient has the other sign (collinear features otherwise produce reasons such as
"ahead of schedule raises the risk") and refits, so every named reason is plausible."""
_MAX_DAYS = 60.0
REASON_MIN_LOGIT = 0.15
"""A group must raise the log-odds by at least this much to be named as a reason."""


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(frame[col], errors="coerce").astype("float64")


def feature_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """:data:`FEATURES` (float64, no NaN) from the :data:`RISK_INPUT_COLUMNS` of ``frame``.

    Fills: never active → ``inactive_days`` = days since enrollment (``weeks_since_enrollment``
    × 7), capped at 60, and ``never_active`` = 1; unknown elapsed fraction → 0.5; unknown pace gap
    → 0 (on schedule); unknown completion/rates/score → 0 (nothing known done).
    """
    missing = [c for c in RISK_INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"risk features need raw_data column(s) {missing}")
    x = frame.loc[:, list(RISK_INPUT_COLUMNS)]  # nothing else is read below
    days = _num(x, "days_since_last_activity")
    never = days.isna()
    since_enrol = (_num(x, "weeks_since_enrollment") * 7.0).fillna(0.0)
    inactive = days.where(~never, since_enrol).clip(0.0, _MAX_DAYS)
    elapsed = _num(x, "course_elapsed_fraction").fillna(0.5).clip(0.0, 1.0)
    out = pd.DataFrame(
        {
            "inactive_days": inactive,
            "inactive_over_7": (inactive - RULE_DAYS).clip(lower=0.0),
            "log_inactive_days": np.log1p(inactive),
            "never_active": never.astype("float64"),
            "elapsed": elapsed,
            "elapsed_x_inactive": elapsed * np.log1p(inactive),
            "pace_gap": _num(x, "pace_gap").fillna(0.0).clip(-100.0, 100.0),
            "completion": _num(x, "mooc_completion_rate").fillna(0.0) / 100.0,
            "progress": _num(x, "progress_percent").fillna(0.0) / 100.0,
            "h5p_done_rate": _num(x, "h5p_completion_rate").fillna(0.0),
            "h5p_score": _num(x, "h5p_overall_percentage").fillna(0.0) / 100.0,
            "video_rate": _num(x, "video_completion_rate").fillna(0.0),
            "watch_rate": _num(x, "video_watch_rate").fillna(0.0),
            "forum": np.log1p(_num(x, "discussion_total_interactions").fillna(0.0)),
        },
        index=frame.index,
    )
    return out.loc[:, list(FEATURES)].astype("float64")


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


@dataclass(frozen=True)
class RiskModel:
    """A logistic risk model over :data:`FEATURES` (picklable, numpy only).

    ``p = sigmoid(intercept + Σ coef_j · (x_j − center_j) / scale_j)``. The contribution of
    feature j to a learner's log-odds, relative to the reference learner ``center``, is
    ``coef_j · (x_j − center_j) / scale_j`` (coefficient × standardized deviation).
    """

    name: str  # shown in raw_data.dropout_risk_model (≤ 64 characters)
    kind: str  # "logreg" | "fallback"
    version: int
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    training_courses: tuple[str, ...] = ()
    n_rows: int = 0
    n_learners: int = 0
    quality: dict[str, float] = field(default_factory=dict)

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-feature log-odds contributions (rows of ``frame`` × features)."""
        x = feature_matrix(frame)
        if tuple(x.columns) != self.features:
            raise ValueError(f"model {self.name} expects features {self.features}")
        z = (x.to_numpy() - np.asarray(self.center)) / np.asarray(self.scale)
        return pd.DataFrame(z * np.asarray(self.coef), index=frame.index, columns=x.columns)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Risk in [0, 1] per row of a raw_data frame."""
        if len(frame) == 0:
            return np.zeros(0)
        logit = self.intercept + self.contributions(frame).to_numpy().sum(axis=1)
        return _sigmoid(logit)


# ---- the transparent fallback ------------------------------------------------------------------

FALLBACK_WEIGHTS: dict[str, float] = {
    "inactive_days": 0.20,  # +0.2 log-odds per day without activity (capped at 60 days)
    "never_active": 1.0,  # enrolled and never seen: +1
    "pace_gap": -0.03,  # +0.3 per 10 points behind the course schedule (−0.3 per 10 ahead)
}
FALLBACK_INTERCEPT = -3.0


def fallback_model() -> RiskModel:
    """The hand-set logistic used before enough labelled history exists (docs/RISK.md):

    ``logit = −3.0 + 0.20 · inactive_days + 1.0 · never_active − 0.03 · pace_gap``

    → 5 % for a learner active today and on schedule; 17 % after 7 idle days, 45 % after 14,
    77 % after 21; 30 points behind schedule adds as much as 4.5 idle days.
    """
    n = len(FEATURES)
    coef = tuple(FALLBACK_WEIGHTS.get(f, 0.0) for f in FEATURES)
    return RiskModel(
        name=FALLBACK_NAME, kind="fallback", version=1, features=FEATURES,
        center=(0.0,) * n, scale=(1.0,) * n, coef=coef, intercept=FALLBACK_INTERCEPT,
    )


# ---- training data -----------------------------------------------------------------------------


def ended_course_ids(history: pd.DataFrame) -> list[str]:
    """Courses with a snapshot at their end (``course_elapsed_fraction`` = 1: as_of = course_end;
    an ended course's ``as_of`` stops at its end, so this is exactly "the course has ended")."""
    if history.empty:
        return []
    frac = _num(history, "course_elapsed_fraction")
    return sorted(history.loc[frac >= 1.0, "course_id"].dropna().unique().tolist())


def training_rows(history: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """Labelled snapshots: every snapshot BEFORE the end of an ended course, with target = the
    learner's ``is_dropout`` in the end snapshot ("is or will be a dropout by the course end").

    Learners absent from the end snapshot (unenrolled) are dropped. Returns (rows, target).
    """
    ended = ended_course_ids(history)
    if not ended:
        return history.iloc[0:0], pd.Series([], dtype="int64")
    h = history[history["course_id"].isin(ended)]
    frac = _num(h, "course_elapsed_fraction")
    final = (
        h[frac >= 1.0]
        .sort_values("as_of")
        .drop_duplicates(["user_id", "course_id"], keep="last")
        .loc[:, ["user_id", "course_id", "is_dropout"]]
        .rename(columns={"is_dropout": "_final_dropout"})
    )
    rows = h[frac < 1.0].merge(final, on=["user_id", "course_id"], how="inner")
    target = rows.pop("_final_dropout").astype("boolean").fillna(False).astype("int64")
    return rows.reset_index(drop=True), target.reset_index(drop=True)


# ---- the learned model -------------------------------------------------------------------------


def fit_model(
    rows: pd.DataFrame, target: pd.Series, *, c: float = 1.0, name: str | None = None
) -> RiskModel:
    """Standardize :data:`FEATURES` and fit an L2 logistic regression (lbfgs); features whose
    coefficient contradicts :data:`EXPECTED_SIGN` are dropped (coefficient 0) and the rest refit."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(target, dtype="int64")
    if len(set(y.tolist())) < 2:
        raise ValueError("training needs both dropouts and non-dropouts")
    x = feature_matrix(rows).to_numpy()
    center = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = (x - center) / scale
    active = [i for i in range(len(FEATURES)) if x[:, i].std() > 1e-9]
    coef = np.zeros(len(FEATURES))
    intercept = 0.0
    for _ in range(len(FEATURES)):
        lr = LogisticRegression(C=c, max_iter=2000, tol=1e-6)
        lr.fit(z[:, active], y)
        fitted = lr.coef_[0]
        wrong = [
            i for i, w in zip(active, fitted, strict=True)
            if EXPECTED_SIGN[FEATURES[i]] * w < 0
        ]
        if not wrong:
            coef[:] = 0.0
            coef[active] = fitted
            intercept = float(lr.intercept_[0])
            break
        worst = max(wrong, key=lambda i: abs(fitted[active.index(i)]))
        active.remove(worst)
    courses = tuple(sorted(rows["course_id"].unique().tolist()))
    learners = int(rows[["user_id", "course_id"]].drop_duplicates().shape[0])
    return RiskModel(
        name=name or f"logreg-v{MODEL_VERSION} ({len(courses)} courses, {learners:,} learners)",
        kind="logreg", version=MODEL_VERSION, features=FEATURES,
        center=tuple(float(v) for v in center), scale=tuple(float(v) for v in scale),
        coef=tuple(float(v) for v in coef), intercept=intercept,
        training_courses=courses, n_rows=len(rows), n_learners=learners,
    )


def select_model(
    history: pd.DataFrame,
    *,
    min_courses: int = MIN_ENDED_COURSES,
    min_learners: int = MIN_LABELLED_LEARNERS,
) -> tuple[RiskModel, str]:
    """The learned model when history has ≥ ``min_courses`` ended courses and ≥ ``min_learners``
    labelled learners with both outcomes, else the fallback. Returns (model, why)."""
    rows, target = training_rows(history)
    courses = rows["course_id"].nunique() if len(rows) else 0
    learners = len(rows[["user_id", "course_id"]].drop_duplicates()) if len(rows) else 0
    if courses < min_courses or learners < min_learners:
        return fallback_model(), (
            f"fallback: {courses} ended course(s) and {learners} labelled learner(s) in history "
            f"(need ≥ {min_courses} and ≥ {min_learners})"
        )
    if target.nunique() < 2:
        return fallback_model(), "fallback: the labelled history has only one outcome"
    return fit_model(rows, target), (
        f"trained on {courses} ended courses, {learners} learners, {len(rows)} snapshots"
    )


# ---- scoring and reasons -----------------------------------------------------------------------


_REASON_COLUMNS = [
    "days_since_last_activity", "weeks_since_enrollment", "pace_gap", "mooc_completion_rate",
    "progress_percent", "h5p_completed_contents", "h5p_completion_rate", "h5p_overall_percentage",
    "video_completed_videos", "video_total_videos", "discussion_total_interactions",
]  # what _reason_text reads


def _reason_text(group: str, row: Mapping[str, Any]) -> str | None:
    def val(col: str) -> float | None:
        v = row.get(col)
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
        return float(v)

    if group == "inactivity":
        days = val("days_since_last_activity")
        if days is None:
            weeks = val("weeks_since_enrollment")
            return "never active since enrolling" + (
                f" {int(weeks)} week{'s' if weeks != 1 else ''} ago" if weeks else "")
        return f"no activity for {int(days)} day{'s' if days != 1 else ''}"
    if group == "pace":
        gap = val("pace_gap")
        if gap is None or gap >= 0:
            return None
        return f"{abs(gap):.0f} points behind the course schedule"
    if group == "completion":
        rate = val("mooc_completion_rate")
        if rate is None:
            rate = val("progress_percent")
        return None if rate is None else f"only {rate:.0f}% of the course completed"
    if group == "h5p":
        done, rate = val("h5p_completed_contents"), val("h5p_completion_rate")
        if rate is not None and done and rate > 0:
            return f"{int(done)} of {round(done / rate)} H5P exercises done"
        return "no H5P exercise done yet" if not done else f"{int(done)} H5P exercises done"
    if group == "h5p_score":
        pct = val("h5p_overall_percentage")
        return None if pct is None else f"H5P average score {pct:.0f}%"
    if group == "video":
        done, total = val("video_completed_videos"), val("video_total_videos")
        if not done:
            return "no video watched to the end"
        return f"{int(done)} of {int(total)} opened videos completed" if total else None
    if group == "forum":
        n = val("discussion_total_interactions")
        return "no forum activity" if not n else None
    return None


def risk_reasons(model: RiskModel, frame: pd.DataFrame, top: int = 3) -> list[str]:
    """Per row: the (up to ``top``) reason groups that raise the risk most, in words, joined by
    "; " (e.g. "no activity for 23 days; 18 points behind the course schedule; 2 of 25 H5P
    exercises done"). Empty string when nothing raises the risk noticeably."""
    if len(frame) == 0:
        return []
    contrib = model.contributions(frame)
    groups: dict[str, list[str]] = {}
    for feat in model.features:
        g = _REASON_GROUP.get(feat)
        if g is not None:
            groups.setdefault(g, []).append(feat)
    by_group = pd.DataFrame(
        {g: contrib[feats].sum(axis=1) for g, feats in groups.items()}, index=frame.index
    )
    names = [str(g) for g in by_group.columns]
    values = by_group.to_numpy(dtype="float64")
    order = np.argsort(-values, axis=1, kind="stable")  # per row: largest contribution first
    rows = frame.reindex(columns=_REASON_COLUMNS).to_dict("records")
    out: list[str] = []
    for i, row in enumerate(rows):
        texts: list[str] = []
        for j in order[i]:
            if values[i, j] < REASON_MIN_LOGIT or len(texts) >= top:
                break
            text = _reason_text(names[j], row)
            if text:
                texts.append(text)
        out.append("; ".join(texts))
    return out


def score_frame(model: RiskModel, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``dropout_risk_score`` (rounded to the column's 5 decimals),
    ``dropout_risk_reasons`` and ``dropout_risk_model`` filled."""
    out = frame.copy()
    out["dropout_risk_score"] = np.round(model.predict(frame), 5).astype("float64")
    out["dropout_risk_reasons"] = risk_reasons(model, frame)
    out["dropout_risk_model"] = model.name[:64]
    return out


def risk_band(score: float) -> str:
    band = RISK_BANDS[0][0]
    for name, lower in RISK_BANDS:
        if score >= lower:
            band = name
    return band


# ---- evaluation --------------------------------------------------------------------------------


def auc(y: Sequence[int] | np.ndarray, score: Sequence[float] | np.ndarray) -> float | None:
    """ROC AUC (ties count half); None with a single class."""
    from sklearn.metrics import roc_auc_score

    y_arr = np.asarray(y, dtype="int64")
    if len(np.unique(y_arr)) < 2:
        return None
    return float(roc_auc_score(y_arr, np.asarray(score, dtype="float64")))


def brier(y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray) -> float | None:
    y_arr = np.asarray(y, dtype="float64")
    if len(y_arr) == 0:
        return None
    return float(np.mean((np.asarray(p, dtype="float64") - y_arr) ** 2))


def inactivity_rule(frame: pd.DataFrame, days: int = RULE_DAYS) -> tuple[np.ndarray, np.ndarray]:
    """The plain rule "inactive ≥ 7 days" (Open edX at-risk list): (binary score: 1 when idle ≥
    ``days`` or never active, continuous score: days idle, never active = +inf rank)."""
    d = _num(frame, "days_since_last_activity")
    binary = (d.isna() | (d >= days)).astype("float64").to_numpy()
    continuous = d.fillna(1e6).to_numpy()
    return binary, continuous


def checkpoint_rows(
    frame: pd.DataFrame, checkpoint: float, tolerance: float = 0.07
) -> pd.DataFrame:
    """Per course, the snapshot whose ``course_elapsed_fraction`` is nearest ``checkpoint``
    (within ``tolerance``)."""
    if frame.empty:
        return frame
    frac = _num(frame, "course_elapsed_fraction")
    dist = (frac - checkpoint).abs()
    snaps = (
        frame.assign(_d=dist)
        .dropna(subset=["_d"])
        .groupby(["course_id", "as_of"], as_index=False)["_d"].min()
    )
    snaps = snaps[snaps["_d"] <= tolerance]
    best = snaps.sort_values("_d").drop_duplicates("course_id")[["course_id", "as_of"]]
    return frame.merge(best, on=["course_id", "as_of"], how="inner")


def _metrics(y: np.ndarray, p: np.ndarray, rule_bin: np.ndarray, rule_days: np.ndarray
             ) -> dict[str, float | None]:
    return {
        "n": float(len(y)),
        "dropout_rate": float(np.mean(y)) if len(y) else None,
        "model_auc": auc(y, p),
        "model_brier": brier(y, p),
        "rule_auc": auc(y, rule_bin),
        "rule_brier": brier(y, rule_bin),
        "rule_days_auc": auc(y, rule_days),
    }


def evaluate_grouped(
    history: pd.DataFrame,
    *,
    truth: Callable[[pd.DataFrame], np.ndarray] | None = None,
    folds: int = 5,
    fit: Callable[[pd.DataFrame, pd.Series], RiskModel] = fit_model,
    checkpoints: Sequence[float] = CHECKPOINTS,
) -> dict[str, Any]:
    """Grouped cross-validation by course over the ended courses of ``history``.

    Courses are split into ``folds`` groups (leave-one-course-out when there are fewer); each
    group is scored by a model trained on the others only. ``truth(rows)`` gives the target of
    held-out rows (default: the learner's ``is_dropout`` at the course end). Returns
    ``{"by_checkpoint": {"0.25": {...metrics}}, "courses": n, "folds": k}`` with model and rule
    AUC/Brier pooled over the held-out courses at each checkpoint.
    """
    rows, target = training_rows(history)
    courses = sorted(rows["course_id"].unique().tolist())
    if len(courses) < 2:
        raise ValueError("grouped evaluation needs at least 2 ended courses")
    k = min(folds, len(courses))
    group_of = {c: i % k for i, c in enumerate(courses)}
    fold = rows["course_id"].map(group_of).to_numpy()
    preds = np.full(len(rows), np.nan)
    for g in range(k):
        held = fold == g
        model = fit(rows[~held], target[~held])
        preds[held] = model.predict(rows[held])
    y_all = truth(rows) if truth is not None else target.to_numpy()
    scored = rows.assign(_p=preds, _y=np.asarray(y_all, dtype="int64"))
    out: dict[str, Any] = {"courses": len(courses), "folds": k, "by_checkpoint": {}}
    out["by_checkpoint"] = _by_checkpoint(scored, checkpoints)
    return out


def _by_checkpoint(scored: pd.DataFrame, checkpoints: Sequence[float]) -> dict[str, Any]:
    """Model (``_p``) and rule metrics against the label (``_y``) at each checkpoint."""
    out: dict[str, Any] = {}
    for cp in checkpoints:
        at = checkpoint_rows(scored, cp)
        rule_bin, rule_days = inactivity_rule(at)
        out[f"{cp:g}"] = _metrics(at["_y"].to_numpy(), at["_p"].to_numpy(), rule_bin, rule_days)
    return out


def evaluate_model(
    model: RiskModel,
    history: pd.DataFrame,
    *,
    checkpoints: Sequence[float] = CHECKPOINTS,
) -> dict[str, Any]:
    """A model that did not learn from ``history`` (e.g. the fallback), scored on every ended
    course of it, by checkpoint, next to the rule (same shape as :func:`evaluate_grouped`)."""
    rows, target = training_rows(history)
    out: dict[str, Any] = {"courses": int(rows["course_id"].nunique()) if len(rows) else 0,
                           "folds": 0, "by_checkpoint": {}}
    if not len(rows):
        return out
    scored = rows.assign(_p=model.predict(rows), _y=target.to_numpy())
    out["by_checkpoint"] = _by_checkpoint(scored, checkpoints)
    return out


def quality_metadata(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """Flat numeric metrics (``auc_p50``, ``brier_p50``, ``rule_auc_p50``, ...) for asset
    metadata; missing values (a checkpoint with one class) are left out."""
    flat: dict[str, float] = {}
    for cp, metrics in evaluation.get("by_checkpoint", {}).items():
        tag = f"p{round(float(cp) * 100):d}"
        for name, value in metrics.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            key = name.removeprefix("model_")
            flat[f"{key}_{tag}"] = round(float(value), 4)
    return flat


def teacher_summary(frame: pd.DataFrame, top: int = 10) -> str:
    """Markdown for a teacher: learners per risk band (with thresholds) and the ``top`` learners
    at highest risk by user_id (no names) with their reasons. ``frame`` is a scored raw_data."""
    if frame.empty:
        return "No learners."
    score = pd.to_numeric(frame["dropout_risk_score"], errors="coerce").astype("float64")
    bands = score.map(lambda s: risk_band(float(s)) if not math.isnan(s) else "unknown")
    bounds = [b for _, b in RISK_BANDS[1:]] + [1.0]
    lines = ["| band | risk | learners | share |", "|---|---|---:|---:|"]
    for (name, lower), upper in zip(RISK_BANDS, bounds, strict=True):
        n = int((bands == name).sum())
        rng = f"{lower:.0%}–{upper:.0%}" if upper < 1.0 else f"≥ {lower:.0%}"
        lines.append(f"| {name} | {rng} | {n} | {n / len(frame):.0%} |")
    models = sorted({str(m) for m in frame["dropout_risk_model"].dropna().unique()})
    lines += ["", f"Model: {', '.join(models) or 'none'}.", "",
              f"**Top {min(top, len(frame))} at risk**", "",
              "| course | user_id | risk | days idle | reasons |", "|---|---:|---:|---:|---|"]
    ranked = frame.assign(_s=score).sort_values(["_s", "user_id"], ascending=[False, True])
    for _, r in ranked.head(top).iterrows():
        idle = r.get("days_since_last_activity")
        idle_s = "never active" if idle is None or pd.isna(idle) else str(int(idle))
        reasons = str(r.get("dropout_risk_reasons") or "").replace("|", "/") or "—"
        lines.append(f"| {r['course_id']} | {int(r['user_id'])} | {float(r['_s']):.0%} | "
                     f"{idle_s} | {reasons} |")
    return "\n".join(lines)
