"""tvt: Transfer VAE Training for one-step real-world image super-resolution (ICCV 2025)."""
import logging

from ._compat import patch_basicsr_import

patch_basicsr_import()
# bitsandbytes (a pyiqa dependency that diffusers imports) warns at import on CPUs with AVX-512 BF16 that an
# optional 4-bit kernel package is missing; nothing here uses 4-bit CPU kernels, and the line hid real messages.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__version__ = "0.1.0"
