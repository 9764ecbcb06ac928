"""The exception tree. Every user mistake is a CompressorError subclass: the CLI
prints its one-line message and exits with code 2, with no traceback."""


class CompressorError(Exception):
    """Base of every error the toolchain raises on purpose."""

    exit_code = 2


class RecipeError(CompressorError):
    """The recipe (or a command-line option standing in for it) is invalid."""


class ModelLoadError(CompressorError):
    """A model file or factory is missing, corrupt or does not fit its declared inputs."""


class DataError(CompressorError):
    """A calibration or evaluation data source is missing or malformed."""


class InputShapeError(CompressorError):
    """Inputs given to a model or artifact do not match the shapes or dtypes it takes."""


class UnsupportedOpError(CompressorError):
    """An operator cannot be lowered to the requested target or precision."""


class TrainingError(CompressorError):
    """Fine-tuning cannot go on (a NaN loss) or cannot resume (a checkpoint of another run)."""


class ExportError(CompressorError):
    """Export of a model to a target format failed."""


class ArtifactError(CompressorError):
    """An artifact file is missing, empty, truncated or not of the format it claims."""


class FidelityError(CompressorError):
    """An artifact's outputs differ from the reference beyond tolerance."""


class BudgetExceeded(CompressorError):
    """A budget does not hold. Exit code 1: the run worked, the result does not fit."""

    exit_code = 1


def first_line(e: BaseException, limit: int = 400) -> str:
    """The first non-empty line of an exception's message (libraries' errors run to
    pages), or its type name when the message is empty."""
    for line in str(e).strip().splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(e).__name__
