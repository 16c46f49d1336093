"""Fake of MicroPython's ``network`` module: a WLAN station that joins when given the right password."""

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_WRONG_PASSWORD = 202
STAT_GOT_IP = 1010


class WLAN:
    """A Wi-Fi interface. Class attributes set the network the fake air offers.

    ``password`` is the network's password (None accepts any); ``polls_to_join`` is how many
    ``isconnected()`` calls the join takes after ``connect()``.
    """

    ssid = "home-network"
    password = None
    polls_to_join = 2
    instances = []

    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False
        self._status = STAT_IDLE
        self._polls_left = 0
        self.connects = []  # (ssid, key) of every connect() call
        WLAN.instances.append(self)

    def active(self, is_active=None):
        if is_active is None:
            return self._active
        self._active = bool(is_active)
        if not self._active:
            self._status = STAT_IDLE

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("WLAN not active")
        self.connects.append((ssid, key))
        if ssid != WLAN.ssid or (WLAN.password is not None and key != WLAN.password):
            self._status = STAT_WRONG_PASSWORD
        else:
            self._status = STAT_CONNECTING
            self._polls_left = WLAN.polls_to_join

    def disconnect(self):
        self._status = STAT_IDLE

    def isconnected(self):
        if self._status == STAT_CONNECTING:
            if self._polls_left <= 0:
                self._status = STAT_GOT_IP
            self._polls_left -= 1
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        return self._status

    def ifconfig(self):
        return ("192.0.2.10", "255.255.255.0", "192.0.2.1", "192.0.2.1")
