"""Fake of MicroPython's ``machine`` module for an ESP32 smart meter.

- :class:`UART` has a PZEM-004T v3.0 on the other end: it answers a well-formed Modbus "read input
  registers" request with the configured voltage, current, power and energy, and can be told to
  stay silent (timeout), corrupt the CRC, answer with a Modbus exception, or send a given frame.
- :class:`ADC` reads a sine wave with a DC offset, as a CT clamp on a mid-supply bias gives.
- :class:`Pin`, :class:`WDT`, :func:`reset`, :func:`unique_id` are the bits ``main.py`` touches.

The Modbus CRC here is written independently of the firmware's, so the tests cross-check them.
"""

import math

resets = []  # one entry per reset() call


def reset():
    resets.append(True)


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x42"


class Pin:
    IN = 1
    OUT = 3

    def __init__(self, pin_id, mode=None, pull=None):
        self.id = pin_id


class WDT:
    instances = []

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        WDT.instances.append(self)

    def feed(self):
        self.feeds += 1


def modbus_crc(data):
    """CRC-16/MODBUS by the table-free textbook loop (reflected 0xA001, init 0xFFFF)."""
    crc = 0xFFFF
    for byte in bytes(data):
        crc ^= byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def pzem_registers(voltage_v, current_a, power_w, energy_kwh, frequency_hz=50.0, power_factor=1.0, alarm=0):
    """The PZEM-004T's ten input registers for the given measurements (32-bit values low word first)."""
    current = int(round(current_a * 1000))
    power = int(round(power_w * 10))
    energy = int(round(energy_kwh * 1000))
    return [
        int(round(voltage_v * 10)),
        current & 0xFFFF,
        current >> 16,
        power & 0xFFFF,
        power >> 16,
        energy & 0xFFFF,
        energy >> 16,
        int(round(frequency_hz * 10)),
        int(round(power_factor * 100)),
        alarm,
    ]


class UART:
    """A UART with a PZEM-004T attached.

    Attributes to steer the emulated chip: ``voltage_v``, ``current_a``, ``power_w``, ``energy_kwh``;
    ``address`` (the chip's own; it also answers the general address 0xF8); ``silent`` (no reply:
    timeout); ``corrupt_crc``; ``exception_code`` (answer with a Modbus exception); ``reply`` (bytes
    sent verbatim instead of a computed reply); ``chunk`` (bytes per ``read`` call, to emulate a
    reply trickling in). :meth:`line_noise` puts stray bytes in the receive buffer.
    """

    instances = []

    def __init__(self, uart_id=2, baudrate=9600, tx=None, rx=None, timeout=0):
        self.id = uart_id
        self.baudrate = baudrate
        self.tx = tx
        self.rx = rx
        self.timeout = timeout
        self.voltage_v, self.current_a, self.power_w, self.energy_kwh = 230.0, 1.0, 230.0, 0.0
        self.address = 0x01
        self.silent = False
        self.corrupt_crc = False
        self.exception_code = None
        self.reply = None
        self.chunk = None
        self.requests = []  # every frame written
        self._rx = bytearray()
        UART.instances.append(self)

    def set(self, voltage_v, current_a, power_w, energy_kwh):
        """Set the measurements the chip reports."""
        self.voltage_v, self.current_a, self.power_w, self.energy_kwh = voltage_v, current_a, power_w, energy_kwh

    def line_noise(self, data):
        """Stray bytes waiting in the receive buffer (e.g. the tail of an earlier, late reply)."""
        self._rx += data

    def write(self, data):
        data = bytes(data)
        self.requests.append(data)
        if self.silent:
            return len(data)
        if self.reply is not None:
            self._rx += self.reply
            return len(data)
        if len(data) != 8 or modbus_crc(data[:6]) != data[6] | (data[7] << 8) or data[0] not in (self.address, 0xF8):
            return len(data)  # a real slave ignores frames not for it or with a bad CRC
        if data[1] != 0x04 or self.exception_code is not None:
            frame = bytes([self.address, data[1] | 0x80, self.exception_code or 0x01])
        else:
            start, count = (data[2] << 8) | data[3], (data[4] << 8) | data[5]
            if start + count > 10:
                frame = bytes([self.address, 0x84, 0x02])
            else:
                regs = pzem_registers(self.voltage_v, self.current_a, self.power_w, self.energy_kwh)
                regs = regs[start : start + count]
                frame = bytes([self.address, 0x04, 2 * count]) + b"".join(bytes([r >> 8, r & 0xFF]) for r in regs)
        crc = modbus_crc(frame)
        if self.corrupt_crc:
            crc ^= 0x5A5A
        self._rx += frame + bytes([crc & 0xFF, crc >> 8])
        return len(data)

    def any(self):
        return len(self._rx)

    def read(self, nbytes=None):
        """Up to ``nbytes`` waiting bytes (all if None); None when nothing arrived before the timeout."""
        if not self._rx:
            return None
        n = len(self._rx) if nbytes is None else nbytes
        if self.chunk:
            n = min(n, self.chunk)
        data, self._rx = bytes(self._rx[:n]), self._rx[n:]
        return data


class ADC:
    """An ADC pin reading a CT clamp: ``offset + amplitude * sin(2 pi k / samples_per_cycle)``.

    Class attributes set the waveform for ADCs made by ``main.py``; instances can be changed.
    """

    ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3
    WIDTH_9BIT, WIDTH_10BIT, WIDTH_11BIT, WIDTH_12BIT = 0, 1, 2, 3
    amplitude_counts = 1000.0
    offset_counts = 2048.0
    samples_per_cycle = 20
    instances = []

    def __init__(self, pin, atten=None):
        self.pin = pin
        self.attenuation = atten
        self.amplitude_counts = ADC.amplitude_counts
        self.offset_counts = ADC.offset_counts
        self.samples_per_cycle = ADC.samples_per_cycle
        self.reads = 0
        ADC.instances.append(self)

    def atten(self, attenuation):
        self.attenuation = attenuation

    def width(self, bits):
        pass

    def read(self):
        """One 12-bit sample (0..4095), quantised and clipped like the real converter."""
        phase = 2 * math.pi * self.reads / self.samples_per_cycle
        self.reads += 1
        value = int(round(self.offset_counts + self.amplitude_counts * math.sin(phase)))
        return max(0, min(4095, value))
