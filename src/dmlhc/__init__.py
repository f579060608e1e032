"""dmlhc: anticipate dark-matter signals at the LHC with 2D-histogram classifiers."""

from dmlhc.resolvers import register as _register_resolvers

__version__ = "0.1.0"

_register_resolvers()
