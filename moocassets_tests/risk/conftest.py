"""Shared replayed history of simulated, ended courses (no DB, no sockets)."""

from __future__ import annotations

import pandas as pd
import pytest

from moocassets.replay import course_history, ended_world, simulated_sources, truth_frame
from moocassets.simulator import World


@pytest.fixture(scope="session")
def replayed() -> tuple[World, pd.DataFrame, pd.DataFrame]:
    """Three fully replayed ended courses (80 learners each): (world, history, truth)."""
    world = ended_world(3, 80, seed=21)
    frames, truths = [], []
    with simulated_sources(world) as sources:
        for cid in world.courses:
            frames.append(course_history(sources, cid))
            truths.append(truth_frame(world, cid))
    return world, pd.concat(frames, ignore_index=True), pd.concat(truths, ignore_index=True)
