# Each module here registers itself on import; add one import line per module.
from .aifi import (AIFIEncoder, AIFIEncoderLayer, SinCos2DPositionEmbedding,
                   build_2d_sincos_position_embedding)
from .contrastive_denoising import DFINEContrastiveDenoising, dn_match_indices
from .dfine_ema import DFINEModelEMA
from .fdr_decoder import DFINETransformerDecoder, DFINETransformerDecoderLayer
from .fdr_deformable_decoder import FDRDeformableDetrTransformerDecoder
from .fdr_dino_decoder import FDRDinoTransformerDecoder
from .gelan_blocks import (ConvNormLayer, CSPLayer, RepNCSPELAN4, SCDown,
                           VGGBlock)
