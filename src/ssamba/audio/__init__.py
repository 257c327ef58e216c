"""ssamba.audio"""
