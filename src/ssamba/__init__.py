"""ssamba: self-supervised audio encoders with bidirectional Mamba (SSAMBA) and the SSAST baseline."""

__version__ = "0.1.0"
