from . import assigners, coders  # noqa: F401
