"""ssamba.data: general dataset readers and manifests (folder, CSV, official layouts, shards) and per-item seeds."""
