"""Bringing data people already have into gridflow: meter exports (CSV, Parquet) onto the readings topic."""
