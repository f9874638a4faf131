"""The sans-I/O protocol core: message types, codec, framing, validation and the error / close-code registry.

Nothing in this package imports asyncio, websockets, redis or starlette (a test enforces it): it takes bytes and
objects and returns bytes and objects, so it can be tested with byte literals alone.
"""
