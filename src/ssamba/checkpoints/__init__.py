"""ssamba.checkpoints"""
