"""What the container runs is what the tests run: the Dockerfile's CMD is the production server
command of `api.server`, which the tests on real API processes start."""

import json

import yaml

from api.server import SHUTDOWN_GRACE_S, granian_args
from tests.processes import REPO_ROOT


def dockerfile_cmd() -> list[str]:
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", "")
    [cmd] = [line.removeprefix("CMD ") for line in text.splitlines() if line.startswith("CMD ")]
    argv: list[str] = json.loads(cmd)
    return argv


def test_the_image_serves_the_api_with_the_shipped_granian_command() -> None:
    assert dockerfile_cmd() == ["granian", *granian_args("0.0.0.0", 8000)]


def test_docker_waits_longer_for_the_api_to_stop_than_granian_waits_for_requests() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    api = compose["services"]["api"]
    assert "command" not in api  # the image's
    grace_s = int(api["stop_grace_period"].removesuffix("s"))
    # Room for the lifespan shutdown after the last request, before Docker's SIGKILL.
    assert grace_s >= SHUTDOWN_GRACE_S + 5
