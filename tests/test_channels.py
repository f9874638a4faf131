"""Channel names are built and taken apart in one place (channels.py), never sliced by hand."""

from __future__ import annotations

import pytest

from jansamvad.channels import CONTROL_CHANNEL, Channel, audio_channel, moderation_channel, public_channel


@pytest.mark.parametrize("th", ["abc123", "with:colon", "ends:mod:x"])  # ids never end in ":mod"
def test_channels_parse_gives_back_the_town_hall_of_both_streams(th: str) -> None:
    assert Channel.parse(public_channel(th)) == Channel(th)
    assert Channel.parse(moderation_channel(th)) == Channel(th, "mod")
    assert Channel.parse(public_channel(th)).name == public_channel(th)
    assert Channel.parse(moderation_channel(th)).name == moderation_channel(th)
    assert Channel.parse(public_channel(th)).is_public and Channel.parse(moderation_channel(th)).is_moderation


def test_channels_control_channel_belongs_to_no_town_hall() -> None:
    control = Channel.parse(CONTROL_CHANNEL)
    assert control.th == "" and not control.is_public and not control.is_moderation
    with pytest.raises(ValueError):
        _ = control.name


@pytest.mark.parametrize("th", ["abc123", "with:colon"])
def test_channels_audio_is_a_stream_of_its_town_hall(th: str) -> None:
    # The audio channel belongs to its town hall: its Redis keys land in the town hall's slot (redis_keys.py).
    parsed = Channel.parse(audio_channel(th))
    assert parsed == Channel(th, "audio") and parsed.is_audio and not parsed.is_public
    assert parsed.name == audio_channel(th)
    assert not Channel.parse(public_channel(th)).is_audio
