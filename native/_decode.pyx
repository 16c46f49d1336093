# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Read the fields of many reading payloads in one pass: a strict JSON scanner (the preprocessing job's decoder).

``scan_readings(payloads)`` reads each payload (a str) once and returns, per payload, whether it could be read
*exactly as Flink's JSON_VALUE + TRY_CAST read it* (``fast``) and then the typed fields the checks need. It
accepts a strict subset of JSON and leaves everything else to the job's ``JSON_VALUE`` path (``fast`` = 0):

- the root is an object; only whitespace may follow it (Jackson also accepts trailing garbage);
- keys without backslash escapes (a key spelled with escapes could be one of ours);
- values of other keys may be anything valid in JSON (nested values are checked to be valid JSON, 64 levels
  at most), except numbers longer than 100 characters or with exponents of more than 4 digits (Jackson's
  BigDecimal limits);
- ``v`` and ``ts_ms``: null/absent or an integer within 64 bits, -2**63 excepted (a string, float or boolean
  would be cast);
- ``household_id``, ``meter_id``: null/absent or a string without escapes (a number or boolean would be
  read as its text);
- ``power_w``, ``voltage_v``, ``current_a``, ``energy_kwh``, ``interval_s``: null/absent or a number: ``strtod``
  and Java's parse of the decimal both round to the nearest double; an exact zero reads as ``+0.0`` (Flink reads
  ``-0.0`` via BigDecimal as ``0.0``). ``interval_s`` too is read as a double: whether it is a whole number of
  seconds is a rule of the checks (``gridflow.preprocess.decode``), the same in both decoders.

Null and absent are the same for JSON_VALUE and JSON_EXISTS. Duplicate keys: the last one counts, as in Jackson.
The identifiers are also checked against the ID pattern ``^[A-Za-z0-9._:-]{1,64}$`` (``*_ok``).
"""
from cpython.unicode cimport PyUnicode_AsUTF8AndSize, PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport strtod
from libc.math cimport NAN

import numpy as np

DEF MAX_DEPTH = 64
DEF INT64_MIN = -9223372036854775807 - 1
DEF MAX_NUMBER = 100

# fields
DEF F_NONE = -1
DEF F_V = 0
DEF F_HOUSEHOLD = 1
DEF F_METER = 2
DEF F_TS = 3
DEF F_POWER = 4
DEF F_VOLTAGE = 5
DEF F_CURRENT = 6
DEF F_ENERGY = 7
DEF F_INTERVAL = 8
DEF N_FIELDS = 9
DEF N_NUMBERS = 5   # F_POWER .. F_INTERVAL

# value kinds
DEF K_FAIL = 0
DEF K_NULL = 1
DEF K_STRING = 2    # a string without escapes: [start, end)
DEF K_INTEGER = 3   # a JSON number without fraction or exponent
DEF K_NUMBER = 4    # any other JSON number
DEF K_OTHER = 5     # true, false, an escaped string, an object or an array


cdef struct Cursor:
    const char* p
    const char* end


cdef inline void _ws(Cursor* c) noexcept nogil:
    while c.p < c.end and (c.p[0] == b' ' or c.p[0] == b'\t' or c.p[0] == b'\n' or c.p[0] == b'\r'):
        c.p += 1


cdef inline bint _hex(char x) noexcept nogil:
    return (b'0' <= x <= b'9') or (b'a' <= x <= b'f') or (b'A' <= x <= b'F')


cdef int _string(Cursor* c, const char** start, const char** stop) noexcept nogil:
    """At an opening quote: skip the string; K_STRING if it has no escapes, K_OTHER if it has valid ones."""
    cdef bint escaped = False
    cdef int k
    c.p += 1
    start[0] = c.p
    while c.p < c.end:
        if c.p[0] == b'"':
            stop[0] = c.p
            c.p += 1
            return K_OTHER if escaped else K_STRING
        if <unsigned char>c.p[0] < 0x20:
            return K_FAIL
        if c.p[0] == b'\\':
            escaped = True
            c.p += 1
            if c.p >= c.end:
                return K_FAIL
            if c.p[0] == b'u':
                if c.end - c.p < 5:
                    return K_FAIL
                for k in range(1, 5):
                    if not _hex(c.p[k]):
                        return K_FAIL
                c.p += 5
                continue
            if not (c.p[0] == b'"' or c.p[0] == b'\\' or c.p[0] == b'/' or c.p[0] == b'b' or c.p[0] == b'f'
                    or c.p[0] == b'n' or c.p[0] == b'r' or c.p[0] == b't'):
                return K_FAIL
        c.p += 1
    return K_FAIL


cdef int _number(Cursor* c) noexcept nogil:
    """At '-' or a digit: skip a JSON number; K_INTEGER, K_NUMBER or K_FAIL (also for very long ones)."""
    cdef const char* first = c.p
    cdef const char* digits
    cdef bint integer = True
    if c.p[0] == b'-':
        c.p += 1
    if c.p >= c.end:
        return K_FAIL
    if c.p[0] == b'0':
        c.p += 1
    elif b'1' <= c.p[0] <= b'9':
        while c.p < c.end and b'0' <= c.p[0] <= b'9':
            c.p += 1
    else:
        return K_FAIL
    if c.p < c.end and c.p[0] == b'.':
        integer = False
        c.p += 1
        digits = c.p
        while c.p < c.end and b'0' <= c.p[0] <= b'9':
            c.p += 1
        if c.p == digits:
            return K_FAIL
    if c.p < c.end and (c.p[0] == b'e' or c.p[0] == b'E'):
        integer = False
        c.p += 1
        if c.p < c.end and (c.p[0] == b'+' or c.p[0] == b'-'):
            c.p += 1
        digits = c.p
        while c.p < c.end and b'0' <= c.p[0] <= b'9':
            c.p += 1
        if c.p == digits or c.p - digits > 4:
            return K_FAIL
    if c.p - first > MAX_NUMBER:
        return K_FAIL
    return K_INTEGER if integer else K_NUMBER


cdef inline bint _literal(Cursor* c, const char* word, int n) noexcept nogil:
    cdef int k
    if c.end - c.p < n:
        return False
    for k in range(n):
        if c.p[k] != word[k]:
            return False
    c.p += n
    return True


cdef inline int _more(Cursor* c, char closer) noexcept nogil:
    """After an array element or object member: 1 after a comma (another follows), 0 after ``closer``
    (the container ended), -1 for anything else."""
    _ws(c)
    if c.p >= c.end:
        return -1
    if c.p[0] == b',':
        c.p += 1
        return 1
    if c.p[0] == closer:
        c.p += 1
        return 0
    return -1


cdef int _value(Cursor* c, int depth, const char** start, const char** stop) noexcept nogil:
    """Skip one JSON value (validating it); its kind (see K_*)."""
    cdef const char* s
    cdef const char* e
    cdef int more
    if c.p >= c.end:
        return K_FAIL
    cdef char x = c.p[0]
    if x == b'"':
        return _string(c, start, stop)
    if x == b'-' or (b'0' <= x <= b'9'):
        start[0] = c.p
        k = _number(c)
        stop[0] = c.p
        return k
    if x == b'n':
        return K_NULL if _literal(c, "null", 4) else K_FAIL
    if x == b't':
        return K_OTHER if _literal(c, "true", 4) else K_FAIL
    if x == b'f':
        return K_OTHER if _literal(c, "false", 5) else K_FAIL
    if depth >= MAX_DEPTH:
        return K_FAIL
    if x == b'[':
        c.p += 1
        _ws(c)
        if c.p < c.end and c.p[0] == b']':
            c.p += 1
            return K_OTHER
        while True:
            _ws(c)
            if _value(c, depth + 1, &s, &e) == K_FAIL:
                return K_FAIL
            more = _more(c, b']')
            if more < 0:
                return K_FAIL
            if more == 0:
                return K_OTHER
    if x == b'{':
        c.p += 1
        _ws(c)
        if c.p < c.end and c.p[0] == b'}':
            c.p += 1
            return K_OTHER
        while True:
            _ws(c)
            if c.p >= c.end or c.p[0] != b'"' or _string(c, &s, &e) == K_FAIL:
                return K_FAIL
            _ws(c)
            if c.p >= c.end or c.p[0] != b':':
                return K_FAIL
            c.p += 1
            _ws(c)
            if _value(c, depth + 1, &s, &e) == K_FAIL:
                return K_FAIL
            more = _more(c, b'}')
            if more < 0:
                return K_FAIL
            if more == 0:
                return K_OTHER
    return K_FAIL


cdef inline bint _key_is(const char* s, Py_ssize_t n, const char* name, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t k
    if n != m:
        return False
    for k in range(n):
        if s[k] != name[k]:
            return False
    return True


cdef int _field(const char* s, Py_ssize_t n) noexcept nogil:
    if _key_is(s, n, "v", 1):
        return F_V
    if _key_is(s, n, "household_id", 12):
        return F_HOUSEHOLD
    if _key_is(s, n, "meter_id", 8):
        return F_METER
    if _key_is(s, n, "ts_ms", 5):
        return F_TS
    if _key_is(s, n, "power_w", 7):
        return F_POWER
    if _key_is(s, n, "voltage_v", 9):
        return F_VOLTAGE
    if _key_is(s, n, "current_a", 9):
        return F_CURRENT
    if _key_is(s, n, "energy_kwh", 10):
        return F_ENERGY
    if _key_is(s, n, "interval_s", 10):
        return F_INTERVAL
    return F_NONE


cdef bint _int64(const char* s, const char* e, int64_t* out) noexcept nogil:
    """Decimal integer text (optional '-') -> int64; False on overflow."""
    cdef bint negative = s[0] == b'-'
    cdef unsigned long long value = 0, limit = 9223372036854775808ULL if negative else 9223372036854775807ULL
    cdef unsigned long long digit
    if negative:
        s += 1
    while s < e:
        digit = <unsigned long long>(s[0] - 48)
        if value > (limit - digit) // 10:
            return False
        value = value * 10 + digit
        s += 1
    if negative:
        out[0] = -<int64_t>(value - 1) - 1 if value else 0
    else:
        out[0] = <int64_t>value
    return True


cdef double _double(const char* s, const char* e) noexcept nogil:
    """A JSON number token -> the nearest double; an exact zero (all mantissa digits 0) is +0.0 as in Flink,
    whose BigDecimal has no negative zero (a negative number too small for a double still reads as -0.0)."""
    cdef char buf[MAX_NUMBER + 2]
    cdef Py_ssize_t n = e - s, k
    cdef bint zero = True
    for k in range(n):
        buf[k] = s[k]
        if s[k] == b'e' or s[k] == b'E':
            break
        if b'1' <= s[k] <= b'9':
            zero = False
    for k in range(n):
        buf[k] = s[k]
    buf[n] = 0
    if zero:
        return 0.0
    return strtod(buf, NULL)


cdef inline bint _id_ok(const char* s, const char* e) noexcept nogil:
    cdef Py_ssize_t n = e - s
    cdef char x
    if n < 1 or n > 64:
        return False
    while s < e:
        x = s[0]
        if not ((b'a' <= x <= b'z') or (b'A' <= x <= b'Z') or (b'0' <= x <= b'9') or x == b'.' or x == b'_'
                or x == b':' or x == b'-'):
            return False
        s += 1
    return True


def scan_readings(payloads):
    """Scan a sequence of payload strings; returns a dict of columns (numpy arrays, lists of str or None):
    ``fast`` (bool), ``v`` (int64, ``v_set``), ``household_id``, ``meter_id`` (str or None), ``household_ok``,
    ``meter_ok`` (bool: the ID pattern holds), ``ts_ms`` (int64, ``ts_set``), ``power_w``, ``voltage_v``,
    ``current_a``, ``energy_kwh``, ``interval_s`` (float64, NaN where null or absent). Fields of payloads that are not ``fast`` are unset."""
    cdef Py_ssize_t n = len(payloads), i, length, f
    fast_np = np.zeros(n, dtype=np.uint8)
    v_np = np.zeros(n, dtype=np.int64)
    v_set_np = np.zeros(n, dtype=np.uint8)
    ts_np = np.zeros(n, dtype=np.int64)
    ts_set_np = np.zeros(n, dtype=np.uint8)
    hh_ok_np = np.zeros(n, dtype=np.uint8)
    meter_ok_np = np.zeros(n, dtype=np.uint8)
    numbers_np = np.full((N_NUMBERS, n), np.nan, dtype=np.float64)
    cdef uint8_t[::1] fast = fast_np, v_set = v_set_np, ts_set = ts_set_np, hh_ok = hh_ok_np, meter_ok = meter_ok_np
    cdef int64_t[::1] v = v_np, ts = ts_np
    cdef double[:, ::1] numbers = numbers_np
    households = [None] * n
    meters = [None] * n
    cdef const char* text
    cdef const char* key
    cdef const char* key_end
    cdef const char* s
    cdef const char* e
    cdef const char* id_start[2]
    cdef const char* id_end[2]
    cdef int kind
    cdef int kinds[N_FIELDS]
    cdef bint ok
    cdef Cursor c
    cdef int64_t integer
    for i in range(n):
        payload = payloads[i]
        if type(payload) is not str:
            continue
        try:
            text = PyUnicode_AsUTF8AndSize(payload, &length)
        except UnicodeError:  # lone surrogates
            continue
        c.p = text
        c.end = text + length
        for f in range(N_FIELDS):
            kinds[f] = K_NULL
        ok = False
        _ws(&c)
        if c.p < c.end and c.p[0] == b'{':
            c.p += 1
            _ws(&c)
            if c.p < c.end and c.p[0] == b'}':
                c.p += 1
                ok = True
            else:
                while True:
                    _ws(&c)
                    if c.p >= c.end or c.p[0] != b'"' or _string(&c, &key, &key_end) != K_STRING:
                        break  # an escaped key might spell one of ours: leave it to JSON_VALUE
                    _ws(&c)
                    if c.p >= c.end or c.p[0] != b':':
                        break
                    c.p += 1
                    _ws(&c)
                    f = _field(key, key_end - key)
                    kind = _value(&c, 1, &s, &e)
                    if kind == K_FAIL:
                        break
                    if f != F_NONE:
                        kinds[f] = kind
                        if kind == K_STRING and (f == F_HOUSEHOLD or f == F_METER):
                            id_start[f - F_HOUSEHOLD] = s
                            id_end[f - F_HOUSEHOLD] = e
                        elif kind == K_INTEGER and (f == F_V or f == F_TS):
                            if not _int64(s, e, &integer) or integer == INT64_MIN:
                                kinds[f] = K_FAIL  # INT64_MIN marks "null" in the job's columns
                            elif f == F_V:
                                v[i] = integer
                            else:
                                ts[i] = integer
                        elif (kind == K_INTEGER or kind == K_NUMBER) and f >= F_POWER:
                            numbers[f - F_POWER, i] = _double(s, e)
                    _ws(&c)
                    if c.p >= c.end:
                        break
                    if c.p[0] == b',':
                        c.p += 1
                        continue
                    if c.p[0] == b'}':
                        c.p += 1
                        ok = True
                    break
        if not ok:
            continue
        _ws(&c)
        if c.p != c.end:
            continue  # trailing content
        # every field of ours must be null/absent or of the one kind both readers agree on
        if not ((kinds[F_V] == K_NULL or kinds[F_V] == K_INTEGER) and (kinds[F_TS] == K_NULL or kinds[F_TS] == K_INTEGER)
                and (kinds[F_HOUSEHOLD] == K_NULL or kinds[F_HOUSEHOLD] == K_STRING)
                and (kinds[F_METER] == K_NULL or kinds[F_METER] == K_STRING)):
            continue
        for f in range(F_POWER, F_INTERVAL + 1):
            if kinds[f] == K_NULL:
                numbers[f - F_POWER, i] = NAN  # a later null overrides an earlier number
            elif not (kinds[f] == K_INTEGER or kinds[f] == K_NUMBER):
                ok = False
        if not ok:
            for f in range(N_NUMBERS):
                numbers[f, i] = NAN
            continue
        fast[i] = 1
        v_set[i] = kinds[F_V] == K_INTEGER
        ts_set[i] = kinds[F_TS] == K_INTEGER
        if kinds[F_HOUSEHOLD] == K_STRING:
            households[i] = PyUnicode_DecodeUTF8(id_start[0], id_end[0] - id_start[0], NULL)
            hh_ok[i] = _id_ok(id_start[0], id_end[0])
        if kinds[F_METER] == K_STRING:
            meters[i] = PyUnicode_DecodeUTF8(id_start[1], id_end[1] - id_start[1], NULL)
            meter_ok[i] = _id_ok(id_start[1], id_end[1])
    return {"fast": fast_np.view(bool), "v": v_np, "v_set": v_set_np.view(bool), "household_id": households,
            "meter_id": meters, "household_ok": hh_ok_np.view(bool), "meter_ok": meter_ok_np.view(bool),
            "ts_ms": ts_np, "ts_set": ts_set_np.view(bool), "power_w": numbers_np[0], "voltage_v": numbers_np[1],
            "current_a": numbers_np[2], "energy_kwh": numbers_np[3], "interval_s": numbers_np[4]}
