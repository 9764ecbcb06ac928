"""Accuracy-aware tuning: a study over the compression space of a recipe (`compressor tune`)."""
