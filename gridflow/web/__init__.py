"""The household and operator pages: a store fed from the result topics, rendered server-side.

``store`` keeps what the pages show (bounded), ``feed`` fills it from Kafka, ``auth`` makes and checks
the page tokens, ``household`` / ``operator`` render HTML with inline SVG ``charts``, ``server`` serves
them (``gridflow page serve``).
"""
