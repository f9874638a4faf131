"""The load shape of every scenario: how many users when, and when the reconnect storms hit.

One shape class serves all scenarios (locust uses the first shape class it finds in a locustfile); it reads
--scenario, --users, --spawn-rate and --run-time (`use_common_options`), so the same flags work headless, in the
web UI and distributed. It runs on the master (or the single local process) only; storms reach the workers as a
custom message.
"""

from __future__ import annotations

from locust import LoadTestShape

from jansamvad_locust import scenarios
from jansamvad_locust.users import STORM_MESSAGE

STORM_QUIET_END_S = 8.0  # no storm this close to the end: the resumes must finish inside the run to be judged


class ScenarioShape(LoadTestShape):
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self.next_storm: float | None = None
        self.peak_users = 0  # the most users running at once, for the summary

    def reset_time(self) -> None:
        super().reset_time()
        self.next_storm = None

    def tick(self) -> tuple[int, float] | None:
        runner = self.runner
        if runner is None:
            return None
        options = runner.environment.parsed_options
        scenario = scenarios.get(getattr(options, "scenario", "townhall"))
        target = int(getattr(options, "num_users", None) or 1)
        run_time = getattr(options, "run_time", None)  # seconds, or None: run until stopped
        elapsed = self.get_run_time()
        if run_time and elapsed >= run_time:
            return None
        self.peak_users = max(self.peak_users, runner.user_count)
        users = scenario.users_at(elapsed, target, run_time)
        rate = float(getattr(options, "spawn_rate", None) or max(1.0, target / 10))
        if scenario.ramp_fraction and run_time:
            # The ramp's slope is users / ramp time; spawning any slower would fall behind the line.
            rate = max(rate, 2 * target / (run_time * scenario.ramp_fraction))
        self._maybe_storm(scenario, elapsed, users, run_time)
        return users, rate

    def _maybe_storm(self, scenario: scenarios.Scenario, elapsed: float, users: int, run_time: float | None) -> None:
        runner = self.runner
        if not scenario.storm_share or runner is None:
            return
        if self.next_storm is None:
            if runner.user_count < users:
                return  # still spawning: the first storm comes one storm_every after everyone is in
            self.next_storm = elapsed + scenario.storm_every
        if elapsed < self.next_storm:
            return
        self.next_storm = elapsed + scenario.storm_every
        if run_time and run_time - elapsed < STORM_QUIET_END_S:
            return
        data = {"share": scenario.storm_share, "return": list(scenario.storm_return)}
        runner.send_message(STORM_MESSAGE, data)
