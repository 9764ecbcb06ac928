"""The performance suite: the project's published numbers, measured against the
by-hand baselines of ../shared/anchors in the same run."""
