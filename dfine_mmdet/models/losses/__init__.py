# Each module here registers itself on import; add one import line per module.
from .ddf_loss import (DecoupledDistillationFocalLoss, ddf_balance_factors,
                       distribution_distillation_kl)
from .dfine_vfl_loss import DFINEVarifocalLoss, dfine_varifocal_loss
from .fgl_loss import (FineGrainedLocalizationLoss,
                       fine_grained_localization_loss)
from .mal_loss import MatchabilityAwareLoss, matchability_aware_loss
from .set_prediction_losses import (box_losses, classification_loss, ddf_loss,
                                    fgl_loss, loss_key)
