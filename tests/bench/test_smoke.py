"""The benchmark harness runs end to end. Speed is never asserted here: that is the report's job."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_smoke_run_starts_the_system_measures_every_scenario_and_writes_the_report(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "performance.md").read_text()
    for heading in (
        "## The machine",
        "## Targets",
        "## The API against the framework's ceiling",
        "## End to end: accepted, confirmed, emailed",
        "## BackgroundTasks or a queue",
        "## The guide's claims, measured",
        "## Flash sale: orders and reads at once on the same products",
        "## Webhooks: deliveries per worker, and their cost to the pipeline",
    ):
        assert heading in report
    # Every scenario ran and answered without errors (a broken endpoint shows up here).
    for scenario in ("hello", "post_order", "product_hit", "product_miss", "driver_sync_def"):
        assert f"(`{scenario}`)" in report
    assert "| 0 |" in report
    assert "The flash sale failed" not in report
    assert "The webhooks phase failed" not in report
    charts = ("perf-api.png", "perf-claims.png", "perf-queue.png", "perf-memory.png")
    for chart in (*charts, "perf-flash-sale.png"):
        assert (tmp_path / chart).read_bytes().startswith(b"\x89PNG")
