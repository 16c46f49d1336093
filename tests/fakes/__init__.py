"""Fakes of MicroPython's hardware modules (machine, network, ntptime, umqtt.simple) for CPython tests.

Put this folder first on ``sys.path`` (``monkeypatch.syspath_prepend``) so the firmware's
``import machine`` and friends find these modules instead of the board's.
"""
