"""Native (Cython) hot loops and the numpy references they are tested against."""
