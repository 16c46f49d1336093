"""Pure preprocessing: cleaning a meter's window of readings and building daily load profiles."""

from gridflow.preprocess.clean import CleaningParams, WindowFeatures, clean_window, clean_windows
from gridflow.preprocess.profile import daily_profile

__all__ = ["CleaningParams", "WindowFeatures", "clean_window", "clean_windows", "daily_profile"]
