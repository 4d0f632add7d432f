"""The convolution-arithmetic paper, Dumoulin & Visin, "A guide to convolution arithmetic for
deep learning" (2016, arXiv:1603.07285): convolution (conv.py), transposed convolution
(transposed.py), the arithmetic of sizes (arithmetic.py), padding and window views
(windows.py), the gradients derived by hand (grad.py), pooling (pool.py, adaptive.py).
Note: notes/cnn.md."""

from .arithmetic import *  # noqa: F401,F403
from .arithmetic import __all__ as _arithmetic_all
from .conv import Conv, check_input, convolve
from .transposed import ConvTranspose, conv_transpose, stretch
from .windows import fold, pad, window_view
from .grad import conv_bias_grad, conv_input_grad, conv_weight_grad
from .pool import AvgPool, MaxPool, pool_output_shape, pool_output_size
from .adaptive import AdaptiveAvgPool, GlobalAvgPool, adaptive_avg_matrix

__all__ = [*_arithmetic_all, "Conv", "check_input", "convolve", "ConvTranspose", "conv_transpose", "stretch",
           "fold", "pad", "window_view", "conv_bias_grad", "conv_input_grad", "conv_weight_grad",
           "AvgPool", "MaxPool", "pool_output_shape", "pool_output_size",
           "AdaptiveAvgPool", "GlobalAvgPool", "adaptive_avg_matrix"]
