"""Fake of ``umqtt.simple``: an MQTTClient with its API that keeps everything in memory.

It records connects, subscriptions and publishes, can simulate a broker outage (``broker_down``:
every network call raises ``OSError`` like a dead socket), fail only the next N publishes, and
deliver injected messages to the callback through ``check_msg()`` the way umqtt.simple does.
"""


class MQTTException(Exception):
    pass


class MQTTClient:
    instances = []

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None, ssl_params=None):
        self.client_id = client_id
        self.server = server
        self.port = port
        self.user = user
        self.pswd = password  # umqtt.simple's name for it
        self.accepted_passwords = None  # when set, connect() refuses any other password (CONNACK 5)
        self.connect_passwords = []  # the password of every connect attempt
        self.keepalive = keepalive
        self.ssl = ssl
        self.cb = None
        self.sock = None  # not None while connected, like umqtt.simple
        self.broker_down = False
        self.fail_publishes = 0  # the next N publish() calls fail (connection drops mid-publish)
        self.connect_calls = 0
        self.clean_sessions = []  # clean_session of every successful connect
        self.subscriptions = []  # (topic, qos)
        self.published = []  # (topic, msg, retain, qos) acknowledged by the "broker"
        self.disconnects = 0
        self._incoming = []
        MQTTClient.instances.append(self)

    @property
    def connected(self):
        return self.sock is not None

    # -- the umqtt.simple API -----------------------------------------------------------------------

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean_session=True):
        self.connect_calls += 1
        self.connect_passwords.append(self.pswd)
        if self.broker_down:
            self.sock = None
            raise OSError(113, "EHOSTUNREACH")
        if self.accepted_passwords is not None and self.pswd not in self.accepted_passwords:
            self.sock = None
            raise MQTTException(5)  # not authorised, as umqtt.simple raises it
        self.sock = _FakeSocket()
        self.clean_sessions.append(clean_session)
        return False  # session_present

    def disconnect(self):
        self.disconnects += 1
        if self.sock is None:
            raise AttributeError("'NoneType' object has no attribute 'write'")  # as umqtt.simple does
        self.sock = None

    def ping(self):
        self._require_link()

    def publish(self, topic, msg, retain=False, qos=0):
        assert isinstance(topic, bytes) and isinstance(msg, (bytes, bytearray)), (topic, msg)
        self._require_link()
        if self.fail_publishes:
            self.fail_publishes -= 1
            self.sock = None
            raise OSError(104, "ECONNRESET")
        self.published.append((topic, bytes(msg), retain, qos))

    def subscribe(self, topic, qos=0):
        assert self.cb is not None, "Subscribe callback is not set"
        assert isinstance(topic, bytes), topic
        self._require_link()
        self.subscriptions.append((topic, qos))

    def wait_msg(self):
        self._require_link()
        if not self._incoming:
            return None
        topic, msg = self._incoming.pop(0)
        self.cb(topic, msg)
        return 0x32  # PUBLISH, QoS 1

    def check_msg(self):
        return self.wait_msg()

    # -- test helpers -------------------------------------------------------------------------------

    def inject(self, topic, msg):
        """Queue a message from the broker, delivered as given (bytes, like umqtt) by the next check_msg()."""
        self._incoming.append((topic, msg))

    def go_down(self):
        """The broker becomes unreachable: the open connection breaks, connects fail."""
        self.broker_down = True
        self.sock = None

    def come_back(self):
        self.broker_down = False

    def payloads(self, topic=None):
        return [msg for t, msg, _, _ in self.published if topic is None or t == topic]

    def _require_link(self):
        if self.broker_down or self.sock is None:
            self.sock = None
            raise OSError(128, "ENOTCONN")


class _FakeSocket:
    def close(self):
        pass
