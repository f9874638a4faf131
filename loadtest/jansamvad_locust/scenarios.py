"""The named scenarios: how citizens behave, how the load is shaped in time, and the pass/fail thresholds.

Plain data, no locust import (the unit tests read it). The locust side picks one by name with `--scenario`
(or JANSAMVAD_LT_SCENARIO); `shape.py` turns `Scenario.users_at` into user counts, `users.py` reads the knobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Range = tuple[float, float]  # seconds, drawn uniformly


@dataclass(frozen=True, slots=True)
class Thresholds:
    """What a run must meet to pass. Latencies in ms; None means "reported, not judged"."""

    max_fail_ratio: float = 0.001  # failed WS/HTTP requests over all requests
    speech_p99_ms: float | None = 1000.0  # leader send -> citizen receipt, citizens that read promptly
    ask_ack_p99_ms: float | None = 1000.0
    max_lost: int = 0  # stream events missing at a citizen after resume had its chance to fill the hole
    max_duplicates: int = 0  # the node promises every event exactly once, replay included
    min_speech_samples: int = 1  # a run in which no speech reached anyone must not pass


@dataclass(frozen=True, slots=True)
class Citizen:
    """How one citizen behaves. A citizen acts every `think` seconds; the weights pick what it does."""

    think: Range = (2.0, 6.0)
    ask: int = 2
    upvote: int = 3
    vote: int = 2  # in an open poll not yet voted in (the leader opens one every few segments)
    react: int = 6
    listen: int = 10  # do nothing this time: most of an audience only listens
    drop: int = 0  # lose the network (no close frame), stay away `offline`, come back with last_seq
    offline: Range = (1.0, 5.0)
    # Slow reader: a link this many bytes per second wide (drawn per connection); reading a frame takes its size
    # divided by that. 2G / congested 3G is 2-20 KB/s.
    read_bytes_per_s: Range | None = None
    # Long pause: now and then stop reading for a while (the app in the background), then catch up.
    pause_chance: float = 0.0  # per think cycle
    pause: Range = (5.0, 15.0)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    citizen: Citizen = field(default_factory=Citizen)
    # flaky-mobile: this share of citizens behave like `flaky`; the rest like `citizen`. Their latencies are reported
    # with the suffix _flaky (speech_delivery_flaky, ask_ack_flaky, …), so speech_delivery and ask_ack still say what
    # a well-connected citizen sees, and the thresholds judge that; losses are judged for everyone.
    flaky_share: float = 0.0
    flaky: Citizen | None = None
    moderators: int = 1
    speech_every: Range = (2.0, 3.0)  # the leader's pace
    announce_every: int = 10  # one announcement per this many speech segments
    # Reconnect storm: every `storm_every` seconds (after the ramp) this share of citizens drop at the same moment
    # and come back within `storm_return` seconds (exponential backoff with full jitter, like the browser client).
    storm_share: float = 0.0
    storm_every: float = 20.0
    storm_return: Range = (0.0, 3.0)
    # The part of the run spent ramping up; the rest holds the target. townhall ramps at --spawn-rate instead.
    ramp_fraction: float = 0.0
    # The organisation (issue 16): citizens come by region links (/j/<code>, then a join with that unit), spread
    # over `units` booths of a generated region tree (the launcher makes it and passes the codes in --units-file).
    units: int = 0
    # Booth screens: this many screen users, each with a screen token of a booth, setting how many people watch
    # (a number drawn from `audience`, changed every `audience_every` seconds).
    screens: int = 0
    audience: Range = (20.0, 400.0)
    audience_every: Range = (5.0, 15.0)
    # Local moderators (issue 16 item 4): the unit each moderator token is scoped to ("" for the whole town hall), in
    # order; moderators beyond the list are town-hall-wide. Only against the launcher's generated tree, whose
    # districts these are; a node without local moderators ignores the scope and makes plain moderator tokens.
    moderator_scopes: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)

    def users_at(self, elapsed_s: float, target: int, duration_s: float | None) -> int:
        """How many users (citizens, moderators, leader together) should be running `elapsed_s` into the run."""
        if self.ramp_fraction <= 0 or not duration_s:
            return target
        ramp_s = duration_s * self.ramp_fraction
        if elapsed_s >= ramp_s:
            return target
        # Staff and screens come first (locust starts fixed_count users before weighted ones).
        staff = self.moderators + self.screens + 1
        return min(target, max(staff, round(target * elapsed_s / ramp_s)))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "townhall",
            "the normal mix: most citizens listen; some ask, upvote, react; a few drop and resume",
            citizen=Citizen(drop=1),
        ),
        Scenario(
            "reconnect-storm",
            "every storm-every seconds, 60% of citizens lose the network at once and all come back within 3 s",
            citizen=Citizen(drop=0),
            storm_share=0.6,
            storm_every=20.0,
            # Resumes replay what was missed; the replayed speech is not counted as delivery latency, but live speech
            # during the storm competes with thousands of handshakes.
            thresholds=Thresholds(max_fail_ratio=0.01, speech_p99_ms=2000.0, ask_ack_p99_ms=3000.0),
        ),
        Scenario(
            "question-flood",
            "every citizen asks as often as the node allows (3 a minute); two moderators decide at a human pace",
            # ask_per_minute is 3 by default: a citizen asking every ~20 s gets an occasional rate_limited, which it
            # answers as the protocol says (resend after retry_ms; ask_ack_rate_limited in the statistics).
            citizen=Citizen(think=(12.0, 24.0), ask=10, upvote=3, vote=1, react=1, listen=0),
            moderators=2,
            thresholds=Thresholds(speech_p99_ms=1500.0, ask_ack_p99_ms=1500.0),
        ),
        Scenario(
            "flaky-mobile",
            "half the citizens are on bad mobile data (drops, slow reading, long pauses); the rest must not notice",
            citizen=Citizen(drop=1),
            flaky_share=0.5,
            flaky=Citizen(
                think=(3.0, 10.0),
                drop=4,
                offline=(1.0, 20.0),
                read_bytes_per_s=(2_000.0, 20_000.0),
                pause_chance=0.1,
                pause=(5.0, 15.0),
            ),
            thresholds=Thresholds(max_fail_ratio=0.01),
        ),
        Scenario(
            "booths",
            "the organisation: citizens join by region links spread over 5,000 booths; 5 booth screens set their "
            "audience; a town-hall-wide moderator and two district moderators (Patna, Gaya) work the queue, so the "
            "roll-up by unit and scoped moderation run under load",
            citizen=Citizen(drop=1),
            moderators=3,
            moderator_scopes=("", "BR-230", "BR-236"),
            units=5000,
            screens=5,
        ),
        Scenario(
            "ramp",
            "ramp linearly to --users over the first 60% of --duration, then hold",
            citizen=Citizen(drop=1),
            ramp_fraction=0.6,
        ),
    )
}


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}") from None
