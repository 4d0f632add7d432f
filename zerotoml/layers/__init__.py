from .linear import Linear
from .embedding import Embedding
from .norm import LayerNorm, RMSNorm, BatchNorm, GroupNorm
from .activation import relu, gelu, silu, sigmoid, tanh, softmax, log_softmax, ReLU, GELU, SiLU, Sigmoid, Tanh, Softmax, LogSoftmax
from .dropout import Dropout
from .chain import Chain, MLP, Flatten
from .attention import MultiheadAttention, attend, causal_mask
from .conv import Conv, ConvTranspose
from .resnet import ResidualBlock, residual_block_from_parts
from .conv import MaxPool, AvgPool, AdaptiveAvgPool, GlobalAvgPool, pool_output_size, pool_output_shape, adaptive_avg_matrix
