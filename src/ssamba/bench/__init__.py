"""ssamba.bench: efficiency benchmark (time and peak memory vs audio length, SSAMBA vs SSAST) and scan benchmark."""
