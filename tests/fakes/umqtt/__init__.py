"""Fake of the ``umqtt`` package (micropython-lib): only ``umqtt.simple``."""
