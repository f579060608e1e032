"""Errors a user can fix: the message names the input, the problem and the fix."""


class ConfigError(ValueError):
    """A configuration that cannot run; ``train.py`` prints it without a traceback and exits with
    :data:`CONFIG_ERROR_EXIT`."""


CONFIG_ERROR_EXIT = 2  # argparse's and Hydra's exit code for bad command lines
