"""Diffusion and flow models: schedules, denoisers, DDPM, DDIM, score SDEs, flow matching,
rectified flow. Note: notes/ddpm.md (start there)."""

from .mixture import GaussianMixture  # noqa: F401
from .schedules import *  # noqa: F401,F403
