"""A deterministic world of MOOC courses, learners and their activity over simulated time.

Everything is derived from ``WorldConfig.seed`` through seeded ``random.Random`` instances (never
the global generator), so the same config always yields the same payloads. Each enrollment's
activity is generated once (lazily, from its own seed, so the order of access does not matter) as
sorted event timelines; answering "what does this learner look like at ``now``" is then a bisect
plus a short loop.

Model in short: every learner (person) has hidden traits (motivation, ability, regularity). In each
course a share of the learners (25-40 %, drawn per course) quit partway; the least engaged quit
earliest (some never start). Learners work in sessions; each session advances them through the
course's items in order (videos and H5P contents, chapter by chapter); H5P scores follow ability;
the grade is the sum of H5P scores over the course's maximum, ``is_passed`` is grade >= threshold.
Forum activity is sparse. Nothing after ``now`` is visible.

Realism (so that "idle for a while" is a strong but imperfect sign of dropping out):

* **Breaks.** Anyone may take personal breaks of 1-4 weeks (illness, exams of other courses, a
  job); low-regularity learners take more and longer ones. Some courses have a course-wide break:
  Tết (the lunar new year, from a week before to nine days after) when the course spans it, else
  with ``holiday_share`` an exam period of 7-14 days; most learners pause then, the less
  motivated more often.
* **Stop-outs.** A share of the quitters (more of the motivated ones) come back 3-7 weeks after
  stopping and work to the end, catching up faster than usual; so even 21+ idle days in the middle
  of a course is not proof of dropout.
* **Crammers.** Some learners (more of the irregular ones) work little in the middle of the
  course (sessions every ~1-3 weeks) and a lot in its last weeks.

Ground truth (:meth:`World.outcomes`) is computed from the same timelines with the pipeline's
label rule, so it stays exact whatever the mechanisms.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
import threading
import unicodedata
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

DAY = 86400.0
WEEK = 7 * DAY
PLAUSIBLE_EPOCH = 946684800  # 2000-01-01: below this an opened/finished value is a flag

DEFAULT_NOW = datetime(2025, 11, 15, 8, 0, tzinfo=UTC)

# Envelope / shape variants the real systems are known to produce (see source-apis.md §4).
VARIANTS: dict[str, tuple[str, ...]] = {
    "M1": ("data.enrollments", "data", "enrollments", "results"),
    "M1_id": ("user_id", "id"),
    "M1_id_type": ("int", "str"),
    "M1_created": ("z", "frac", "offset", "naive"),
    "M4": ("students", "grade_data"),
    "M4_letters": ("AF", "pass", "none"),
    "M4_fields": ("full", "sparse"),
    "M5": ("students", "students_progress_data"),
    "M5_blocks": ("present", "absent"),
}

_ROTATED = frozenset({"M1", "M4", "M5"})

_LAST_NAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
               "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý")
_LAST_WEIGHTS = (38, 11, 10, 7, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1)
_MIDDLE_NAMES = ("Văn", "Thị", "Minh", "Ngọc", "Thanh", "Đức", "Hữu", "Quốc", "Gia", "Bảo",
                 "Hoàng", "Thu", "Anh", "Công", "Kim", "Xuân")
_FIRST_NAMES = ("An", "Bình", "Châu", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa",
                "Hùng", "Huy", "Khánh", "Lan", "Linh", "Long", "Mai", "Minh", "Nam", "Ngân",
                "Nhi", "Phong", "Phúc", "Quân", "Quang", "Sơn", "Tâm", "Thảo", "Trang", "Trung",
                "Tuấn", "Vy", "Yến", "Đạt", "Thư", "Khoa")
_FACULTIES = (("Kinh tế", "Kinh tế học"), ("Tài chính - Ngân hàng", "Tài chính"),
              ("Hệ thống thông tin", "Thương mại điện tử"), ("Luật", "Luật kinh doanh"),
              ("Quản trị kinh doanh", "Marketing"), ("Kế toán - Kiểm toán", "Kế toán"))
_MODES = ("audit", "verified", "honor", "professional")
_MODE_WEIGHTS = (55, 20, 20, 5)

_COURSE_TEMPLATES: tuple[tuple[str, str, str], ...] = (
    ("DHQG-HCM", "FM101", "Thị trường tài chính"),
    ("UEL", "NLTT241225", "Nguyên lý thống kê"),
    ("HCMUT", "CO1005", "Nhập môn lập trình"),
    ("UIT", "IT001", "Nhập môn điện toán"),
    ("HCMUS", "MTH00003", "Vi tích phân 1B"),
    ("UEL", "KTVM101", "Kinh tế vi mô"),
    ("USSH", "TRI101", "Triết học Mác - Lênin"),
    ("IU", "BA.115", "Marketing căn bản"),
    ("DHQG-HCM", "KNM201", "Kỹ năng mềm"),
    ("UEL", "LKT301", "Luật kinh tế"),
    ("HCMUT", "MT1003", "Giải tích 1"),
    ("UIT", "CS112", "Phân tích và thiết kế thuật toán"),
)
_TOPICS = ("Tổng quan về {s}", "Các khái niệm cơ bản", "Chức năng của {s}", "Phương pháp phân tích",
           "Các mô hình và công cụ", "Ứng dụng thực tiễn", "Đánh giá và kiểm định",
           "Rủi ro và quản trị rủi ro", "Xu hướng phát triển", "Ôn tập và tổng kết")
_UNIT_KINDS = ("Video bài giảng", "Tài liệu đọc", "Bài tập trắc nghiệm", "Thảo luận",
               "Câu hỏi ôn tập")
_H5P_KINDS = ("Trắc nghiệm", "Điền khuyết", "Kéo thả", "Đúng/Sai", "Tình huống")
# Tết (lunar new year's day): students are off from about a week before to nine days after
_TET: dict[int, tuple[int, int]] = {
    2019: (2, 5), 2020: (1, 25), 2021: (2, 12), 2022: (2, 1), 2023: (1, 22), 2024: (2, 10),
    2025: (1, 29), 2026: (2, 17), 2027: (2, 6), 2028: (1, 26), 2029: (2, 13), 2030: (2, 3),
}


def ascii_fold(text: str) -> str:
    """Vietnamese → ASCII ("Nguyễn Văn Đạt" → "Nguyen Van Dat")."""
    text = text.replace("đ", "d").replace("Đ", "D")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def to_epoch(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def iso_z(ts: float) -> str:
    return from_epoch(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def h5p_time(ts: float) -> str:
    return from_epoch(ts).strftime("%Y-%m-%d %H:%M:%S")


def _clip(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of a generated world. ``learners`` is per course."""

    courses: int = 3
    learners: int = 200
    seed: int = 7
    now: datetime = DEFAULT_NOW
    ended_share: float = 1 / 3
    weeks_range: tuple[int, int] = (8, 14)
    h5p_contents_range: tuple[int, int] = (10, 25)
    videos_range: tuple[int, int] = (5, 12)
    dropout_share_range: tuple[float, float] = (0.25, 0.40)
    never_start_share: float = 0.15  # of the quitters
    pass_threshold: float = 0.5
    courses_per_learner: float = 1.5  # average; sets the size of the person pool
    forum_share: float = 0.2  # approximate share of learners with any forum activity
    flag_course_share: float = 0.2  # courses whose H5P opened/finished are all 0/1 flags
    flag_learner_share: float = 0.1  # other learners with flags instead of epoch times
    session_hours: float = 12.0
    # realism: breaks, stop-outs who return, crammers (see the module docstring)
    break_rate: float = 0.2  # chance of a personal break per 4 weeks at regularity 0.5
    break_days: tuple[float, float] = (7.0, 28.0)
    holiday_share: float = 0.5  # courses not spanning Tết that get an exam-period break
    return_share: float = 0.4  # chance a quitter comes back, at motivation 0.5
    return_gap_days: tuple[float, float] = (21.0, 49.0)
    cram_share: float = 0.15  # share of crammers at regularity 0.5 (more if irregular)

    def __post_init__(self) -> None:
        if self.courses < 0 or self.learners < 0:
            raise ValueError("courses and learners must be >= 0")
        if self.now.tzinfo is None:
            object.__setattr__(self, "now", self.now.replace(tzinfo=UTC))


@dataclass(slots=True)
class Person:
    user_id: int
    username: str
    email: str
    last: str
    middle: str
    first: str
    mssv: str
    class_code: str
    faculty: str
    department: str
    gender: str
    year_of_birth: int
    motivation: float
    ability: float
    regularity: float

    @property
    def full_name_vn(self) -> str:
        return f"{self.last} {self.middle} {self.first}"

    @property
    def full_name(self) -> str:
        return ascii_fold(self.full_name_vn)


@dataclass(slots=True)
class Folder:
    folder_id: int
    name: str  # "Chương 1"
    chapter: str  # "Chương 1: Tổng quan ..."
    n_contents: int = 0
    n_videos: int = 0


@dataclass(slots=True)
class H5PContent:
    content_id: int
    title: str
    folder: Folder
    max_score: int


@dataclass(slots=True)
class Video:
    content_id: int
    title: str
    folder: Folder
    duration: float


@dataclass(slots=True)
class Item:
    kind: str  # "h5p" | "video"
    ref: H5PContent | Video
    block_end: int  # blocks completed once this item is reached


@dataclass(slots=True)
class Attempt:
    row_id: int
    content: H5PContent
    opened: float
    finished: float | None
    score: int
    time_spent: float


@dataclass(slots=True)
class Watch:
    row_id: int
    video: Video
    start: float
    end: float
    fraction: float

    def watched(self, now: float) -> float:
        if now >= self.end:
            f = self.fraction
        else:
            f = self.fraction * (now - self.start) / (self.end - self.start)
        return self.video.duration * f


@dataclass(slots=True)
class Timeline:
    activity: list[float]  # sorted MOOC activity times (sessions + items)
    item_times: list[float]  # time each course item was reached, in course order
    attempts: list[Attempt]  # sorted by opened
    attempt_opened: list[float]
    watches: list[Watch]  # sorted by start
    watch_start: list[float]
    forum: list[tuple[float, int, bool, int]]  # (time, 0=thread/1=comment, question, upvotes)
    forum_times: list[float]
    block_factor: float


@dataclass(slots=True)
class Enrollment:
    course: Course
    person: Person
    enrollment_id: int
    created: float
    mode: str
    motivation: float
    ability: float
    regularity: float
    engagement: float
    quits: bool = False
    never_started: bool = False
    quit_at: float | None = None
    returns_at: float | None = None  # a stop-out: back to work at this time (quits stays True)
    crammer: bool = False
    flags: bool = False
    removed: bool = False
    created_frac: int = 0  # microseconds for the "frac" created variant
    _timeline: Timeline | None = None

    @property
    def user_id(self) -> int:
        return self.person.user_id

    @property
    def timeline(self) -> Timeline:
        tl = self._timeline
        if tl is None:
            tl = self._timeline = _build_timeline(self)
        return tl


@dataclass(slots=True)
class Course:
    index: int
    course_id: str
    display_name: str
    org: str
    start: float
    end: float
    hide_end: bool
    folders: list[Folder]
    contents: list[H5PContent]
    videos: list[Video]
    items: list[Item]
    total_blocks: int
    block_labels: list[tuple[str, str, str]]
    variants: dict[str, str]
    dropout_share: float
    flags_course: bool
    forum_share: float = 0.2
    engagement_cutoff: float = 0.0
    never_cutoff: float = 0.0
    break_rate: float = 0.2
    break_days: tuple[float, float] = (7.0, 28.0)
    holiday: tuple[float, float] | None = None  # course-wide break [start, end)
    holiday_name: str = ""
    holiday_share: float = 0.0  # chance that a learner pauses during the holiday
    enrollments: list[Enrollment] = field(default_factory=list)
    by_user: dict[int, Enrollment] = field(default_factory=dict)

    @property
    def total_max_score(self) -> int:
        return sum(c.max_score for c in self.contents)


# ----------------------------------------------------------------------------------------------
# learner state at an instant (all cheap: bisect + short loops)


@dataclass(slots=True)
class H5PState:
    rows: list[tuple[Attempt, bool]]  # (attempt, finished by now)

    @property
    def total_contents(self) -> int:
        return len(self.rows)

    @property
    def completed_contents(self) -> int:
        return sum(1 for _, f in self.rows if f)

    @property
    def total_score(self) -> int:
        return sum(a.score for a, f in self.rows if f)

    @property
    def total_max_score(self) -> int:
        return sum(a.content.max_score for a, _ in self.rows)

    @property
    def total_time(self) -> float:
        return sum(a.time_spent for a, _ in self.rows)


def _video_status(fraction: float) -> str:
    if fraction >= 0.95:
        return "completed"
    if fraction <= 0.0:
        return "not_started"
    if fraction < 0.25:
        return "started"
    return "in_progress"


def _engagement(rng: random.Random, m: float, a: float, r: float) -> float:
    return 0.6 * m + 0.25 * r + 0.15 * a + rng.gauss(0.0, 0.08)


def _pauses(e: Enrollment, rng: random.Random, active_start: float) -> list[tuple[float, float]]:
    """The learner's breaks as sorted ``[start, end)`` intervals: personal ones + the holiday."""
    c = e.course
    r = e.regularity
    shortest, longest = c.break_days
    out: list[tuple[float, float]] = []
    p = _clip(c.break_rate * (0.25 + 1.5 * (1.0 - r)))  # per 4 weeks
    first = active_start + WEEK
    for i in range(math.ceil(max(0.0, c.end - first) / (4 * WEEK))):
        if rng.random() < p:
            lo = first + (i + rng.random()) * 4 * WEEK
            # irregular learners' breaks are longer
            days = shortest + (longest - shortest) * rng.random() ** (1.5 + 2.0 * r)
            if lo < c.end:
                out.append((lo, lo + days * DAY))
    if c.holiday is not None and rng.random() < _clip(
            c.holiday_share * (0.7 + 0.6 * (1.0 - e.motivation))):
        out.append(c.holiday)
    out.sort()
    return out


def _schedule(
    rng: random.Random,
    start: float,
    stop: float,
    *,
    mean_gap: float,
    max_gap: float,
    pauses: list[tuple[float, float]],
    course: Course,
    cram: tuple[float, float] | None = None,
) -> list[float]:
    """Session times in ``[start, stop)``: exponential gaps (days), none inside a pause.

    A crammer (``cram`` = (lo, hi) course fractions) has 3.5x longer gaps between lo and hi and
    dense sessions after hi."""
    out: list[float] = []
    span = max(1.0, course.end - course.start)
    t = start
    while True:
        for lo, hi in pauses:  # sorted by start: one pass also skips chained pauses
            if lo <= t < hi:
                t = hi + rng.uniform(0.0, 1.0) * DAY
        if t >= stop:
            return out
        out.append(t)
        g, mx = mean_gap, max_gap
        if cram is not None:
            f = (t - course.start) / span
            if cram[0] <= f < cram[1]:
                g, mx = 3.5 * mean_gap, 24.0
            elif f >= cram[1]:
                g, mx = 0.35 * mean_gap, 3.0
        t += max(0.2, min(rng.expovariate(1.0 / g), mx)) * DAY


def _build_timeline(e: Enrollment) -> Timeline:
    c = e.course
    rng = random.Random(f"tl|{c.course_id}|{e.user_id}|{e.enrollment_id}")
    m, a, r = e.motivation, e.ability, e.regularity
    empty = Timeline([], [], [], [], [], [], [], [], 1.0)
    if e.never_started:
        return empty
    active_start = max(e.created, c.start) + rng.uniform(0.0, 2.0) * DAY
    if active_start >= c.end:
        return empty
    mean_gap = 7.0 / (1.0 + 3.0 * m * (0.5 + r))  # days
    max_gap = 9.0 if not e.quits else 20.0
    pauses = _pauses(e, rng, active_start)
    cram = (rng.uniform(0.15, 0.3), rng.uniform(0.72, 0.85)) if e.crammer else None
    # the learner's plan for the whole course sets their pace; quitting cuts it short
    plan = _schedule(rng, active_start, c.end, mean_gap=mean_gap, max_gap=max_gap, pauses=pauses,
                     course=c, cram=cram)
    stop = e.quit_at if e.quits and e.quit_at is not None else c.end
    sessions = [t for t in plan if t < stop]
    boost_from = math.inf
    if e.returns_at is not None and e.returns_at < c.end:
        boost_from = e.returns_at  # a stop-out catches up after coming back
        sessions += _schedule(rng, e.returns_at, c.end, mean_gap=mean_gap, max_gap=9.0,
                              pauses=[p for p in pauses if p[0] > e.returns_at], course=c)
    if not sessions:
        return empty
    n_items = len(c.items)
    pace = (0.85 + 0.4 * m) * rng.uniform(0.9, 1.25)
    rate = n_items * pace / max(1, len(plan))
    skip_p = 0.3 * (1.0 - m)
    unfinished_p = 0.05 + 0.15 * (1.0 - m)
    complete_p = 0.4 + 0.55 * m
    item_times: list[float] = []
    attempts: list[Attempt] = []
    watches: list[Watch] = []
    row_base = (c.index + 1) * 10_000_000 + (e.enrollment_id % 100_000) * 100
    acc = 0.0
    k = 0
    for s in sessions:
        if k >= n_items:
            break
        acc += rate * rng.uniform(0.5, 1.5) * (2.0 if s >= boost_from else 1.0)
        n = int(acc)
        acc -= n
        cur = s
        for _ in range(n):
            if k >= n_items:
                break
            item = c.items[k]
            item_times.append(cur)
            k += 1
            if item.kind == "h5p":
                if rng.random() < skip_p:
                    cur += 60.0
                    continue
                content = item.ref
                assert isinstance(content, H5PContent)
                spent = rng.lognormvariate(math.log(240.0), 0.6)
                spent = round(spent, 2) if rng.random() < 0.3 else float(int(spent))
                finished = None if rng.random() < unfinished_p else cur + spent
                p = _clip(rng.gauss(0.4 + 0.6 * a, 0.15))
                score = round(p * content.max_score) if finished is not None else 0
                attempts.append(Attempt(row_base + len(attempts) + len(watches) + 1, content,
                                        cur, finished, score, spent))
                cur += spent + rng.uniform(30.0, 300.0)
            else:
                video = item.ref
                assert isinstance(video, Video)
                u = rng.random()
                if u < complete_p:
                    frac = 1.0 if rng.random() < 0.5 else rng.uniform(0.95, 1.0)
                elif u < complete_p + 0.05:
                    frac = 0.0
                else:
                    frac = rng.uniform(0.05, 0.94)
                length = max(1.0, video.duration * frac * rng.uniform(1.0, 1.5))
                watches.append(Watch(row_base + len(attempts) + len(watches) + 1, video,
                                     cur, cur + length, frac))
                cur += length + rng.uniform(30.0, 300.0)
    forum: list[tuple[float, int, bool, int]] = []
    if sessions and rng.random() < _clip(c.forum_share * (0.4 + 1.2 * m)):
        threads = int(rng.expovariate(1.0 / (0.5 + 1.5 * m)))
        comments = int(rng.expovariate(1.0 / (1.0 + 4.0 * m)))
        if threads + comments == 0:
            comments = 1
        for kind, count in ((0, threads), (1, comments)):
            for _ in range(count):
                when = rng.choice(sessions) + rng.uniform(0.0, 3600.0)
                forum.append((when, kind, kind == 0 and rng.random() < 0.5,
                              int(rng.expovariate(1.0 / 0.8))))
        forum.sort()
    activity = sorted(sessions + item_times)
    return Timeline(
        activity=activity,
        item_times=item_times,
        attempts=attempts,
        attempt_opened=[x.opened for x in attempts],
        watches=watches,
        watch_start=[w.start for w in watches],
        forum=forum,
        forum_times=[f[0] for f in forum],
        block_factor=rng.uniform(0.9, 1.0),
    )


# ----------------------------------------------------------------------------------------------


class World:
    """The simulated state of both source systems, as of a movable clock ``now``."""

    def __init__(self, config: WorldConfig | None = None) -> None:
        self.config = config or WorldConfig()
        self._lock = threading.RLock()
        self._now = to_epoch(self.config.now)
        self.version = 0
        self._rng = random.Random(f"world|{self.config.seed}")
        self._next_user_id = 1000 + self._rng.randrange(0, 500)
        self._next_enrollment_id = 55_501
        self._next_content_id = 40
        self._next_folder_id = 10
        self._variant_offsets = {k: self._rng.randrange(len(v)) for k, v in VARIANTS.items()}
        self.persons: list[Person] = []
        self.courses: dict[str, Course] = {}
        self._cache: dict[tuple[Any, ...], Any] = {}
        cfg = self.config
        pool = max(cfg.learners, math.ceil(cfg.courses * cfg.learners / cfg.courses_per_learner))
        for _ in range(pool):
            self.persons.append(self._new_person())
        n_ended = round(cfg.courses * cfg.ended_share)
        if cfg.courses >= 2:
            n_ended = min(max(n_ended, 1 if cfg.ended_share > 0 else 0), cfg.courses - 1)
        n_running = cfg.courses - n_ended
        for i in range(cfg.courses):
            weeks = self._rng.randint(*cfg.weeks_range)
            length = weeks * WEEK
            if i < n_ended:
                end = self._now - (i + 1) * self._rng.uniform(2.0, 5.0) * WEEK
                start = end - length
            else:
                j = i - n_ended
                elapsed = (j + 1) / (n_running + 1) * 0.85 + 0.05
                start = self._now - elapsed * length
            start = float(int(start // DAY * DAY))  # midnight UTC
            self._make_course(start=start, weeks=weeks, learners=cfg.learners)

    @property
    def lock(self) -> AbstractContextManager[Any]:
        """Held while a request reads the world (mutations from other threads wait for it)."""
        return self._lock

    # ------------------------------------------------------------------ clock

    @property
    def now(self) -> datetime:
        return from_epoch(self._now)

    @property
    def now_ts(self) -> float:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        with self._lock:
            self._now += seconds
            self._touch()
        return self.now

    def set_now(self, dt: datetime) -> datetime:
        with self._lock:
            self._now = to_epoch(dt)
            self._touch()
        return self.now

    def _touch(self) -> None:
        self.version += 1
        self._cache.clear()

    # ------------------------------------------------------------------ generation

    def _new_person(self, rng: random.Random | None = None) -> Person:
        rng = rng or self._rng
        uid = self._next_user_id
        self._next_user_id += 1 + (rng.randrange(4) == 0) * rng.randrange(1, 9)
        last = rng.choices(_LAST_NAMES, _LAST_WEIGHTS)[0]
        gender = "f" if rng.random() < 0.55 else "m"
        middle = "Thị" if gender == "f" and rng.random() < 0.4 else rng.choice(_MIDDLE_NAMES)
        first = rng.choice(_FIRST_NAMES)
        year = rng.choice((2019, 2020, 2021, 2022, 2023, 2024))
        mssv = f"{year % 100:02d}{rng.randrange(10):d}{rng.randrange(10000):04d}"
        faculty, department = rng.choice(_FACULTIES)
        base = ascii_fold(f"{last}{middle[0]}{first}").lower().replace(" ", "")
        username = f"{base}{uid % 1000:03d}" if rng.random() < 0.6 else f"sv{mssv}"
        domain = "st.uel.edu.vn" if rng.random() < 0.7 else "gmail.com"
        return Person(
            user_id=uid, username=username, email=f"{username}@{domain}", last=last,
            middle=middle, first=first, mssv=mssv, class_code=f"K{year % 100:02d}",
            faculty=faculty, department=department, gender=gender,
            year_of_birth=year - 18 - rng.randrange(3),
            motivation=rng.betavariate(2.2, 1.8), ability=rng.betavariate(2.5, 2.0),
            regularity=rng.betavariate(2.0, 2.0),
        )

    def _course_id_for(self, index: int, start: float) -> tuple[str, str, str]:
        org, code, name = _COURSE_TEMPLATES[index % len(_COURSE_TEMPLATES)]
        if index >= len(_COURSE_TEMPLATES):
            code = f"{code}{index // len(_COURSE_TEMPLATES)}"
        d = from_epoch(start)
        semester = 1 if d.month < 7 else 2
        run = f"{d.year}_S{semester}" if index % 2 == 0 else f"{d.year}_{d.month:02d}"
        cid = f"course-v1:{org}+{code}+{run}"
        n = 2
        while cid in self.courses:
            cid = f"course-v1:{org}+{code}+{run}_{n}"
            n += 1
        return cid, org, name

    def _make_course(
        self,
        *,
        start: float,
        weeks: int,
        learners: int,
        course_id: str | None = None,
        display_name: str | None = None,
        h5p_contents: int | None = None,
        videos: int | None = None,
        hide_end: bool = False,
    ) -> Course:
        cfg = self.config
        index = len(self.courses)
        rng = random.Random(f"course|{cfg.seed}|{index}")
        cid, org, subject = self._course_id_for(index, start)
        if course_id is not None:
            if course_id in self.courses:
                raise ValueError(f"course {course_id!r} exists")
            cid = course_id
            org = course_id.split(":", 1)[-1].split("+", 1)[0]
        name = display_name or subject
        n_contents = h5p_contents if h5p_contents is not None else rng.randint(
            *cfg.h5p_contents_range)
        n_videos = videos if videos is not None else rng.randint(*cfg.videos_range)
        n_chapters = max(1, min(rng.randint(4, 8), n_contents + n_videos))
        folders: list[Folder] = []
        topics = sorted(rng.sample(_TOPICS, k=min(n_chapters, len(_TOPICS))), key=_TOPICS.index)
        for ch in range(n_chapters):
            topic = topics[ch % len(topics)].format(s=subject.lower())
            folders.append(
                Folder(self._next_folder_id, f"Chương {ch + 1}", f"Chương {ch + 1}: {topic}"))
            self._next_folder_id += 1
        # distribute items over chapters, in order
        contents: list[H5PContent] = []
        vids: list[Video] = []
        per_folder: list[list[H5PContent | Video]] = [[] for _ in folders]
        for i in range(n_videos):
            f = folders[i * n_chapters // max(1, n_videos)]
            dur = rng.uniform(240.0, 1500.0)
            dur = round(dur, 2) if rng.random() < 0.4 else float(int(dur))
            topic = f.chapter.split(": ", 1)[1]
            v = Video(self._next_content_id, f"Video bài giảng {i + 1}: {topic}", f, dur)
            self._next_content_id += 1
            vids.append(v)
            f.n_videos += 1
            per_folder[folders.index(f)].append(v)
        for i in range(n_contents):
            f = folders[i * n_chapters // max(1, n_contents)]
            c = H5PContent(self._next_content_id,
                           f"Bài tập {i + 1}: {rng.choice(_H5P_KINDS)} - {f.name}", f,
                           rng.choice((10, 10, 20, 50, 100, 100)))
            self._next_content_id += 1
            contents.append(c)
            f.n_contents += 1
            per_folder[folders.index(f)].append(c)
        items: list[Item] = []
        labels: list[tuple[str, str, str]] = []
        for fi, f in enumerate(folders):
            n_sections = rng.randint(2, 4)
            for it_i, ref in enumerate(per_folder[fi]):
                section = f"Bài {fi + 1}.{it_i * n_sections // max(1, len(per_folder[fi])) + 1}"
                for _ in range(rng.randint(3, 7)):
                    labels.append((f.chapter, section, rng.choice(_UNIT_KINDS)))
                items.append(Item("h5p" if isinstance(ref, H5PContent) else "video", ref,
                                  len(labels)))
        # the main envelopes rotate over courses (so neighbouring courses differ); the rest vary
        variants = {k: (VARIANTS[k][(index + self._variant_offsets[k]) % len(VARIANTS[k])]
                        if k in _ROTATED else rng.choice(VARIANTS[k])) for k in VARIANTS}
        course = Course(
            index=index, course_id=cid, display_name=name, org=org, start=start,
            end=start + weeks * WEEK, hide_end=hide_end, folders=folders, contents=contents,
            videos=vids, items=items, total_blocks=len(labels), block_labels=labels,
            variants=variants, dropout_share=rng.uniform(*cfg.dropout_share_range),
            flags_course=rng.random() < cfg.flag_course_share,
            forum_share=cfg.forum_share * rng.uniform(0.6, 1.4),
            break_rate=cfg.break_rate, break_days=cfg.break_days,
        )
        self._set_holiday(course)
        self.courses[cid] = course
        # learners: reuse people from the pool (real learners take several courses)
        chosen: list[Person] = []
        if learners:
            k = min(learners, len(self.persons))
            chosen = rng.sample(self.persons, k)
            while len(chosen) < learners:
                p = self._new_person(rng)
                self.persons.append(p)
                chosen.append(p)
        drafts: list[Enrollment] = []
        for p in chosen:
            erng = random.Random(f"enr|{cid}|{p.user_id}")
            created = start - 14 * DAY + (erng.random() ** 1.7) * 35 * DAY
            created = float(int(created))
            drafts.append(self._draft_enrollment(course, p, created, erng))
        drafts.sort(key=lambda e: (e.created, e.user_id))
        if drafts:
            scores = sorted(e.engagement for e in drafts)
            n_quit = round(len(scores) * course.dropout_share)
            course.engagement_cutoff = scores[n_quit - 1] if n_quit else -math.inf
            n_never = round(n_quit * cfg.never_start_share)
            course.never_cutoff = scores[n_never - 1] if n_never else -math.inf
        else:
            course.engagement_cutoff = (0.6 * 0.55 + 0.25 * 0.5 + 0.15 * 0.55) - 0.07
            course.never_cutoff = course.engagement_cutoff - 0.15
        for e in drafts:
            self._finish_enrollment(e)
        self._touch()
        return course

    def _set_holiday(self, c: Course) -> None:
        """Tết if the course spans it, else (``holiday_share`` of courses) an exam period."""
        hrng = random.Random(f"holiday|{self.config.seed}|{c.index}")
        year = from_epoch(c.start).year
        for y in (year, year + 1):
            if y in _TET:
                tet = to_epoch(datetime(y, *_TET[y], tzinfo=UTC))
                lo, hi = tet - 7 * DAY, tet + 9 * DAY
                if lo < c.end and hi > c.start:
                    c.holiday, c.holiday_name, c.holiday_share = (lo, hi), "Tết", 0.9
                    return
        if hrng.random() < self.config.holiday_share:
            lo = c.start + hrng.uniform(0.35, 0.7) * (c.end - c.start)
            lo = float(int(lo // DAY * DAY))
            c.holiday = (lo, lo + hrng.randint(7, 14) * DAY)
            c.holiday_name, c.holiday_share = "exam period", 0.6

    def _draft_enrollment(self, course: Course, p: Person, created: float,
                          erng: random.Random) -> Enrollment:
        m = _clip(p.motivation + erng.gauss(0.0, 0.12))
        a = _clip(p.ability + erng.gauss(0.0, 0.05))
        r = _clip(p.regularity + erng.gauss(0.0, 0.08))
        return Enrollment(
            course=course, person=p, enrollment_id=0, created=created,
            mode=erng.choices(_MODES, _MODE_WEIGHTS)[0], motivation=m, ability=a, regularity=r,
            engagement=_engagement(erng, m, a, r),
            flags=course.flags_course or erng.random() < self.config.flag_learner_share,
            created_frac=erng.randrange(1_000_000),
        )

    def _finish_enrollment(self, e: Enrollment) -> None:
        c = e.course
        e.enrollment_id = self._next_enrollment_id
        self._next_enrollment_id += 1
        if e.engagement <= c.engagement_cutoff:
            e.quits = True
            e.never_started = e.engagement <= c.never_cutoff
            qrng = random.Random(f"quit|{c.course_id}|{e.user_id}")
            span = c.end - max(e.created, c.start)
            rel = _clip((e.engagement - c.never_cutoff)
                        / max(1e-9, c.engagement_cutoff - c.never_cutoff))
            frac = 0.03 + 0.8 * rel * qrng.uniform(0.5, 1.0)
            e.quit_at = e.created if e.never_started else max(e.created, c.start) + frac * span
        cfg = self.config
        srng = random.Random(f"style|{c.course_id}|{e.user_id}")
        if not e.never_started:
            e.crammer = srng.random() < _clip(cfg.cram_share * 2.0 * (1.0 - e.regularity))
            if e.quits and e.quit_at is not None and (
                    srng.random() < _clip(cfg.return_share * (0.5 + e.motivation))):
                back = e.quit_at + srng.uniform(*cfg.return_gap_days) * DAY
                if back < c.end - 3 * DAY:
                    e.returns_at = back
        c.enrollments.append(e)
        c.by_user[e.user_id] = e

    # ------------------------------------------------------------------ mutations

    def course(self, course_id: str) -> Course:
        return self.courses[course_id]

    def enroll(self, course_id: str, count: int) -> list[int]:
        """Enrol ``count`` new learners now; they appear at the end of M1."""
        with self._lock:
            c = self.courses[course_id]
            rng = random.Random(f"enroll|{self.config.seed}|{course_id}|{len(c.enrollments)}")
            ids: list[int] = []
            for _ in range(count):
                p = self._new_person(rng)
                self.persons.append(p)
                erng = random.Random(f"enr|{course_id}|{p.user_id}")
                e = self._draft_enrollment(c, p, float(int(self._now)), erng)
                self._finish_enrollment(e)
                ids.append(p.user_id)
            self._touch()
            return ids

    def unenroll(self, course_id: str, user_id: int) -> bool:
        with self._lock:
            e = self.courses[course_id].by_user.get(user_id)
            if e is None or e.removed:
                return False
            e.removed = True
            self._touch()
            return True

    def add_course(
        self,
        course_id: str | None = None,
        *,
        display_name: str | None = None,
        start: datetime | None = None,
        weeks: int | None = None,
        learners: int | None = None,
        h5p_contents: int | None = None,
        videos: int | None = None,
        hide_end: bool = False,
    ) -> str:
        """Add a course (default: starting now, config.learners learners); it appears in M3."""
        with self._lock:
            rng = random.Random(f"addcourse|{self.config.seed}|{len(self.courses)}")
            st = to_epoch(start) if start is not None else float(int(self._now // DAY * DAY))
            c = self._make_course(
                start=st, weeks=weeks or rng.randint(*self.config.weeks_range),
                learners=self.config.learners if learners is None else learners,
                course_id=course_id, display_name=display_name, h5p_contents=h5p_contents,
                videos=videos, hide_end=hide_end)
            return c.course_id

    # ------------------------------------------------------------------ views at now

    def visible_enrollments(self, course_id: str) -> list[Enrollment]:
        """Enrollments that exist at ``now`` in enrollment order (KeyError: unknown course)."""
        key = ("vis", course_id)
        hit = self._cache.get(key)
        if hit is None:
            now = self._now
            hit = [e for e in self.courses[course_id].enrollments
                   if not e.removed and e.created <= now]
            self._cache[key] = hit
        return hit

    def status(self, course_id: str) -> str:
        c = self.courses[course_id]
        if self._now >= c.end:
            return "ended"
        return "running" if self._now >= c.start else "upcoming"

    @staticmethod
    def h5p_state(e: Enrollment, now: float) -> H5PState:
        tl = e.timeline
        n = bisect.bisect_right(tl.attempt_opened, now)
        return H5PState([(a, a.finished is not None and a.finished <= now)
                         for a in tl.attempts[:n]])

    @staticmethod
    def watches_at(e: Enrollment, now: float) -> list[tuple[Watch, float]]:
        """Opened videos with watched fraction at ``now``."""
        tl = e.timeline
        n = bisect.bisect_right(tl.watch_start, now)
        out: list[tuple[Watch, float]] = []
        for w in tl.watches[:n]:
            f = w.fraction if now >= w.end else w.fraction * (now - w.start) / (w.end - w.start)
            out.append((w, f))
        return out

    @staticmethod
    def last_activity(e: Enrollment, now: float) -> float | None:
        act = e.timeline.activity
        i = bisect.bisect_right(act, now)
        return act[i - 1] if i else None

    @staticmethod
    def observed_last_activity(e: Enrollment, now: float) -> float | None:
        """The last activity the pipeline sees at ``now`` (whole seconds): the MOOC's
        ``last_activity`` or a later H5P ``finished`` time (not for learners whose H5P times are
        0/1 flags)."""
        last = World.last_activity(e, now)
        if last is None:
            return None
        best = float(int(last))
        if not e.flags:
            tl = e.timeline
            for att in tl.attempts[:bisect.bisect_right(tl.attempt_opened, now)]:
                if att.finished is not None and att.finished <= now:
                    best = max(best, float(int(att.finished)))
        return best

    @staticmethod
    def longest_idle_days(e: Enrollment, now: float) -> float | None:
        """The longest stretch without activity between two activities up to ``now`` (days)."""
        act = e.timeline.activity
        n = bisect.bisect_right(act, now)
        if n < 2:
            return None
        return max(b - x for x, b in itertools.pairwise(act[:n])) / DAY

    def grade(self, e: Enrollment, now: float) -> float:
        total = e.course.total_max_score
        if not total:
            return 0.0
        tl = e.timeline
        n = bisect.bisect_right(tl.attempt_opened, now)
        got = sum(a.score for a in tl.attempts[:n] if a.finished is not None and a.finished <= now)
        return round(100.0 * got / total, 2)

    def progress(self, e: Enrollment, now: float) -> tuple[int, int, tuple[str, str, str] | None]:
        """(completed_blocks, total_blocks, (chapter, section, unit) of the current position)."""
        c = e.course
        tl = e.timeline
        k = bisect.bisect_right(tl.item_times, now)
        if k == 0:
            return 0, c.total_blocks, None
        blocks = min(c.total_blocks, max(1, round(c.items[k - 1].block_end * tl.block_factor)))
        return blocks, c.total_blocks, c.block_labels[blocks - 1]

    @staticmethod
    def forum(e: Enrollment, now: float) -> tuple[int, int, int, int] | None:
        """(threads, comments, questions, upvotes) at now, None without forum activity."""
        tl = e.timeline
        n = bisect.bisect_right(tl.forum_times, now)
        if n == 0:
            return None
        threads = comments = questions = upvotes = 0
        for _, kind, q, up in tl.forum[:n]:
            if kind == 0:
                threads += 1
            else:
                comments += 1
            questions += q
            upvotes += up
        return threads, comments, questions, upvotes

    # ------------------------------------------------------------------ truth

    def outcomes(self, course_id: str, inactivity_days: int = 21) -> list[dict[str, Any]]:
        """Each (non-removed) learner's true final outcome, evaluated at the course end.

        ``dropped_out`` follows raw-data.md: not passed and no activity in the last
        ``inactivity_days`` before the end (or never active and enrolled that long before it),
        with the activity the pipeline sees (:meth:`observed_last_activity`).
        ``quit``/``quit_at`` are the hidden decision of the model (the learner stopped working);
        ``returned_at`` is set for a stop-out who came back, ``crammer`` for a learner who does
        most of the work near the end; ``longest_idle_days`` is the longest break.
        """
        c = self.courses[course_id]
        end = c.end
        thr = self.config.pass_threshold * 100.0
        window = inactivity_days * DAY
        out: list[dict[str, Any]] = []
        for e in c.enrollments:
            if e.removed:
                continue
            grade = self.grade(e, end)
            passed = grade >= thr
            last = self.observed_last_activity(e, end)
            if last is None:
                inactive = e.created <= end - window
            else:
                inactive = end - last >= window
            out.append({
                "user_id": e.user_id,
                "enrollment_id": e.enrollment_id,
                "created": iso_z(e.created),
                "final_grade": grade,
                "passed": passed,
                "dropped_out": (not passed) and inactive,
                "quit": e.quits,
                "never_started": e.never_started,
                "quit_at": iso_z(e.quit_at) if e.quit_at is not None else None,
                "returned_at": iso_z(e.returns_at) if e.returns_at is not None else None,
                "crammer": e.crammer,
                "longest_idle_days": (None if (g := self.longest_idle_days(e, end)) is None
                                      else round(g, 2)),
                "last_activity": iso_z(last) if last is not None else None,
                "items_reached": len(e.timeline.item_times),
                "traits": {"motivation": round(e.motivation, 4), "ability": round(e.ability, 4),
                           "regularity": round(e.regularity, 4)},
            })
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [{
            "course_id": c.course_id, "display_name": c.display_name, "start": iso_z(c.start),
            "end": iso_z(c.end), "status": self.status(c.course_id),
            "enrolled": len(self.visible_enrollments(c.course_id)),
            "h5p_contents": len(c.contents), "videos": len(c.videos),
            "dropout_share": round(c.dropout_share, 4), "flags_course": c.flags_course,
            "holiday": None if c.holiday is None else {
                "name": c.holiday_name, "start": iso_z(c.holiday[0]), "end": iso_z(c.holiday[1])},
            "variants": dict(c.variants),
        } for c in self.courses.values()]

