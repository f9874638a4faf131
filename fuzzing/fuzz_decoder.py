"""Fuzz the protocol decoder and validator: `make fuzz` (hypothesis, bounded), or with atheris if it is installed:
`python fuzzing/fuzz_decoder.py -atheris -max_total_time=60`.

Whatever bytes come in, `decode` + `parse_client_message` must return a message or raise ProtocolViolation; any other
exception is a bug (it would become a 1011 close instead of the documented error).
"""

from __future__ import annotations

import sys

from jansamvad.protocol.codec import Encoding, decode
from jansamvad.protocol.errors import ProtocolViolation
from jansamvad.protocol.messages import Limits, parse_client_message

LIMITS = Limits()


def one_input(data: bytes) -> None:
    if not data:
        return
    encoding = Encoding.MSGPACK if data[0] & 1 else Encoding.JSON
    try:
        parse_client_message(decode(data[1:], encoding), LIMITS, encoding)
    except ProtocolViolation:
        pass


def main() -> None:
    if "-atheris" in sys.argv:
        import atheris  # type: ignore[import-not-found]

        sys.argv.remove("-atheris")
        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
        return
    from hypothesis import HealthCheck, given, settings, strategies as st

    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.binary(max_size=2048))
    def fuzz(data: bytes) -> None:
        one_input(data)

    fuzz()
    print(f"fuzz_decoder: {examples} inputs, no unexpected exception")


if __name__ == "__main__":
    main()
