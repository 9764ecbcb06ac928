"""Models the project trains and ships. Weights live beside their definitions."""

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
