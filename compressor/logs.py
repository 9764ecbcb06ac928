"""Third-party log records that say nothing to our users, dropped at their logger (not by
silencing whole libraries). Installed by the CLI before any subcommand runs and by the
modules that import the libraries, for users of the Python API. Needs no heavy import:
a logger exists by name before its library does."""

from __future__ import annotations

import logging


class _TorchaoEnumNotice(logging.Filter):
    """Drops the one record torch logs when torchao is imported (torchao registers its
    KernelPreference Enum as a pytree constant, which this torch deprecates): a
    `W... torch/utils/_pytree.py:...] <enum 'KernelPreference'> is an Enum subclass ...`
    line on stderr, through logging and so past the CLI's warnings filter, before every
    message of a run that quantizes. Every other record of that logger passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("%s is an Enum subclass and is now natively supported")


def quiet_third_party() -> None:
    log = logging.getLogger("torch.utils._pytree")
    if not any(isinstance(f, _TorchaoEnumNotice) for f in log.filters):
        log.addFilter(_TorchaoEnumNotice())
