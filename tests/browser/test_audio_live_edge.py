"""The citizen's audio player keeps close to the live edge after late chunks arrive in a burst (client_web/js/audio.js).

Real headless Chromium: the leader's Broadcaster records Chromium's fake microphone in real time and hands each chunk
(numbered as the server numbers them) to the citizen's LivePlayer on the same page, through a gate the test can hold
shut and then open, as a busy node does when a slow tick carries several chunks at once. A page on the demo server's
origin (so `/js/audio.js` is the real file) with the two of them and a sampler of the player's play head.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest

from tests.browser.harness import Server, Tabs

pytestmark = pytest.mark.browser

PAGE = "/live-edge-probe.html"
HTML = '<!doctype html><meta charset="utf-8"><audio id="player"></audio><button id="start">start</button>'
SETUP = """async () => {
  const { LivePlayer, Broadcaster } = await import('/js/audio.js');
  const audio = document.querySelector('#player');
  const player = new LivePlayer(audio);
  const held = [];
  const gate = { hold: false };
  let n = 0;
  const conn = {
    buffered: () => 0,
    send(msg) {
      n += 1;
      const m = { ...msg, n };
      if (gate.hold) held.push(m);
      else player.push(m);
      return true;
    },
  };
  const mic = new Broadcaster(conn);
  const probe = { player, gate, samples: [], backwards: 0, maxTime: 0 };
  probe.releasedAt = 0;
  probe.release = () => {
    gate.hold = false;
    probe.releasedAt = performance.now();
    for (const m of held.splice(0)) player.push(m);
  };
  setInterval(() => {
    const b = audio.buffered;
    const t = audio.currentTime;
    if (t < probe.maxTime - 0.001) probe.backwards += 1;
    probe.maxTime = Math.max(probe.maxTime, t);
    const ahead = b.length ? Math.max(0, b.end(b.length - 1) - t) : 0;
    probe.samples.push({ at: performance.now(), t, ahead, rate: audio.playbackRate });
    if (probe.samples.length > 2000) probe.samples.splice(0, 500);
  }, 50);
  document.querySelector('#start').onclick = () => player.start();
  globalThis.probe = probe;
  await mic.start();
}"""
# Median seconds buffered ahead of the play head over the last second since the last release, once there is at least
# half a second of it (the margin rises by one chunk, 0.3 s, on each arrival and falls in between: the median is its
# middle); Infinity before.
AHEAD_LAST_SECOND = """() => {
  const p = globalThis.probe;
  const since = Math.max(performance.now() - 1000, p.releasedAt);
  const xs = p.samples.filter((x) => x.at >= since).map((x) => x.ahead).sort((a, b) => a - b);
  return xs.length >= 10 ? xs[Math.floor(xs.length / 2)] : Infinity;
}"""
NEAR_EDGE_S = 1.0
BURST_HOLD_S = 1.3  # within the catch-up band (0.9-2 s): caught up by a faster rate, not a skip
STALL_HOLD_S = 3.5  # past the jump threshold (2 s): a skip forward to the target


def ahead_median(page: Any) -> float:
    return float(page.evaluate(AHEAD_LAST_SECOND))


def burst(page: Any, hold_s: float) -> float:
    """Hold the chunks back for `hold_s`, let them all in at once; the margin right after."""
    page.evaluate("globalThis.probe.gate.hold = true")
    time.sleep(hold_s)
    page.evaluate("globalThis.probe.release()")
    page.wait_for_timeout(600)
    return float(page.evaluate("Math.max(...globalThis.probe.samples.slice(-12).map((s) => s.ahead))"))


def wait_near_edge(page: Any, within_s: float) -> float:
    """Seconds until the median margin over the last second is below NEAR_EDGE_S; fails after `within_s`."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    start = time.monotonic()
    try:
        page.wait_for_function(
            f"() => ({AHEAD_LAST_SECOND})() < {NEAR_EDGE_S}", timeout=int(within_s * 1000), polling=100
        )
    except PlaywrightTimeout:
        pytest.fail(f"still {ahead_median(page):.2f} s behind the live edge {within_s} s after the burst")
    return time.monotonic() - start


def test_live_player_returns_near_the_live_edge_after_bursts_without_going_backwards(
    demo_server: Server, tabs: Tabs
) -> None:
    page = tabs.open("listener")
    page.route(demo_server.base + PAGE, lambda route: route.fulfill(content_type="text/html", body=HTML))
    page.goto(demo_server.base + PAGE)
    page.evaluate(SETUP)
    page.click("#start")  # a user gesture: the browser lets it start sound
    page.wait_for_function("() => document.querySelector('#player').currentTime > 1.5", timeout=20_000)
    assert ahead_median(page) < NEAR_EDGE_S, "the player should start near the live edge"

    # Late chunks in a burst: the margin jumps to ~1.3-1.6 s; the player plays a little faster until it is back near the
    # target, without skipping anything.
    after_burst = burst(page, BURST_HOLD_S)
    assert after_burst > 1.2, f"the burst should have grown the margin (it is {after_burst:.2f} s)"
    took = wait_near_edge(page, within_s=15)  # 1.1x sheds 0.1 s of margin a second
    assert page.evaluate("globalThis.probe.player.jumps") == 0, "a burst within the catch-up band should not skip"
    assert page.evaluate("globalThis.probe.samples.some((s) => s.rate > 1)"), "no faster catch-up rate was used"
    page.wait_for_function("() => document.querySelector('#player').playbackRate === 1", timeout=10_000)
    print(f"burst: {after_burst:.2f} s ahead, back under {NEAR_EDGE_S} s in {took:.1f} s")

    # A long stall that ends in a flood: skip forward to near the live edge, never back.
    after_stall = burst(page, STALL_HOLD_S)
    took = wait_near_edge(page, within_s=3)
    assert page.evaluate("globalThis.probe.player.jumps") >= 1, "a flood past the jump threshold should skip forward"
    print(f"stall: {after_stall:.2f} s ahead (max, 0.6 s after the flood), back under {NEAR_EDGE_S} s in {took:.1f} s")

    # Stays near the edge, still playing, and the play head never moved backwards (nothing was heard twice).
    time.sleep(2)
    assert ahead_median(page) < NEAR_EDGE_S
    playing = page.evaluate("globalThis.probe.maxTime")
    page.wait_for_function(f"() => document.querySelector('#player').currentTime > {playing + 0.5}", timeout=5_000)
    assert page.evaluate("globalThis.probe.backwards") == 0, "the play head moved backwards"
    margins = [s["ahead"] for s in page.evaluate("globalThis.probe.samples")[-40:]]
    print(f"last 2 s: median margin {statistics.median(margins):.2f} s")
    assert not tabs.errors, "browser errors:\n" + "\n".join(tabs.errors)
