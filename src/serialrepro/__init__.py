"""serialrepro: diffusion as serial reproduction (Marjieh et al., ICML 2023), made runnable.

Subpackages:
    grid         the exact optimal-diffusion engine on discretised spaces
    families     noise families, defined once, offered as grid kernels and as samplers
"""

from serialrepro.errors import UserInputError

__version__ = "0.1.0"
__all__ = ["UserInputError", "__version__"]
