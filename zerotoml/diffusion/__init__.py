"""Diffusion and flow models: schedules, denoisers, DDPM, DDIM, score SDEs, flow matching,
rectified flow. Note: notes/ddpm.md (start there)."""

from .mixture import GaussianMixture  # noqa: F401
from .schedules import *  # noqa: F401,F403
from .ddpm import DDPM, ddpm_step, ema_update, guided_noise, predict_x0, q_sample  # noqa: F401
from .ddim import DDIM, ddim_sigma, ddim_step, invert  # noqa: F401
from .embeddings import TimeEmbedding, drop_labels, timestep_embedding  # noqa: F401
from .unet import UNet  # noqa: F401
from .mlp import MLPDenoiser  # noqa: F401
from .flow_matching import FlowMatching  # noqa: F401
from .rectified_flow import RectifiedFlow, reflow_pairs, straightness  # noqa: F401
from .score_sde import (ScoreSDE, euler_maruyama, log_likelihood, predictor_corrector, prior_sample,  # noqa: F401
                        probability_flow)
