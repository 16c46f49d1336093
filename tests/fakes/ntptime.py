"""Fake of MicroPython's ``ntptime``: records ``settime()`` calls, can be told to time out."""

host = "pool.ntp.org"
calls = []  # the host of every settime() call
fail = 0  # settime() calls still to fail with a timeout


def settime():
    """Would set the RTC from NTP; here it only records the call (or raises like a timeout)."""
    global fail
    calls.append(host)
    if fail:
        fail -= 1
        raise OSError(110, "ETIMEDOUT")
