from . import assigners, coders
