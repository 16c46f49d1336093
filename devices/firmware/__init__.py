"""Smart-meter firmware for ESP32 boards (MicroPython): core logic, metering-chip drivers, entry point."""
