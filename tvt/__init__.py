"""tvt: Transfer VAE Training for one-step real-world image super-resolution (ICCV 2025)."""
from ._compat import patch_basicsr_import

patch_basicsr_import()

__version__ = "0.1.0"
