"""Backfill the course partitions of ``course_refresh`` here: one ranged run, or one per course.

    python -m moocassets.backfill --all                  # every registered course, ONE run
                                                         # (runs of at most 25 courses)
    python -m moocassets.backfill --courses K1,K2        # those courses (contiguous ranges)
    python -m moocassets.backfill --all --per-course     # one run per course

**One ranged run** (the default) is the fast route for a first load or a full refresh: every step
runs once for all courses, so Dagster's per-step and per-run costs (step start-up, inputs, events,
the MOOC login, the H5P fan-out's ramp-up) are paid once instead of once per course
(``benchmarks/pipeline.py`` measures both). Its trade-off is failure isolation: a step that fails
for one course (a source down, a blocking check) fails for every course of the run, and nothing of
that step is written (each table keeps its previous rows). So a failed ranged run is followed by
one run per course of its range (``--no-retry`` turns that off): the healthy courses load and the
broken one fails on its own. The automation refreshes and retries course by course.

The runs go into the Dagster instance of ``DAGSTER_HOME`` (visible in the UI) and use the resources
of ``moocassets.definitions`` (the environment, README "Configuration"). Courses must be registered
partitions (``course_discovery_sensor`` or ``make demo`` registers them).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

COURSE_JOB = "course_refresh"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PARTITION_TAG = "dagster/partition"
MAX_COURSES_PER_RUN = 25
"""A ranged run holds every course's frames at once (about 25 MiB per 1,000-learner course on top
of ~230 MiB, measured in benchmarks/pipeline.py), so long lists are split into runs this long."""


def contiguous_ranges(
    selected: Sequence[str], registered: Sequence[str], max_len: int | None = None
) -> list[list[str]]:
    """``selected`` courses grouped into runs of consecutive registered partitions, each at most
    ``max_len`` long.

    A partition range covers every registered key between its ends, so a subset that skips a
    course needs one range per contiguous stretch. Unknown courses raise ``KeyError``."""
    if max_len is not None and max_len < 1:
        raise ValueError("max_len must be at least 1")
    position = {key: i for i, key in enumerate(registered)}
    unknown = [c for c in selected if c not in position]
    if unknown:
        raise KeyError(f"not registered course partition(s): {unknown[:5]}")
    ordered = sorted(dict.fromkeys(selected), key=position.__getitem__)
    ranges: list[list[str]] = []
    for course in ordered:
        if (
            ranges
            and position[course] == position[ranges[-1][-1]] + 1
            and (max_len is None or len(ranges[-1]) < max_len)
        ):
            ranges[-1].append(course)
        else:
            ranges.append([course])
    return ranges


@dataclass(frozen=True)
class BackfillRun:
    """One run of the backfill: its courses and result; ``superseded`` when a failed ranged run
    was followed by one run per course (the later runs tell each course's outcome)."""

    courses: tuple[str, ...]
    result: dg.ExecuteInProcessResult | dg.JobExecutionResult
    superseded: bool = False

    @property
    def success(self) -> bool:
        return self.result.success


def execute_courses(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    courses: Sequence[str],
    *,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """One run of ``job`` over ``courses``: a partition key for one course, the range tags for
    several (consecutive registered partitions).

    With the in-process executor the run executes here (``execute_in_process``); with any other
    (Celery, ``MOOCASSETS_EXECUTOR``) this process orchestrates the run with the job's executor
    and its steps execute wherever that executor sends them (``dg.execute_job`` of the
    reconstructable ``moocassets.definitions.course_refresh``)."""
    import dagster as dg

    run_tags = dict(tags or {})
    if len(courses) > 1:
        run_tags.update({RANGE_START_TAG: courses[0], RANGE_END_TAG: courses[-1]})
    if job.executor_def.name == dg.in_process_executor.name:
        return job.execute_in_process(
            instance=instance, raise_on_error=False, tags=run_tags,
            run_config=dict(run_config or {}),
            **({"partition_key": courses[0]} if len(courses) == 1 else {}),
        )
    if len(courses) == 1:
        run_tags[PARTITION_TAG] = courses[0]
    from moocassets.definitions import course_refresh

    if job.name != COURSE_JOB:
        raise ValueError(f"only {COURSE_JOB} runs on the {job.executor_def.name} executor here")
    return dg.execute_job(
        dg.reconstructable(course_refresh), instance, run_config=dict(run_config or {}),
        tags=run_tags, raise_on_error=False,
    )


def interrupted(result: dg.ExecuteInProcessResult) -> bool:
    """Whether the run was stopped by a signal (Ctrl-C, SIGTERM) rather than failing on its own:
    Dagster then fails the run cleanly and returns instead of raising."""
    import dagster as dg

    stopped = dg.DagsterExecutionInterruptedError.__name__
    return any(
        event.event_type == dg.DagsterEventType.RUN_FAILURE
        and event.job_failure_data.error is not None
        and event.job_failure_data.error.cls_name == stopped
        for event in result.all_events
    )


def run_backfill(
    instance: dg.DagsterInstance,
    course_ids: Sequence[str],
    *,
    single_run: bool = True,
    max_courses_per_run: int | None = MAX_COURSES_PER_RUN,
    retry_failed_per_course: bool = True,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    defs: dg.Definitions | None = None,
) -> list[BackfillRun]:
    """Materialize every course-partitioned asset of ``course_ids`` (``defs``: default
    ``moocassets.definitions.defs``). With ``retry_failed_per_course``, a ranged run that fails
    is followed by one run per course of its range, so one broken course does not keep the
    others from loading (the failed ranged run wrote nothing for the failed step). A run
    stopped by a signal ends the backfill: ``KeyboardInterrupt``, no retry, no further run."""
    from moocassets.partitions import COURSE_PARTITIONS_NAME

    if defs is None:
        from moocassets.definitions import defs
    job = defs.resolve_job_def(COURSE_JOB)
    registered = instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME)
    groups = (
        contiguous_ranges(course_ids, registered, max_courses_per_run) if single_run
        else [[c] for c in dict.fromkeys(course_ids)]
    )

    def execute(group: list[str]) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
        return execute_courses(job, instance, group, tags=tags, run_config=run_config)

    runs: list[BackfillRun] = []
    for group in groups:
        result = execute(group)
        if interrupted(result):
            raise KeyboardInterrupt(f"run {result.run_id} was interrupted")
        retry = not result.success and len(group) > 1 and retry_failed_per_course
        runs.append(BackfillRun(tuple(group), result, superseded=retry))
        for course in group if retry else ():
            single = execute([course])
            if interrupted(single):
                raise KeyboardInterrupt(f"run {single.run_id} was interrupted")
            runs.append(BackfillRun((course,), single))
    return runs


def failed_steps(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> list[str]:
    return [e.step_key or "?" for e in result.all_events if e.is_step_failure]


def run_failure_message(result: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> str:
    """Why the run failed as a whole (e.g. the broker unreachable), or ``""``."""
    for event in result.all_events:
        if event.is_run_failure:
            error = getattr(event.event_specific_data, "error", None)
            return error.message.strip() if error is not None else (event.message or "")
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m moocassets.backfill", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every registered course partition")
    which.add_argument("--courses", help="comma-separated course ids (registered partitions)")
    ap.add_argument("--per-course", action="store_true", help="one run per course")
    ap.add_argument("--no-retry", action="store_true",
                    help="do not follow a failed ranged run with one run per course")
    ap.add_argument("--max-courses-per-run", type=int, default=MAX_COURSES_PER_RUN,
                    help="split longer ranges into several runs (memory bound; default "
                    f"{MAX_COURSES_PER_RUN})")
    args = ap.parse_args(argv)

    import dagster as dg

    from moocassets.partitions import COURSE_PARTITIONS_NAME

    instance = dg.DagsterInstance.get()
    registered = instance.get_dynamic_partitions(COURSE_PARTITIONS_NAME)
    courses = list(registered) if args.all else [c for c in args.courses.split(",") if c]
    if not courses:
        print("no course partitions to backfill (none registered yet)", file=sys.stderr)
        return 1
    started = time.monotonic()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    try:
        runs = run_backfill(instance, courses, single_run=not args.per_course,
                            max_courses_per_run=args.max_courses_per_run,
                            retry_failed_per_course=not args.no_retry,
                            tags={"moocassets/source": "backfill"}, run_config=quiet)
    except KeyError as exc:
        print(f"backfill: {exc.args[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"backfill: interrupted ({exc}); see the runs in the UI", file=sys.stderr)
        return 130
    final = [r for r in runs if not r.superseded]
    failed = [r for r in final if not r.success]
    loaded = sum(len(r.courses) for r in final if r.success)
    print(f"backfill: {loaded} of {len(courses)} course(s) loaded in {len(runs)} run(s), "
          f"{time.monotonic() - started:.1f} s")
    for r in runs:
        if not r.success:
            what = "retried per course" if r.superseded else "see the UI"
            print(f"  run {r.result.run_id} ({', '.join(r.courses[:3])}"
                  f"{', ...' if len(r.courses) > 3 else ''}) failed at "
                  f"{failed_steps(r.result)} ({what})", file=sys.stderr)
            if why := run_failure_message(r.result):
                print(f"    {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
