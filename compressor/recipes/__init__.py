"""Recipes that ship with the package."""

from pathlib import Path

DEMO_RECIPE = Path(__file__).resolve().parent / "digits.yaml"
