from . import hooks, optimizers
