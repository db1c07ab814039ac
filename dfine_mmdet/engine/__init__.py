from . import hooks, optimizers  # noqa: F401
from . import checked_checkpoint_loader  # noqa: F401  (truncated .pth errors)
