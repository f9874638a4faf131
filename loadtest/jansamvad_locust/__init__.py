"""JanSamvad's locust users and the sans-I/O protocol client they share (see loadtest/README.md).

`protocol`, `scenarios`, `verdict` and `rest` import neither locust nor gevent and are safe to import anywhere (the
unit tests do); `users`, `shape` and `hooks` import locust, which monkey-patches the standard library with gevent.
"""
