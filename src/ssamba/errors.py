"""Exception types. Every error a user can cause is one of these, with a one-line message
that names the file (or argument) and the problem; the CLI prints it without a traceback."""


class SsambaError(Exception):
    """Base class for errors caused by user input (files, configs, checkpoints)."""


class AudioError(SsambaError):
    """Audio that cannot be read or used: missing, not audio, empty, NaN/Inf, bad sample rate."""


class CheckpointError(SsambaError):
    """A checkpoint that cannot be loaded: missing, foreign, or with mismatched shapes."""


class DataError(SsambaError):
    """A dataset whose layout or contents are wrong: missing csv, unknown label, empty class."""


class ConfigError(SsambaError):
    """An invalid configuration value or override."""


class TrainingError(SsambaError):
    """Training cannot go on (e.g. the loss became NaN/Inf); the last good checkpoint is kept."""
