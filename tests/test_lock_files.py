"""The lock files: every declared dependency is pinned, and the image gets the tested versions.

`make lock` writes requirements.lock (everything make and CI install) and
requirements-runtime.lock (what the Dockerfile installs); docs/decisions/0027-locked-installs.md.
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)(?: ; ([^\\]+?))?\s*\\?$")


def pins(lock: str) -> set[tuple[str, str, str]]:
    """(name, version, marker) of every package the lock file pins."""
    found = set()
    for line in (REPO_ROOT / lock).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            name, version, marker = match.groups()
            found.add((canonicalize_name(name), version, marker or ""))
    return found


def declared() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [
        Requirement(spec) for spec in [*project["dependencies"], *extras["dev"], *extras["bench"]]
    ]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    locked = pins("requirements.lock")

    for requirement in declared():
        versions = [v for name, v, _ in locked if name == canonicalize_name(requirement.name)]
        assert versions, f"{requirement.name} is not in requirements.lock: run `make lock`"
        assert all(requirement.specifier.contains(v, prereleases=True) for v in versions), (
            f"requirements.lock pins {requirement.name} {versions}, outside {requirement}"
        )


def test_the_runtime_lock_pins_the_versions_the_tests_run_with() -> None:
    runtime = pins("requirements-runtime.lock")

    assert runtime
    assert runtime <= pins("requirements.lock")


def test_the_image_installs_the_runtime_lock_with_its_hashes() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()

    assert "COPY requirements-runtime.lock ./" in dockerfile
    assert "pip install --require-hashes -r requirements-runtime.lock" in dockerfile
    assert "pip install --no-deps ." in dockerfile
