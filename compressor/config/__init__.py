"""Configs as plain data: the recipe and every step's spec (quantize, prune, qat, finetune,
tune, budgets), and the YAML reading that turns a mistake into one line.

A leaf of the house: nothing here imports torch, a target, the harness or the flows, and
no module here imports the package itself, so the specs import one another without circles.
"""
