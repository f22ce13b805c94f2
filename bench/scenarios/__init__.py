"""The HTTP scenarios, one table per group of them; bench.phases.http runs them in rounds."""

from bench.scenarios import api, claims
from bench.scenarios.scenario import CONNECTIONS, Scenario
from bench.seed import Seed

__all__ = ["CONNECTIONS", "Scenario", "all_scenarios"]


def all_scenarios(seed: Seed, miss_window: int) -> list[Scenario]:
    return [*api.scenarios(seed, miss_window), *claims.scenarios(seed)]
