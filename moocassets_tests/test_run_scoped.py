"""RunScoped: one value per run and key, the last runs only."""

from __future__ import annotations

from moocassets.run_scoped import RunScoped


def test_computes_once_per_run_and_key_and_forgets_old_runs() -> None:
    calls: list[str] = []
    memo: RunScoped[str] = RunScoped(max_runs=2)

    def compute(v: str) -> str:
        calls.append(v)
        return v

    assert memo.get_or_compute("r1", "k", lambda: compute("a")) == "a"
    assert memo.get_or_compute("r1", "k", lambda: compute("b")) == "a"  # reused in the run
    assert memo.get_or_compute("r2", "k", lambda: compute("c")) == "c"  # another run: its own
    memo.get_or_compute("r3", "k", lambda: compute("d"))
    assert memo.get_or_compute("r1", "k", lambda: compute("e")) == "e"  # r1 was forgotten
    assert calls == ["a", "c", "d", "e"]


def test_put_overwrites_unless_told_not_to() -> None:
    store: RunScoped[int] = RunScoped()
    assert store.put("r", "k", 1) == 1
    assert store.put("r", "k", 2) == 2
    assert store.put("r", "k", 3, overwrite=False) == 2
    assert store.get("r", "other") is None and store.get("x", "k") is None
