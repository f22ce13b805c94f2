"""What every command shares (ordersctl/render.py): `--json --watch` redraws until Ctrl-C."""

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ordersctl.fixtures import Jobs


@pytest.mark.slow
async def test_watch_redraws_until_ctrl_c_one_json_document_per_line(every_state: Jobs) -> None:
    watcher = subprocess.Popen(
        [str(Path(sys.executable).parent / "ordersctl"), "queue", "--json", "--watch", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        rounds = [json.loads(await asyncio.to_thread(watcher.stdout.readline)) for _ in range(2)]
        watcher.send_signal(signal.SIGINT)
        code = await asyncio.to_thread(watcher.wait, 10)
    finally:
        watcher.kill()
        watcher.communicate()

    assert code == 0
    assert [report["queues"][0]["queued"] for report in rounds] == [1, 1]
