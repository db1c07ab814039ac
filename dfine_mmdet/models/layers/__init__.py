# Each module here registers itself on import; add one import line per module.
from .gelan_blocks import CSPLayer, ConvNormLayer, RepNCSPELAN4, SCDown, VGGBlock  # noqa: F401
from .aifi import AIFIEncoder, AIFIEncoderLayer, SinCos2DPositionEmbedding, build_2d_sincos_position_embedding  # noqa: F401
from .fdr_decoder import DFINETransformerDecoder, DFINETransformerDecoderLayer  # noqa: F401
from .contrastive_denoising import DFINEContrastiveDenoising, dn_match_indices  # noqa: F401
from .dfine_ema import DFINEModelEMA  # noqa: F401
from .fdr_dino_decoder import FDRDinoTransformerDecoder  # noqa: F401
from .fdr_deformable_decoder import FDRDeformableDetrTransformerDecoder, fdr_refine_step  # noqa: F401
