"""Metering-chip drivers for the smart meter, behind one small interface.

Every driver has ``read() -> dict`` with the keys ``power_w``, ``voltage_v``, ``current_a`` and
``energy_kwh`` (float, or None when the chip cannot measure it), and raises :class:`DriverError`
when a measurement fails. The bus objects (UART, ADC) come in from outside, so the drivers run on
MicroPython with ``machine`` objects and on CPython with fakes; the arithmetic is in pure functions.

- :class:`PZEM004T`: Peacefair PZEM-004T v3.0 energy monitor, Modbus-RTU over a UART (9600 8N1).
- :class:`CTClamp`: a current transformer (e.g. SCT-013-000) on a burden resistor into an ADC pin,
  biased to mid-supply; power is estimated from a nominal mains voltage and power factor.
"""


class DriverError(Exception):
    """A measurement failed: no reply, a short or corrupted frame, or an error reported by the chip."""


# -- Modbus-RTU ---------------------------------------------------------------------------------------


def crc16_modbus(data):
    """CRC-16/MODBUS (reflected polynomial 0xA001, initial value 0xFFFF) of ``data``.

    Sent after the frame low byte first: the PZEM request ``01 04 00 00 00 0a`` goes out as
    ``01 04 00 00 00 0a 70 0d``. Check value (CRC of ``b"123456789"``): 0x4B37.

    >>> hex(crc16_modbus(b"\\x01\\x04\\x00\\x00\\x00\\x0a"))
    '0xd70'
    """
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def with_crc(frame):
    """``frame`` followed by its CRC-16/MODBUS, low byte first."""
    crc = crc16_modbus(frame)
    return bytes(frame) + bytes([crc & 0xFF, crc >> 8])


_READ_INPUT_REGISTERS = 0x04
_PZEM_REGISTERS = 10  # voltage, current (2), power (2), energy (2), frequency, power factor, alarm
_PZEM_REPLY_LEN = 3 + 2 * _PZEM_REGISTERS + 2  # address, function, byte count, data, CRC
_PZEM_GENERAL_ADDRESS = 0xF8  # answered by whichever single PZEM is on the bus
_MODBUS_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
}


def pzem_request(address=_PZEM_GENERAL_ADDRESS):
    """The Modbus-RTU request "read input registers 0x0000..0x0009" for a PZEM-004T at ``address``."""
    return with_crc(bytes([address, _READ_INPUT_REGISTERS, 0x00, 0x00, 0x00, _PZEM_REGISTERS]))


def decode_pzem_reply(frame, address=_PZEM_GENERAL_ADDRESS):
    """Check a PZEM-004T reply frame and decode its measurements.

    Registers (big-endian 16 bit; 32-bit values are low word first): 0 voltage 0.1 V; 1-2 current
    0.001 A; 3-4 power 0.1 W; 5-6 energy 1 Wh; 7 frequency 0.1 Hz; 8 power factor 0.01; 9 alarm.

    Parameters
    ----------
    frame : bytes
        The whole reply, CRC included.
    address : int
        The address the request went to; 0xF8 (general address) accepts a reply from any address.

    Returns
    -------
    dict
        ``voltage_v``, ``current_a``, ``power_w``, ``energy_kwh``.

    Raises
    ------
    DriverError
        On a short frame, a bad CRC, a Modbus exception reply or an unexpected header.
    """
    if len(frame) < 5:
        raise DriverError("PZEM-004T: short reply, %d bytes: %s" % (len(frame), _hex(frame)))
    if frame[1] == _READ_INPUT_REGISTERS | 0x80:
        _check_crc(frame[:5])
        code = frame[2]
        raise DriverError(
            "PZEM-004T: exception reply, code 0x%02x (%s)" % (code, _MODBUS_EXCEPTIONS.get(code, "unknown"))
        )
    if len(frame) < _PZEM_REPLY_LEN:
        raise DriverError("PZEM-004T: short reply, %d of %d bytes: %s" % (len(frame), _PZEM_REPLY_LEN, _hex(frame)))
    frame = frame[:_PZEM_REPLY_LEN]
    _check_crc(frame)
    if address != _PZEM_GENERAL_ADDRESS and frame[0] != address:
        raise DriverError("PZEM-004T: reply from address 0x%02x, expected 0x%02x" % (frame[0], address))
    if frame[1] != _READ_INPUT_REGISTERS or frame[2] != 2 * _PZEM_REGISTERS:
        raise DriverError("PZEM-004T: unexpected reply header %s" % _hex(frame[:3]))
    regs = [(frame[3 + 2 * i] << 8) | frame[4 + 2 * i] for i in range(_PZEM_REGISTERS)]
    return {
        "voltage_v": regs[0] / 10.0,
        "current_a": (regs[1] | (regs[2] << 16)) / 1000.0,
        "power_w": (regs[3] | (regs[4] << 16)) / 10.0,
        "energy_kwh": (regs[5] | (regs[6] << 16)) / 1000.0,
    }


def _check_crc(frame):
    expected = crc16_modbus(frame[:-2])
    got = frame[-2] | (frame[-1] << 8)
    if got != expected:
        raise DriverError("PZEM-004T: bad CRC 0x%04x, expected 0x%04x in %s" % (got, expected, _hex(frame)))


def _hex(data):
    return " ".join("%02x" % b for b in data) or "(nothing)"


class PZEM004T:
    """Peacefair PZEM-004T v3.0 on a UART (Modbus-RTU, 9600 baud 8N1).

    Parameters
    ----------
    uart : object
        MicroPython ``machine.UART`` API: ``write(bytes)``, ``read(n)`` returning bytes or None
        after the UART's own timeout; ``any()`` is used when present to drop stale bytes.
    address : int
        Modbus slave address; 0xF8 (default) reaches the only PZEM on the bus whatever its address.
    read_attempts : int
        ``read`` calls (each up to the UART timeout) to collect one reply before giving up.
    """

    def __init__(self, uart, address=_PZEM_GENERAL_ADDRESS, read_attempts=3):
        self.uart = uart
        self.address = address
        self.read_attempts = read_attempts
        self._request = pzem_request(address)

    def read(self):
        """One measurement; raises :class:`DriverError` on timeout, short reply, bad CRC or exception."""
        self._drain()
        self.uart.write(self._request)
        return decode_pzem_reply(self._receive(), self.address)

    def _drain(self):
        # Bytes left from an earlier, late reply would shift this reply's frame.
        any_waiting = getattr(self.uart, "any", None)
        while any_waiting is not None and any_waiting():
            if not self.uart.read():
                break

    def _receive(self):
        reply = b""
        expected = _PZEM_REPLY_LEN
        for _ in range(self.read_attempts):
            chunk = self.uart.read(expected - len(reply))
            if chunk:
                reply += chunk
            if len(reply) >= 2 and reply[1] & 0x80:
                expected = 5  # a Modbus exception reply: address, function | 0x80, code, CRC
            if len(reply) >= expected:
                break
        if not reply:
            raise DriverError("PZEM-004T: no reply from address 0x%02x (timeout)" % self.address)
        return reply


# -- current transformer ------------------------------------------------------------------------------


def rms_current_a(samples, burden_ohms, turns, adc_vref=3.3, adc_max=4095):
    """RMS primary current from raw ADC samples of a CT on a burden resistor.

    The DC bias (mid-supply) is removed by subtracting the samples' mean; the remaining AC voltage's
    RMS over the burden gives the secondary current, times the turns ratio the primary current.

    Parameters
    ----------
    samples : sequence of int
        Raw ADC counts, spanning a whole number of mains cycles for an exact result.
    burden_ohms, turns : float
        Burden resistor and CT turns ratio (SCT-013-000: 100 A : 50 mA = 2000 turns).
    adc_vref, adc_max : float
        Full-scale voltage and count of the ADC.

    >>> round(rms_current_a([2048 + 1000, 2048 - 1000] * 50, burden_ohms=33.0, turns=2000), 3)
    48.84
    """
    n = len(samples)
    if n < 2:
        raise DriverError("CT clamp: need at least 2 samples, got %d" % n)
    mean = sum(samples) / n
    squares = 0.0
    for count in samples:
        ac = count - mean
        squares += ac * ac
    rms_volts = (squares / n) ** 0.5 * adc_vref / adc_max
    return rms_volts / burden_ohms * turns


class CTClamp:
    """A current transformer clamp on an ADC pin: current measured, power estimated.

    Parameters
    ----------
    adc : object
        ``read()`` returning raw counts (MicroPython ``machine.ADC``).
    samples : int
        Samples per measurement.
    burden_ohms, turns, adc_vref, adc_max : float
        See :func:`rms_current_a`.
    nominal_voltage_v, power_factor : float
        Power is estimated as nominal voltage x RMS current x power factor (no voltage sensing).
    sample_delay : callable, optional
        Called between samples to spread them over whole mains cycles (on the board, e.g. a
        1 ms ``time.sleep_us`` so 200 samples cover 10 cycles at 50 Hz).

    Energy is left to the caller (``energy_kwh`` None): the meter integrates power over time.
    """

    def __init__(
        self,
        adc,
        samples=200,
        burden_ohms=33.0,
        turns=2000,
        adc_vref=3.3,
        adc_max=4095,
        nominal_voltage_v=230.0,
        power_factor=1.0,
        sample_delay=None,
    ):
        self.adc = adc
        self.samples = samples
        self.burden_ohms = burden_ohms
        self.turns = turns
        self.adc_vref = adc_vref
        self.adc_max = adc_max
        self.nominal_voltage_v = nominal_voltage_v
        self.power_factor = power_factor
        self.sample_delay = sample_delay

    def read(self):
        """One measurement: ``current_a`` and ``power_w``; ``voltage_v`` and ``energy_kwh`` are None."""
        counts = []
        for _ in range(self.samples):
            counts.append(self.adc.read())
            if self.sample_delay is not None:
                self.sample_delay()
        current_a = rms_current_a(counts, self.burden_ohms, self.turns, self.adc_vref, self.adc_max)
        return {
            "power_w": self.nominal_voltage_v * current_a * self.power_factor,
            "voltage_v": None,
            "current_a": current_a,
            "energy_kwh": None,
        }
