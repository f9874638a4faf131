"""locust event hooks: our command-line options, setting a run up, and judging it at the end.

Importing this module registers the listeners (the locustfile imports it). Every option also reads an environment
variable, so tokens and keys need not appear on a command line (and in `ps`). locust sends the master's options to
its workers with every spawn message, so workers need none of them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

from locust import events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import StatsEntry

from jansamvad_locust import rest, scenarios, verdict
from jansamvad_locust.protocol import ASK_ACK, SPEECH_DELIVERY, SPEECH_DELIVERY_FLAKY, STREAM_DUPLICATE, STREAM_GAP
from jansamvad_locust.shape import ScenarioShape
from jansamvad_locust.users import STORM_MESSAGE, ModeratorUser, ScreenUser, load_units, on_storm

log = logging.getLogger("jansamvad_locust")

_started_at: float | None = None


@events.init_command_line_parser.add_listener
def add_options(parser: LocustArgumentParser) -> None:
    # On the parser itself, not a group: only LocustArgumentParser.add_argument knows is_secret / include_in_web_ui.
    group = parser
    group.add_argument(
        "--scenario",
        choices=list(scenarios.SCENARIOS),
        default="townhall",
        env_var="JANSAMVAD_LT_SCENARIO",
        help="which behaviour and thresholds: " + ", ".join(scenarios.SCENARIOS),
    )
    group.add_argument("--th", default="", env_var="JANSAMVAD_LT_TH", help="town hall id (or give --admin-key)")
    group.add_argument(
        "--leader-token", default="", env_var="JANSAMVAD_LT_LEADER_TOKEN", is_secret=True, help="a leader token"
    )
    group.add_argument(
        "--moderator-token",
        default="",
        env_var="JANSAMVAD_LT_MODERATOR_TOKEN",
        is_secret=True,
        help="moderator tokens, comma-separated: one per moderator (shared round-robin if fewer)",
    )
    group.add_argument(
        "--screen-token",
        default="",
        env_var="JANSAMVAD_LT_SCREEN_TOKEN",
        is_secret=True,
        help="booth screen tokens, comma-separated: one per screen (scenario booths)",
    )
    group.add_argument(
        "--units-file",
        default="",
        env_var="JANSAMVAD_LT_UNITS_FILE",
        help="region unit codes, one a line: citizens join by these units' links (scenario booths)",
    )
    group.add_argument(
        "--admin-key",
        default="",
        env_var="JANSAMVAD_LT_ADMIN_KEY",
        is_secret=True,
        help="without --th: create a town hall and staff tokens with this admin key when the test starts",
    )
    group.add_argument(
        "--citizens-per-ip",
        type=int,
        default=10,
        env_var="JANSAMVAD_LT_CITIZENS_PER_IP",
        help="loopback targets: citizens per source address in 127.0.0.0/8 (0: all from 127.0.0.1)",
    )
    group.add_argument(
        "--latency-limits",
        choices=("on", "off"),
        default="on",
        env_var="JANSAMVAD_LT_LATENCY_LIMITS",
        help="off: judge losses, duplicates and failures only, not the p99 limits (a CI machine shared with the "
        "node measures no latency worth judging; benchmarks do)",
    )
    group.add_argument(
        "--summary-json",
        default="",
        env_var="JANSAMVAD_LT_SUMMARY_JSON",
        include_in_web_ui=False,
        help="write the pass/fail summary here at the end",
    )


@events.init.add_listener
def on_init(environment: Environment, **kwargs: Any) -> None:
    options = environment.parsed_options
    runner = environment.runner
    if runner is None or options is None:
        return
    if not isinstance(runner, MasterRunner):
        runner.register_message(STORM_MESSAGE, on_storm)
    if isinstance(runner, WorkerRunner):
        return  # the master dispatches users and judges the run
    scenario = scenarios.get(options.scenario)
    ModeratorUser.fixed_count = scenario.moderators
    ScreenUser.fixed_count = scenario.screens
    if not scenario.screens:  # a class with no fixed count would be spawned by weight: leave it out altogether
        environment.user_classes[:] = [c for c in environment.user_classes if c is not ScreenUser]
        environment.user_classes_by_name.pop(ScreenUser.__name__, None)


@events.test_start.add_listener
def on_test_start(environment: Environment, **kwargs: Any) -> None:
    global _started_at
    options = environment.parsed_options
    if options is None or isinstance(environment.runner, WorkerRunner):
        return
    _started_at = time.monotonic()
    if not options.th and options.admin_key and environment.host:
        # Runs before the first spawn message, so the workers receive the new id and tokens with it.
        title = f"locust {options.scenario} {time.strftime('%X')}"
        scenario = scenarios.get(options.scenario)
        units = load_units(options.units_file)
        screen_units = random.sample(units, min(scenario.screens, len(units)))
        hall = rest.create_hall(environment.host, options.admin_key, title, scenario.moderators, screen_units)
        options.th, options.leader_token, options.moderator_token = hall.th, hall.leader_token, hall.moderator_token
        options.screen_token = hall.screen_token
        log.info("created town hall %s", hall.th)
    if not options.th:
        log.error("no town hall: give --th (and staff tokens) or --admin-key")


@events.quitting.add_listener
def on_quitting(environment: Environment, **kwargs: Any) -> None:
    """Judge the run against its scenario's thresholds; print the summary; set the exit code."""
    options = environment.parsed_options
    runner = environment.runner
    if options is None or runner is None or isinstance(runner, WorkerRunner):
        return
    scenario = scenarios.get(options.scenario)
    numbers = collect(environment, scenario.name)
    thresholds = scenario.thresholds
    if options.latency_limits == "off":
        thresholds = dataclasses.replace(thresholds, speech_p99_ms=None, ask_ack_p99_ms=None)
    checks = verdict.judge(numbers, thresholds)
    print(verdict.render(numbers, checks), flush=True)
    if options.summary_json:
        path = Path(options.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(verdict.as_json(numbers, checks), indent=2, ensure_ascii=False) + "\n")
    environment.process_exit_code = 0 if verdict.passed(checks) else 1


def collect(environment: Environment, scenario: str) -> verdict.RunNumbers:
    """The numbers the thresholds judge, out of locust's (aggregated, on a master) statistics."""
    stats = environment.stats
    runner = environment.runner
    assert stats is not None and runner is not None

    def entry(name: str) -> StatsEntry | None:
        return stats.entries.get((name, "WS"))

    def latency(name: str) -> verdict.Latency:
        e = entry(name)
        if e is None:
            return verdict.Latency()
        ok = e.num_requests - e.num_failures  # a failed request's time is not a latency sample worth judging
        if ok <= 0:
            return verdict.Latency()
        return verdict.Latency(
            ok, e.get_response_time_percentile(0.5), e.get_response_time_percentile(0.99), float(e.max_response_time)
        )

    gap, dup = entry(STREAM_GAP), entry(STREAM_DUPLICATE)
    shape = environment.shape_class
    peak = shape.peak_users if isinstance(shape, ScenarioShape) else 0
    errors = {f"{e.method} {e.name}: {e.error}": e.occurrences for e in stats.errors.values()}
    return verdict.RunNumbers(
        scenario=scenario,
        users=max(peak, runner.user_count),
        duration_s=time.monotonic() - _started_at if _started_at else 0.0,
        requests=stats.total.num_requests,
        failures=stats.total.num_failures,
        exceptions=sum(e["count"] for e in runner.exceptions.values()),
        speech=latency(SPEECH_DELIVERY),
        speech_flaky=latency(SPEECH_DELIVERY_FLAKY),
        ask_ack=latency(ASK_ACK),
        connect=latency("connect"),
        resume=latency("resume"),
        lost=gap.total_content_length if gap else 0,
        gaps=gap.num_requests if gap else 0,
        duplicates=dup.num_requests if dup else 0,
        errors=errors,
    )
