"""The grammar of device names, shared by the inventory, budget selectors and reports.
No pydantic here: the CLI's parser and the report readers import it at start-up."""

from __future__ import annotations

import re

LOCAL = "local"  # this machine, measured by the local harness
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


def valid_name(name: str) -> bool:
    return re.fullmatch(NAME, name) is not None
