"""Recipes that ship with the package."""

from pathlib import Path

RECIPES_DIR = Path(__file__).resolve().parent
DEMO_RECIPE = RECIPES_DIR / "digits_wide.yaml"  # `compressor demo`: the wide CNN on 32x32 digits
DIGITS_RECIPE = RECIPES_DIR / "digits.yaml"  # the 8x8 DigitsCNN, the tests' model
