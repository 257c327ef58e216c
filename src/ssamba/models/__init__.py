"""ssamba.models"""
