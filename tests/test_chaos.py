"""Under churn nothing fails: `bench/chaos.py` with five SIGKILLs at random moments under load."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `bench`

from bench.chaos import run_chaos

pytestmark = pytest.mark.slow


def test_five_sigkills_under_load_lose_fail_and_regenerate_nothing(
    tmp_path_factory: pytest.TempPathFactory, demo_models: Path
) -> None:
    result = run_chaos(5, seed=15, up_s=(0.5, 4.0), home=tmp_path_factory.mktemp("chaos"), demo_dir=demo_models)
    print(result.report())
    assert result.acked >= 5, result.report()
    assert result.completed >= result.acked, result.report()
    assert result.failed == {}, result.report()
    assert (result.lost, result.regenerated, result.unfinished) == (0, 0, 0), result.report()
    assert (result.orphans, result.missing_media) == (0, 0), result.report()
