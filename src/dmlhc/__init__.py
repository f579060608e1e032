"""dmlhc: anticipate dark-matter signals at the LHC with 2D-histogram classifiers."""

__version__ = "0.1.0"
