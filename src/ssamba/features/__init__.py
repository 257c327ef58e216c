"""ssamba.features"""
